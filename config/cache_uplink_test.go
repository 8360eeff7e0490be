package config

import (
	"strings"
	"testing"
	"time"
)

func TestCacheUplinks(t *testing.T) {
	c := Default()
	err := c.Parse("t", []byte(`
[cache]
listen = "127.0.0.1:0"
probe_interval = "500ms"
[[cache.uplink]]
name = "venue-wifi"
source = "127.0.0.2"
[[cache.uplink]]
interface = "wwan0"
[[cache.site]]
name = "a.example"
origins = ["http://127.0.0.1:9000"]
[[cache.site]]
name = "b.example"
origins = ["http://127.0.0.1:9000"]
[[cache.site.uplink]]
source = "127.0.0.3"
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	a, b := c.Cache.Site[0].Uplink, c.Cache.Site[1].Uplink
	if len(a) != 2 || a[0].Source != "127.0.0.2" || a[1].Interface != "wwan0" {
		t.Fatalf("site a inherits [[cache.uplink]]: %+v", a)
	}
	if len(b) != 1 || b[0].Source != "127.0.0.3" {
		t.Fatalf("site b's own uplinks: %+v", b)
	}
	if c.Cache.ProbeInterval.Duration != 500*time.Millisecond {
		t.Fatalf("probe_interval %v", c.Cache.ProbeInterval.Duration)
	}

	c = Default()
	if err := c.Parse("t", []byte("[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\n")); err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if c.Cache.ProbeInterval.Duration != 2*time.Second || c.Cache.Site[0].Uplink != nil {
		t.Fatalf("defaults: probe %v, uplinks %+v", c.Cache.ProbeInterval.Duration, c.Cache.Site[0].Uplink)
	}

	site := "[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\n"
	for _, bad := range []struct{ text, want string }{
		{"[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.uplink]]\nname = \"u\"\n" + site, "set exactly one of source"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.uplink]]\nsource = \"1.2.3.4\"\ninterface = \"eth0\"\n" + site, "set exactly one of source"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.uplink]]\nsource = \"eth0\"\n" + site, "want an IP address"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\nprobe_interval = \"1ms\"\n" + site, "cache.probe_interval"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\n" + site + "[[cache.site.uplink]]\nsource = \"x\"\n", `cache.site "a" uplink source "x"`},
	} {
		c := Default()
		err := c.Parse("t", []byte(bad.text))
		if err == nil {
			err = c.Resolve()
		}
		if err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("%q: got %v, want %q", bad.text, err, bad.want)
		}
	}
}

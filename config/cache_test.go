package config

import (
	"strings"
	"testing"
)

func TestCacheTable(t *testing.T) {
	c := Default()
	err := c.Parse("t", []byte(`
[cache]
listen = "127.0.0.1:0"
max_bytes = 2000000
[[cache.site]]
name = "shop.example"
origins = ["http://127.0.0.1:9000", "http://127.0.0.1:9001"]
[[cache.site.ttl]]
prefix = "/static/"
ttl = "30m"
`))
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if c.Cache.Dir == "" || len(c.Cache.Site[0].Origins) != 2 || c.Cache.Site[0].TTL[0].TTL.Minutes() != 30 {
		t.Fatalf("%+v", c.Cache)
	}
	if c.Cache.HotMaxObjectBytes != 64<<10 || c.Cache.HotMaxBytes != 64<<20 {
		t.Errorf("hot tier defaults %d, %d; want 64 KiB, 64 MiB", c.Cache.HotMaxObjectBytes, c.Cache.HotMaxBytes)
	}
	for _, bad := range []struct{ text, want string }{
		{"[cache]\nlisten = \"127.0.0.1:0\"\n", "no [[cache.site]]"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.site]]\nname = \"a\"\norigins = [\"ftp://x\"]\n", "want http(s)://host[:port]"},
		{"[cache]\nlisten = \"nope\"\n", "cache.listen"},
		{"[cache]\nbogus = 1\n", "unknown key"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\nhot_max_bytes = -2\n[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\n", "hot_max_bytes -2"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\nhot_max_object_bytes = -1\n[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\n", "hot_max_object_bytes -1"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\ngc_percent = -5\n[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\n", "gc_percent -5"},
		{"[tls]\nca_dir = \"/x\"\n", "cache is off"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\n[tls]\nca_dir = \"/x\"\ncert_file = \"/c\"\n", "not both"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\n[tls]\ncert_file = \"/c\"\n", "go together"},
		{"[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\nstrip_query = [\"*x\"]\n", "strip_query \"*x\""},
		{"[cache]\nlisten = \"127.0.0.1:0\"\n[[cache.site]]\nname = \"a\"\norigins = [\"http://x\"]\nstrip_headers = [\"Host\"]\n", "strip_headers \"Host\""},
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

func TestCacheStripDefaults(t *testing.T) {
	c := Default()
	err := c.Parse("t", []byte(`
[cache]
listen = "127.0.0.1:0"
[[cache.site]]
name = "a.example"
origins = ["http://127.0.0.1:9000"]
[[cache.site]]
name = "static.example"
origins = ["http://127.0.0.1:9000"]
strip_headers = ["Cookie", "X-Real-IP"]
strip_query = []
`))
	if err == nil {
		err = c.Resolve()
	}
	if err != nil {
		t.Fatal(err)
	}
	a, s := c.Cache.Site[0], c.Cache.Site[1]
	if strings.Join(a.StripHeaders, ",") != strings.Join(DefaultStripHeaders, ",") || strings.Join(a.StripQuery, ",") != strings.Join(DefaultStripQuery, ",") {
		t.Errorf("defaults: headers %q query %q", a.StripHeaders, a.StripQuery)
	}
	if strings.Join(s.StripHeaders, ",") != "Cookie,X-Real-IP" || len(s.StripQuery) != 0 {
		t.Errorf("explicit: headers %q query %q (an empty list must strip none)", s.StripHeaders, s.StripQuery)
	}
}

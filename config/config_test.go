package config

import (
	"strings"
	"testing"
	"time"
)

func TestLayering(t *testing.T) {
	c := Default()
	if err := c.Parse("test", []byte("[node]\ndir = \"/data\"\nlisten = \"127.0.0.1:9000\"\nclock_offset = \"-2h\"\n[sync]\nhubs = [\"https://hub.example\"]\n")); err != nil {
		t.Fatal(err)
	}
	env := map[string]string{"CANOPY_NODE_LISTEN": "127.0.0.1:9100", "CANOPY_CLOCK_OFFSET": "90s"}
	if err := c.ApplyEnv(func(k string) string { return env[k] }); err != nil {
		t.Fatal(err)
	}
	if err := c.Resolve(); err != nil {
		t.Fatal(err)
	}
	if c.Node.Dir != "/data" || c.Node.Listen != "127.0.0.1:9100" || c.Node.ClockOffset.Duration != 90*time.Second {
		t.Fatalf("layering wrong: %+v", c.Node)
	}
	if c.Node.Event != "/data/event" || c.Node.Key != "/data/node" {
		t.Fatalf("derived paths wrong: %+v", c.Node)
	}
	if len(c.Sync.Hubs) != 1 {
		t.Fatalf("hubs: %v", c.Sync.Hubs)
	}
}

func TestErrors(t *testing.T) {
	cases := []struct{ text, want string }{
		{"[node]\nlisten = 5\n", "config t"},
		{"[node]\nbogus = 1\n", "unknown key(s): node.bogus"},
		{"[nosuch]\nx = 1\n", "unknown key(s): nosuch"},
		{"[node]\nclock_offset = \"soon\"\n", "invalid duration"},
		{"[node\n", "line 2"},
	}
	for _, tc := range cases {
		c := Default()
		err := c.Parse("t", []byte(tc.text))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Parse(%q) = %v, want error containing %q", tc.text, err, tc.want)
		}
	}
	bad := []func(c *Config){
		func(c *Config) { c.Node.Listen = "nope" },
		func(c *Config) { c.Node.MaxBody = 10 },
		func(c *Config) { c.Node.LogLevel = "loud" },
		func(c *Config) { c.Sync.Peers = []string{"ftp://x"} },
		func(c *Config) { c.Node.Dir = "" },
		func(c *Config) { c.Sync.BidForwardTimeout.Duration = time.Millisecond },
		func(c *Config) { c.Sync.BidForwardTimeout.Duration = time.Minute },
	}
	for i, f := range bad {
		c := Default()
		f(&c)
		if err := c.Resolve(); err == nil {
			t.Errorf("case %d: Resolve accepted a bad value", i)
		}
	}
	c := Default()
	if err := c.ApplyEnv(func(k string) string {
		if k == "CANOPY_NODE_MAX_BODY" {
			return "lots"
		}
		return ""
	}); err == nil || !strings.Contains(err.Error(), "CANOPY_NODE_MAX_BODY") {
		t.Errorf("ApplyEnv: %v", err)
	}
}

// FuzzParse: the loader never panics and either accepts the text or says why.
func FuzzParse(f *testing.F) {
	f.Add([]byte("[node]\ndir = \"x\"\n"))
	f.Add([]byte("[sync]\nhubs = [\"https://a\", \"https://b\"]\npush = true\n"))
	f.Add([]byte("[node]\nclock_offset = \"1h\"\nmax_body = 4096\n"))
	f.Fuzz(func(t *testing.T, text []byte) {
		c := Default()
		if err := c.Parse("fuzz", text); err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		_ = c.Resolve()
	})
}

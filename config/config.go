// Package config loads a daemon's configuration: embedded defaults, then an
// optional TOML file, then CANOPY_* environment variables, then flags, each
// overriding the one before. Unknown keys are errors, not silently ignored.
package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
)

// Config is one daemon's configuration. Every table is optional.
type Config struct {
	Node NodeConfig `toml:"node"`
	Sync SyncConfig `toml:"sync"`
	// Images is the [images] table: the OCI registry cache.
	Images ImagesConfig `toml:"images"`
	// Cache is the [cache] table: the edge cache (caching reverse proxy).
	Cache CacheConfig `toml:"cache"`
	// TLS is the [tls] table: HTTPS on the edge cache's listener.
	TLS TLSConfig `toml:"tls"`
}

// NodeConfig is the [node] table.
type NodeConfig struct {
	// Dir is the data directory: the store lives here.
	Dir string `toml:"dir"`
	// Event is the path of the event's event.json (or its directory).
	Event string `toml:"event"`
	// Key is the node directory holding node.key and enrolment.token.
	Key string `toml:"key"`
	// Listen is the device API's listen address.
	Listen string `toml:"listen"`
	// ClockOffset shifts this node's clock, for tests and drills.
	ClockOffset Duration `toml:"clock_offset"`
	// MaxBody caps request bodies on the device API, in bytes.
	MaxBody int64 `toml:"max_body"`
	// LogLevel is debug, info, warn or error.
	LogLevel string `toml:"log_level"`
}

// SyncConfig is the [sync] table: where this node replicates to.
type SyncConfig struct {
	Hubs  []string `toml:"hubs"`
	Peers []string `toml:"peers"`
	Push  *bool    `toml:"push"`
	// BidForwardTimeout bounds forwarding a bid to its lot's home edge
	// before it is recorded here as an intent (0: 300 ms; 10 ms to 30 s).
	BidForwardTimeout Duration `toml:"bid_forward_timeout"`
}

// ImagesConfig is the [images] table: the image cache (an OCI pull-through
// registry) the edge serves on its own listener when Listen is set.
type ImagesConfig struct {
	// Listen is the registry's listen address; empty: no image cache.
	Listen string `toml:"listen"`
	// Dir is the blob store (default <node.dir>/images).
	Dir string `toml:"dir"`
	// MaxBytes is the store's size budget in bytes (0: no limit).
	MaxBytes int64 `toml:"max_bytes"`
	// TagDeadline bounds the freshness check of a cached tag (default 500ms).
	TagDeadline Duration `toml:"tag_deadline"`
	// UpstreamTimeout bounds each mirror's answer for content not cached
	// (default 10s).
	UpstreamTimeout Duration `toml:"upstream_timeout"`
	// Upstream lists the registries, chosen by repository prefix.
	Upstream []ImageUpstream `toml:"upstream"`
	// Policy lists repositories whose manifests need a cosign signature.
	Policy []ImagePolicy `toml:"policy"`
	// Auth makes local clients pull with a short-lived bearer token the
	// cache issues at /v2/token for a device token of the event.
	Auth bool `toml:"auth"`
}

// ImageUpstream is one [[images.upstream]] table.
type ImageUpstream struct {
	// Prefix selects this upstream for names "<prefix>/..." (stripped) and
	// for containerd's ?ns=<prefix>; empty: every other name.
	Prefix string `toml:"prefix"`
	// Mirrors are base URLs, tried in order.
	Mirrors  []string `toml:"mirrors"`
	Username string   `toml:"username"`
	Password string   `toml:"password"`
	Token    string   `toml:"token"`
}

// Duration is a time.Duration written as a Go duration string ("90s", "-2h").
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("invalid duration %q (want e.g. 90s, 2h, -30m)", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Default returns the embedded defaults: data in ./canopy-data, the event
// and node key inside it, the API on 127.0.0.1:8080.
func Default() Config {
	return Config{Node: NodeConfig{
		Dir:      "canopy-data",
		Listen:   "127.0.0.1:8080",
		MaxBody:  1 << 20,
		LogLevel: "info",
	}}
}

// Parse decodes TOML text over c. Unknown tables and keys are errors.
func (c *Config) Parse(name string, text []byte) error {
	md, err := toml.Decode(string(text), c)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return fmt.Errorf("config %s: line %d: %s", name, perr.Position.Line, perr.Message)
		}
		return fmt.Errorf("config %s: %w", name, err)
	}
	if und := md.Undecoded(); len(und) > 0 {
		keys := make([]string, len(und))
		for i, k := range und {
			keys[i] = k.String()
		}
		return fmt.Errorf("config %s: unknown key(s): %s", name, strings.Join(keys, ", "))
	}
	return nil
}

// Load reads the file at path (if path is non-empty) over the defaults.
func Load(path string) (Config, error) {
	c := Default()
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("config: %w", err)
	}
	if err := c.Parse(path, b); err != nil {
		return c, err
	}
	return c, nil
}

// env lists the environment variables that override the file.
var env = []struct {
	name string
	set  func(c *Config, v string) error
}{
	{"CANOPY_NODE_DIR", func(c *Config, v string) error { c.Node.Dir = v; return nil }},
	{"CANOPY_NODE_EVENT", func(c *Config, v string) error { c.Node.Event = v; return nil }},
	{"CANOPY_NODE_KEY", func(c *Config, v string) error { c.Node.Key = v; return nil }},
	{"CANOPY_NODE_LISTEN", func(c *Config, v string) error { c.Node.Listen = v; return nil }},
	{"CANOPY_CLOCK_OFFSET", func(c *Config, v string) error { return c.Node.ClockOffset.UnmarshalText([]byte(v)) }},
	{"CANOPY_NODE_MAX_BODY", func(c *Config, v string) error {
		n, err := strconv.ParseInt(v, 10, 64)
		if err != nil {
			return fmt.Errorf("not an integer: %q", v)
		}
		c.Node.MaxBody = n
		return nil
	}},
	{"CANOPY_LOG_LEVEL", func(c *Config, v string) error { c.Node.LogLevel = v; return nil }},
	{"CANOPY_SYNC_HUBS", func(c *Config, v string) error { c.Sync.Hubs = splitList(v); return nil }},
	{"CANOPY_SYNC_PEERS", func(c *Config, v string) error { c.Sync.Peers = splitList(v); return nil }},
	{"CANOPY_IMAGES_LISTEN", func(c *Config, v string) error { c.Images.Listen = v; return nil }},
}

func splitList(v string) []string {
	var out []string
	for _, s := range strings.Split(v, ",") {
		if s = strings.TrimSpace(s); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// ApplyEnv overrides c from CANOPY_* variables looked up with getenv.
func (c *Config) ApplyEnv(getenv func(string) string) error {
	for _, e := range env {
		if v := getenv(e.name); v != "" {
			if err := e.set(c, v); err != nil {
				return fmt.Errorf("environment %s: %w", e.name, err)
			}
		}
	}
	return nil
}

// Resolve fills paths left empty from the data directory and validates
// every value.
func (c *Config) Resolve() error {
	n := &c.Node
	if n.Dir == "" {
		return errors.New("config: node.dir is empty")
	}
	if n.Event == "" {
		n.Event = filepath.Join(n.Dir, "event")
	}
	if n.Key == "" {
		n.Key = filepath.Join(n.Dir, "node")
	}
	if _, _, err := net.SplitHostPort(n.Listen); err != nil {
		return fmt.Errorf("config: node.listen %q: %v", n.Listen, err)
	}
	if n.MaxBody < 1024 || n.MaxBody > 64<<20 {
		return fmt.Errorf("config: node.max_body %d: want 1024..%d bytes", n.MaxBody, 64<<20)
	}
	switch n.LogLevel {
	case "debug", "info", "warn", "error":
	default:
		return fmt.Errorf("config: node.log_level %q: want debug, info, warn or error", n.LogLevel)
	}
	if d := c.Sync.BidForwardTimeout.Duration; d != 0 && (d < 10*time.Millisecond || d > 30*time.Second) {
		return fmt.Errorf("config: sync.bid_forward_timeout %s: want 10ms..30s", d)
	}
	for _, u := range append(append([]string(nil), c.Sync.Hubs...), c.Sync.Peers...) {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			return fmt.Errorf("config: sync URL %q: want http:// or https://", u)
		}
	}
	if err := c.resolveCache(); err != nil {
		return err
	}
	return c.resolveImages()
}

// resolveImages checks the [images] table (only when the cache is on).
func (c *Config) resolveImages() error {
	im := &c.Images
	if im.Listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(im.Listen); err != nil {
		return fmt.Errorf("config: images.listen %q: %v", im.Listen, err)
	}
	if im.Dir == "" {
		im.Dir = filepath.Join(c.Node.Dir, "images")
	}
	if im.MaxBytes < 0 {
		return fmt.Errorf("config: images.max_bytes %d: want 0 (no limit) or more", im.MaxBytes)
	}
	if im.TagDeadline.Duration == 0 {
		im.TagDeadline.Duration = 500 * time.Millisecond
	}
	if d := im.TagDeadline.Duration; d < 0 || d > time.Minute {
		return fmt.Errorf("config: images.tag_deadline %v: want 0..1m", d)
	}
	if im.UpstreamTimeout.Duration == 0 {
		im.UpstreamTimeout.Duration = 10 * time.Second
	}
	if d := im.UpstreamTimeout.Duration; d < 0 || d > 10*time.Minute {
		return fmt.Errorf("config: images.upstream_timeout %v: want 0..10m", d)
	}
	if len(im.Upstream) == 0 {
		return errors.New("config: images.listen is set but there is no [[images.upstream]]")
	}
	seen := map[string]bool{}
	for i, u := range im.Upstream {
		if seen[u.Prefix] {
			return fmt.Errorf("config: images.upstream[%d]: prefix %q used twice", i, u.Prefix)
		}
		seen[u.Prefix] = true
		if len(u.Mirrors) == 0 {
			return fmt.Errorf("config: images.upstream[%d] (prefix %q): no mirrors", i, u.Prefix)
		}
		for _, m := range u.Mirrors {
			if !strings.HasPrefix(m, "http://") && !strings.HasPrefix(m, "https://") {
				return fmt.Errorf("config: images.upstream[%d] mirror %q: want http:// or https://", i, m)
			}
		}
		if u.Token != "" && (u.Username != "" || u.Password != "") {
			return fmt.Errorf("config: images.upstream[%d]: set token or username/password, not both", i)
		}
	}
	return im.resolvePolicy()
}

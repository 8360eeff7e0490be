package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"
	"time"
)

const (
	defaultCacheHeaderTimeout = 5 * time.Second
	maxCacheHeaderTimeout     = 5 * time.Minute
	defaultCacheProbeInterval = 2 * time.Second
)

// CacheConfig is the [cache] table: the edge cache (an RFC 9111 caching
// reverse proxy) the edge serves on its own listener when Listen is set.
type CacheConfig struct {
	// Listen is the cache's listen address; empty: no edge cache.
	Listen string `toml:"listen"`
	// Dir is the object store (default <node.dir>/cache).
	Dir string `toml:"dir"`
	// MaxBytes is the store's size budget in bytes (default 1 GiB).
	MaxBytes int64 `toml:"max_bytes"`
	// HotMaxObjectBytes is the largest body the in-memory hot tier keeps
	// (default 64 KiB): small objects' hits are served from memory.
	HotMaxObjectBytes int64 `toml:"hot_max_object_bytes"`
	// HotMaxBytes is the hot tier's memory budget, least recently used
	// bodies leaving first (default 64 MiB; -1: no hot tier).
	HotMaxBytes int64 `toml:"hot_max_bytes"`
	// ResponseHeaderTimeout bounds each origin's answer (default 5s).
	ResponseHeaderTimeout Duration `toml:"response_header_timeout"`
	// GCPercent is the edge process's garbage collection target while
	// the cache is on, 1..10000 (default 400: fewer collections of the
	// allocations every request makes, for a heap up to five times what
	// is live; a GOGC environment variable wins).
	GCPercent int `toml:"gc_percent"`
	// Uplink lists the outbound paths to the origins in order of
	// preference, for sites without their own list (none: the system's
	// routing).
	Uplink []CacheUplink `toml:"uplink"`
	// ProbeInterval is how often each uplink is probed (default 2s).
	ProbeInterval Duration `toml:"probe_interval"`
	// Site lists the cached sites, chosen by Host header.
	Site []CacheSite `toml:"site"`
}

// CacheUplink is one [[cache.uplink]] or [[cache.site.uplink]] table: an
// outbound source address, or a network interface whose address is used.
type CacheUplink struct {
	// Name labels it in metrics (default: the source or interface).
	Name      string `toml:"name"`
	Source    string `toml:"source"`
	Interface string `toml:"interface"`
}

func (u CacheUplink) check(where string) error {
	switch {
	case (u.Source == "") == (u.Interface == ""):
		return fmt.Errorf("config: %s uplink %q: set exactly one of source (an IP address) and interface", where, u.Name)
	case u.Source != "" && net.ParseIP(u.Source) == nil:
		return fmt.Errorf("config: %s uplink source %q: want an IP address", where, u.Source)
	}
	return nil
}

// CacheSite is one [[cache.site]] table.
type CacheSite struct {
	// Name is the site's host name (the Host header or SNI that selects it).
	Name string `toml:"name"`
	// Origins are base URLs (scheme://host[:port]), tried in order.
	Origins []string `toml:"origins"`
	// TTL overrides the freshness lifetime by path prefix.
	TTL []CacheTTL `toml:"ttl"`
	// StripHeaders are request headers removed before a request is keyed
	// or sent upstream; unset: DefaultStripHeaders (client addresses).
	// List "Cookie" for a site of static files.
	StripHeaders []string `toml:"strip_headers"`
	// StripQuery are query parameters removed likewise: exact names or a
	// prefix ending in "*"; unset: DefaultStripQuery (tracking ids).
	StripQuery []string `toml:"strip_query"`
	// Uplink overrides [[cache.uplink]] for this site; unset: those.
	Uplink []CacheUplink `toml:"uplink"`
}

// DefaultStripHeaders are the client-address headers a site strips when
// strip_headers is not set (an empty list strips none).
var DefaultStripHeaders = []string{"X-Forwarded-For", "Forwarded", "X-Real-IP", "True-Client-IP", "CF-Connecting-IP", "X-Client-IP"}

// DefaultStripQuery are the tracking parameters a site strips when
// strip_query is not set (an empty list strips none).
var DefaultStripQuery = []string{"utm_*", "fbclid", "gclid", "dclid", "gbraid", "wbraid", "msclkid", "mc_eid", "_ga", "_gl", "igshid"}

// CacheTTL is one [[cache.site.ttl]] override.
type CacheTTL struct {
	Prefix string   `toml:"prefix"`
	TTL    Duration `toml:"ttl"`
}

// TLSConfig is the [tls] table: when set, the edge cache's listener
// serves HTTPS, with leaf certificates per site name issued by the event
// CA in CADir (see canopy tls init), or with an operator's CertFile and
// KeyFile, reloaded when they change.
type TLSConfig struct {
	CADir    string `toml:"ca_dir"`
	CertFile string `toml:"cert_file"`
	KeyFile  string `toml:"key_file"`
}

// Enabled reports whether the [tls] table asks for HTTPS.
func (t TLSConfig) Enabled() bool { return t.CADir != "" || t.CertFile != "" || t.KeyFile != "" }

func (t TLSConfig) check() error {
	switch {
	case !t.Enabled():
		return nil
	case t.CADir != "" && (t.CertFile != "" || t.KeyFile != ""):
		return errors.New("config: tls: set either ca_dir or cert_file and key_file, not both")
	case t.CADir == "" && (t.CertFile == "" || t.KeyFile == ""):
		return errors.New("config: tls: cert_file and key_file go together")
	}
	return nil
}

// resolveCache checks the [cache] and [tls] tables (only when the cache
// is on).
func (c *Config) resolveCache() error {
	cc := &c.Cache
	if err := c.TLS.check(); err != nil {
		return err
	}
	if cc.Listen == "" {
		if c.TLS.Enabled() {
			return errors.New("config: [tls] is set but the edge cache is off (no cache.listen)")
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(cc.Listen); err != nil {
		return fmt.Errorf("config: cache.listen %q: %v", cc.Listen, err)
	}
	if cc.Dir == "" {
		cc.Dir = filepath.Join(c.Node.Dir, "cache")
	}
	if cc.MaxBytes == 0 {
		cc.MaxBytes = 1 << 30
	}
	if cc.MaxBytes < 1<<20 {
		return fmt.Errorf("config: cache.max_bytes %d: want at least 1 MiB", cc.MaxBytes)
	}
	if cc.HotMaxObjectBytes == 0 {
		cc.HotMaxObjectBytes = 64 << 10
	}
	if cc.HotMaxBytes == 0 {
		cc.HotMaxBytes = 64 << 20
	}
	if cc.HotMaxObjectBytes < 0 || cc.HotMaxBytes < -1 {
		return fmt.Errorf("config: cache.hot_max_object_bytes %d, hot_max_bytes %d: want sizes in bytes (hot_max_bytes -1: no hot tier)",
			cc.HotMaxObjectBytes, cc.HotMaxBytes)
	}
	if cc.GCPercent < 0 || cc.GCPercent > 10000 {
		return fmt.Errorf("config: cache.gc_percent %d: want 1..10000 (0: the default, 400)", cc.GCPercent)
	}
	if cc.ResponseHeaderTimeout.Duration == 0 {
		cc.ResponseHeaderTimeout.Duration = defaultCacheHeaderTimeout
	}
	if d := cc.ResponseHeaderTimeout.Duration; d < 0 || d > maxCacheHeaderTimeout {
		return fmt.Errorf("config: cache.response_header_timeout %v: want 0..%v", d, maxCacheHeaderTimeout)
	}
	if len(cc.Site) == 0 {
		return errors.New("config: cache.listen is set but there is no [[cache.site]]")
	}
	if cc.ProbeInterval.Duration == 0 {
		cc.ProbeInterval.Duration = defaultCacheProbeInterval
	}
	if d := cc.ProbeInterval.Duration; d < 10*time.Millisecond || d > time.Hour {
		return fmt.Errorf("config: cache.probe_interval %v: want 10ms..1h", d)
	}
	for _, u := range cc.Uplink {
		if err := u.check("cache"); err != nil {
			return err
		}
	}
	seen := map[string]bool{}
	for i, s := range cc.Site {
		name := strings.ToLower(s.Name)
		if name == "" {
			return fmt.Errorf("config: cache.site[%d]: name is empty", i)
		}
		if seen[name] {
			return fmt.Errorf("config: cache.site[%d]: name %q used twice", i, s.Name)
		}
		seen[name] = true
		if len(s.Origins) == 0 {
			return fmt.Errorf("config: cache.site %q: no origins", s.Name)
		}
		for _, o := range s.Origins {
			u, err := url.Parse(o)
			if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || (u.Path != "" && u.Path != "/") {
				return fmt.Errorf("config: cache.site %q: origin %q: want http(s)://host[:port]", s.Name, o)
			}
		}
		for _, u := range s.Uplink {
			if err := u.check(fmt.Sprintf("cache.site %q", s.Name)); err != nil {
				return err
			}
		}
		if s.Uplink == nil {
			cc.Site[i].Uplink = append([]CacheUplink(nil), cc.Uplink...)
		}
		if s.StripHeaders == nil {
			cc.Site[i].StripHeaders = append([]string(nil), DefaultStripHeaders...)
		}
		if s.StripQuery == nil {
			cc.Site[i].StripQuery = append([]string(nil), DefaultStripQuery...)
		}
		for _, h := range s.StripHeaders {
			if h == "" || strings.ContainsAny(h, " \t:") || strings.EqualFold(h, "host") {
				return fmt.Errorf("config: cache.site %q: strip_headers %q: want a header name other than Host", s.Name, h)
			}
		}
		for _, q := range s.StripQuery {
			if name, _ := strings.CutSuffix(q, "*"); strings.ContainsAny(name, "*&=#") || q == "" {
				return fmt.Errorf("config: cache.site %q: strip_query %q: want a parameter name, or a name prefix ending in *", s.Name, q)
			}
		}
		for _, t := range s.TTL {
			if !strings.HasPrefix(t.Prefix, "/") || t.TTL.Duration <= 0 {
				return fmt.Errorf("config: cache.site %q: ttl {prefix %q, ttl %v}: want a /path prefix and a positive ttl", s.Name, t.Prefix, t.TTL.Duration)
			}
		}
	}
	return nil
}

package edge

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"canopy/config"
	"canopy/edgecache"
	"canopy/edgecache/localtls"
)

// edgeCache is the edge cache on its own listener, when [cache] listen is set.
type edgeCache struct {
	sites  *edgecache.Sites
	scheme string // "https" with [tls], else "http"
	ln     net.Listener
	srv    *http.Server
	done   chan error
}

// openCache opens the cache's store and sites and starts serving them
// (over HTTPS when tlsCfg is set), with its metrics on reg. It returns nil
// when the cache is off.
func openCache(cfg config.CacheConfig, tlsCfg config.TLSConfig, log *slog.Logger, reg prometheus.Registerer) (*edgeCache, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	var names []string
	for _, s := range cfg.Site {
		names = append(names, s.Name)
	}
	if _, err := edgecache.SetGCPercent(cfg.GCPercent); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	serverTLS, err := cacheTLS(tlsCfg, names)
	if err != nil {
		return nil, err
	}
	st, err := edgecache.OpenStore(cfg.Dir, cfg.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	if cfg.HotMaxBytes != 0 { // 0: unresolved, the store's defaults
		if err := st.SetHot(cfg.HotMaxObjectBytes, max(cfg.HotMaxBytes, 0)); err != nil {
			return nil, fmt.Errorf("edge: %w", err)
		}
	}
	metrics := edgecache.NewMetrics(reg, st)
	handlers := map[string]*edgecache.Handler{}
	for _, s := range cfg.Site {
		var origins []*url.URL
		for _, o := range s.Origins {
			u, err := url.Parse(o)
			if err != nil {
				return nil, fmt.Errorf("edge: cache site %q: %w", s.Name, err)
			}
			origins = append(origins, u)
		}
		var ttl []edgecache.TTLRule
		for _, t := range s.TTL {
			ttl = append(ttl, edgecache.TTLRule{Prefix: t.Prefix, TTL: t.TTL.Duration})
		}
		var ups []edgecache.Uplink
		for _, u := range s.Uplink {
			ups = append(ups, edgecache.Uplink{Name: u.Name, Source: u.Source, Interface: u.Interface})
		}
		h, err := edgecache.New(edgecache.Config{
			Uplinks: ups, ProbeInterval: cfg.ProbeInterval.Duration,
			Name: s.Name, Origins: origins, Store: st, TTL: ttl,
			ResponseHeaderTimeout: cfg.ResponseHeaderTimeout.Duration, Logger: log, Metrics: metrics,
			StripHeaders: s.StripHeaders, StripQuery: s.StripQuery,
		})
		if err != nil {
			return nil, fmt.Errorf("edge: cache site %q: %w", s.Name, err)
		}
		handlers[s.Name] = h
	}
	c := &edgeCache{sites: edgecache.NewSites(handlers), scheme: "http", done: make(chan error, 1)}
	c.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("edge: cache listen on %s: %w", cfg.Listen, err)
	}
	c.ln = edgecache.Listener(c.ln)
	if serverTLS != nil {
		c.ln = tls.NewListener(c.ln, serverTLS)
		c.scheme = "https"
	}
	c.srv = &http.Server{
		Handler:           edgecache.Admin(st, c.sites.Names(), c.sites),
		ConnContext:       edgecache.ConnContext,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	go func() { c.done <- c.srv.Serve(c.ln) }()
	log.Info("edge cache serving", logKeyAddr, c.ln.Addr().String())
	return c, nil
}

// CacheURL is the edge cache's base URL ("" when it is off).
func (e *Edge) CacheURL() string {
	if e.cache == nil {
		return ""
	}
	return e.cache.scheme + "://" + e.cache.ln.Addr().String()
}

// cacheTLS is the cache listener's TLS configuration from the [tls] table
// (nil without one): leaves issued per site name by the event CA, or the
// operator's certificate files, checked for changes at most once a second.
func cacheTLS(t config.TLSConfig, names []string) (*tls.Config, error) {
	var get func(*tls.ClientHelloInfo) (*tls.Certificate, error)
	switch {
	case t.CADir != "":
		ca, err := localtls.LoadCA(t.CADir)
		if err != nil {
			return nil, fmt.Errorf("edge: tls: %w", err)
		}
		is, err := ca.NewIssuer(names, localtls.MaxLeafLifetime, nil)
		if err != nil {
			return nil, fmt.Errorf("edge: tls: %w", err)
		}
		get = is.GetCertificate
	case t.CertFile != "":
		fc, err := localtls.LoadFileCert(t.CertFile, t.KeyFile, time.Second)
		if err != nil {
			return nil, fmt.Errorf("edge: tls: %w", err)
		}
		get = fc.GetCertificate
	default:
		return nil, nil
	}
	return localtls.ServerConfig(get), nil
}

func (c *edgeCache) close(ctx context.Context) error {
	var errs []error
	if err := c.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("edge: cache shutdown: %w", err))
	}
	if err := <-c.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	errs = append(errs, c.sites.Close(ctx))
	return errors.Join(errs...)
}

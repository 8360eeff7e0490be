package edge

import (
	"context"
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
)

// edgeCache is the edge cache on its own listener, when [cache] listen is set.
type edgeCache struct {
	sites *edgecache.Sites
	ln    net.Listener
	srv   *http.Server
	done  chan error
}

// openCache opens the cache's store and sites and starts serving them,
// with its metrics on reg. It returns nil when the cache is off.
func openCache(cfg config.CacheConfig, log *slog.Logger, reg prometheus.Registerer) (*edgeCache, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	st, err := edgecache.OpenStore(cfg.Dir, cfg.MaxBytes)
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
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
		h, err := edgecache.New(edgecache.Config{
			Name: s.Name, Origins: origins, Store: st, TTL: ttl,
			ResponseHeaderTimeout: cfg.ResponseHeaderTimeout.Duration, Logger: log, Metrics: metrics,
			StripHeaders: s.StripHeaders, StripQuery: s.StripQuery,
		})
		if err != nil {
			return nil, fmt.Errorf("edge: cache site %q: %w", s.Name, err)
		}
		handlers[s.Name] = h
	}
	c := &edgeCache{sites: edgecache.NewSites(handlers), done: make(chan error, 1)}
	c.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("edge: cache listen on %s: %w", cfg.Listen, err)
	}
	c.srv = &http.Server{
		Handler:           edgecache.Admin(st, c.sites.Names(), c.sites),
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
	return "http://" + e.cache.ln.Addr().String()
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

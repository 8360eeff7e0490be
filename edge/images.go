package edge

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"canopy/config"
	"canopy/imagecache"
	"canopy/revocation"
)

// imageRegistry is the image cache, served on its own listener.
type imageRegistry struct {
	cache *imagecache.Cache
	ln    net.Listener
	srv   *http.Server
	done  chan error
}

// openImages starts the image cache when [images] listen is set (nil
// otherwise). It needs no uplink. Its metrics join the edge's /metrics.
// With [images] auth, a token request's password must be a device token of
// the event that devices accepts (any role, not revoked).
func openImages(cfg config.ImagesConfig, log *slog.Logger, metrics prometheus.Registerer, devices revocation.DeviceVerifier) (*imageRegistry, error) {
	if cfg.Listen == "" {
		return nil, nil
	}
	ups := make([]imagecache.Upstream, len(cfg.Upstream))
	for i, u := range cfg.Upstream {
		ups[i] = imagecache.Upstream{Prefix: u.Prefix, Mirrors: u.Mirrors, Username: u.Username, Password: u.Password, Token: u.Token}
	}
	pols := make([]imagecache.Policy, len(cfg.Policy))
	for i, p := range cfg.Policy {
		k, err := imagecache.LoadPublicKey(p.PublicKey)
		if err != nil {
			return nil, fmt.Errorf("edge: images.policy %q: %w", p.Prefix, err)
		}
		pols[i] = imagecache.Policy{Prefix: p.Prefix, Key: k}
	}
	var la *imagecache.LocalAuth
	if cfg.Auth {
		la = &imagecache.LocalAuth{Verify: func(token string) error {
			_, err := devices.VerifyDevice(token)
			return err
		}}
	}
	log = log.With("component", "imagecache")
	c, err := imagecache.New(imagecache.Config{
		Dir:             cfg.Dir,
		MaxBytes:        cfg.MaxBytes,
		TagDeadline:     cfg.TagDeadline.Duration,
		UpstreamTimeout: cfg.UpstreamTimeout.Duration,
		Upstreams:       ups,
		Policies:        pols,
		Auth:            la,
		Logger:          log,
		Metrics:         metrics,
	})
	if err != nil {
		return nil, fmt.Errorf("edge: image cache: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("edge: image cache: listen on %s: %w", cfg.Listen, err)
	}
	r := &imageRegistry{cache: c, ln: ln, done: make(chan error, 1), srv: &http.Server{
		Handler:           c,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}}
	go func() { r.done <- r.srv.Serve(ln) }()
	log.Info("image cache serving", logKeyAddr, ln.Addr().String())
	return r, nil
}

// close stops the listener (letting pulls in flight finish until ctx ends)
// and the cache's background fetches.
func (r *imageRegistry) close(ctx context.Context) error {
	var errs []error
	if err := r.srv.Shutdown(ctx); err != nil {
		errs = append(errs, fmt.Errorf("edge: image cache shutdown: %w", err))
		r.srv.Close()
	}
	if err := <-r.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		errs = append(errs, err)
	}
	errs = append(errs, r.cache.Close())
	return errors.Join(errs...)
}

// ImagesURL is the base URL of the image cache, or "" when it is off.
func (e *Edge) ImagesURL() string {
	if e.images == nil {
		return ""
	}
	return "http://" + e.images.ln.Addr().String()
}

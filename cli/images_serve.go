package cli

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"strings"
	"time"

	"canopy/config"
)

func init() {
	register(command{
		name:    "images serve",
		summary: "run the image cache alone (no event, no ledger), for trials, benchmarks and conformance tests",
		run:     runImagesServe,
	})
}

func runImagesServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "images serve", "[flags]\n\nServes the [images] tables of --config (or only --upstream) until interrupted.")
	var f imageFlags
	f.register(fs)
	listen := fs.String("listen", "", "listen address (default [images] listen, else 127.0.0.1:5000)")
	upstream := fs.String("upstream", "", "comma-separated mirror URLs of one upstream for every name; replaces the configured upstreams")
	tagDeadline := fs.Duration("tag-deadline", 0, "freshness check of a cached tag (default [images] tag_deadline, else 500ms)")
	upstreamTimeout := fs.Duration("upstream-timeout", 0, "per mirror, for content not cached (default [images] upstream_timeout, else 10s)")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	im, err := f.load()
	if err != nil {
		return err
	}
	if *upstream != "" {
		var mirrors []string
		for _, m := range strings.Split(*upstream, ",") {
			if m = strings.TrimSpace(m); m != "" {
				mirrors = append(mirrors, m)
			}
		}
		im.Upstream = []config.ImageUpstream{{Prefix: "", Mirrors: mirrors}}
	}
	if *tagDeadline < 0 || *upstreamTimeout < 0 {
		return usageErrorf("durations must not be negative")
	}
	if *tagDeadline > 0 {
		im.TagDeadline.Duration = *tagDeadline
	}
	if *upstreamTimeout > 0 {
		im.UpstreamTimeout.Duration = *upstreamTimeout
	}
	addr := *listen
	if addr == "" {
		addr = im.Listen
	}
	if addr == "" {
		addr = "127.0.0.1:5000"
	}
	log := newLogger(e, *logLevel)
	c, err := openImageCache(im, log)
	if err != nil {
		return err
	}
	defer c.Close()
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("images serve: listen on %s: %w", addr, err)
	}
	srv := &http.Server{Handler: c, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 120 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(e.stdout, "image cache serving http://%s (store %s)\n", ln.Addr(), im.Dir)
	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		srv.Close()
	}
	if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

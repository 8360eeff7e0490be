package cli

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"time"

	"canopy/edgecache"
)

func init() {
	register(command{
		name:    "cache serve",
		summary: "run the edge cache alone in front of one origin (for tests and trials)",
		run:     runCacheServe,
	})
}

func runCacheServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "cache serve", "--origin URL --dir DIR [--listen ADDR] [--max-bytes N]")
	origin := fs.String("origin", "", "origin base URL, http(s)://host[:port] (required)")
	listen := fs.String("listen", "127.0.0.1:8081", "listen address")
	dir := fs.String("dir", "", "store directory (required)")
	maxBytes := fs.Int64("max-bytes", 256<<20, "store size budget in bytes")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *origin == "" || *dir == "" {
		return usageErrorf("--origin and --dir are required")
	}
	u, err := url.Parse(*origin)
	if err != nil {
		return usageErrorf("--origin %q: %v", *origin, err)
	}
	st, err := edgecache.OpenStore(*dir, *maxBytes)
	if err != nil {
		return err
	}
	h, err := edgecache.New(edgecache.Config{Origins: []*url.URL{u}, Store: st, ResponseHeaderTimeout: 10 * time.Second})
	if err != nil {
		return usageErrorf("%v", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ln) }()
	fmt.Fprintf(e.stdout, "canopy cache serving http://%s in front of %s\n", ln.Addr(), u)
	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return h.Close(sctx)
}

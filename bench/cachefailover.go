package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"sort"
	"sync"
	"time"

	"canopy/edgecache"
)

// CacheFailoverOptions configures RunCacheFailover.
type CacheFailoverOptions struct {
	// Dir is where the cache's temporary store is made.
	Dir string
	// Trials per mode (default 50).
	Trials int
	// Modes are how the primary uplink dies: "refuse" (the origin closes
	// its connections and refuses new ones) and "hang" (the origin
	// accepts and never answers). Default: both.
	Modes []string
	// ProbeInterval is the cache's uplink probe interval (default 100ms,
	// so the primary returns quickly between trials).
	ProbeInterval time.Duration
	// ResponseHeaderTimeout is the cache's per-attempt header timeout
	// (default 5s, as in [cache]); a hung uplink is left sooner, by its
	// stall probe.
	ResponseHeaderTimeout time.Duration
}

// CacheFailoverResult is one mode's JSON line.
type CacheFailoverResult struct {
	Bench           string  `json:"bench"` // "cache-failover"
	Mode            string  `json:"mode"`
	Trials          int     `json:"trials"`
	P50Millis       float64 `json:"p50_ms"`
	P99Millis       float64 `json:"p99_ms"`
	MaxMillis       float64 `json:"max_ms"`
	TargetMillis    float64 `json:"target_ms"`
	Pass            bool    `json:"pass"`
	ProbeMillis     float64 `json:"probe_interval_ms"`
	HeaderTimeoutMs float64 `json:"response_header_timeout_ms"`
}

const (
	cfPrimary   = "127.0.0.2"
	cfSecondary = "127.0.0.3"
	cfTarget    = time.Second
)

// RunCacheFailover measures, over many trials, the time from the primary
// uplink's death to the first good response through the secondary: an
// edge cache with uplinks 127.0.0.2 and 127.0.0.3 (loopback source
// addresses) in front of an origin that can refuse or hang connections
// from either; a client sends uncacheable GETs back to back. It prints a
// JSON line per mode with p50/p99 against the 1 s target.
func RunCacheFailover(ctx context.Context, w io.Writer, o CacheFailoverOptions) error {
	if o.Trials <= 0 {
		o.Trials = 50
	}
	if len(o.Modes) == 0 {
		o.Modes = []string{"refuse", "hang"}
	}
	for _, m := range o.Modes {
		if m != "refuse" && m != "hang" {
			return fmt.Errorf("cache-failover: mode %q: want refuse or hang", m)
		}
	}
	if o.ProbeInterval <= 0 {
		o.ProbeInterval = 100 * time.Millisecond
	}
	if o.ResponseHeaderTimeout <= 0 {
		o.ResponseHeaderTimeout = 5 * time.Second
	}
	if o.Dir == "" {
		o.Dir = "."
	}
	dir, err := os.MkdirTemp(o.Dir, "canopy-bench-cachefailover-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	org, err := newCFOrigin()
	if err != nil {
		return err
	}
	defer org.close()
	// Loopback accepts any 127/8 source address; check that this host does.
	for _, src := range []string{cfPrimary, cfSecondary} {
		c, err := (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}).DialContext(ctx, "tcp", org.ln.Addr().String())
		if err != nil {
			return fmt.Errorf("cache-failover: this host cannot use %s as a source address: %w", src, err)
		}
		c.Close()
	}

	st, err := edgecache.OpenStore(dir, 64<<20)
	if err != nil {
		return err
	}
	ou, _ := url.Parse("http://" + org.ln.Addr().String())
	h, err := edgecache.New(edgecache.Config{
		Name: "bench", Origins: []*url.URL{ou}, Store: st,
		DialTimeout: 300 * time.Millisecond, ResponseHeaderTimeout: o.ResponseHeaderTimeout,
		Uplinks:       []edgecache.Uplink{{Name: "primary", Source: cfPrimary}, {Name: "secondary", Source: cfSecondary}},
		ProbeInterval: o.ProbeInterval,
	})
	if err != nil {
		return err
	}
	cln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	csrv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go csrv.Serve(cln)
	defer func() {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		csrv.Shutdown(sctx)
		h.Close(sctx)
	}()
	base := "http://" + cln.Addr().String() + "/item"
	client := &http.Client{Timeout: 5 * time.Second}

	enc := json.NewEncoder(w)
	for _, mode := range o.Modes {
		var took []time.Duration
		for i := 0; i < o.Trials; i++ {
			if err := ctx.Err(); err != nil {
				return err
			}
			org.set(cfPrimary, "")
			if err := cfUntilVia(ctx, client, base, cfPrimary, 10*time.Second); err != nil {
				return fmt.Errorf("cache-failover: %s trial %d: back on the primary: %w", mode, i, err)
			}
			start := time.Now()
			org.set(cfPrimary, mode)
			if err := cfUntilVia(ctx, client, base, cfSecondary, 10*time.Second); err != nil {
				return fmt.Errorf("cache-failover: %s trial %d: failover: %w", mode, i, err)
			}
			took = append(took, time.Since(start))
		}
		org.set(cfPrimary, "")
		sort.Slice(took, func(i, j int) bool { return took[i] < took[j] })
		ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
		p99 := took[cfRank(len(took), 0.99)]
		if err := enc.Encode(CacheFailoverResult{
			Bench: "cache-failover", Mode: mode, Trials: len(took),
			P50Millis: ms(took[cfRank(len(took), 0.50)]), P99Millis: ms(p99), MaxMillis: ms(took[len(took)-1]),
			TargetMillis: ms(cfTarget), Pass: p99 < cfTarget,
			ProbeMillis: ms(o.ProbeInterval), HeaderTimeoutMs: ms(o.ResponseHeaderTimeout),
		}); err != nil {
			return err
		}
	}
	return nil
}

// cfRank is the index of quantile q in n sorted samples (nearest rank).
func cfRank(n int, q float64) int {
	i := int(q*float64(n)+0.999999) - 1
	if i < 0 {
		i = 0
	}
	if i >= n {
		i = n - 1
	}
	return i
}

// cfUntilVia sends GETs back to back until one is answered 200 through
// the source address via, or the limit passes.
func cfUntilVia(ctx context.Context, c *http.Client, u, via string, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	last := ""
	for time.Now().Before(deadline) {
		if err := ctx.Err(); err != nil {
			return err
		}
		resp, err := c.Get(u)
		if err != nil {
			last = err.Error()
			continue
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode == http.StatusOK && string(b) == "via "+via {
			return nil
		}
		last = fmt.Sprintf("%d %q", resp.StatusCode, b)
	}
	return fmt.Errorf("no good response via %s within %v (last: %s)", via, limit, last)
}

// cfOrigin is the bench's origin: it answers "via <source address>"
// (uncacheable), and per source address can refuse connections (closing
// the open ones) or hang them.
type cfOrigin struct {
	ln   net.Listener
	srv  *http.Server
	mu   sync.Mutex
	mode map[string]string // source → "", "refuse" or "hang"
	open map[net.Conn]string
	hung chan struct{} // closed to release hung requests
}

func newCFOrigin() (*cfOrigin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &cfOrigin{ln: ln, mode: map[string]string{}, open: map[net.Conn]string{}, hung: make(chan struct{})}
	o.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			host, _, _ := net.SplitHostPort(r.RemoteAddr)
			o.mu.Lock()
			m, hung := o.mode[host], o.hung
			o.mu.Unlock()
			if m == "hang" {
				select {
				case <-hung:
				case <-r.Context().Done():
				}
				return
			}
			w.Header().Set("Cache-Control", "no-store")
			fmt.Fprint(w, "via "+host)
		}),
		ReadHeaderTimeout: 5 * time.Second,
		ConnState: func(c net.Conn, s http.ConnState) {
			o.mu.Lock()
			defer o.mu.Unlock()
			switch s {
			case http.StateNew:
				host, _, _ := net.SplitHostPort(c.RemoteAddr().String())
				if o.mode[host] == "refuse" {
					c.Close()
					return
				}
				o.open[c] = host
			case http.StateClosed, http.StateHijacked:
				delete(o.open, c)
			}
		},
	}
	go o.srv.Serve(ln)
	return o, nil
}

// set changes how connections from source are treated; refusing closes
// its open connections, and leaving "hang" releases hung requests.
func (o *cfOrigin) set(source, mode string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.mode[source] == "hang" && mode != "hang" {
		close(o.hung)
		o.hung = make(chan struct{})
	}
	o.mode[source] = mode
	if mode == "refuse" {
		for c, h := range o.open {
			if h == source {
				c.Close()
				delete(o.open, c)
			}
		}
	}
}

func (o *cfOrigin) close() {
	o.mu.Lock()
	close(o.hung)
	o.hung = make(chan struct{})
	o.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	if err := o.srv.Shutdown(ctx); err != nil && !errors.Is(err, context.DeadlineExceeded) {
		o.srv.Close()
	}
}

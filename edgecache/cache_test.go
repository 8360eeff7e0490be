package edgecache

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// origin is a test origin counting its requests.
type origin struct {
	*httptest.Server
	hits atomic.Int64
	clk  *clock
}

func newOrigin(t testing.TB, h http.HandlerFunc, clk ...*clock) *origin {
	t.Helper()
	o := &origin{}
	if len(clk) > 0 {
		o.clk = clk[0]
	}
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.hits.Add(1)
		if o.clk != nil {
			w.Header().Set("Date", o.clk.Now().UTC().Format(http.TimeFormat))
		}
		h(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func newCache(t *testing.T, clk *clock, origins ...string) (*Handler, *httptest.Server) {
	t.Helper()
	return newCacheWith(t, clk, nil, origins...)
}

// tightTimeout gives up on an origin that sends no response header within
// 300 ms, for tests of hung origins.
func tightTimeout(c *Config) { c.ResponseHeaderTimeout = 300 * time.Millisecond }

// newCacheWith is newCache with the configuration changed by edit.
func newCacheWith(t *testing.T, clk *clock, edit func(*Config), origins ...string) (*Handler, *httptest.Server) {
	t.Helper()
	st, err := OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	var us []*url.URL
	for _, o := range origins {
		u, _ := url.Parse(o)
		us = append(us, u)
	}
	// Generous: a loaded machine must not turn one origin request into
	// two. Tests of hung origins tighten it (tightTimeout).
	cfg := Config{Origins: us, Store: st, ResponseHeaderTimeout: 10 * time.Second, DialTimeout: 200 * time.Millisecond}
	if clk != nil {
		cfg.Now = clk.Now
	}
	if edit != nil {
		edit(&cfg)
	}
	h, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Close(ctx)
	})
	return h, srv
}

func get(t *testing.T, u string, hdr ...string) (*http.Response, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestFreshHitAndAge(t *testing.T) {
	clk := &clock{t: time.Now()}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "hello")
	}, clk)
	h, srv := newCache(t, clk, o.URL)
	resp, body := get(t, srv.URL+"/a")
	if body != "hello" || !strings.Contains(resp.Header.Get("Cache-Status"), "fwd=uri-miss") {
		t.Fatalf("first: %q %q", body, resp.Header.Get("Cache-Status"))
	}
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	clk.Add(10 * time.Second)
	if o.hits.Load() != 1 {
		t.Fatalf("origin hits %d, want 1", o.hits.Load())
	}
	resp, body = get(t, srv.URL+"/a")
	if body != "hello" || resp.Header.Get("Age") == "" || resp.Header.Get("Age") == "0" {
		t.Fatalf("hit: %q age %q", body, resp.Header.Get("Age"))
	}
	clk.Add(time.Minute)
	get(t, srv.URL+"/a")
	if o.hits.Load() != 2 {
		t.Fatalf("stale: origin hits %d, want 2", o.hits.Load())
	}
}

func TestNoStorePrivateSetCookie(t *testing.T) {
	for _, cc := range []string{"no-store", "private, max-age=60", "max-age=60; cookie"} {
		o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(cc, "cookie") {
				w.Header().Set("Set-Cookie", "a=b")
				w.Header().Set("Cache-Control", "max-age=60")
			} else {
				w.Header().Set("Cache-Control", cc)
			}
			fmt.Fprint(w, "x")
		})
		h, srv := newCache(t, nil, o.URL)
		get(t, srv.URL+"/p")
		waitFor(t, "fill done", func() bool { return h.store.Len() == 0 && o.hits.Load() == 1 })
		get(t, srv.URL+"/p")
		if o.hits.Load() != 2 {
			t.Errorf("%s: origin hits %d, want 2 (not stored)", cc, o.hits.Load())
		}
	}
}

func TestValidation304UpdatesHeaders(t *testing.T) {
	clk := &clock{t: time.Now()}
	var n atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1")
		w.Header().Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.Header().Set("X-Version", fmt.Sprint(n.Add(1)))
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprint(w, "body")
	}, clk)
	h, srv := newCache(t, clk, o.URL)
	get(t, srv.URL+"/v")
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	clk.Add(5 * time.Second)
	resp, body := get(t, srv.URL+"/v")
	if body != "body" || resp.StatusCode != 200 || resp.Header.Get("X-Version") != "1" {
		t.Fatalf("revalidated: %d %q X-Version=%q", resp.StatusCode, body, resp.Header.Get("X-Version"))
	}
	if !strings.Contains(resp.Header.Get("Cache-Status"), "fwd-status=304") {
		t.Fatalf("Cache-Status %q", resp.Header.Get("Cache-Status"))
	}
	resp, _ = get(t, srv.URL+"/v")
	if resp.Header.Get("X-Version") != "1" || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after 304: %v", resp.Header)
	}
}

func TestVary(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Vary", "Accept-Language")
		fmt.Fprint(w, "lang:"+r.Header.Get("Accept-Language"))
	})
	h, srv := newCache(t, nil, o.URL)
	_, b := get(t, srv.URL+"/v", "Accept-Language", "en")
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	_, b2 := get(t, srv.URL+"/v", "Accept-Language", "de")
	waitFor(t, "stored", func() bool { return h.store.Len() == 2 })
	_, b3 := get(t, srv.URL+"/v", "Accept-Language", " en ")
	if b != "lang:en" || b2 != "lang:de" || b3 != "lang:en" || o.hits.Load() != 2 {
		t.Fatalf("%q %q %q hits=%d", b, b2, b3, o.hits.Load())
	}
}

func TestInvalidationAfterPost(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		if r.Method == http.MethodPost {
			w.Header().Set("Location", "/other")
		}
		fmt.Fprint(w, "x")
	})
	h, srv := newCache(t, nil, o.URL)
	get(t, srv.URL+"/a")
	get(t, srv.URL+"/other")
	waitFor(t, "stored", func() bool { return h.store.Len() == 2 })
	resp, err := http.Post(srv.URL+"/a", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if h.store.Len() != 0 {
		t.Fatalf("store has %d objects after POST, want 0", h.store.Len())
	}
}

func TestCoalescing(t *testing.T) {
	release := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "shared")
	})
	h, srv := newCache(t, nil, o.URL)
	h.up.rt.ResponseHeaderTimeout = 10 * time.Second
	const n = 20
	var wg sync.WaitGroup
	bodies := make([]string, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			resp, err := http.Get(srv.URL + "/c")
			if err != nil {
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			bodies[i] = string(b)
		}()
	}
	waitFor(t, "first upstream request", func() bool { return o.hits.Load() == 1 })
	time.Sleep(50 * time.Millisecond) // let the other requests queue up behind it (not a synchronization point: the assertion holds either way once stored)
	close(release)
	wg.Wait()
	for i, b := range bodies {
		if b != "shared" {
			t.Fatalf("request %d got %q", i, b)
		}
	}
	if o.hits.Load() != 1 {
		t.Fatalf("origin hits %d, want 1", o.hits.Load())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(h.m.hits, h.m.misses, h.m.coalesced)
	m := gatherValues(t, reg)
	hits, misses, coalesced := m["canopy_edgecache_hits_total"], m["canopy_edgecache_misses_total"], m["canopy_edgecache_coalesced_total"]
	if hits+misses != n || misses-coalesced != 1 {
		t.Fatalf("metrics: %v hits, %v misses, %v coalesced; want hits+misses = %d and one uncoalesced miss", hits, misses, coalesced, n)
	}
}

func TestStaleWhileRevalidate(t *testing.T) {
	clk := &clock{t: time.Now()}
	var v atomic.Int64
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=60")
		fmt.Fprintf(w, "v%d", v.Add(1))
	}, clk)
	h, srv := newCache(t, clk, o.URL)
	_, first := get(t, srv.URL+"/s")
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	before := o.hits.Load()
	clk.Add(10 * time.Second)
	resp, body := get(t, srv.URL+"/s")
	if body != first || !strings.Contains(resp.Header.Get("Cache-Status"), "stale-while-revalidate") {
		t.Fatalf("stale: %q %q, want %q served stale", body, resp.Header.Get("Cache-Status"), first)
	}
	h.bg.Wait() // the background revalidation has stored its response
	if _, body := get(t, srv.URL+"/s"); body == first {
		t.Fatalf("after the background revalidation: still %q", body)
	}
	if got := o.hits.Load() - before; got != 1 {
		t.Fatalf("%d origin requests after the stale hit, want exactly 1 (one background revalidation)", got)
	}
}

func TestStaleIfError(t *testing.T) {
	clk := &clock{t: time.Now()}
	var mode atomic.Int32 // 0 ok, 1 503, 2 hang
	hang := make(chan struct{})
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case 1:
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		case 2:
			<-hang
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-if-error=600")
		fmt.Fprint(w, "good")
	}, clk)
	h, srv := newCacheWith(t, clk, tightTimeout, o.URL)
	get(t, srv.URL+"/e")
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	clk.Add(5 * time.Second)
	mode.Store(1)
	resp, body := get(t, srv.URL+"/e")
	if body != "good" || !strings.Contains(resp.Header.Get("Cache-Status"), "stale-if-error") {
		t.Fatalf("503: %d %q %q", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
	mode.Store(2)
	start := time.Now()
	resp, body = get(t, srv.URL+"/e")
	if body != "good" || time.Since(start) > 2*time.Second {
		t.Fatalf("hung: %d %q after %v", resp.StatusCode, body, time.Since(start))
	}
	mode.Store(0)
	close(hang)
	o.Close() // killed origin
	resp, body = get(t, srv.URL+"/e")
	if body != "good" {
		t.Fatalf("killed: %d %q", resp.StatusCode, body)
	}
}

func TestFailover(t *testing.T) {
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL := "http://" + dead.Addr().String()
	dead.Close()
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) { fmt.Fprint(w, "second") })
	_, srv := newCache(t, nil, deadURL, o.URL)
	start := time.Now()
	_, body := get(t, srv.URL+"/f")
	if body != "second" || time.Since(start) > time.Second {
		t.Fatalf("failover: %q after %v", body, time.Since(start))
	}
}

func TestRangeFromCache(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprint(w, "0123456789")
	})
	h, srv := newCache(t, nil, o.URL)
	get(t, srv.URL+"/r")
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	resp, body := get(t, srv.URL+"/r", "Range", "bytes=2-4")
	if resp.StatusCode != 206 || body != "234" || resp.Header.Get("Content-Range") != "bytes 2-4/10" {
		t.Fatalf("range: %d %q %q", resp.StatusCode, body, resp.Header.Get("Content-Range"))
	}
	resp, _ = get(t, srv.URL+"/r", "Range", "bytes=20-")
	if resp.StatusCode != 416 {
		t.Fatalf("unsatisfiable: %d", resp.StatusCode)
	}
}

func TestStoreSurvivesRestartAndEvicts(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, n int) {
		f, _ := st.tempFile()
		f.Write([]byte(strings.Repeat("x", n)))
		f.Close()
		o := &object{Key: key, URL: key, Status: 200, Header: http.Header{}, Size: int64(n)}
		if err := st.commit(o, f.Name()); err != nil {
			t.Fatal(err)
		}
	}
	put("a", 40)
	put("b", 40)
	put("c", 40) // evicts a
	if st.Len() != 2 || len(st.variants("a")) != 0 {
		t.Fatalf("after eviction: %d objects", st.Len())
	}
	put("c", 30) // replaces c under a new body file
	// A body no metadata names (a crash between body and metadata).
	stray := filepath.Join(dir, "obj", nameOf("c")+"-stray.body")
	os.WriteFile(stray, []byte("zz"), 0o600)
	st2, err := OpenStore(dir, 100)
	if err != nil {
		t.Fatal(err)
	}
	if st2.Len() != 2 || len(st2.variants("c")) != 1 || st2.variants("c")[0].Size != 30 {
		t.Fatalf("after reopen: %d objects", st2.Len())
	}
	bodies, _ := filepath.Glob(filepath.Join(dir, "obj", "*.body"))
	if len(bodies) != 2 {
		t.Fatalf("body files after reopen: %q, want the two stored", bodies)
	}
	f, err := st2.open(st2.variants("c")[0])
	if err != nil {
		t.Fatal(err)
	}
	fi, _ := f.Stat()
	f.Close()
	if fi.Size() != 30 {
		t.Fatalf("c's body has %d bytes, want 30", fi.Size())
	}
}

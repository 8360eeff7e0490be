package edgecache

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// rawOrigin is an origin on loopback that writes whatever bytes its
// handler chooses, for responses net/http would refuse to produce. The
// handler gets each request's number (from 1) and the connection.
type rawOrigin struct {
	ln    net.Listener
	reqs  atomic.Int64
	mu    sync.Mutex
	conns []net.Conn
}

func newRawOrigin(t *testing.T, handle func(n int64, r *http.Request, c net.Conn) (keep bool)) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{ln: ln}
	done := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			o.mu.Lock()
			o.conns = append(o.conns, c)
			o.mu.Unlock()
			go func() {
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					if !handle(o.reqs.Add(1), r, c) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		close(done)
		ln.Close()
		o.mu.Lock()
		for _, c := range o.conns {
			c.Close()
		}
		o.mu.Unlock()
	})
	return o
}

func (o *rawOrigin) URL() string { return "http://" + o.ln.Addr().String() }

// hang blocks until the connection is closed (by the cache or cleanup).
func hang(c net.Conn) bool {
	io.Copy(io.Discard, c)
	return false
}

// TestOriginKilledMidStream: a body cut off half-way reaches the client
// as a failed response, is never stored, and the next request fetches
// again.
func TestOriginKilledMidStream(t *testing.T) {
	full := strings.Repeat("x", 20000)
	o := newRawOrigin(t, func(n int64, r *http.Request, c net.Conn) bool {
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: %d\r\n\r\n", len(full))
		if n == 1 {
			io.WriteString(c, full[:len(full)/2])
			return false // killed half-way
		}
		io.WriteString(c, full)
		return true
	})
	h, srv := newCache(t, nil, o.URL())
	resp, err := http.Get(srv.URL + "/video.ts")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err == nil && len(b) == len(full) {
		t.Fatalf("truncated upstream body reached the client as complete (%d bytes)", len(b))
	}
	if err == nil {
		t.Fatalf("client read %d of %d bytes without an error", len(b), len(full))
	}
	if h.store.Len() != 0 {
		t.Fatalf("store holds %d objects after a truncated fill", h.store.Len())
	}
	resp, body := get(t, srv.URL+"/video.ts")
	if resp.StatusCode != 200 || body != full {
		t.Fatalf("second request: %d, %d bytes", resp.StatusCode, len(body))
	}
	if o.reqs.Load() != 2 {
		t.Fatalf("origin saw %d requests, want 2 (the second fetches again)", o.reqs.Load())
	}
	waitFor(t, "the complete object stored", func() bool { return h.store.Len() == 1 })
	resp, body = get(t, srv.URL+"/video.ts")
	if body != full || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("third request not a full hit: %q, %d bytes", resp.Header.Get("Cache-Status"), len(body))
	}
}

// TestHungOrigin: an origin that accepts and never answers ends the
// request within the response-header timeout; a stale response allowed
// by stale-if-error is served instead.
func TestHungOrigin(t *testing.T) {
	clk := &clock{t: time.Now()}
	var hung atomic.Bool
	o := newRawOrigin(t, func(n int64, r *http.Request, c net.Conn) bool {
		if hung.Load() {
			return hang(c)
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nDate: %s\r\nCache-Control: max-age=1, stale-if-error=600\r\nContent-Length: 5\r\n\r\nfresh",
			clk.Now().UTC().Format(http.TimeFormat))
		return true
	})
	h, srv := newCacheWith(t, clk, tightTimeout, o.URL()) // 300 ms response-header timeout
	if _, body := get(t, srv.URL+"/s"); body != "fresh" {
		t.Fatalf("first body %q", body)
	}
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	hung.Store(true)
	clk.Add(10 * time.Second)

	start := time.Now()
	resp, body := get(t, srv.URL+"/s")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("stale-if-error answer took %v", d)
	}
	if resp.StatusCode != 200 || body != "fresh" || !strings.Contains(resp.Header.Get("Cache-Status"), "stale-if-error") {
		t.Fatalf("hung origin with stale-if-error: %d %q %q", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}

	start = time.Now()
	resp, _ = get(t, srv.URL+"/never-cached")
	if d := time.Since(start); d > 2*time.Second {
		t.Fatalf("miss against a hung origin took %v", d)
	}
	if resp.StatusCode != http.StatusGatewayTimeout {
		t.Fatalf("miss against a hung origin: %d, want 504", resp.StatusCode)
	}

	// A client's own deadline also ends the wait.
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, srv.URL+"/never-cached-2", nil)
	start = time.Now()
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("client deadline: got %d", resp.StatusCode)
	}
	if d := time.Since(start); d > time.Second {
		t.Fatalf("client deadline honoured after %v", d)
	}
}

// TestMalformedUpstream: responses net/http cannot trust are a 502 and
// never stored.
func TestMalformedUpstream(t *testing.T) {
	big := strings.Repeat("a", 100<<10)
	cases := map[string]string{
		"garbage status":    "HTTP/1.1 two hundred OK\r\nCache-Control: max-age=600\r\nContent-Length: 2\r\n\r\nok",
		"not http":          "SSH-2.0-OpenSSH_9.2\r\n\r\n",
		"two lengths":       "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 2\r\nContent-Length: 7\r\n\r\nok",
		"oversized headers": "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nX-Big: " + big + "\r\nContent-Length: 2\r\n\r\nok",
		"bad length":        "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: -3\r\n\r\nok",
		"bad chunking":      "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nok\r\n0\r\n\r\n",
	}
	for name, raw := range cases {
		t.Run(name, func(t *testing.T) {
			o := newRawOrigin(t, func(n int64, r *http.Request, c net.Conn) bool {
				io.WriteString(c, raw)
				return false
			})
			h, srv := newCache(t, nil, o.URL())
			resp, err := http.Get(srv.URL + "/m")
			var body []byte
			if err == nil {
				body, err = io.ReadAll(resp.Body)
				resp.Body.Close()
			}
			switch {
			case err == nil && resp.StatusCode != http.StatusBadGateway:
				t.Fatalf("status %d body %q, want 502", resp.StatusCode, body)
			case err == nil && !strings.Contains(resp.Header.Get("Cache-Status"), "upstream error"):
				t.Fatalf("502 without an upstream-error Cache-Status: %q", resp.Header.Get("Cache-Status"))
			case err != nil && name != "bad chunking":
				t.Fatalf("client error %v, want a 502 answer", err)
			}
			if h.store.Len() != 0 {
				t.Fatalf("a malformed response was stored")
			}
		})
	}
}

// TestConflictingLengthAndChunking: with both Content-Length and
// Transfer-Encoding: chunked, the chunking frames the body (RFC 9112
// §6.3), so the Content-Length cannot smuggle a second response: the
// client gets exactly the chunked body and the next request its own
// answer.
func TestConflictingLengthAndChunking(t *testing.T) {
	o := newRawOrigin(t, func(n int64, r *http.Request, c net.Conn) bool {
		if r.URL.Path == "/smuggle" {
			io.WriteString(c, "HTTP/1.1 200 OK\r\nCache-Control: max-age=600\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"5\r\nfirst\r\n0\r\n\r\n")
			return true
		}
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(r.URL.Path), r.URL.Path)
		return true
	})
	_, srv := newCache(t, nil, o.URL())
	resp, body := get(t, srv.URL+"/smuggle")
	if resp.StatusCode != 200 && resp.StatusCode != http.StatusBadGateway {
		t.Fatalf("status %d", resp.StatusCode)
	}
	if resp.StatusCode == 200 && body != "first" {
		t.Fatalf("body %q: framed by Content-Length instead of chunking", body)
	}
	if _, body := get(t, srv.URL+"/next"); body != "/next" {
		t.Fatalf("next request got %q: the connection was desynchronised", body)
	}
}

// TestInvalidRanges: unsatisfiable ranges are a 416 with the length;
// syntactically invalid ones and other units are ignored (the full
// representation), RFC 9110 §14.
func TestInvalidRanges(t *testing.T) {
	full := strings.Repeat("0123456789", 10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		io.WriteString(w, full)
	})
	h, srv := newCache(t, nil, o.URL)
	if _, body := get(t, srv.URL+"/r", "Range", "bytes=zz"); body != full {
		t.Fatalf("miss with an invalid range: %q", body)
	}
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	for _, c := range []struct {
		rng    string
		status int
		body   string
	}{
		{"bytes=200-300", 416, ""},
		{"bytes=100-", 416, ""},
		{"bytes=-0", 416, ""},
		{"bytes=50-10", 200, full},
		{"bytes=abc", 200, full},
		{"bytes=", 200, full},
		{"items=0-5", 200, full},
		{"bytes=--5", 200, full},
		{"bytes=5-9", 206, "56789"},
		{"bytes=-3", 206, "789"},
		{"bytes=95-1000", 206, "56789"},
	} {
		resp, body := get(t, srv.URL+"/r", "Range", c.rng)
		if resp.StatusCode != c.status || (c.status != 416 && body != c.body) {
			t.Errorf("Range %q: %d %q, want %d %q", c.rng, resp.StatusCode, body, c.status, c.body)
		}
		if c.status == 416 && resp.Header.Get("Content-Range") != "bytes */100" {
			t.Errorf("Range %q: Content-Range %q, want bytes */100", c.rng, resp.Header.Get("Content-Range"))
		}
	}
	if o.hits.Load() != 1 {
		t.Fatalf("origin saw %d requests, want 1 (ranges answered from the cache)", o.hits.Load())
	}
}

// TestCachePoisoningUnkeyedHeaders: headers outside the cache key that
// origins commonly trust (X-Forwarded-Host, X-Original-URL, ...) never
// let one client's variant reach another; a reflected header the origin
// declares in Vary gets its own variant.
func TestCachePoisoningUnkeyedHeaders(t *testing.T) {
	reflected := []string{"X-Forwarded-Host", "X-Original-URL", "X-Rewrite-URL", "X-Forwarded-Scheme", "X-Host", "X-Forwarded-Server", "X-HTTP-Method-Override"}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		if r.URL.Path == "/vary" {
			w.Header().Set("Vary", "X-Theme")
			fmt.Fprintf(w, "theme=%s", r.Header.Get("X-Theme"))
			return
		}
		var b strings.Builder
		for _, name := range reflected {
			if v := r.Header.Get(name); v != "" {
				fmt.Fprintf(&b, "%s=%s;", name, v)
			}
		}
		io.WriteString(w, "page;"+b.String())
	})
	_, srv := newCache(t, nil, o.URL)
	for _, name := range reflected {
		path := "/p-" + strings.ToLower(name)
		_, first := get(t, srv.URL+path, name, "evil.example")
		_, second := get(t, srv.URL+path)
		if strings.Contains(first, "evil") || strings.Contains(second, "evil") {
			t.Errorf("%s reached the origin and poisoned the cache: first %q, second %q", name, first, second)
		}
	}
	_, a := get(t, srv.URL+"/vary", "X-Theme", "dark")
	_, b := get(t, srv.URL+"/vary")
	_, c := get(t, srv.URL+"/vary", "X-Theme", "dark")
	if a != "theme=dark" || b != "theme=" || c != "theme=dark" {
		t.Fatalf("Vary variants mixed: %q %q %q", a, b, c)
	}
}

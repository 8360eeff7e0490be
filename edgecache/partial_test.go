package edgecache

import (
	"fmt"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// TestStoredPartialReuse: a 206 is stored and answers ranges inside it;
// a range outside it, or a whole-representation request, goes upstream.
func TestStoredPartialReuse(t *testing.T) {
	clk := &clock{t: time.Now()}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		if r.Header.Get("X-Whole") != "" {
			fmt.Fprint(w, "0123456789")
			return
		}
		w.Header().Set("Content-Range", "bytes 4-9/10")
		w.WriteHeader(http.StatusPartialContent)
		fmt.Fprint(w, "456789")
	}, clk)
	_, srv := newCache(t, clk, o.URL)
	resp, body := get(t, srv.URL+"/p", "Range", "bytes=-6")
	if resp.StatusCode != 206 || body != "456789" {
		t.Fatalf("first: %d %q", resp.StatusCode, body)
	}
	for rg, want := range map[string]string{"bytes=-5": "56789", "bytes=6-8": "678", "bytes=6-": "6789", "bytes=-1": "9"} {
		resp, body = get(t, srv.URL+"/p", "Range", rg)
		if resp.StatusCode != 206 || body != want || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
			t.Errorf("%s: %d %q (%s), want 206 %q from the cache", rg, resp.StatusCode, body, resp.Header.Get("Cache-Status"), want)
		}
	}
	if o.hits.Load() != 1 {
		t.Fatalf("origin hits %d, want 1", o.hits.Load())
	}
	get(t, srv.URL+"/p", "Range", "bytes=0-1")
	if o.hits.Load() != 2 {
		t.Errorf("range outside the part: origin hits %d, want 2", o.hits.Load())
	}
	resp, body = get(t, srv.URL+"/p", "X-Whole", "1")
	if resp.StatusCode != 200 || body != "0123456789" || o.hits.Load() != 3 {
		t.Errorf("whole: %d %q, origin hits %d", resp.StatusCode, body, o.hits.Load())
	}
}

// TestInconsistentPartialNotStored: a 206 whose body does not match its
// Content-Range is passed on but never stored.
func TestInconsistentPartialNotStored(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("Content-Range", "bytes 4-9/10")
		w.WriteHeader(http.StatusPartialContent)
		fmt.Fprint(w, "01234")
	})
	h, srv := newCache(t, nil, o.URL)
	get(t, srv.URL+"/q", "Range", "bytes=-5")
	get(t, srv.URL+"/q", "Range", "bytes=-5")
	if o.hits.Load() != 2 || h.store.Len() != 0 {
		t.Errorf("origin hits %d (want 2), stored %d (want 0)", o.hits.Load(), h.store.Len())
	}
}

func FuzzContentRange(f *testing.F) {
	for _, s := range []string{"bytes 0-4/10", "bytes 4-9/10", "bytes */10", "bytes 5-4/10", "bytes 0-10/10", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, n, ok := parseContentRange(s)
		if ok && (r.Start < 0 || r.Length <= 0 || r.Start+r.Length > n) {
			t.Fatalf("%q: range %+v of %d", s, r, n)
		}
	})
}

// TestCombinePartial: with the start of a representation stored, a whole
// request asks the origin only for the rest (If-Range on the strong ETag)
// and stores the combination; a rest under another ETag is not joined.
func TestCombinePartial(t *testing.T) {
	var calls atomic.Int64
	var mu sync.Mutex
	var seen []string
	etag := `"v1"`
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n := calls.Add(1)
		mu.Lock()
		seen = append(seen, r.Header.Get("Range")+"|"+r.Header.Get("If-Range"))
		tag := etag
		mu.Unlock()
		w.Header().Set("Cache-Control", "max-age=3600")
		w.Header().Set("ETag", tag)
		switch {
		case n == 1: // an origin that answers with a part (as the public suite's does)
			w.Header().Set("Content-Range", "bytes 0-3/10")
			w.WriteHeader(http.StatusPartialContent)
			fmt.Fprint(w, "0123")
		case r.Header.Get("Range") == "bytes=4-":
			w.Header().Set("Content-Range", "bytes 4-9/10")
			w.WriteHeader(http.StatusPartialContent)
			fmt.Fprint(w, "456789")
		default:
			fmt.Fprint(w, "0123456789")
		}
	})
	h, srv := newCache(t, nil, o.URL)
	get(t, srv.URL+"/c", "Range", "bytes=0-3")
	if h.store.Len() != 1 {
		t.Fatalf("part not stored (%d objects)", h.store.Len())
	}
	resp, body := get(t, srv.URL+"/c")
	if resp.StatusCode != 200 || body != "0123456789" {
		t.Fatalf("combined: %d %q", resp.StatusCode, body)
	}
	resp, body = get(t, srv.URL+"/c")
	if resp.StatusCode != 200 || body != "0123456789" || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after combining: %d %q %q", resp.StatusCode, body, resp.Header.Get("Cache-Status"))
	}
	mu.Lock()
	if len(seen) != 2 || seen[1] != `bytes=4-|"v1"` {
		t.Fatalf("origin saw %q, want one request for the rest with If-Range", seen)
	}
	mu.Unlock()

	// Another ETag on the rest: not combined; the client still gets the
	// whole representation.
	calls.Store(0)
	mu.Lock()
	seen = nil
	mu.Unlock()
	get(t, srv.URL+"/d")
	mu.Lock()
	etag = `"v2"`
	mu.Unlock()
	// The origin ignores If-Range here (a broken one), answering the rest
	// under the new ETag.
	resp, body = get(t, srv.URL+"/d")
	if resp.StatusCode != 200 || body != "0123456789" {
		t.Fatalf("uncombinable: %d %q", resp.StatusCode, body)
	}
}

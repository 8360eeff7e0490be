package edgecache

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// removeBodies deletes every stored body file, so that only the hot tier
// can still answer.
func removeBodies(t *testing.T, st *Store) {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(st.dir, "obj", "*.body"))
	if len(files) == 0 {
		t.Fatal("no body files to remove")
	}
	for _, f := range files {
		if err := os.Remove(f); err != nil {
			t.Fatal(err)
		}
	}
}

func TestHotTierServesWithoutDisk(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprint(w, "hot body")
	})
	h, srv := newCache(t, nil, o.URL)
	get(t, srv.URL+"/a") // miss: stored on disk only
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
	if n, _ := h.store.Hot(); n != 0 {
		t.Fatalf("hot objects after a miss: %d, want 0", n)
	}
	resp, body := get(t, srv.URL+"/a") // first hit: read from disk, kept in memory
	if body != "hot body" || !strings.HasPrefix(resp.Header.Get("Cache-Status"), "canopy; hit; ttl=") {
		t.Fatalf("first hit: %q %q", body, resp.Header.Get("Cache-Status"))
	}
	if n, b := h.store.Hot(); n != 1 || b != int64(len("hot body")) {
		t.Fatalf("hot tier holds %d objects, %d bytes; want 1, %d", n, b, len("hot body"))
	}
	removeBodies(t, h.store)
	for range 3 {
		resp, body = get(t, srv.URL+"/a")
		if body != "hot body" || resp.Header.Get("Content-Type") != "text/plain" || resp.Header.Get("Content-Length") != "8" {
			t.Fatalf("hot hit: %q, headers %v", body, resp.Header)
		}
	}
	if got := testutil.ToFloat64(h.hotHitCount); got != 3 {
		t.Errorf("hot hits counted %v, want 3", got)
	}
	// HEAD, a range and a conditional request are answered from memory too.
	req, _ := http.NewRequest(http.MethodHead, srv.URL+"/a", nil)
	if resp, err := http.DefaultClient.Do(req); err != nil || resp.StatusCode != 200 || resp.ContentLength != 8 {
		t.Fatalf("HEAD: %v %v", resp, err)
	}
	if resp, body := get(t, srv.URL+"/a", "Range", "bytes=4-"); resp.StatusCode != 206 || body != "body" {
		t.Errorf("range: %d %q", resp.StatusCode, body)
	}
	if o.hits.Load() != 1 {
		t.Errorf("origin hits %d, want 1", o.hits.Load())
	}
}

// TestHotTierNeverStale: a 304's header update, a purge, an invalidating
// POST and a replacement each leave no old hot copy behind.
func TestHotTierNeverStale(t *testing.T) {
	clk := &clock{t: time.Now()}
	var version atomic.Int64
	version.Store(1)
	var bodyGen atomic.Int64
	bodyGen.Store(1)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("X-Version", fmt.Sprint(version.Load()))
		et := fmt.Sprintf(`"b%d"`, bodyGen.Load())
		w.Header().Set("ETag", et)
		if r.Method == http.MethodPost {
			return
		}
		if r.Header.Get("If-None-Match") == et {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		fmt.Fprintf(w, "body %d", bodyGen.Load())
	}, clk)
	h, srv := newCache(t, clk, o.URL)
	warm := func() {
		t.Helper()
		get(t, srv.URL+"/a")
		waitFor(t, "stored", func() bool { return h.store.Len() == 1 })
		get(t, srv.URL+"/a")
		if n, _ := h.store.Hot(); n != 1 {
			t.Fatalf("not hot after a hit: %d", n)
		}
	}
	expect := func(what, wantBody, wantVersion string, wantHit bool) {
		t.Helper()
		resp, body := get(t, srv.URL+"/a")
		hit := strings.HasPrefix(resp.Header.Get("Cache-Status"), "canopy; hit")
		if body != wantBody || resp.Header.Get("X-Version") != wantVersion || hit != wantHit {
			t.Fatalf("%s: body %q X-Version %q Cache-Status %q; want %q, %q, hit %v", what, body,
				resp.Header.Get("X-Version"), resp.Header.Get("Cache-Status"), wantBody, wantVersion, wantHit)
		}
	}
	warm()

	// 304: new header fields, same body, still hot.
	clk.Add(11 * time.Second)
	version.Store(2)
	expect("revalidated", "body 1", "2", false)
	expect("hit after the 304", "body 1", "2", true)
	if n, _ := h.store.Hot(); n != 1 {
		t.Errorf("the 304 dropped the hot body: %d hot", n)
	}

	// Replaced by a new 200: the new body, not the old hot one.
	clk.Add(11 * time.Second)
	bodyGen.Store(2)
	expect("replaced", "body 2", "2", false)
	expect("hit after the replacement", "body 2", "2", true)

	// Purged: the next request goes to the origin.
	if n, err := h.store.Purge(Purge{URL: "/a"}); err != nil || n != 1 {
		t.Fatalf("purge: %d %v", n, err)
	}
	if n, b := h.store.Hot(); n != 0 || b != 0 {
		t.Fatalf("after the purge the hot tier holds %d objects, %d bytes", n, b)
	}
	bodyGen.Store(3)
	expect("after the purge", "body 3", "2", false)
	get(t, srv.URL+"/a")

	// Invalidated by an unsafe method.
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/a", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	bodyGen.Store(4)
	expect("after a POST", "body 4", "2", false)
	if n, _ := h.store.Hot(); n != 0 {
		t.Errorf("hot after invalidation and a miss: %d", n)
	}
}

func TestHotTierBudget(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		n := 100
		if r.URL.Path == "/big" {
			n = 101
		}
		fmt.Fprint(w, strings.Repeat("x", n))
	})
	h, srv := newCache(t, nil, o.URL)
	if err := h.store.SetHot(100, 250); err != nil {
		t.Fatal(err)
	}
	if err := h.store.SetHot(-1, 250); err == nil {
		t.Error("a negative limit was accepted")
	}
	for _, p := range []string{"/1", "/2", "/big"} {
		get(t, srv.URL+p)
		waitFor(t, "stored "+p, func() bool { v, _ := h.store.find("canopy "+p, func(*object) bool { return true }); return v != nil })
		get(t, srv.URL+p)
	}
	if n, b := h.store.Hot(); n != 2 || b != 200 {
		t.Fatalf("hot tier %d objects, %d bytes; want /1 and /2 (the 101-byte body is too big)", n, b)
	}
	get(t, srv.URL+"/3")
	waitFor(t, "stored /3", func() bool { return h.store.Len() == 4 })
	get(t, srv.URL+"/2") // /2 used more recently than /1
	get(t, srv.URL+"/3") // /3 in: /1 leaves
	if n, b := h.store.Hot(); n != 2 || b != 200 {
		t.Fatalf("hot tier %d objects, %d bytes; want 2, 200", n, b)
	}
	for p, want := range map[string]bool{"/1": false, "/2": true, "/3": true, "/big": false} {
		_, hot := h.store.find("canopy "+p, func(*object) bool { return true })
		if (hot != nil) != want {
			t.Errorf("%s hot = %v, want %v", p, hot != nil, want)
		}
	}
	if err := h.store.SetHot(100, 0); err != nil {
		t.Fatal(err)
	}
	if n, b := h.store.Hot(); n != 0 || b != 0 {
		t.Errorf("budget 0 left %d objects, %d bytes in memory", n, b)
	}
}

package edge_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"

	"canopy/config"
	"canopy/edge"
	"canopy/edgecache"
	"canopy/internal/testutil"
)

// TestEdgeCache: with [cache] listen set, the edge serves the site by Host
// on its own listener, its metrics appear on the edge's /metrics, and the
// purge API on the cache listener removes what it names.
func TestEdgeCache(t *testing.T) {
	var hits atomic.Int64
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		w.Header().Set("Cache-Control", "max-age=600")
		w.Header().Set("Surrogate-Key", "menu")
		fmt.Fprint(w, "menu of the day")
	}))
	defer origin.Close()
	ev := testutil.NewEvent(t, "cached")
	cfg := ev.EdgeConfig(t, "edge-1", "")
	cfg.Cache = config.CacheConfig{
		Listen: "127.0.0.1:0", Dir: t.TempDir(), MaxBytes: 1 << 20,
		Site: []config.CacheSite{{Name: "shop.example", Origins: []string{origin.URL}}},
	}
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	get := func(url, host string) (int, string) {
		req, _ := http.NewRequest(http.MethodGet, url, nil)
		req.Host = host
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	for range 2 {
		if st, b := get(e.CacheURL()+"/menu", "shop.example"); st != 200 || b != "menu of the day" {
			t.Fatalf("cached site: %d %q", st, b)
		}
	}
	if hits.Load() != 1 {
		t.Fatalf("origin hits %d, want 1", hits.Load())
	}
	_, metrics := get(e.URL()+"/metrics", "")
	for _, want := range []string{`canopy_edgecache_hits_total{site="shop.example"} 1`, `canopy_edgecache_misses_total{site="shop.example"} 1`, "canopy_edgecache_store_objects 1"} {
		if !strings.Contains(metrics, want) {
			t.Errorf("edge /metrics lacks %s", want)
		}
	}
	res, err := http.Post(e.CacheURL()+edgecache.AdminPath, "application/json", strings.NewReader(`{"tag":"menu"}`))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	if res.StatusCode != 200 || strings.TrimSpace(string(b)) != `{"purged":1}` {
		t.Fatalf("purge: %d %s", res.StatusCode, b)
	}
	get(e.CacheURL()+"/menu", "shop.example")
	if hits.Load() != 2 {
		t.Fatalf("after purge: origin hits %d, want 2", hits.Load())
	}
}

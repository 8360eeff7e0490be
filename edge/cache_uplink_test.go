package edge_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"canopy/config"
	"canopy/edge"
	"canopy/internal/testutil"
)

// TestEdgeCacheUplinks: [[cache.uplink]] reaches the site's cache: origin
// requests leave from the primary's source address, and the uplink
// metrics appear on the edge's /metrics.
func TestEdgeCacheUplinks(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host, _, _ := net.SplitHostPort(r.RemoteAddr)
		w.Header().Set("Cache-Control", "no-store")
		fmt.Fprint(w, "via "+host)
	}))
	defer origin.Close()
	ev := testutil.NewEvent(t, "uplinked")
	cfg := ev.EdgeConfig(t, "edge-1", "")
	cfg.Cache = config.CacheConfig{
		Listen: "127.0.0.1:0", Dir: t.TempDir(), MaxBytes: 1 << 20,
		ProbeInterval: config.Duration{Duration: time.Second},
		Site: []config.CacheSite{{Name: "shop.example", Origins: []string{origin.URL},
			Uplink: []config.CacheUplink{{Name: "primary", Source: "127.0.0.2"}, {Source: "127.0.0.3"}}}},
	}
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	get := func(url string) string {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return string(b)
	}
	if b := get(e.CacheURL() + "/x"); b != "via 127.0.0.2" {
		t.Fatalf("through the cache: %q, want via the primary uplink 127.0.0.2", b)
	}
	metrics := get(e.URL() + "/metrics")
	for _, want := range []string{`canopy_edgecache_uplink_up{site="shop.example",uplink="primary"} 1`, `canopy_edgecache_uplink_up{site="shop.example",uplink="127.0.0.3"} 1`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("edge /metrics lacks %s", want)
		}
	}
}

package edgecache

import (
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

func TestMetrics(t *testing.T) {
	clk := &clock{t: time.Now()}
	var failing atomic.Bool
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		if failing.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		w.Header().Set("Cache-Control", "max-age=1, stale-while-revalidate=5, stale-if-error=600")
		fmt.Fprint(w, "abcde")
	}, clk)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadURL, _ := url.Parse("http://" + dead.Addr().String())
	dead.Close()
	live, _ := url.Parse(o.URL)
	st, err := OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewPedanticRegistry()
	h, err := New(Config{Origins: []*url.URL{deadURL, live}, Store: st, Now: clk.Now, Metrics: NewMetrics(reg, st)})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)

	get(t, srv.URL+"/m") // miss, after a failover from the dead origin
	get(t, srv.URL+"/m") // hit
	clk.Add(3 * time.Second)
	get(t, srv.URL+"/m") // stale-while-revalidate (the dead origin is still skipped)
	h.bg.Wait()          // the background revalidation has stored its response
	if o.hits.Load() != 2 {
		t.Fatalf("origin hits %d after the background revalidation, want 2", o.hits.Load())
	}
	clk.Add(100 * time.Second)
	failing.Store(true)
	_, body := get(t, srv.URL+"/m") // stale-if-error, after another failover
	if body != "abcde" {
		t.Fatalf("stale-if-error body %q", body)
	}
	got := gatherValues(t, reg)
	for name, want := range map[string]float64{
		"canopy_edgecache_bytes_total/cache":                         5 * 3,
		"canopy_edgecache_bytes_total/upstream":                      5,
		"canopy_edgecache_hits_total":                                1,
		"canopy_edgecache_misses_total":                              2,
		"canopy_edgecache_stale_served_total/stale-while-revalidate": 1,
		"canopy_edgecache_stale_served_total/stale-if-error":         1,
		"canopy_edgecache_upstream_failovers_total":                  2,
		"canopy_edgecache_store_bytes":                               5,
		"canopy_edgecache_store_objects":                             1,
		"canopy_edgecache_store_evictions_total":                     0,
		"canopy_edgecache_hot_hits_total":                            0, // the hit put it in memory
		"canopy_edgecache_hot_bytes":                                 5, // again, by stale-if-error
		"canopy_edgecache_hot_objects":                               1,
	} {
		if got[name] != want {
			t.Errorf("%s = %v, want %v", name, got[name], want)
		}
	}
}

// gatherValues maps "name[/label value...]" (the site label left out) to
// each counter's or gauge's value.
func gatherValues(t *testing.T, reg prometheus.Gatherer) map[string]float64 {
	t.Helper()
	got := map[string]float64{}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			name := mf.GetName()
			for _, l := range m.GetLabel() {
				if l.GetName() != "site" {
					name += "/" + l.GetValue()
				}
			}
			switch {
			case m.Counter != nil:
				got[name] = m.GetCounter().GetValue()
			case m.Gauge != nil:
				got[name] = m.GetGauge().GetValue()
			}
		}
	}
	return got
}

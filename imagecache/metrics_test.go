package imagecache

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// value reads a counter.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var out dto.Metric
	if err := m.Write(&out); err != nil {
		t.Fatal(err)
	}
	return out.GetCounter().GetValue()
}

func TestMetrics(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "v1", 2, 1000, 40)
	prom := prometheus.NewRegistry()
	c, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) { c.Metrics = prom })
	if err := pullImage(t, url, reg, img, nil); err != nil { // cold
		t.Fatal(err)
	}
	if err := pullImage(t, url, reg, img, nil); err != nil { // warm
		t.Fatal(err)
	}
	reg.close()
	if err := pullImage(t, url, reg, img, nil); err != nil { // upstream gone
		t.Fatal(err)
	}
	do(t, "GET", url+"/v2/app/manifests/unknown", nil)

	blobBytes := float64(0)
	for _, d := range img.blobDigests() {
		blobBytes += float64(len(reg.blob(d)))
	}
	for _, tc := range []struct {
		name string
		got  float64
		want float64
	}{
		{"blob misses", value(t, c.m.requests.WithLabelValues("blob", "miss")), 3},
		{"blob hits", value(t, c.m.requests.WithLabelValues("blob", "hit")), 6},
		{"manifest stale", value(t, c.m.requests.WithLabelValues("manifest", "stale")), 1},
		{"manifest errors", value(t, c.m.requests.WithLabelValues("manifest", "error")), 1},
		{"bytes from upstream", value(t, c.m.bytes.WithLabelValues("upstream")), blobBytes},
		{"bytes from disk", value(t, c.m.bytes.WithLabelValues("disk")), 2 * blobBytes},
	} {
		if tc.got != tc.want {
			t.Errorf("%s: %v, want %v", tc.name, tc.got, tc.want)
		}
	}
	if value(t, c.m.upstreamErrs) < 2 {
		t.Errorf("upstream errors not counted")
	}
	families, err := prom.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]bool{}
	for _, f := range families {
		names[f.GetName()] = true
	}
	for _, n := range []string{"canopy_imagecache_store_bytes", "canopy_imagecache_evictions_total", "canopy_imagecache_upstream_seconds"} {
		if !names[n] {
			t.Errorf("metric %s not gathered", n)
		}
	}
}

package imagecache

import (
	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the cache's Prometheus metrics.
type metrics struct {
	requests      *prometheus.CounterVec // by kind (manifest, blob, tags) and result (hit, miss, stale, error)
	bytes         *prometheus.CounterVec // blob bytes sent, by source (disk, upstream)
	upstreamErrs  prometheus.Counter
	upstreamTimes prometheus.Histogram
	denied        prometheus.Counter // manifests refused by the signature policy
	unauthorized  prometheus.Counter // requests refused for a missing or bad local token
}

func newMetrics(reg prometheus.Registerer, st *store) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_imagecache_requests_total",
			Help: "Registry requests by kind (manifest, blob, tags) and result (hit, miss, stale, error).",
		}, []string{"kind", "result"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_imagecache_blob_bytes_total",
			Help: "Blob bytes sent to clients, by source: disk, or upstream (streamed while fetched).",
		}, []string{"source"}),
		upstreamErrs: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_imagecache_upstream_errors_total",
			Help: "Upstream requests that failed (every mirror of the upstream tried).",
		}),
		upstreamTimes: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "canopy_imagecache_upstream_seconds",
			Help:    "Time to an upstream's response headers, successful or not.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10},
		}),
		denied: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_imagecache_policy_denied_total",
			Help: "Manifests refused (403) by the signature policy.",
		}),
		unauthorized: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_imagecache_unauthorized_total",
			Help: "Requests refused (401) for a missing, unknown or expired local token.",
		}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.requests, m.bytes, m.upstreamErrs, m.upstreamTimes, m.denied, m.unauthorized,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "canopy_imagecache_store_bytes",
			Help: "Bytes in the image store.",
		}, func() float64 { n, _ := st.usage(); return float64(n) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "canopy_imagecache_evictions_total",
			Help: "Blobs evicted to keep the store within its size budget.",
		}, func() float64 { _, n := st.usage(); return float64(n) }),
	)
	return m
}

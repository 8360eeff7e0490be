package edgecache

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Metrics are the edge cache's Prometheus metrics, shared by its sites
// (labelled by site).
type Metrics struct {
	hits      *prometheus.CounterVec // fresh responses served from the store
	hotHits   *prometheus.CounterVec // ...of which with the body in memory
	misses    *prometheus.CounterVec // requests that went to an origin for a cacheable GET
	stale     *prometheus.CounterVec // stale responses served, by reason
	coalesced *prometheus.CounterVec // requests that joined another's origin fetch
	bytes     *prometheus.CounterVec // body bytes sent to clients, by source (cache, upstream)
	failovers *prometheus.CounterVec // moves from a failed origin to the next

	uplinkUp        *prometheus.GaugeVec   // 1 while an uplink is healthy
	uplinkFailovers *prometheus.CounterVec // moves from a failed uplink to the next
}

// NewMetrics creates the metrics and registers them, with the store's
// size, object count and evictions, on reg (nil: not registered).
func NewMetrics(reg prometheus.Registerer, st *Store) *Metrics {
	m := &Metrics{
		hits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_edgecache_hits_total",
			Help: "Requests answered with a fresh stored response.",
		}, []string{"site"}),
		hotHits: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_edgecache_hot_hits_total",
			Help: "Fresh hits served from the in-memory hot tier (also counted in canopy_edgecache_hits_total).",
		}, []string{"site"}),
		misses: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_edgecache_misses_total",
			Help: "GET requests that went to an origin (not stored, stale, or not reusable).",
		}, []string{"site"}),
		stale: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_edgecache_stale_served_total",
			Help: "Stale stored responses served, by reason (stale-while-revalidate, stale-if-error, max-stale).",
		}, []string{"site", "reason"}),
		coalesced: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_edgecache_coalesced_total",
			Help: "Requests that joined another request's origin fetch instead of making their own.",
		}, []string{"site"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_edgecache_bytes_total",
			Help: "Body bytes sent to clients, by source: cache (the store) or upstream (an origin fetch, streamed).",
		}, []string{"site", "source"}),
		failovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_edgecache_upstream_failovers_total",
			Help: "Times a request moved on from a failed origin (error, timeout, 502/503/504) to the next.",
		}, []string{"site"}),
		uplinkUp: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canopy_edgecache_uplink_up",
			Help: "1 while an uplink is healthy (its last probe or request through it succeeded), else 0.",
		}, []string{"site", "uplink"}),
		uplinkFailovers: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_edgecache_uplink_failovers_total",
			Help: "Times a request moved on from a failed uplink (connection error or timeout) to the next.",
		}, []string{"site", "uplink"}),
	}
	if reg == nil {
		return m
	}
	reg.MustRegister(m.hits, m.hotHits, m.misses, m.stale, m.coalesced, m.bytes, m.failovers, m.uplinkUp, m.uplinkFailovers)
	if st != nil {
		reg.MustRegister(
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "canopy_edgecache_store_bytes",
				Help: "Bytes of response bodies in the store.",
			}, func() float64 { n, _ := st.Size(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "canopy_edgecache_store_objects",
				Help: "Responses in the store.",
			}, func() float64 { return float64(st.Len()) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "canopy_edgecache_hot_bytes",
				Help: "Bytes of response bodies held in memory by the hot tier (also on disk).",
			}, func() float64 { _, n := st.Hot(); return float64(n) }),
			prometheus.NewGaugeFunc(prometheus.GaugeOpts{
				Name: "canopy_edgecache_hot_objects",
				Help: "Responses whose bodies the hot tier holds in memory.",
			}, func() float64 { n, _ := st.Hot(); return float64(n) }),
			prometheus.NewCounterFunc(prometheus.CounterOpts{
				Name: "canopy_edgecache_store_evictions_total",
				Help: "Responses evicted to keep the store within its size budget.",
			}, func() float64 { _, n := st.Size(); return float64(n) }),
		)
	}
	return m
}

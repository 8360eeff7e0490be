package replica

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"canopy/ledger"
	"canopy/store"
)

// Reasons an entry is refused, the "reason" label of
// canopy_sync_refused_entries_total.
const (
	RefusedRevoked       = "revoked_author"
	RefusedUnknownAuthor = "unknown_author"
	RefusedSignature     = "bad_signature"
	RefusedWrongEvent    = "wrong_event"
	RefusedChain         = "chain" // a gap or a fork
	RefusedMalformed     = "malformed"
	RefusedVersion       = "version"
	RefusedOther         = "other"
)

// RefusedReason classifies why entries were refused.
func RefusedReason(err error) string {
	switch {
	case errors.Is(err, ErrRevokedAuthor):
		return RefusedRevoked
	case errors.Is(err, ErrUnknownAuthor):
		return RefusedUnknownAuthor
	case errors.Is(err, ledger.ErrBadSignature), errors.Is(err, ledger.ErrWrongAuthor):
		return RefusedSignature
	case errors.Is(err, ledger.ErrWrongEvent):
		return RefusedWrongEvent
	case errors.Is(err, store.ErrConflict):
		return RefusedChain
	case errors.Is(err, ErrVersion):
		return RefusedVersion
	case errors.Is(err, ErrMalformed), errors.Is(err, ledger.ErrMalformed), errors.Is(err, ledger.ErrUnknownVersion):
		return RefusedMalformed
	}
	return RefusedOther
}

// Values of the "side" label of canopy_sync_refused_entries_total.
const (
	sideReceived = "received"
	sideSent     = "sent"
)

// metrics are a node's sync metrics. The "peer" label is a peer's URL for
// the peers this node calls, and "node:<id>" for a node that pushed to it.
type metrics struct {
	connected   *prometheus.GaugeVec
	lastContact *prometheus.GaugeVec
	sent        *prometheus.CounterVec
	received    *prometheus.CounterVec
	backlog     *prometheus.GaugeVec
	refused     *prometheus.CounterVec
	authentic   *prometheus.CounterVec
	lag         prometheus.Histogram
}

// Values of the "by" label of canopy_sync_authenticated_entries_total.
const (
	byCheckpoint = "checkpoint"
	bySignature  = "signature"
)

func newMetrics() *metrics {
	peer := []string{"peer"}
	return &metrics{
		connected: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canopy_sync_peer_connected", Help: "1 while a sync session with the peer is up, else 0.",
		}, peer),
		lastContact: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canopy_sync_peer_last_contact_seconds", Help: "Unix time of the last successful exchange with the peer.",
		}, peer),
		sent: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_sync_entries_sent_total", Help: "Entries the peer took from this node's pushes.",
		}, peer),
		received: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_sync_entries_received_total", Help: "Entries from the peer this node stored.",
		}, peer),
		backlog: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "canopy_sync_peer_backlog_entries", Help: "Entries this node holds that the peer lacked at the last vectors exchanged.",
		}, peer),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_sync_refused_entries_total",
			Help: "Refusals of entries (each stops the rest of its stream), by peer, reason, and side: received (this node refused the peer's) or sent (the peer refused this node's).",
		}, []string{"peer", "reason", "side"}),
		authentic: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_sync_authenticated_entries_total",
			Help: "Received entries found authentic, by how: checkpoint (one signed checkpoint covered their run) or signature (each verified one by one).",
		}, []string{"by"}),
		lag: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "canopy_sync_lag_seconds",
			Help:    "For each entry stored from another node: its commit time here minus its author's HLC wall time (negative clamped to 0).",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60, 300, 1800, 3600},
		}),
	}
}

func (m *metrics) register(reg prometheus.Registerer) error {
	for _, c := range []prometheus.Collector{m.connected, m.lastContact, m.sent, m.received, m.backlog, m.refused, m.authentic, m.lag} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// observeLag records the sync lag of entries stored at now.
func (m *metrics) observeLag(now time.Time, entries []store.Stored) {
	nowMs := now.UnixMilli()
	for _, s := range entries {
		m.lag.Observe(float64(max(nowMs-s.Entry.HLC.Wall, 0)) / 1000)
	}
}

// backlogOf counts the entries held beyond theirs.
func backlogOf(held, theirs Vector) int {
	n := 0
	for node, top := range held {
		if top > theirs[node] {
			n += int(top - theirs[node])
		}
	}
	return n
}

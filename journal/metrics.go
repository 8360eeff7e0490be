package journal

import "github.com/prometheus/client_golang/prometheus"

type metrics struct {
	appends       prometheus.Counter
	commitErrors  prometheus.Counter
	viewRefolds   prometheus.Counter
	checkpoints   prometheus.Counter
	batchSize     prometheus.Histogram
	commitLatency prometheus.Histogram
	appendLatency prometheus.Histogram
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		appends: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_ledger_appends_total", Help: "Entries appended to this node's log and made durable.",
		}),
		commitErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_ledger_commit_errors_total", Help: "Group commits that failed (nothing of them was stored).",
		}),
		viewRefolds: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_ledger_view_refolds_total",
			Help: "Group commits whose view rows another process changed first (a shared store), folded again and retried.",
		}),
		checkpoints: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_ledger_checkpoints_total", Help: "Checkpoints signed.",
		}),
		batchSize: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "canopy_ledger_commit_batch_size", Help: "Entries per group commit.",
			Buckets: prometheus.ExponentialBuckets(1, 2, 12),
		}),
		commitLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "canopy_ledger_commit_seconds", Help: "Time to make one group commit durable.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
		appendLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "canopy_ledger_append_seconds", Help: "Time from an append's request to its durable acknowledgement.",
			Buckets: prometheus.ExponentialBuckets(0.0001, 2, 16),
		}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.appends, m.commitErrors, m.viewRefolds, m.checkpoints, m.batchSize, m.commitLatency, m.appendLatency} {
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	return m, nil
}

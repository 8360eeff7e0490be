package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"canopy/edge"
	"canopy/hub"
	"canopy/ledger"
	"canopy/reconcile"
	"canopy/simulate"
)

// Pacing of the demo's convergence tracker.
const (
	demoSample      = 50 * time.Millisecond // how often every node's vector is read
	demoSyncWindow  = 10                    // samples: a node holding what any node held this many samples ago is in sync
	demoReportEvery = 20                    // samples between reads of the reports
)

// demoNode is one node the demo watches converge.
type demoNode struct {
	name   string
	vector func(context.Context) (map[ledger.NodeID]uint64, error)
	report func(context.Context) (reconcile.Report, error)
	edge   bool
}

// demoReport is the last report read from a node.
type demoReport struct {
	hash   string
	counts map[string]int
	items  int
	err    error
}

// demoHeal is a heal whose convergence is being timed: every node must
// come to hold what any node held at the heal.
type demoHeal struct {
	at     time.Time
	target map[ledger.NodeID]uint64
}

// demoSync cuts and restores the links between the edges and the hub and
// measures how the nodes converge.
type demoSync struct {
	nodes []demoNode // the hub, then the edges
	links []*simulate.Link

	mu          sync.Mutex
	cut         bool
	cutAt       time.Time
	cuts, heals int
	lastHeal    time.Time
	pending     *demoHeal
	convergence []time.Duration // per heal whose convergence was seen
	entries     []uint64        // per node, at the last sample
	behind      []uint64        // per node: entries another node held a moment ago that it lacks
	sampled     bool
	reports     []demoReport // per node
	injected    int
	injectErr   string
}

func newDemoSync(h *hub.Hub, edges []*edge.Edge, links []*simulate.Link, token string) *demoSync {
	slug := edges[0].Event.Slug
	client := &http.Client{Timeout: 10 * time.Second}
	y := &demoSync{links: links}
	y.nodes = append(y.nodes, demoNode{
		name:   "hub",
		vector: func(ctx context.Context) (map[ledger.NodeID]uint64, error) { return h.Store.Vector(ctx, slug) },
		report: func(ctx context.Context) (reconcile.Report, error) {
			return reconcile.Read(ctx, h.Store, slug, reconcile.Options{})
		},
	})
	for i, ed := range edges {
		url := ed.URL()
		y.nodes = append(y.nodes, demoNode{
			name:   "edge " + demoEdgeName(i),
			edge:   true,
			vector: func(ctx context.Context) (map[ledger.NodeID]uint64, error) { return ed.Store.Vector(ctx, slug) },
			report: func(ctx context.Context) (reconcile.Report, error) { return fetchDemoReport(ctx, client, url, token) },
		})
	}
	y.entries = make([]uint64, len(y.nodes))
	y.behind = make([]uint64, len(y.nodes))
	y.reports = make([]demoReport, len(y.nodes))
	return y
}

// fetchDemoReport reads an edge's reconciliation report through its API
// and checks its hash against its content.
func fetchDemoReport(ctx context.Context, client *http.Client, base, token string) (reconcile.Report, error) {
	var rep reconcile.Report
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+reconcile.Path, nil)
	if err != nil {
		return rep, err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return rep, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return rep, err
	}
	if resp.StatusCode != http.StatusOK {
		return rep, fmt.Errorf("GET %s%s: %s: %s", base, reconcile.Path, resp.Status, strings.TrimSpace(string(b)))
	}
	if err := json.Unmarshal(b, &rep); err != nil {
		return rep, fmt.Errorf("GET %s%s: %w", base, reconcile.Path, err)
	}
	if got := rep.Hash(); got != rep.Digest {
		return rep, fmt.Errorf("GET %s%s: the report says its hash is %s but hashes to %s", base, reconcile.Path, rep.Digest, got)
	}
	return rep, nil
}

// vectors reads every node's version vector.
func (y *demoSync) vectors(ctx context.Context) ([]map[ledger.NodeID]uint64, error) {
	vs := make([]map[ledger.NodeID]uint64, len(y.nodes))
	for i, n := range y.nodes {
		v, err := n.vector(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", n.name, err)
		}
		vs[i] = v
	}
	return vs, nil
}

// union is, per author, the highest seq any of vs holds.
func union(vs []map[ledger.NodeID]uint64) map[ledger.NodeID]uint64 {
	u := map[ledger.NodeID]uint64{}
	for _, v := range vs {
		for n, seq := range v {
			u[n] = max(u[n], seq)
		}
	}
	return u
}

// lacking counts the entries of target that v does not hold.
func lacking(v, target map[ledger.NodeID]uint64) uint64 {
	var n uint64
	for a, seq := range target {
		if seq > v[a] {
			n += seq - v[a]
		}
	}
	return n
}

func total(v map[ledger.NodeID]uint64) uint64 {
	var n uint64
	for _, seq := range v {
		n += seq
	}
	return n
}

// track samples every node's vector until ctx ends: entry counts, which
// nodes are in sync, and how long each heal took to converge.
func (y *demoSync) track(ctx context.Context) {
	tick := time.NewTicker(demoSample)
	defer tick.Stop()
	var history []map[ledger.NodeID]uint64 // unions of the last samples, oldest first
	for n := 0; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		vs, err := y.vectors(ctx)
		if err != nil {
			continue // a store busy or closing; the next sample tells
		}
		now := time.Now()
		u := union(vs)
		history = append(history, u)
		if len(history) > demoSyncWindow {
			history = history[1:]
		}
		y.mu.Lock()
		y.sampled = true
		for i, v := range vs {
			y.entries[i] = total(v)
			y.behind[i] = lacking(v, history[0])
		}
		if p := y.pending; p != nil {
			done := true
			for _, v := range vs {
				done = done && lacking(v, p.target) == 0
			}
			if done {
				y.convergence = append(y.convergence, now.Sub(p.at))
				y.pending = nil
			}
		}
		y.mu.Unlock()
		if n%demoReportEvery == 0 {
			y.readReports(ctx)
		}
	}
}

// readReports reads every node's reconciliation report.
func (y *demoSync) readReports(ctx context.Context) []reconcile.Report {
	reps := make([]reconcile.Report, len(y.nodes))
	for i, n := range y.nodes {
		rep, err := n.report(ctx)
		reps[i] = rep
		y.mu.Lock()
		y.reports[i] = demoReport{hash: rep.Digest, counts: rep.Counts, items: len(rep.Items), err: err}
		y.mu.Unlock()
	}
	return reps
}

// cutLoop cuts every link on the demo's schedule, has sim (if any) write
// the conflicts only a partition allows during each cut, and restores the
// links when ctx ends.
func (y *demoSync) cutLoop(ctx context.Context, sim *simulate.Sim, scr *demoScreen) {
	wait := func(d time.Duration) bool {
		t := time.NewTimer(d)
		defer t.Stop()
		select {
		case <-ctx.Done():
			return false
		case <-t.C:
			return true
		}
	}
	defer func() {
		y.mu.Lock()
		cut := y.cut
		y.mu.Unlock()
		if cut {
			y.restore(context.Background())
		}
	}()
	if !wait(demoFirstCut) {
		return
	}
	for {
		y.mu.Lock()
		for _, l := range y.links {
			l.Cut()
		}
		y.cut, y.cutAt = true, time.Now()
		y.cuts++
		if y.pending != nil { // cut again before converging: that heal is not timed
			y.pending = nil
		}
		y.mu.Unlock()
		if sim != nil {
			_, err := sim.InjectConflicts(ctx)
			y.mu.Lock()
			switch {
			case err == nil:
				y.injected++
			case errors.Is(err, simulate.ErrNoSpareTickets):
				y.injectErr = "no spare tickets left to inject"
			default:
				y.injectErr = err.Error()
				scr.note("demo error: " + err.Error())
			}
			y.mu.Unlock()
		}
		if !wait(demoCutFor) {
			return
		}
		y.restore(ctx)
		if !wait(demoCutEvery - demoCutFor) {
			return
		}
	}
}

// restore lets the links through again and starts timing the heal.
func (y *demoSync) restore(ctx context.Context) {
	y.mu.Lock()
	for _, l := range y.links {
		l.Restore()
	}
	now := time.Now()
	y.cut = false
	y.heals++
	y.lastHeal = now
	y.mu.Unlock()
	vs, err := y.vectors(context.WithoutCancel(ctx))
	if err != nil {
		return
	}
	y.mu.Lock()
	y.pending = &demoHeal{at: now, target: union(vs)}
	y.mu.Unlock()
}

// waitConverged waits until every node holds the same entries.
func (y *demoSync) waitConverged(ctx context.Context) error {
	tick := time.NewTicker(demoSample)
	defer tick.Stop()
	for {
		vs, err := y.vectors(ctx)
		if err == nil {
			same := true
			for _, v := range vs[1:] {
				same = same && maps.Equal(v, vs[0])
			}
			if same {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			if err != nil {
				return err
			}
			var parts []string
			for i, v := range vs {
				parts = append(parts, fmt.Sprintf("%s holds %d", y.nodes[i].name, total(v)))
			}
			return fmt.Errorf("not converged: %s", strings.Join(parts, ", "))
		case <-tick.C:
		}
	}
}

// demoSyncSummary is the convergence part of the demo's final summary.
type demoSyncSummary struct {
	Edges int `json:"edges"`
	Cuts  int `json:"cuts"`
	Heals int `json:"heals"`
	// ConvergenceMs is, per heal whose convergence was seen, how long
	// until every node held what any node held at the heal.
	ConvergenceMs    []int64 `json:"convergence_ms"`
	MaxConvergenceMs int64   `json:"max_convergence_ms"`
	// Converged: at the end every node held the same entries, and every
	// node's report had the same hash.
	Converged bool              `json:"converged"`
	Nodes     []demoNodeSummary `json:"nodes"`
	// Items counts the final report's items by kind.
	Items    map[string]int `json:"items"`
	Injected int            `json:"injected"` // cuts during which the conflicts were injected
}

// demoNodeSummary is one node at the end.
type demoNodeSummary struct {
	Name       string `json:"name"`
	Entries    uint64 `json:"entries"`
	ReportHash string `json:"report_hash"`
}

// final waits for the nodes to converge, reads their reports and checks
// that the hashes agree.
func (y *demoSync) final(ctx context.Context) (*demoSyncSummary, error) {
	convErr := y.waitConverged(ctx)
	now := time.Now()
	y.mu.Lock()
	if p := y.pending; p != nil && convErr == nil {
		y.convergence = append(y.convergence, now.Sub(p.at))
		y.pending = nil
	}
	y.mu.Unlock()
	reps := y.readReports(ctx)
	vs, vecErr := y.vectors(ctx)

	y.mu.Lock()
	defer y.mu.Unlock()
	s := &demoSyncSummary{Edges: len(y.nodes) - 1, Cuts: y.cuts, Heals: y.heals, Injected: y.injected, ConvergenceMs: []int64{}}
	for _, c := range y.convergence {
		s.ConvergenceMs = append(s.ConvergenceMs, c.Milliseconds())
		s.MaxConvergenceMs = max(s.MaxConvergenceMs, c.Milliseconds())
	}
	errs := []error{}
	if convErr != nil {
		errs = append(errs, fmt.Errorf("demo: the nodes did not converge within %s after the links were restored: %w", demoSettle, convErr))
	}
	if vecErr != nil {
		errs = append(errs, vecErr)
	}
	hashes := map[string]bool{}
	for i, n := range y.nodes {
		ns := demoNodeSummary{Name: n.name, ReportHash: reps[i].Digest}
		if vecErr == nil {
			ns.Entries = total(vs[i])
		}
		if err := y.reports[i].err; err != nil {
			errs = append(errs, fmt.Errorf("demo: %s report: %w", n.name, err))
		}
		hashes[reps[i].Digest] = true
		s.Nodes = append(s.Nodes, ns)
	}
	s.Items = reps[1].Counts
	if len(hashes) != 1 && convErr == nil {
		errs = append(errs, fmt.Errorf("demo: the nodes hold the same entries but their reports differ: %v", slices.Sorted(maps.Keys(hashes))))
	}
	s.Converged = len(errs) == 0
	return s, errors.Join(errs...)
}

// lines renders the convergence part of the live summary.
func (y *demoSync) lines(now time.Time) []string {
	y.mu.Lock()
	defer y.mu.Unlock()
	var link string
	switch {
	case y.cut:
		link = fmt.Sprintf("links to the hub CUT for %s (cut %d)", now.Sub(y.cutAt).Round(time.Second), y.cuts)
	case y.heals == 0:
		link = "links up, no cut yet"
	default:
		link = fmt.Sprintf("links up; last heal %s ago", now.Sub(y.lastHeal).Round(time.Second))
		switch {
		case y.pending != nil:
			link += ", converging"
		case len(y.convergence) > 0:
			worst := slices.Max(y.convergence)
			link += fmt.Sprintf(", converged %s after it (worst %s over %d heals)",
				y.convergence[len(y.convergence)-1].Round(time.Millisecond), worst.Round(time.Millisecond), len(y.convergence))
		}
	}
	if y.injected > 0 {
		link += fmt.Sprintf("; conflicts injected in %d cuts", y.injected)
	}
	var nodes []string
	for i, n := range y.nodes {
		state := "in sync"
		switch {
		case !y.sampled:
			state = "…"
		case y.behind[i] > 0:
			state = fmt.Sprintf("behind %d", y.behind[i])
		}
		nodes = append(nodes, fmt.Sprintf("%s %d entries %s", n.name, y.entries[i], state))
	}
	var reports []string
	hashes := map[string]bool{}
	for i, n := range y.nodes {
		r := y.reports[i]
		switch {
		case r.err != nil:
			reports = append(reports, fmt.Sprintf("%s: %v", n.name, r.err))
		case r.hash == "":
			reports = append(reports, n.name+" …")
		default:
			hashes[r.hash] = true
			reports = append(reports, fmt.Sprintf("%s %d items %s", n.name, r.items, shortHash(r.hash)))
		}
	}
	agree := "hashes differ: not merged yet, or read while entries arrive"
	if len(hashes) == 1 {
		agree = "hashes match"
	}
	var kinds []string
	if c := y.reports[1].counts; c != nil {
		for _, k := range slices.Sorted(maps.Keys(c)) {
			if c[k] > 0 {
				kinds = append(kinds, fmt.Sprintf("%s %d", k, c[k]))
			}
		}
	}
	if len(kinds) == 0 {
		kinds = []string{"none"}
	}
	return []string{
		"sync      " + link,
		"nodes     " + strings.Join(nodes, ", "),
		fmt.Sprintf("report    %s (%s); edge A items: %s", strings.Join(reports, ", "), agree, strings.Join(kinds, ", ")),
	}
}

func shortHash(h string) string {
	if len(h) > 12 {
		return h[:12] + "…"
	}
	return h
}

package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
)

// SyncOptions configures RunSync.
type SyncOptions struct {
	Dir     string
	Entries int   // catch-up backlog (the figure is 100,000)
	Restart int   // entries written while the receiving side is down
	Heal    []int // backlogs for convergence after a heal (Canopy only)
	Rounds  int   // rounds of Canopy then NATS, alternated
}

// countingDialer counts the bytes the receiving node reads off its
// connections: what really crossed the wire, headers and compression
// included.
type countingDialer struct {
	n atomic.Int64
}

func (c *countingDialer) transport() *http.Transport {
	d := &net.Dialer{Timeout: 10 * time.Second}
	return &http.Transport{
		ResponseHeaderTimeout: 10 * time.Second,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := d.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return &countingConn{Conn: conn, n: &c.n}, nil
		},
	}
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c *countingConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.n.Add(int64(n))
	return n, err
}

// SyncResult is one sync measurement, or (Stat "median") the median of a
// bench's rounds.
type SyncResult struct {
	Bench  string `json:"bench"`
	System string `json:"system"` // canopy or nats
	Stat   string `json:"stat,omitempty"`
	Round  int    `json:"round,omitempty"`
	// Entries is how many entries (messages) the measurement moved; Backlog,
	// when set, is how many the receiver holds at the end.
	Entries         int     `json:"entries"`
	Backlog         int     `json:"backlog,omitempty"`
	Seconds         float64 `json:"seconds"`
	PerSecond       float64 `json:"per_second,omitempty"`
	WireBytes       int64   `json:"wire_bytes,omitempty"`
	EncodedBytes    int64   `json:"encoded_bytes,omitempty"`
	WireOverEncoded float64 `json:"wire_over_encoded,omitempty"`
	Note            string  `json:"note,omitempty"`
}

// SyncRatio compares the medians of one bench: Canopy's over NATS's.
type SyncRatio struct {
	Bench string `json:"bench"`
	Stat  string `json:"stat"` // "ratio canopy/nats"
	// Seconds below 1 and PerSecond above 1 mean Canopy was faster.
	Seconds         float64 `json:"seconds"`
	PerSecond       float64 `json:"per_second,omitempty"`
	WireOverEncoded float64 `json:"wire_over_encoded,omitempty"`
}

// What each bench measures, printed with its results.
const (
	noteCatchUp = "catch-up: the receiver meets a sender holding the backlog; timed from the start of the sync " +
		"(canopy: the fresh edge's peer session starts; nats: the hub stream sourcing the edge stream is created, " +
		"leaf connection already up) until the receiver holds every entry; canopy's sender has signed its checkpoint over the backlog, " +
		"as it does within a second of a write"
	noteRestart = "restart: the receiver (canopy: the peer edge; nats: the hub server) is stopped, entries more are " +
		"written on the sender, then it restarts with its store intact; timed from the restart call until it holds every entry"
	noteHeal = "convergence after a heal: the link to an edge holding the backlog is restored (a peer session starts); " +
		"timed until both edges' version vectors are equal (the backlog written before its author's latest checkpoint)"
)

// RunSync compares catch-up between Canopy and NATS JetStream, alternating
// rounds (Canopy, NATS, Canopy, NATS, …): a backlog of o.Entries entries
// pulled by a receiver that lacks them, and catch-up after the receiver
// restarts with o.Restart entries written meanwhile. NATS carries the very
// entries of the Canopy run before it as its messages (same number, sizes
// and bytes, so leaf-node compression sees the same data), with the hub stream
// sourcing the edge stream over a leaf-node connection (configuration in
// testdata/). It also measures Canopy's convergence after a heal for each
// backlog in o.Heal. It prints every run, then medians and ratios, as JSON
// lines.
func RunSync(ctx context.Context, w io.Writer, o SyncOptions) error {
	if o.Entries < 1 || o.Restart < 1 || o.Rounds < 1 {
		return fmt.Errorf("bench sync: entries, restart entries and rounds must be at least 1 (have %d, %d, %d)",
			o.Entries, o.Restart, o.Rounds)
	}
	enc := json.NewEncoder(w)
	var all []SyncResult
	emit := func(r SyncResult) {
		all = append(all, r)
		enc.Encode(r)
	}
	for round := 1; round <= o.Rounds; round++ {
		cc, cr, backlog, more, err := canopyRun(ctx, o.Dir, o.Entries, o.Restart)
		if err != nil {
			return fmt.Errorf("canopy round %d: %w", round, err)
		}
		cc.Round, cr.Round = round, round
		emit(cc)
		emit(cr)
		nc, nr, err := natsRun(ctx, o.Dir, backlog, more)
		if err != nil {
			return fmt.Errorf("nats round %d: %w", round, err)
		}
		nc.Round, nr.Round = round, round
		emit(nc)
		emit(nr)
		for _, k := range o.Heal {
			h, _, _, _, err := canopyRun(ctx, o.Dir, k, 0)
			if err != nil {
				return fmt.Errorf("canopy heal round %d: %w", round, err)
			}
			h.Bench, h.Round = fmt.Sprintf("sync.heal.%d", k), round
			emit(h)
		}
	}
	medians := map[[2]string]SyncResult{}
	var order [][2]string
	for _, r := range all {
		k := [2]string{r.Bench, r.System}
		if _, ok := medians[k]; !ok {
			order = append(order, k)
			medians[k] = median(all, r.Bench, r.System)
		}
	}
	for _, k := range order {
		enc.Encode(medians[k])
	}
	for _, b := range []string{"sync.catch_up", "sync.restart"} {
		c, n := medians[[2]string{b, "canopy"}], medians[[2]string{b, "nats"}]
		r := SyncRatio{Bench: b, Stat: "ratio canopy/nats", Seconds: ratio(c.Seconds, n.Seconds)}
		if b == "sync.catch_up" {
			r.PerSecond = ratio(c.PerSecond, n.PerSecond)
			r.WireOverEncoded = ratio(c.WireOverEncoded, n.WireOverEncoded)
		}
		enc.Encode(r)
	}
	return nil
}

func ratio(a, b float64) float64 {
	if b == 0 {
		return 0
	}
	return round(a / b)
}

// median is the median of the named runs, field by field.
func median(all []SyncResult, bench, system string) SyncResult {
	var rs []SyncResult
	for _, r := range all {
		if r.Bench == bench && r.System == system {
			rs = append(rs, r)
		}
	}
	m := rs[0]
	m.Stat, m.Round, m.Note = "median", 0, ""
	m.Seconds = medianBy(rs, func(r SyncResult) float64 { return r.Seconds })
	m.PerSecond = medianBy(rs, func(r SyncResult) float64 { return r.PerSecond })
	m.WireOverEncoded = medianBy(rs, func(r SyncResult) float64 { return r.WireOverEncoded })
	m.WireBytes, m.EncodedBytes = 0, 0
	return m
}

// appendBacklog appends n entries to e's log in parallel waves and returns
// their encodings, in the order they were asked for.
func appendBacklog(ctx context.Context, e *Edge, from, n int) ([][]byte, error) {
	encoded := make([][]byte, n)
	body := []byte(`{"note":"` + pad(150) + `"}`)
	for i := 0; i < n; {
		wave := min(256, n-i)
		errs := make(chan error, wave)
		for k := 0; k < wave; k++ {
			go func(j int) {
				en, err := e.Journal.Append(ctx, "bench.note/v1", fmt.Sprintf("n%d", from+j), body)
				if err == nil {
					encoded[j] = en.Encode()
				}
				errs <- err
			}(i + k)
		}
		for k := 0; k < wave; k++ {
			if err := <-errs; err != nil {
				return nil, err
			}
		}
		i += wave
	}
	return encoded, nil
}

func totalSize(bs [][]byte) int64 {
	var n int64
	for _, b := range bs {
		n += int64(len(b))
	}
	return n
}

// equalVectors waits until a and b hold the same entries of every author.
func equalVectors(ctx context.Context, a, b *edge.Edge, what string) error {
	return waitFor(5*time.Minute, what, func() (bool, error) {
		va, err := a.Store.Vector(ctx, a.Event.Slug)
		if err != nil {
			return false, err
		}
		vb, err := b.Store.Vector(ctx, b.Event.Slug)
		if err != nil {
			return false, err
		}
		return maps.Equal(va, vb), nil
	})
}

// canopyRun measures the Canopy side: (a) catch-up — edge A holds n
// entries and a fresh edge B of the same event starts syncing with it, timed
// until their vectors are equal; (b) if m > 0, restart — B is closed, A
// writes m more entries, and B is opened again on its intact store with A as
// a configured peer, timed from the open until the vectors are equal again.
// It also returns the encoded entries of A's backlog and of the entries
// written during the restart, in order.
func canopyRun(ctx context.Context, root string, n, m int) (catchUp, restart SyncResult, backlog, more [][]byte, err error) {
	dir, err := os.MkdirTemp(root, "canopy-bench-sync-")
	if err != nil {
		return catchUp, restart, nil, nil, err
	}
	defer os.RemoveAll(dir)
	a, backlog, err := startSender(ctx, dir, n)
	if err != nil {
		return catchUp, restart, nil, nil, err
	}
	defer a.Close(context.Background())
	cfg, err := receiverConfig(a, dir, "b")
	if err != nil {
		return catchUp, restart, nil, nil, err
	}
	catchUp, b, err := canopyCatchUp(ctx, a, cfg, backlog)
	if err != nil {
		return catchUp, restart, nil, nil, err
	}
	closeB := func() error {
		if b == nil {
			return nil
		}
		err := b.Close(context.Background())
		b = nil
		return err
	}
	defer closeB()
	if m <= 0 {
		catchUp.Note = noteHeal
		return catchUp, restart, backlog, nil, nil
	}
	catchUp.Note = noteCatchUp

	if err := closeB(); err != nil {
		return catchUp, restart, nil, nil, err
	}
	if more, err = appendBacklog(ctx, a, n, m); err != nil {
		return catchUp, restart, nil, nil, err
	}
	cfg.Sync.Peers = []string{a.URL()}
	start := time.Now()
	if b, err = edge.Open(ctx, cfg, nil); err != nil {
		return catchUp, restart, nil, nil, err
	}
	if err := equalVectors(ctx, a.Edge, b, fmt.Sprintf("canopy catch-up after a restart (%d+%d entries)", n, m)); err != nil {
		return catchUp, restart, nil, nil, err
	}
	secs := time.Since(start).Seconds()
	restart = SyncResult{Bench: "sync.restart", System: "canopy", Entries: m, Backlog: n + m, Seconds: round(secs), Note: noteRestart}
	return catchUp, restart, backlog, more, nil
}

// startSender starts edge A in dir/a with n entries written, and waits
// until its latest checkpoint covers them (the journal signs one within a
// second of a write), as it does for a backlog held a while.
func startSender(ctx context.Context, dir string, n int) (*Edge, [][]byte, error) {
	a, err := StartEdge(ctx, filepath.Join(dir, "a"), "bench-sync")
	if err != nil {
		return nil, nil, err
	}
	backlog, err := appendBacklog(ctx, a, 0, n)
	if err == nil {
		err = waitFor(10*time.Second, "a checkpoint covering the backlog", func() (bool, error) {
			cp, ok := a.Journal.Checkpoint()
			return ok && cp.Size >= a.Journal.Durable(), nil
		})
	}
	if err != nil {
		a.Close(context.Background())
		return nil, nil, err
	}
	return a, backlog, nil
}

// receiverConfig enrols a second edge of a's event in dir/name and returns
// its configuration.
func receiverConfig(a *Edge, dir, name string) (config.Config, error) {
	bDir := filepath.Join(dir, name)
	cfg := config.Default()
	nk, enr, err := auth.EnrollNode(a.EventKey, a.Event, "bench-"+name, auth.NodeEdge, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	if err != nil {
		return cfg, err
	}
	if err := auth.WriteNode(filepath.Join(bDir, "node"), nk, enr); err != nil {
		return cfg, err
	}
	cfg.Node.Dir = filepath.Join(bDir, "data")
	cfg.Node.Event = filepath.Join(a.Dir, "event")
	cfg.Node.Key = filepath.Join(bDir, "node")
	cfg.Node.Listen = "127.0.0.1:0"
	return cfg, nil
}

// canopyCatchUp opens the receiver of cfg, starts its peer session with a
// and times it until both hold the same entries. The caller closes the
// receiver it returns.
func canopyCatchUp(ctx context.Context, a *Edge, cfg config.Config, backlog [][]byte) (SyncResult, *edge.Edge, error) {
	b, err := edge.Open(ctx, cfg, nil)
	if err != nil {
		return SyncResult{}, nil, err
	}
	counter := &countingDialer{}
	start := time.Now()
	b.AddPeer([]string{a.URL()}, &http.Client{Transport: counter.transport()})
	if err := equalVectors(ctx, a.Edge, b, fmt.Sprintf("canopy catch-up of %d entries", len(backlog))); err != nil {
		b.Close(context.Background())
		return SyncResult{}, nil, err
	}
	secs := time.Since(start).Seconds()
	n := len(backlog)
	r := SyncResult{Bench: "sync.catch_up", System: "canopy", Entries: n, Seconds: round(secs),
		PerSecond: round(float64(n) / secs), WireBytes: counter.n.Load(), EncodedBytes: totalSize(backlog)}
	r.WireOverEncoded = round(float64(r.WireBytes) / float64(r.EncodedBytes))
	return r, b, nil
}

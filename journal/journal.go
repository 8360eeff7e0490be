// Package journal appends a node's own entries: it sequences, signs and
// chains them, derives their view rows and tree hashes, and group-commits
// many concurrent appends into one durable store transaction. It also signs
// a checkpoint of the node's log at least once a second while there are new
// entries.
package journal

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
	"canopy/store"
	"canopy/views"
)

// ErrClosed is returned by Append after Close.
var ErrClosed = errors.New("journal: closed")

// Config configures a Journal.
type Config struct {
	Event string             // event slug
	Key   ed25519.PrivateKey // this node's signing key
	Store store.Store
	Views *views.Set   // nil: views.Default()
	Clock ledger.Clock // nil: ledger.SystemClock{}
	// MaxBatch caps how many appends share one commit (default 2048).
	MaxBatch int
	// CheckpointEvery is how often a checkpoint is signed while there are
	// new entries (default 1s).
	CheckpointEvery time.Duration
	// CheckpointEntries: a checkpoint is also signed as soon as this many
	// entries of the node's own log are not covered by one (default
	// 4096), so a backlog is covered in runs a sync receiver can
	// authenticate by one signature each.
	CheckpointEntries int
	// Shared says other processes write the same store at once (several
	// hubs on one PostgreSQL database). View rows are then committed only
	// if no other writer changed them since they were read
	// (store.Batch.CheckViews); when one did, the store folds the group's
	// entries again into the stored values inside the commit.
	Shared  bool
	Logger  *slog.Logger          // nil: discard
	Metrics prometheus.Registerer // nil: not registered
}

// Journal is a node's append path. It is safe for concurrent use.
type Journal struct {
	cfg  Config
	node ledger.NodeID
	hlc  *ledger.HLCSource
	log  *slog.Logger
	m    *metrics

	reqs     chan *request
	toCommit chan *batch
	closing  chan struct{}
	closed   chan struct{} // the sequencer and committer have stopped
	once     sync.Once

	// Owned by the sequencer goroutine.
	seq  uint64
	prev ledger.Hash
	gen  uint64

	ov overlay // rows and tree hashes built but not yet committed

	mu         sync.Mutex
	stats      Stats
	durable    uint64 // highest seq known durable
	failGen    uint64 // batches of an older generation are failed, not committed
	checkpoint store.Checkpoint
	changed    chan struct{} // closed and replaced on every commit of entries
	cpNow      chan struct{} // asks the checkpoint loop to sign now
	cpWG       sync.WaitGroup
	cpMu       sync.Mutex // one checkpoint signed at a time
}

type request struct {
	ctx       context.Context
	kind, key string
	body      []byte
	// ingest, when set, holds other authors' entries to store instead of
	// a new entry of this node.
	ingest   []store.Stored
	enqueued time.Time
	done     chan result
}

type result struct {
	entry  *ledger.Entry  // an append's new entry
	stored []store.Stored // an ingest's entries stored (the new ones)
	err    error
}

type batch struct {
	gen     uint64
	tag     uint64
	reqs    []*request // in order; results[i] answers reqs[i] once committed
	results []result
	lastOwn uint64 // highest seq of this node's entries in the batch (0: none)
	b       store.Batch
}

// Open loads the node's head from the store and starts the writer.
func Open(ctx context.Context, cfg Config) (*Journal, error) {
	if cfg.Store == nil || len(cfg.Key) != ed25519.PrivateKeySize || cfg.Event == "" {
		return nil, errors.New("journal: config needs an event, a store and an Ed25519 key")
	}
	if cfg.Views == nil {
		cfg.Views = views.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = ledger.SystemClock{}
	}
	if cfg.MaxBatch <= 0 {
		cfg.MaxBatch = 2048
	}
	if cfg.CheckpointEvery <= 0 {
		cfg.CheckpointEvery = time.Second
	}
	if cfg.CheckpointEntries <= 0 {
		cfg.CheckpointEntries = 4096
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	j := &Journal{
		cfg:      cfg,
		node:     ledger.NodeIDOf(cfg.Key.Public().(ed25519.PublicKey)),
		hlc:      ledger.NewHLCSource(cfg.Clock),
		log:      cfg.Logger,
		reqs:     make(chan *request, 4096),
		toCommit: make(chan *batch, maxGroup),
		closing:  make(chan struct{}),
		closed:   make(chan struct{}),
		changed:  make(chan struct{}),
		cpNow:    make(chan struct{}, 1),
		ov:       newOverlay(),
	}
	m, err := newMetrics(cfg.Metrics)
	if err != nil {
		return nil, err
	}
	j.m = m
	if err := j.loadHead(ctx); err != nil {
		return nil, err
	}
	j.durable = j.seq
	cp, err := cfg.Store.LatestCheckpoint(ctx, cfg.Event, j.node)
	switch {
	case err == nil:
		j.checkpoint = cp
	case errors.Is(err, store.ErrNotFound):
	default:
		return nil, fmt.Errorf("journal: load checkpoint: %w", err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); j.sequence() }()
	go func() { defer wg.Done(); j.commit() }()
	go func() { wg.Wait(); close(j.closed) }()
	j.cpWG.Add(1)
	go j.checkpointLoop()
	return j, nil
}

func (j *Journal) loadHead(ctx context.Context) error {
	seq, hash, err := j.cfg.Store.Head(ctx, j.cfg.Event, j.node)
	if err != nil {
		return fmt.Errorf("journal: load head: %w", err)
	}
	j.seq, j.prev = seq, hash
	if seq > 0 {
		es, err := j.cfg.Store.Entries(ctx, j.cfg.Event, j.node, seq, seq, 1)
		if err != nil || len(es) != 1 {
			return fmt.Errorf("journal: load head entry %d: %v", seq, err)
		}
		j.hlc.Observe(es[0].Entry.HLC)
	}
	return nil
}

// Node returns this node's id.
func (j *Journal) Node() ledger.NodeID { return j.node }

// Event returns the event slug.
func (j *Journal) Event() string { return j.cfg.Event }

// Store returns the store the journal writes to.
func (j *Journal) Store() store.Store { return j.cfg.Store }

// Append signs a new entry and returns it once it is durable. Many
// concurrent Appends share one commit. An error wrapping
// store.ErrUnavailable means the disk could not take the write; nothing was
// stored and the caller may retry.
func (j *Journal) Append(ctx context.Context, kind, key string, body []byte) (*ledger.Entry, error) {
	probe := ledger.Entry{Event: j.cfg.Event, Seq: 1, Kind: kind, Key: key, Body: body}
	if err := probe.Validate(); err != nil {
		return nil, err
	}
	r := &request{ctx: ctx, kind: kind, key: key, body: body, enqueued: time.Now(), done: make(chan result, 1)}
	select {
	case <-j.closing:
		return nil, ErrClosed
	default:
	}
	select {
	case j.reqs <- r:
	case <-j.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	select {
	case res := <-r.done:
		j.m.appendLatency.Observe(time.Since(r.enqueued).Seconds())
		return res.entry, res.err
	case <-ctx.Done():
		// The entry may still become durable; the caller was not told so.
		return nil, ctx.Err()
	}
}

// sequence is the sequencer goroutine: it gathers queued appends into a
// batch, signs and chains them, and hands the batch to the committer. While
// one batch commits, the next is being signed.
func (j *Journal) sequence() {
	defer close(j.toCommit)
	var tag uint64
	for {
		var first *request
		select {
		case first = <-j.reqs:
		case <-j.closing:
			j.drainClosed()
			return
		}
		reqs := []*request{first}
	gather:
		for len(reqs) < j.cfg.MaxBatch {
			select {
			case r := <-j.reqs:
				reqs = append(reqs, r)
			default:
				break gather
			}
		}
		if err := j.resetIfFailed(); err != nil {
			failAll(reqs, err)
			continue
		}
		tag++
		b, err := j.buildOrUndo(tag, reqs)
		if err != nil && j.resetIfFailed() == nil {
			// A commit failed while this batch was being built on top of
			// it: build it again on the durable head.
			tag++
			b, err = j.buildOrUndo(tag, reqs)
		}
		if err != nil {
			if !errors.Is(err, store.ErrUnavailable) {
				err = fmt.Errorf("%w: %v", store.ErrUnavailable, err)
			}
			failAll(reqs, err)
			continue
		}
		j.toCommit <- b
	}
}

// resetIfFailed reloads the head from the store, and forgets everything
// built but not committed, once the committer has reported a failed commit.
// Batches built before the failure are failed by the committer.
func (j *Journal) resetIfFailed() error {
	j.mu.Lock()
	failGen := j.failGen
	j.mu.Unlock()
	if failGen == j.gen {
		return nil
	}
	// Every batch of the old generation still queued will be failed by the
	// committer without touching the store, so the durable head is stable.
	j.ov.clear()
	if err := j.loadHead(context.Background()); err != nil {
		j.log.Error("journal: reload head after failed commit", "err", err)
		return fmt.Errorf("%w: reload head: %v", store.ErrUnavailable, err)
	}
	j.gen = failGen
	return nil
}

// buildOrUndo builds a batch; if that fails it restores the head and drops
// what the partial batch put in the overlay (other authors' heads included).
func (j *Journal) buildOrUndo(tag uint64, reqs []*request) (*batch, error) {
	seq, prev := j.seq, j.prev
	b, err := j.build(tag, reqs)
	if err != nil {
		j.seq, j.prev = seq, prev
		j.ov.drop(tag)
	}
	return b, err
}

func (j *Journal) drainClosed() {
	for {
		select {
		case r := <-j.reqs:
			r.done <- result{err: ErrClosed}
		default:
			return
		}
	}
}

func failAll(reqs []*request, err error) {
	for _, r := range reqs {
		r.done <- result{err: err}
	}
}

// build assigns seq, prev and HLC to each append, signs the entries,
// checks that ingested entries continue their authors' logs, and derives the
// tree hashes and view rows of all of them. Requests whose context is done
// are answered at once and left out. It does not mutate reqs.
func (j *Journal) build(tag uint64, reqs []*request) (*batch, error) {
	b := &batch{gen: j.gen, tag: tag}
	b.b.Event = j.cfg.Event
	b.b.CheckViews = j.cfg.Shared
	var stored []store.Stored
	var gone []*request
	for _, r := range reqs {
		if r.ctx.Err() != nil {
			gone = append(gone, r)
			continue
		}
		if r.ingest != nil {
			res, err := j.buildIngest(tag, b, r.ingest, &stored)
			if err != nil {
				return nil, err
			}
			b.reqs = append(b.reqs, r)
			b.results = append(b.results, res)
			continue
		}
		e := &ledger.Entry{
			Event: j.cfg.Event,
			Seq:   j.seq + 1,
			Prev:  j.prev,
			HLC:   j.hlc.Now(),
			Kind:  r.kind,
			Key:   r.key,
			Body:  r.body,
		}
		if err := e.Sign(j.cfg.Key); err != nil {
			return nil, fmt.Errorf("journal: sign: %w", err) // validated in Append: a bad key
		}
		h := e.Hash()
		if err := j.addTreeHashes(tag, b, j.node, e.Seq, h); err != nil {
			return nil, err
		}
		j.seq, j.prev = e.Seq, h
		b.lastOwn = e.Seq
		b.reqs = append(b.reqs, r)
		b.results = append(b.results, result{entry: e})
		stored = append(stored, store.Stored{Entry: e, Hash: h})
	}
	b.b.Entries = stored
	if len(stored) > 0 {
		rows, err := j.cfg.Views.Apply(context.Background(), j.ov.viewReader(j), stored)
		if err != nil {
			return nil, err
		}
		for _, r := range rows {
			j.ov.putView(r.View, r.Key, r.Value, tag)
		}
		b.b.Views = rows
	}
	// Answered only now: a failed build fails every request exactly once.
	for _, r := range gone {
		r.done <- result{err: r.ctx.Err()}
	}
	return b, nil
}

// addTreeHashes adds the stored hashes of an author's entry at seq.
func (j *Journal) addTreeHashes(tag uint64, b *batch, node ledger.NodeID, seq uint64, h ledger.Hash) error {
	hashes, err := tlog.StoredHashesForRecordHash(int64(seq-1), tlog.RecordHash(h[:]), j.ov.treeReader(j, node))
	if err != nil {
		return fmt.Errorf("journal: tree hashes for %s seq %d: %w", node, seq, err)
	}
	base := tlog.StoredHashCount(int64(seq - 1))
	for i, th := range hashes {
		t := store.TreeHash{Node: node, Index: base + int64(i), Hash: ledger.Hash(th)}
		b.b.TreeHashes = append(b.b.TreeHashes, t)
		j.ov.putTree(node, t.Index, t.Hash, tag)
	}
	return nil
}

// buildIngest adds other authors' entries that continue their logs. An
// entry already held (seq at or below the author's head, stored or built)
// is skipped; one that differs from the held entry at its seq, leaves a gap
// or does not chain to the head stops the request with an error wrapping
// store.ErrConflict, keeping the entries before it.
func (j *Journal) buildIngest(tag uint64, b *batch, in []store.Stored, stored *[]store.Stored) (result, error) {
	var res result
	for _, s := range in {
		e := s.Entry
		if e.Node == j.node || e.Event != j.cfg.Event {
			continue // this node's own entries are never taken from others
		}
		seq, head, err := j.ov.head(j, e.Node)
		if err != nil {
			return res, fmt.Errorf("journal: head of %s: %w", e.Node, err)
		}
		if e.Seq <= seq {
			// Held (or being stored): it must be the same entry.
			same, err := j.holds(e.Node, e.Seq, seq, head, s.Hash)
			if err != nil {
				return res, err
			}
			if !same {
				res.err = fmt.Errorf("%w: %s seq %d differs from the entry held at that seq (a fork)", store.ErrConflict, e.Node, e.Seq)
				return res, nil
			}
			continue
		}
		if e.Seq != seq+1 {
			res.err = fmt.Errorf("%w: %s seq %d does not follow the held head %d", store.ErrConflict, e.Node, e.Seq, seq)
			return res, nil
		}
		if e.Prev != head {
			res.err = fmt.Errorf("%w: %s seq %d does not chain to the held entry %d (a fork)", store.ErrConflict, e.Node, e.Seq, seq)
			return res, nil
		}
		if err := j.addTreeHashes(tag, b, e.Node, e.Seq, s.Hash); err != nil {
			return res, err
		}
		j.ov.putHead(e.Node, e.Seq, s.Hash, tag)
		j.hlc.Observe(e.HLC)
		*stored = append(*stored, s)
		res.stored = append(res.stored, s)
	}
	return res, nil
}

// holds reports whether the entry of node at seq, at or below the author's
// head (headSeq, headHash), has hash h: the head's hash, or the leaf of
// the author's Merkle tree at seq (built or stored).
func (j *Journal) holds(node ledger.NodeID, seq, headSeq uint64, headHash, h ledger.Hash) (bool, error) {
	if seq == headSeq {
		return h == headHash, nil
	}
	leaf, err := j.ov.treeReader(j, node).ReadHashes([]int64{tlog.StoredHashIndex(0, int64(seq-1))})
	if err != nil {
		return false, fmt.Errorf("journal: leaf %d of %s: %w", seq, node, err)
	}
	return leaf[0] == tlog.RecordHash(h[:]), nil
}

// commit is the committer goroutine. It takes every batch the sequencer has
// signed so far and makes them durable in one store transaction, so the
// sequencer keeps signing while the disk syncs and the number of fsyncs
// adapts to the load.
func (j *Journal) commit() {
	for b := range j.toCommit {
		group := []*batch{b}
	drain:
		for len(group) < maxGroup {
			select {
			case nb, ok := <-j.toCommit:
				if !ok {
					break drain
				}
				group = append(group, nb)
			default:
				break drain
			}
		}
		j.commitGroup(group)
	}
}

// maxGroup caps how many signed batches one transaction carries.
const maxGroup = 64

func (j *Journal) commitGroup(group []*batch) {
	j.mu.Lock()
	failGen := j.failGen
	j.mu.Unlock()
	live := group[:0:0]
	var empty []*batch // nothing new to store: answered once those before them are durable
	for _, b := range group {
		switch {
		case b.gen < failGen:
			// Built on top of a commit that failed: its seqs are wrong.
			j.ov.drop(b.tag)
			failAll(b.reqs, fmt.Errorf("%w: an earlier commit failed", store.ErrUnavailable))
		case len(b.b.Entries) == 0:
			empty = append(empty, b)
		default:
			live = append(live, b)
		}
	}
	defer func() {
		for _, b := range empty {
			for i, r := range b.reqs {
				r.done <- b.results[i]
			}
		}
	}()
	if len(live) == 0 {
		return
	}
	merged := &live[0].b
	if len(live) > 1 {
		merged = &store.Batch{Event: j.cfg.Event, CheckViews: j.cfg.Shared}
		for _, b := range live {
			merged.Entries = append(merged.Entries, b.b.Entries...)
			merged.TreeHashes = append(merged.TreeHashes, b.b.TreeHashes...)
			merged.Views = append(merged.Views, b.b.Views...)
		}
	}
	start := time.Now()
	if j.cfg.Shared {
		merged.Refold = j.refold(merged.Entries)
	}
	err := j.cfg.Store.Commit(context.Background(), merged)
	j.m.commitLatency.Observe(time.Since(start).Seconds())
	for _, b := range live {
		j.ov.drop(b.tag)
	}
	if err != nil {
		j.m.commitErrors.Inc()
		j.log.Error("journal: commit failed", "entries", len(merged.Entries), "err", err)
		j.mu.Lock()
		j.failGen = live[len(live)-1].gen + 1
		j.mu.Unlock()
		if !errors.Is(err, store.ErrUnavailable) {
			err = fmt.Errorf("%w: %w", store.ErrUnavailable, err)
		}
		for _, b := range append(live, empty...) {
			failAll(b.reqs, err)
		}
		empty = nil
		return
	}
	n := len(merged.Entries)
	j.m.batchSize.Observe(float64(n))
	j.m.appends.Add(float64(n))
	j.mu.Lock()
	for _, b := range live {
		j.durable = max(j.durable, b.lastOwn)
	}
	j.stats.Commits++
	j.stats.Entries += uint64(n)
	close(j.changed)
	j.changed = make(chan struct{})
	due := j.durable-j.checkpoint.Size >= uint64(j.cfg.CheckpointEntries)
	j.mu.Unlock()
	if due {
		select {
		case j.cpNow <- struct{}{}:
		default:
		}
	}
	for _, b := range live {
		for i, r := range b.reqs {
			r.done <- b.results[i]
		}
	}
}

// refold returns the store.Batch.Refold of a group holding entries: when
// another process changed view rows the group folded, the store folds the
// group's entries again into the values stored now, inside the commit.
// Batches built on the group's own rows (in the overlay) fail their check
// in turn and are folded again the same way.
func (j *Journal) refold(entries []store.Stored) func(context.Context, store.ReadViewsFunc) ([]store.ViewRow, error) {
	return func(ctx context.Context, read store.ReadViewsFunc) ([]store.ViewRow, error) {
		j.m.viewRefolds.Inc()
		rows, err := j.cfg.Views.Apply(ctx, read, entries)
		if err != nil {
			return nil, fmt.Errorf("journal: fold views again: %w", err)
		}
		return rows, nil
	}
}

// Stats counts the journal's successful group commits.
type Stats struct {
	Commits uint64 // store transactions that committed entries
	Entries uint64 // entries they held
}

// Stats returns the commit counters since Open.
func (j *Journal) Stats() Stats {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.stats
}

// Changed returns a channel closed at the next commit of entries (this
// node's or ingested ones): a sync stream waits on it to send what is new.
func (j *Journal) Changed() <-chan struct{} {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.changed
}

// Durable returns the highest seq of this node's log known to be durable.
func (j *Journal) Durable() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.durable
}

// Close stops accepting appends, fails queued ones with ErrClosed, waits for
// the batch being committed, signs a final checkpoint and returns.
func (j *Journal) Close(ctx context.Context) error {
	j.once.Do(func() { close(j.closing) })
	select {
	case <-j.closed:
	case <-ctx.Done():
		return ctx.Err()
	}
	j.cpWG.Wait()
	if _, err := j.SignCheckpoint(ctx); err != nil && !errors.Is(err, store.ErrClosed) {
		return err
	}
	return nil
}

// Ingest stores entries of other authors — already authenticated by the
// caller (signature, chain, enrolment) — through the same group-commit
// pipeline as this node's appends, with their tree hashes and view rows in
// the same transaction, and returns once they are durable. Entries of one
// author must come in seq order; entries already held, and this node's own,
// are skipped. An entry that differs from the one held at its seq, leaves a
// gap or does not chain to the held head (a fork) stops the ingest with an
// error wrapping store.ErrConflict; the entries before it are stored and
// counted. An ingest with nothing new to store is answered only once the
// entries queued before it are durable. The HLC observes every entry
// stored, so this node's next entry sorts after them.
func (j *Journal) Ingest(ctx context.Context, entries []store.Stored) (int, error) {
	p, err := j.StartIngest(ctx, entries)
	if err != nil {
		return 0, err
	}
	stored, err := p.Wait(ctx)
	return len(stored), err
}

// PendingIngest is an ingest queued by StartIngest.
type PendingIngest struct {
	r *request
}

// StartIngest queues an Ingest and returns without waiting for it, so a
// caller can queue the next entries while these are committed (several
// ingests may share one transaction). Ingests queued by one goroutine are
// applied in the order queued; one refused part way does not stop the
// ingests queued after it, which are checked against the entries stored
// before them as usual.
func (j *Journal) StartIngest(ctx context.Context, entries []store.Stored) (*PendingIngest, error) {
	for _, s := range entries {
		if s.Entry == nil {
			return nil, fmt.Errorf("%w: nil entry", store.ErrInvalid)
		}
	}
	r := &request{ctx: ctx, ingest: entries, enqueued: time.Now(), done: make(chan result, 1)}
	if len(entries) == 0 {
		r.done <- result{}
		return &PendingIngest{r}, nil
	}
	select {
	case <-j.closing:
		return nil, ErrClosed
	default:
	}
	select {
	case j.reqs <- r:
	case <-j.closing:
		return nil, ErrClosed
	case <-ctx.Done():
		return nil, ctx.Err()
	}
	return &PendingIngest{r}, nil
}

// Wait returns, once they are durable, the entries the ingest stored (those
// not held before, in the order given) and why it stopped early, if it did.
func (p *PendingIngest) Wait(ctx context.Context) ([]store.Stored, error) {
	select {
	case res := <-p.r.done:
		return res.stored, res.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

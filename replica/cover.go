package replica

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"slices"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
	"canopy/store"
)

// Checkpoint-covered runs. A sender that holds a signed checkpoint of an
// author's log sends it just before the author's entries up to its size: a
// cover. The receiver hashes every received entry into the Merkle tree of
// its author's log, on top of the tree hashes it holds, and once the entry
// at the cover's size arrives compares the tree's root with the
// checkpoint's, whose one signature then authenticates every entry of the
// run (the root commits to each entry hash, and each hash to the entry's
// bytes, its signature included). Entries outside any cover — a live
// stream's newest ones, written after the author's latest checkpoint — are
// verified one by one. A cover that does not match is refused like a bad
// signature.

// Bounds of covers: a receiver buffers at most maxCoverEntries entries or
// maxCoverBytes bytes of one author while waiting for the end of a cover
// (beyond, they are verified one by one); a sender covers runs of up to
// coverSpan entries where it holds checkpoints that close enough (so the
// receiver can store one run while it reads the next), up to
// maxCoverEntries where it does not, and sends runs shorter than minCover
// uncovered.
const (
	maxCoverEntries = 1 << 16
	maxCoverBytes   = 64 << 20
	coverSpan       = 8192
	minCover        = 64
)

// frontier is the right edge of an author's Merkle tree of size leaves: the
// roots of its complete subtrees, largest first (one per set bit of size).
type frontier struct {
	size  uint64
	roots []tlog.Hash
}

// loadFrontier reads the frontier of the tree of size leaves from stored
// tree hashes.
func loadFrontier(size uint64, read func(idx []int64) ([]ledger.Hash, error)) (*frontier, error) {
	f := &frontier{size: size}
	if size == 0 {
		return f, nil
	}
	var idx []int64
	var off uint64
	for level := bits.Len64(size) - 1; level >= 0; level-- {
		if size&(1<<level) == 0 {
			continue
		}
		idx = append(idx, tlog.StoredHashIndex(level, int64(off>>level)))
		off += 1 << level
	}
	hs, err := read(idx)
	if err != nil {
		return nil, err
	}
	if len(hs) != len(idx) {
		return nil, fmt.Errorf("replica: %d tree hashes read, want %d", len(hs), len(idx))
	}
	for _, h := range hs {
		f.roots = append(f.roots, tlog.Hash(h))
	}
	return f, nil
}

// push appends the leaf of an entry hash.
func (f *frontier) push(entryHash ledger.Hash) {
	h := tlog.RecordHash(entryHash[:])
	for k := f.size; k&1 == 1; k >>= 1 {
		h = tlog.NodeHash(f.roots[len(f.roots)-1], h)
		f.roots = f.roots[:len(f.roots)-1]
	}
	f.roots = append(f.roots, h)
	f.size++
}

// root returns the tree's root hash.
func (f *frontier) root() ledger.Hash {
	if f.size == 0 {
		return ledger.EmptyRoot
	}
	r := f.roots[len(f.roots)-1]
	for i := len(f.roots) - 2; i >= 0; i-- {
		r = tlog.NodeHash(f.roots[i], r)
	}
	return ledger.Hash(r)
}

// item is a received entry on its way to the store.
type item struct {
	e    *ledger.Entry
	hash ledger.Hash
	size int // encoded bytes
	// leaf: its hash went into the author's frontier (it extended the log
	// as this stream knew it).
	leaf bool
	// checked: authenticated already, by a cover or one by one.
	checked bool
}

// cover is a checkpoint received ahead of the entries it covers, and the
// entries received for it so far.
type cover struct {
	f     cpFrame
	size  uint64
	items []item
	bytes int
}

// covers is a receiving stream's state of its authors' trees and covers.
type covers struct {
	n      *Node
	fronts map[ledger.NodeID]*frontier
	active map[ledger.NodeID]*cover
}

func newCovers(n *Node) *covers {
	return &covers{n: n, fronts: map[ledger.NodeID]*frontier{}, active: map[ledger.NodeID]*cover{}}
}

// load reads an author's frontier at its stored head.
func (c *covers) load(ctx context.Context, node ledger.NodeID) (*frontier, error) {
	head, _, err := c.n.Store.Head(ctx, c.n.Event.Slug, node)
	if err != nil {
		return nil, err
	}
	f, err := loadFrontier(head, func(idx []int64) ([]ledger.Hash, error) {
		return c.n.Store.ReadTreeHashes(ctx, c.n.Event.Slug, node, idx)
	})
	if err != nil {
		return nil, fmt.Errorf("replica: tree of %s at %d: %w", node, head, err)
	}
	c.fronts[node] = f
	return f, nil
}

// leaf hashes a received entry into its author's tree if it extends it,
// (re)reading the tree from the store at the first entry of an author and
// after a gap.
func (c *covers) leaf(ctx context.Context, it *item) error {
	node, seq := it.e.Node, it.e.Seq
	f := c.fronts[node]
	if f != nil && seq <= f.size {
		return nil // held, or received before on this stream
	}
	if f == nil || seq != f.size+1 {
		var err error
		if f, err = c.load(ctx, node); err != nil {
			return err
		}
		if seq <= f.size {
			return nil
		}
		if seq != f.size+1 {
			delete(c.fronts, node) // a gap: the journal refuses it
			return nil
		}
	}
	f.push(it.hash)
	it.leaf = true
	return nil
}

// checkpointSize reads the tree size of a checkpoint note without verifying
// it (the signature is checked once the entries it covers are here).
func checkpointSize(note []byte) (uint64, bool) {
	i := bytes.Index(note, []byte("\n\n"))
	if i < 0 {
		return 0, false
	}
	cp, err := ledger.ParseCheckpointBody(string(note[:i+1]))
	if err != nil {
		return 0, false
	}
	return cp.Size, true
}

// checkpoint takes a received checkpoint frame. A checkpoint beyond the
// author's tree as this stream knows it opens a cover (ending, unchecked,
// any cover of the author still open) and returns true; any other is for
// acceptCheckpoint once the entries it covers are stored.
func (c *covers) checkpoint(ctx context.Context, f cpFrame, ended func(*cover)) (bool, error) {
	size, ok := checkpointSize(f.note)
	if !ok {
		return false, nil
	}
	fr := c.fronts[f.node]
	if fr == nil {
		var err error
		if fr, err = c.load(ctx, f.node); err != nil {
			return false, err
		}
	}
	if size <= fr.size {
		return false, nil
	}
	if old := c.active[f.node]; old != nil {
		delete(c.active, f.node)
		ended(old)
	}
	c.active[f.node] = &cover{f: f, size: size}
	return true, nil
}

// add files an entry under its author's open cover, if it falls inside it:
// it returns the cover once complete (the entry at its size arrived), and
// calls ended for a cover that cannot complete (an entry beyond it, or too
// much to buffer).
func (c *covers) add(it item, ended func(*cover)) (*cover, bool) {
	cv := c.active[it.e.Node]
	if cv == nil {
		return nil, false
	}
	if it.e.Seq > cv.size {
		delete(c.active, it.e.Node)
		ended(cv)
		return nil, false
	}
	cv.items = append(cv.items, it)
	cv.bytes += it.size
	switch {
	case it.e.Seq == cv.size:
		delete(c.active, it.e.Node)
		return cv, true
	case len(cv.items) > maxCoverEntries || cv.bytes > maxCoverBytes:
		delete(c.active, it.e.Node)
		ended(cv)
	}
	return nil, true
}

// endAll ends every open cover, in a stable order.
func (c *covers) endAll(ended func(*cover)) {
	nodes := make([]ledger.NodeID, 0, len(c.active))
	for node := range c.active {
		nodes = append(nodes, node)
	}
	slices.SortFunc(nodes, func(a, b ledger.NodeID) int { return bytes.Compare(a[:], b[:]) })
	for _, node := range nodes {
		cv := c.active[node]
		delete(c.active, node)
		ended(cv)
	}
}

// errCover is wrapped by the refusal of a run whose cover does not match.
var errCover = errors.New("checkpoint does not cover the entries sent with it")

// verify authenticates a complete cover: the author's tree, with the
// cover's entries, must have the checkpoint's size and root, and the
// checkpoint must bear the author's signature (its key from its enrolment,
// which may be the cover's first entry). On success every entry that went
// into the tree is marked checked. If the cover cannot be used (the tree is
// not known at the run's start, the author is not enrolled) nothing is
// marked and the entries are verified one by one later. If it does not
// match, the entries are verified one by one now: it returns those before
// the first bad one and that one's error, or, all being authentic, none
// and an error wrapping ledger.ErrBadSignature.
func (c *covers) verify(ctx context.Context, cv *cover) ([]item, error) {
	node := cv.f.node
	fr := c.fronts[node]
	if fr == nil || fr.size != cv.size {
		return cv.items, nil
	}
	first := cv.items[0].e
	a := c.n.authors
	var err error
	var pub []byte
	if first.Seq == 1 {
		pub, err = a.learn(first)
	} else {
		pub, err = a.key(ctx, node)
	}
	if err != nil {
		return cv.items, nil
	}
	cp, cerr := ledger.OpenCheckpoint(cv.f.note, c.n.Event.Slug, pub)
	if cerr == nil && (cp.Size != cv.size || cp.Root != fr.root()) {
		cerr = fmt.Errorf("its root %s is not the root of the author's log with them (%s)", cp.Root, fr.root())
	}
	m := c.n.metrics()
	if cerr == nil {
		k := 0
		for i := range cv.items {
			if cv.items[i].leaf {
				cv.items[i].checked = true
				k++
			}
		}
		m.authentic.WithLabelValues(byCheckpoint).Add(float64(k))
		return cv.items, nil
	}
	bad := verifyEach(len(cv.items), func(i int) error { return cv.items[i].e.Verify(pub) })
	for i, err := range bad {
		if err != nil {
			for k := range cv.items[:i] {
				cv.items[k].checked = true
			}
			m.authentic.WithLabelValues(bySignature).Add(float64(i))
			return cv.items[:i], err
		}
	}
	return nil, fmt.Errorf("%w: %s seq %d..%d: %w: %v", ledger.ErrBadSignature, node, first.Seq, cv.size, errCover, cerr)
}

// coverFor picks the checkpoint to send the entries of node after from
// under, up to top: the largest stored one within coverSpan (with budget >
// 0, a push's remaining room, within the budget), else the smallest within
// maxCoverEntries. It returns false when the run is too short to cover or
// no stored checkpoint fits.
func (t *cpTracker) coverFor(ctx context.Context, node ledger.NodeID, from, top uint64, budget int) (store.Checkpoint, bool, error) {
	if top-from < minCover {
		return store.Checkpoint{}, false, nil
	}
	known := t.known[node]
	if len(known) == 0 || known[len(known)-1].Size < top {
		latest, err := t.n.Store.LatestCheckpoint(ctx, t.n.Event.Slug, node)
		if errors.Is(err, store.ErrNotFound) {
			return store.Checkpoint{}, false, nil
		}
		if err != nil {
			return store.Checkpoint{}, false, err
		}
		if len(known) == 0 || latest.Size > known[len(known)-1].Size {
			if known, err = t.n.Store.Checkpoints(ctx, t.n.Event.Slug, node); err != nil {
				return store.Checkpoint{}, false, err
			}
			t.known[node] = known
		}
	}
	limit := min(top, from+maxCoverEntries)
	var best, smallest *store.Checkpoint
	for i := range known {
		cp := &known[i]
		if cp.Size <= from || cp.Size > limit {
			continue
		}
		if smallest == nil {
			smallest = cp
		}
		span := uint64(coverSpan)
		if budget > 0 {
			span = min(span, uint64(budget))
		}
		if cp.Size <= from+span {
			best = cp
		}
	}
	switch {
	case best != nil:
		return *best, true, nil
	case smallest != nil:
		return *smallest, true, nil
	}
	return store.Checkpoint{}, false, nil
}

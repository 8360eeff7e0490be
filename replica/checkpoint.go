package replica

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"net/http"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/api"
	"canopy/ledger"
	"canopy/store"
	"canopy/witness"
)

// Witness checks the honesty of the authors a sync endpoint hears from;
// a hub's witness (package witness) is one. Edges run without.
type Witness interface {
	// Cosign checks an author's checkpoint note, signed by pub, and
	// returns it with the witness's cosignature.
	Cosign(ctx context.Context, pub ed25519.PublicKey, note []byte) ([]byte, error)
	// Quarantine writes down that an author showed two histories.
	Quarantine(ctx context.Context, c witness.Conflict) error
}

// cpFrame is a received checkpoint frame.
type cpFrame struct {
	node ledger.NodeID
	note []byte
}

func parseCheckpointFrame(p []byte) (cpFrame, error) {
	if len(p) <= len(ledger.NodeID{}) {
		return cpFrame{}, fmt.Errorf("%w: checkpoint frame of %d bytes", ErrMalformed, len(p))
	}
	var f cpFrame
	copy(f.node[:], p)
	f.note = p[len(f.node):]
	return f, nil
}

func (w *writer) checkpoint(node ledger.NodeID, note []byte) error {
	return w.frame(frameCheckpoint, node[:], note)
}

// cpChanged returns a channel closed when this endpoint next stores a
// received checkpoint (a cosigned one to pass on, say).
func (n *Node) cpChanged() <-chan struct{} {
	n.cpMu.Lock()
	defer n.cpMu.Unlock()
	if n.cpCh == nil {
		n.cpCh = make(chan struct{})
	}
	return n.cpCh
}

func (n *Node) notifyCheckpoint() {
	n.cpMu.Lock()
	if n.cpCh != nil {
		close(n.cpCh)
		n.cpCh = nil
	}
	n.cpMu.Unlock()
}

// sendCheckpoints writes, for each of nodes, its latest stored checkpoint
// if the receiver holds (or is being sent) the entries it covers and it was
// not sent on this stream yet; sentCP remembers what was. It returns how
// many it wrote.
func (n *Node) sendCheckpoints(ctx context.Context, sw *writer, sent Vector, nodes []ledger.NodeID, sentCP map[ledger.NodeID]string) (int, error) {
	count := 0
	for _, node := range nodes {
		if sent[node] == 0 {
			continue
		}
		cp, err := n.Store.LatestCheckpoint(ctx, n.Event.Slug, node)
		if errors.Is(err, store.ErrNotFound) {
			continue
		}
		if err != nil {
			return count, err
		}
		if cp.Size > sent[node] || sentCP[node] == string(cp.Note) {
			continue
		}
		if err := sw.checkpoint(node, cp.Note); err != nil {
			return count, err
		}
		sentCP[node] = string(cp.Note)
		count++
	}
	return count, nil
}

// heldNodes lists the authors held.
func (n *Node) heldNodes(ctx context.Context) ([]ledger.NodeID, error) {
	v, err := n.Store.Vector(ctx, n.Event.Slug)
	if err != nil {
		return nil, err
	}
	out := make([]ledger.NodeID, 0, len(v))
	for node := range v {
		out = append(out, node)
	}
	return out, nil
}

func (n *Node) treeReader(ctx context.Context, node ledger.NodeID) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		hs, err := n.Store.ReadTreeHashes(ctx, n.Event.Slug, node, idx)
		out := make([]tlog.Hash, len(hs))
		for i, h := range hs {
			out[i] = tlog.Hash(h)
		}
		return out, err
	})
}

// acceptCheckpoint verifies a received checkpoint of an author whose
// entries it covers are held, has the witness (if any) cosign it, merges
// its verified signatures with those of the stored note of the same size
// and stores the result. A checkpoint of an unknown, revoked or quarantined
// author, or covering entries not held, is ignored; one whose root is not
// the root of the held entries is not stored and is reported to the
// witness. It returns an error for a note that does not verify.
func (n *Node) acceptCheckpoint(ctx context.Context, f cpFrame) error {
	slug := n.Event.Slug
	if err := n.authors.blocked(ctx, f.node); err != nil {
		return nil
	}
	pub, err := n.authors.key(ctx, f.node)
	if errors.Is(err, ErrUnknownAuthor) {
		return nil
	}
	if err != nil {
		return err
	}
	cp, err := ledger.OpenCheckpoint(f.note, slug, pub)
	if err != nil {
		return fmt.Errorf("replica: checkpoint of %s: %w", f.node, err)
	}
	head, _, err := n.Store.Head(ctx, slug, f.node)
	if err != nil {
		return err
	}
	if cp.Size == 0 || cp.Size > head {
		return nil
	}
	root, err := ledger.TreeRoot(int64(cp.Size), n.treeReader(ctx, f.node))
	if err != nil {
		return err
	}
	if root != cp.Root {
		n.Logger.Warn("sync: checkpoint contradicts the held log", "author", f.node.String(), "size", cp.Size)
		if n.Witness != nil {
			if err := n.Witness.Quarantine(ctx, witness.Conflict{Node: f.node, Checkpoint: f.note}); err != nil {
				n.Logger.Error("sync: quarantine", "author", f.node.String(), "err", err)
			}
		}
		return nil
	}
	msg := f.note
	if n.Witness != nil {
		cosigned, err := n.Witness.Cosign(ctx, pub, msg)
		if err != nil {
			n.Logger.Warn("sync: witness refused a checkpoint", "author", f.node.String(), "size", cp.Size, "err", err)
		} else {
			msg = cosigned
		}
	}
	var stored []byte
	latest, err := n.Store.LatestCheckpoint(ctx, slug, f.node)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return err
	case latest.Size == cp.Size:
		stored = latest.Note
	case latest.Size > cp.Size:
		all, err := n.Store.Checkpoints(ctx, slug, f.node)
		if err != nil {
			return err
		}
		for _, c := range all {
			if c.Size == cp.Size {
				stored = c.Note
			}
		}
	}
	vs, err := witness.Verifiers(slug, pub, func(node ledger.NodeID) (ed25519.PublicKey, bool) {
		return n.authors.hubKey(ctx, node)
	})
	if err != nil {
		return err
	}
	merged := msg
	if stored != nil {
		if merged, err = witness.Merge(vs, stored, msg); err != nil {
			return fmt.Errorf("replica: checkpoint of %s: %w", f.node, err)
		}
		if string(merged) == string(stored) {
			return nil
		}
	} else if merged, err = witness.Merge(vs, msg); err != nil {
		return fmt.Errorf("replica: checkpoint of %s: %w", f.node, err)
	}
	err = n.Store.Commit(ctx, &store.Batch{Event: slug, Checkpoints: []store.Checkpoint{
		{Node: f.node, Size: cp.Size, Root: cp.Root, Note: merged},
	}})
	if err != nil {
		return fmt.Errorf("replica: store checkpoint of %s: %w", f.node, err)
	}
	n.notifyCheckpoint()
	return nil
}

// reportFork tells the witness, if any, of a fork.
func (n *Node) reportFork(ctx context.Context, fe *ForkError) {
	n.Logger.Warn("sync: an author showed two histories", "author", fe.Got.Node.String(), "seq", fe.Got.Seq)
	if n.Witness == nil {
		return
	}
	if err := n.Witness.Quarantine(ctx, witness.Conflict{Node: fe.Got.Node, A: fe.Held, B: fe.Got}); err != nil {
		n.Logger.Error("sync: quarantine", "author", fe.Got.Node.String(), "err", err)
	}
}

// findFork looks, after the journal refused entries with a conflict, for
// an entry that differs from the one held at its seq, or that does not
// chain to the held entry before it.
func (n *Node) findFork(ctx context.Context, es []store.Stored) *ForkError {
	slug := n.Event.Slug
	for _, s := range es {
		e := s.Entry
		head, hash, err := n.Store.Head(ctx, slug, e.Node)
		if err != nil {
			continue
		}
		at := e.Seq
		switch {
		case e.Seq <= head:
		case e.Seq >= 2 && head == e.Seq-1 && hash != e.Prev:
			at = head
		default:
			continue
		}
		held, err := n.Store.Entries(ctx, slug, e.Node, at, at, 1)
		if err != nil || len(held) != 1 || (at == e.Seq && held[0].Hash == s.Hash) {
			continue
		}
		return &ForkError{Held: held[0].Entry, Got: e}
	}
	return nil
}

// cpTracker decides, round by round, whose checkpoints a stream (a follow
// stream or a push loop) sends, and remembers what it sent.
type cpTracker struct {
	n    *Node
	sent map[ledger.NodeID]string
	// known caches authors' stored checkpoints, to pick covers from.
	known map[ledger.NodeID][]store.Checkpoint
	poll  *time.Ticker
	all   bool // every held author: the first round, after a heartbeat or a stored checkpoint
	own   bool // this node's own log: after a poll
}

func newCPTracker(n *Node) *cpTracker {
	return &cpTracker{n: n, sent: map[ledger.NodeID]string{}, known: map[ledger.NodeID][]store.Checkpoint{}, poll: time.NewTicker(n.CheckpointPoll), all: true}
}

func (t *cpTracker) stop() { t.poll.Stop() }

// send writes the checkpoints due this round: every held author's, this
// node's, or those of the authors whose entries the round sent (whose
// sent seq moved from before). It returns how many it wrote.
func (t *cpTracker) send(ctx context.Context, sw *writer, before, sent Vector) (int, error) {
	var nodes []ledger.NodeID
	switch {
	case t.all:
		var err error
		if nodes, err = t.n.heldNodes(ctx); err != nil {
			return 0, err
		}
	default:
		for node, seq := range sent {
			if before[node] != seq {
				nodes = append(nodes, node)
			}
		}
		if t.own {
			nodes = append(nodes, t.n.Journal.Node())
		}
	}
	t.all, t.own = false, false
	return t.n.sendCheckpoints(ctx, sw, sent, nodes, t.sent)
}

// wait blocks until something may be worth sending: a commit, a stored
// checkpoint, a heartbeat or a poll. It returns false once ctx ends or
// stopping closes.
func (t *cpTracker) wait(ctx context.Context, stopping <-chan struct{}, changed, cpChanged <-chan struct{}, heartbeat time.Duration) bool {
	select {
	case <-ctx.Done():
		return false
	case <-stopping:
		return false
	case <-changed:
	case <-cpChanged:
		t.all = true
	case <-time.After(heartbeat):
		t.all = true
	case <-t.poll.C:
		t.own = true
	}
	return true
}

// polled reports whether the round was woken by a poll alone.
func (t *cpTracker) polled() bool { return t.own && !t.all }

// afterIngest runs in a stream's ingest goroutine once a job's entries are
// stored (or refused with err): it turns a conflict the journal found into
// a fork reported to the witness, and takes the job's checkpoints.
func (n *Node) afterIngest(ctx context.Context, stored []store.Stored, cps []cpFrame, err error) error {
	if err != nil {
		var fe *ForkError
		if errors.Is(err, store.ErrConflict) && !errors.As(err, &fe) {
			if fe = n.findFork(ctx, stored); fe != nil {
				n.reportFork(ctx, fe)
				return fe
			}
		}
		return err
	}
	for _, f := range cps {
		if err := n.acceptCheckpoint(ctx, f); err != nil {
			return err
		}
	}
	return nil
}

// refusePush answers a push from a quarantined node without reading it.
func (n *Node) refusePush(w http.ResponseWriter, r *http.Request, peer ledger.NodeID, why error) error {
	n.Logger.Warn("sync: refused a push", "peer", peer.String(), "err", why)
	v, err := n.Store.Vector(r.Context(), n.Event.Slug)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, PushResponse{
		Vector: v, Refused: fmt.Sprintf("replica: pushes from node %s are refused: %v", peer, why),
	})
}

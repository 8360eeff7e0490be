// Package witness keeps every node to one history: a hub's witness checks
// each checkpoint a node signs against the node's entries it holds and
// cosigns it (C2SP tlog-cosignature), and writes a signed node.quarantined
// fact, carrying both conflicting pieces as evidence, about a node caught
// showing two histories.
package witness

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
	"canopy/reconcile"
	"canopy/store"
)

// Errors of Witness.Cosign.
var (
	// ErrNotHeld: the checkpoint covers entries the witness does not hold
	// yet, so it cannot be checked (it is not an offence).
	ErrNotHeld = errors.New("witness: checkpoint covers entries not held yet")
	// ErrInconsistent: the checkpoint contradicts the author's entries the
	// witness holds; the author is quarantined.
	ErrInconsistent = errors.New("witness: checkpoint inconsistent with the held log")
)

// Quarantine is the body of the node.quarantined entry a witness writes
// (reconcile.KindNodeQuarantined): reconcile's body — the node, the reason
// and references to the two conflicting entries — plus the evidence itself,
// so anyone can check it without fetching anything.
type Quarantine struct {
	reconcile.Quarantine
	// Entries are the two entries of Evidence, encoded (ledger/FORMAT.md;
	// base64 in JSON), both signed by the node.
	Entries [][]byte `json:"entries"`
	// Checkpoint, for a checkpoint conflict, is the node's signed
	// checkpoint note whose root is not the root of its held entries
	// 1..size (Entries are then its entries 1 and size, which with the log
	// between them determine the root).
	Checkpoint string `json:"checkpoint,omitempty"`
}

// Reasons of a quarantine.
const (
	ReasonFork       = "fork: two different entries signed for one place in the log"
	ReasonCheckpoint = "checkpoint: a signed checkpoint whose root is not the root of the node's entries"
)

// Conflict is what a node was caught at: two different entries it signed
// for one place of its log (A is the one held), or a checkpoint note
// (signature verified) that does not match its held entries.
type Conflict struct {
	Node       ledger.NodeID
	A, B       *ledger.Entry
	Checkpoint []byte
}

// Appender writes this node's entries (journal.Journal is one).
type Appender interface {
	Node() ledger.NodeID
	Append(ctx context.Context, kind, key string, body []byte) (*ledger.Entry, error)
}

// Config is what a witness needs.
type Config struct {
	Event    string
	Key      ed25519.PrivateKey // the hub node's key, which cosigns
	Store    store.Store
	Appender Appender // writes quarantine facts into the hub node's log
	Logger   *slog.Logger
}

// Witness checks and cosigns the checkpoints of one event's nodes.
// It is safe for concurrent use.
type Witness struct {
	cfg  Config
	node ledger.NodeID
	v    note.Verifier

	mu sync.Mutex // serializes quarantines
}

// New returns the witness of cfg.Event signing with cfg.Key.
func New(cfg Config) (*Witness, error) {
	if cfg.Store == nil || cfg.Appender == nil || cfg.Event == "" {
		return nil, errors.New("witness: needs an event, a store and an appender")
	}
	if len(cfg.Key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("witness: signing key has %d bytes, want %d", len(cfg.Key), ed25519.PrivateKeySize)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	pub := cfg.Key.Public().(ed25519.PublicKey)
	v, err := NewVerifier(cfg.Event, pub)
	if err != nil {
		return nil, err
	}
	return &Witness{cfg: cfg, node: ledger.NodeIDOf(pub), v: v}, nil
}

// Name is the witness's key name.
func (w *Witness) Name() string { return w.v.Name() }

// VerifierKey is the witness's verifier key, for receipt verifiers.
func (w *Witness) VerifierKey() string {
	return VerifierKey(w.cfg.Event, w.cfg.Key.Public().(ed25519.PublicKey))
}

func (w *Witness) reader(ctx context.Context, node ledger.NodeID) tlog.HashReader {
	return tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		hs, err := w.cfg.Store.ReadTreeHashes(ctx, w.cfg.Event, node, idx)
		out := make([]tlog.Hash, len(hs))
		for i, h := range hs {
			out[i] = tlog.Hash(h)
		}
		return out, err
	})
}

// Cosign checks an author's checkpoint note (signed by pub) and returns it
// with the witness's cosignature added (or unchanged if it already carries
// one). The checkpoint must cover only entries the witness holds
// (ErrNotHeld), its root must be the root of those entries and consistent
// with the author's latest stored checkpoint (ledger.ProveConsistency and
// VerifyConsistency); otherwise the author is quarantined and the error
// wraps ErrInconsistent.
func (w *Witness) Cosign(ctx context.Context, pub ed25519.PublicKey, msg []byte) ([]byte, error) {
	author := ledger.NodeIDOf(pub)
	cp, err := ledger.OpenCheckpoint(msg, w.cfg.Event, pub)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	head, _, err := w.cfg.Store.Head(ctx, w.cfg.Event, author)
	if err != nil {
		return nil, fmt.Errorf("witness: head of %s: %w", author, err)
	}
	if cp.Size == 0 || cp.Size > head {
		return nil, fmt.Errorf("%w: %s size %d, %d held", ErrNotHeld, author, cp.Size, head)
	}
	r := w.reader(ctx, author)
	root, err := ledger.TreeRoot(int64(cp.Size), r)
	if err != nil {
		return nil, fmt.Errorf("witness: %w", err)
	}
	if root != cp.Root {
		if qerr := w.Quarantine(ctx, Conflict{Node: author, Checkpoint: msg}); qerr != nil {
			return nil, errors.Join(fmt.Errorf("%w: %s size %d root %s, held root %s", ErrInconsistent, author, cp.Size, cp.Root, root), qerr)
		}
		return nil, fmt.Errorf("%w: %s size %d root %s, held root %s", ErrInconsistent, author, cp.Size, cp.Root, root)
	}
	prev, err := w.cfg.Store.LatestCheckpoint(ctx, w.cfg.Event, author)
	switch {
	case errors.Is(err, store.ErrNotFound):
	case err != nil:
		return nil, fmt.Errorf("witness: latest checkpoint of %s: %w", author, err)
	case prev.Size > 0 && prev.Size <= cp.Size:
		p, err := ledger.ProveConsistency(int64(prev.Size), int64(cp.Size), r)
		if err == nil {
			err = ledger.VerifyConsistency(p, prev.Root, cp.Root)
		}
		if err != nil {
			return nil, fmt.Errorf("%w: %s checkpoint %d is not consistent with %d: %v", ErrInconsistent, author, cp.Size, prev.Size, err)
		}
	}
	if n, err := note.Open(msg, note.VerifierList(w.v)); err == nil && len(n.Sigs) > 0 {
		return msg, nil // already cosigned by this witness
	}
	out, err := Cosign(msg, w.cfg.Event, w.cfg.Key)
	if err != nil {
		return nil, err
	}
	return out, nil
}

// Quarantined reports whether the event's store holds a quarantine of
// node written by this witness.
func (w *Witness) Quarantined(ctx context.Context, node ledger.NodeID) (bool, error) {
	ss, err := w.cfg.Store.EntriesByKey(ctx, w.cfg.Event, reconcile.QuarantineKey(node))
	if err != nil {
		return false, fmt.Errorf("witness: quarantines of %s: %w", node, err)
	}
	for _, s := range ss {
		if s.Entry.Kind == reconcile.KindNodeQuarantined && s.Entry.Node == w.node {
			return true, nil
		}
	}
	return false, nil
}

// Quarantine writes a signed node.quarantined entry about c.Node carrying
// the conflict as evidence, unless this witness already quarantined it.
// For a checkpoint conflict (c.Checkpoint set, A and B nil) the evidence
// entries are the node's held entries 1 and the checkpoint's size.
func (w *Witness) Quarantine(ctx context.Context, c Conflict) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	done, err := w.Quarantined(ctx, c.Node)
	if err != nil || done {
		return err
	}
	q := Quarantine{Quarantine: reconcile.Quarantine{Node: c.Node}}
	a, b := c.A, c.B
	if c.Checkpoint != nil {
		q.Reason, q.Checkpoint = ReasonCheckpoint, string(c.Checkpoint)
		cp, err := ledger.ParseCheckpointBody(checkpointText(c.Checkpoint))
		if err != nil {
			return fmt.Errorf("witness: quarantine %s: %w", c.Node, err)
		}
		if a, err = w.entry(ctx, c.Node, 1); err != nil {
			return err
		}
		if b, err = w.entry(ctx, c.Node, cp.Size); err != nil {
			return err
		}
	} else {
		q.Reason = ReasonFork
	}
	if a == nil || b == nil {
		return fmt.Errorf("witness: quarantine %s: no evidence", c.Node)
	}
	q.Evidence = []ledger.Ref{a.Ref(), b.Ref()}
	q.Entries = [][]byte{a.Encode(), b.Encode()}
	if err := q.Quarantine.Validate(); err != nil && c.Checkpoint == nil {
		return fmt.Errorf("witness: quarantine %s: %w", c.Node, err)
	}
	body, err := json.Marshal(q)
	if err != nil {
		return fmt.Errorf("witness: quarantine %s: %w", c.Node, err)
	}
	e, err := w.cfg.Appender.Append(ctx, reconcile.KindNodeQuarantined, reconcile.QuarantineKey(c.Node), body)
	if err != nil {
		return fmt.Errorf("witness: write quarantine of %s: %w", c.Node, err)
	}
	w.cfg.Logger.Warn("witness: node quarantined", "node", c.Node.String(), "reason", q.Reason, "entry", e.Seq)
	return nil
}

func (w *Witness) entry(ctx context.Context, node ledger.NodeID, seq uint64) (*ledger.Entry, error) {
	ss, err := w.cfg.Store.Entries(ctx, w.cfg.Event, node, seq, seq, 1)
	if err != nil {
		return nil, fmt.Errorf("witness: entry %s/%d: %w", node, seq, err)
	}
	if len(ss) != 1 {
		return nil, fmt.Errorf("witness: entry %s/%d is not held", node, seq)
	}
	return ss[0].Entry, nil
}

// checkpointText returns the text of a signed note (before its signatures).
func checkpointText(msg []byte) string {
	text, _, err := split(msg)
	if err != nil {
		return ""
	}
	return text
}

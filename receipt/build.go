package receipt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/auth"
	"canopy/ledger"
	"canopy/pos"
	"canopy/store"
	"canopy/witness"
)

// Checkpointer signs a checkpoint of this node's log covering every durable
// entry (journal.Journal is one).
type Checkpointer interface {
	Node() ledger.NodeID
	SignCheckpoint(ctx context.Context) (store.Checkpoint, error)
}

// Deps is what building and serving receipts needs.
type Deps struct {
	Event *auth.Event
	Store store.Store
	// Checkpointer, if set, is asked for a fresh checkpoint when a receipt
	// written by this node is not yet covered by one, so that a receipt
	// fetched right after payment already carries its inclusion proof.
	// Receipts written by other nodes use their stored checkpoints only.
	Checkpointer Checkpointer
}

// Build assembles the receipt document of a paid order from the store. It
// returns an error wrapping ErrNotFound if the order is unknown or not
// paid.
func Build(ctx context.Context, d Deps, orderID string) (*Receipt, error) {
	if d.Event == nil || d.Store == nil {
		return nil, errors.New("receipt: build needs an event and a store")
	}
	slug := d.Event.Slug
	row, err := d.Store.View(ctx, slug, pos.ViewOrders, orderID)
	if errors.Is(err, store.ErrNotFound) {
		return nil, fmt.Errorf("%w: no order %q", ErrNotFound, orderID)
	}
	if err != nil {
		return nil, fmt.Errorf("receipt: read order %q: %w", orderID, err)
	}
	var o pos.Order
	if err := json.Unmarshal(row, &o); err != nil {
		return nil, fmt.Errorf("receipt: order %q row: %w", orderID, err)
	}
	if o.Receipt == nil {
		return nil, fmt.Errorf("%w: order %q is %s, not paid", ErrNotFound, orderID, o.State)
	}
	ref := o.Receipt.Entry
	e, err := entryAt(ctx, d.Store, slug, ref.Node, ref.Seq)
	if err != nil {
		return nil, err
	}
	if h := e.Hash(); h != ref.Hash {
		return nil, fmt.Errorf("receipt: entry %s/%d has hash %s, the order names %s", ref.Node, ref.Seq, h, ref.Hash)
	}
	first, err := entryAt(ctx, d.Store, slug, ref.Node, 1)
	if err != nil {
		return nil, err
	}
	enr, err := auth.EnrolmentFromEntry(d.Event, first)
	if err != nil {
		return nil, fmt.Errorf("receipt: enrolment of node %s: %w", ref.Node, err)
	}
	var eb struct {
		Enrolment string `json:"enrolment"`
	}
	if err := json.Unmarshal(first.Body, &eb); err != nil {
		return nil, fmt.Errorf("receipt: enrolment entry of node %s: %w", ref.Node, err)
	}
	de, err := entryOf(e)
	if err != nil {
		return nil, fmt.Errorf("receipt: %w", err)
	}
	doc := Document{
		Format: Format, Event: slug, Order: orderID, Entry: de,
		NodeKey: auth.FormatPublicKey(enr.PublicKey), Enrolment: eb.Enrolment,
		PendingCheckpoint: true,
	}
	cp, ok, err := covering(ctx, d, ref.Node, ref.Seq)
	if err != nil {
		return nil, err
	}
	var parsed *ledger.Checkpoint
	if ok {
		reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			hs, err := d.Store.ReadTreeHashes(ctx, slug, ref.Node, idx)
			out := make([]tlog.Hash, len(hs))
			for i, h := range hs {
				out[i] = tlog.Hash(h)
			}
			return out, err
		})
		proof, err := ledger.ProveInclusion(int64(cp.Size), int64(ref.Seq-1), reader)
		if err != nil {
			return nil, fmt.Errorf("receipt: %w", err)
		}
		// A proof that does not verify would be a bug or a damaged store;
		// never hand it to a customer.
		if err := ledger.VerifyInclusion(proof, cp.Root, ref.Hash); err != nil {
			return nil, fmt.Errorf("receipt: proof built from the store: %w", err)
		}
		doc.Checkpoint, doc.Proof, doc.PendingCheckpoint = string(cp.Note), &proof, false
		parsed = &ledger.Checkpoint{Origin: ledger.Origin(slug, ref.Node), Size: cp.Size, Root: cp.Root}
	}
	var pay pos.PaymentBody
	if err := json.Unmarshal(e.Body, &pay); err != nil || pay.Receipt == nil {
		return nil, fmt.Errorf("receipt: entry %s/%d of order %q carries no receipt", ref.Node, ref.Seq, orderID)
	}
	return &Receipt{Document: doc, Entry: e, Payment: pay, Checkpoint: parsed}, nil
}

// covering returns a stored checkpoint of node's log that covers seq,
// signing one first if the node is this one and none does yet. ok is false
// when no checkpoint covers seq: the receipt is then pending.
func covering(ctx context.Context, d Deps, node ledger.NodeID, seq uint64) (store.Checkpoint, bool, error) {
	cp, err := d.Store.LatestCheckpoint(ctx, d.Event.Slug, node)
	switch {
	case err == nil && cp.Size >= seq:
		return cosignedCovering(ctx, d, cp, seq)
	case err != nil && !errors.Is(err, store.ErrNotFound):
		return cp, false, fmt.Errorf("receipt: read checkpoint of %s: %w", node, err)
	}
	if d.Checkpointer == nil || d.Checkpointer.Node() != node {
		return cp, false, nil
	}
	// If signing fails (say the disk is full) the receipt is still valid
	// and is served as pending; the journal signs again within a second.
	cp, err = d.Checkpointer.SignCheckpoint(ctx)
	return cp, err == nil && cp.Size >= seq, nil
}

// cosignedCovering returns latest if a witness cosigned it, else the
// latest stored checkpoint covering seq that a witness cosigned, else
// latest: a receipt carries the strongest evidence the node holds.
func cosignedCovering(ctx context.Context, d Deps, latest store.Checkpoint, seq uint64) (store.Checkpoint, bool, error) {
	if cs, _ := witness.Cosignatures(latest.Note, d.Event.Slug); len(cs) > 0 {
		return latest, true, nil
	}
	all, err := d.Store.Checkpoints(ctx, d.Event.Slug, latest.Node)
	if err != nil {
		return latest, false, fmt.Errorf("receipt: read checkpoints of %s: %w", latest.Node, err)
	}
	for i := len(all) - 1; i >= 0 && all[i].Size >= seq; i-- {
		if cs, _ := witness.Cosignatures(all[i].Note, d.Event.Slug); len(cs) > 0 {
			return all[i], true, nil
		}
	}
	return latest, true, nil
}

func entryAt(ctx context.Context, st store.Store, event string, node ledger.NodeID, seq uint64) (*ledger.Entry, error) {
	ss, err := st.Entries(ctx, event, node, seq, seq, 1)
	if err != nil {
		return nil, fmt.Errorf("receipt: read entry %s/%d: %w", node, seq, err)
	}
	if len(ss) != 1 {
		return nil, fmt.Errorf("receipt: entry %s/%d is not stored", node, seq)
	}
	return ss[0].Entry, nil
}

package journal

import (
	"context"
	"fmt"

	"canopy/ledger"
	"canopy/store"
)

// AuditLog reads this node's log (and the entries it holds of other
// authors) for a daemon's audit endpoints and idempotent replays.
type AuditLog struct{ j *Journal }

// AuditLog returns the journal's audit reader.
func (j *Journal) AuditLog() AuditLog { return AuditLog{j} }

// Node returns this node's id.
func (l AuditLog) Node() ledger.NodeID { return l.j.Node() }

// Checkpoint returns the latest signed checkpoint note, or an error
// wrapping store.ErrNotFound if none is signed yet.
func (l AuditLog) Checkpoint(ctx context.Context) ([]byte, error) {
	cp, ok := l.j.Checkpoint()
	if !ok {
		return nil, fmt.Errorf("no checkpoint signed yet: %w", store.ErrNotFound)
	}
	return cp.Note, nil
}

// Entries returns an author's entries with from <= seq <= to, at most limit.
func (l AuditLog) Entries(ctx context.Context, node ledger.NodeID, from, to uint64, limit int) ([]*ledger.Entry, error) {
	ss, err := l.j.cfg.Store.Entries(ctx, l.j.cfg.Event, node, from, to, limit)
	if err != nil {
		return nil, err
	}
	out := make([]*ledger.Entry, len(ss))
	for i, s := range ss {
		out[i] = s.Entry
	}
	return out, nil
}

// Entry returns one entry, or an error wrapping store.ErrNotFound.
func (l AuditLog) Entry(ctx context.Context, node ledger.NodeID, seq uint64) (*ledger.Entry, error) {
	ss, err := l.j.cfg.Store.Entries(ctx, l.j.cfg.Event, node, seq, seq, 1)
	if err != nil {
		return nil, err
	}
	if len(ss) == 0 {
		return nil, fmt.Errorf("entry %s/%d: %w", node, seq, store.ErrNotFound)
	}
	return ss[0].Entry, nil
}

// ViewReader reads the journal's event's view rows.
type ViewReader struct{ j *Journal }

// ViewReader returns a reader of the event's views.
func (j *Journal) ViewReader() ViewReader { return ViewReader{j} }

// View returns one row, or an error wrapping store.ErrNotFound.
func (v ViewReader) View(ctx context.Context, view, key string) ([]byte, error) {
	return v.j.cfg.Store.View(ctx, v.j.cfg.Event, view, key)
}

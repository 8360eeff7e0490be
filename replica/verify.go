package replica

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"

	"canopy/auth"
	"canopy/ledger"
	"canopy/revocation"
	"canopy/store"
)

// Errors a received entry is refused with.
var (
	ErrUnknownAuthor = errors.New("replica: author not enrolled (its enrolment entry is missing)")
	ErrRevokedAuthor = errors.New("replica: author revoked")
)

// authors authenticates received entries: an author's key comes from its
// enrolment entry (seq 1) verified with the event key; every entry's
// signature is checked with that key. Chains and gaps are checked when the
// entries are stored (journal.Ingest).
type authors struct {
	ev *auth.Event
	st store.Store

	mu   sync.Mutex
	keys map[ledger.NodeID]ed25519.PublicKey
}

func newAuthors(ev *auth.Event, st store.Store) *authors {
	return &authors{ev: ev, st: st, keys: map[ledger.NodeID]ed25519.PublicKey{}}
}

// key returns an author's key from the cache or its stored enrolment entry.
func (a *authors) key(ctx context.Context, node ledger.NodeID) (ed25519.PublicKey, error) {
	a.mu.Lock()
	k, ok := a.keys[node]
	a.mu.Unlock()
	if ok {
		return k, nil
	}
	es, err := a.st.Entries(ctx, a.ev.Slug, node, 1, 1, 1)
	if err != nil {
		return nil, err
	}
	if len(es) == 0 {
		return nil, fmt.Errorf("%w: %s", ErrUnknownAuthor, node)
	}
	return a.learn(es[0].Entry)
}

// learn verifies an enrolment entry and remembers the author's key.
func (a *authors) learn(e *ledger.Entry) (ed25519.PublicKey, error) {
	enr, err := auth.EnrolmentFromEntry(a.ev, e)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrUnknownAuthor, e.Node, err)
	}
	if err := e.Verify(enr.PublicKey); err != nil {
		return nil, err
	}
	a.mu.Lock()
	a.keys[e.Node] = enr.PublicKey
	a.mu.Unlock()
	return enr.PublicKey, nil
}

// check authenticates one entry.
func (a *authors) check(ctx context.Context, e *ledger.Entry) error {
	if e.Event != a.ev.Slug {
		return fmt.Errorf("replica: entry %s/%d is of event %q, not %q", e.Node, e.Seq, e.Event, a.ev.Slug)
	}
	if row, err := revocation.Lookup(ctx, a.st, a.ev.Slug, revocation.WhatNode, e.Node.String()); err != nil {
		return err
	} else if row != nil {
		return fmt.Errorf("%w: %s (%s)", ErrRevokedAuthor, e.Node, row.Reason)
	}
	if e.Seq == 1 {
		_, err := a.learn(e)
		return err
	}
	k, err := a.key(ctx, e.Node)
	if err != nil {
		return err
	}
	return e.Verify(k)
}

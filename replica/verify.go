package replica

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"runtime"
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

// checkAll authenticates a chunk of entries and returns how many of them,
// from the start, are authentic, and why the next one is not. Authors'
// enrolments and revocations are looked up once per chunk; signatures are
// checked in parallel on every core.
func (a *authors) checkAll(ctx context.Context, es []*ledger.Entry) (int, error) {
	keys := make([]ed25519.PublicKey, len(es))
	revoked := map[ledger.NodeID]error{}
	for i, e := range es {
		if e.Event != a.ev.Slug {
			return i, fmt.Errorf("replica: entry %s/%d is of event %q, not %q", e.Node, e.Seq, e.Event, a.ev.Slug)
		}
		rerr, seen := revoked[e.Node]
		if !seen {
			row, err := revocation.Lookup(ctx, a.st, a.ev.Slug, revocation.WhatNode, e.Node.String())
			switch {
			case err != nil:
				rerr = err
			case row != nil:
				rerr = fmt.Errorf("%w: %s (%s)", ErrRevokedAuthor, e.Node, row.Reason)
			}
			revoked[e.Node] = rerr
		}
		if rerr != nil {
			return i, rerr
		}
		var err error
		if e.Seq == 1 {
			keys[i], err = a.learn(e)
		} else {
			keys[i], err = a.key(ctx, e.Node)
		}
		if err != nil {
			return i, err
		}
	}
	bad := make([]error, len(es))
	workers := min(runtime.GOMAXPROCS(0), len(es))
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < len(es); i += workers {
				if es[i].Seq != 1 { // an enrolment entry was verified by learn
					bad[i] = es[i].Verify(keys[i])
				}
			}
		}(w)
	}
	wg.Wait()
	for i, err := range bad {
		if err != nil {
			return i, err
		}
	}
	return len(es), nil
}

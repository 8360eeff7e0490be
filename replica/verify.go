package replica

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"sync"

	"canopy/auth"
	"canopy/ledger"
	"canopy/reconcile"
	"canopy/revocation"
	"canopy/store"
)

// Errors a received entry is refused with.
var (
	ErrUnknownAuthor = errors.New("replica: author not enrolled (its enrolment entry is missing)")
	ErrRevokedAuthor = errors.New("replica: author revoked")
	// ErrQuarantinedAuthor: a hub's witness caught the author showing two
	// histories and wrote a node.quarantined fact about it.
	ErrQuarantinedAuthor = errors.New("replica: author quarantined")
)

// ForkError says an author signed two different entries for one place of
// its log: Held is the entry held at Got's seq, or the held entry before
// Got that Got does not chain to. It wraps store.ErrConflict.
type ForkError struct {
	Held, Got *ledger.Entry
}

func (e *ForkError) Error() string {
	return fmt.Sprintf("%v: node %s signed entry %d (hash %s) and entry %d (hash %s, prev %s), two histories",
		store.ErrConflict, e.Got.Node, e.Held.Seq, e.Held.Hash(), e.Got.Seq, e.Got.Hash(), e.Got.Prev)
}

func (e *ForkError) Unwrap() error { return store.ErrConflict }

// authors authenticates received entries: an author's key comes from its
// enrolment entry (seq 1) verified with the event key; every entry's
// signature is checked with that key. Chains and gaps are checked when the
// entries are stored (journal.Ingest).
type authors struct {
	ev *auth.Event
	st store.Store

	mu          sync.Mutex
	keys        map[ledger.NodeID]ed25519.PublicKey
	roles       map[ledger.NodeID]string
	quarantines map[ledger.NodeID]error // quarantines are forever: only found ones are kept
}

func newAuthors(ev *auth.Event, st store.Store) *authors {
	return &authors{ev: ev, st: st, keys: map[ledger.NodeID]ed25519.PublicKey{},
		roles: map[ledger.NodeID]string{}, quarantines: map[ledger.NodeID]error{}}
}

// hubKey returns the key of an enrolled hub node (whose witness may
// cosign checkpoints and quarantine nodes), or false.
func (a *authors) hubKey(ctx context.Context, node ledger.NodeID) (ed25519.PublicKey, bool) {
	k, err := a.key(ctx, node)
	if err != nil {
		return nil, false
	}
	a.mu.Lock()
	role := a.roles[node]
	a.mu.Unlock()
	return k, role == auth.NodeHub
}

// quarantined returns an error wrapping ErrQuarantinedAuthor if a hub has
// quarantined node (a node.quarantined entry by an enrolled hub naming it).
func (a *authors) quarantined(ctx context.Context, node ledger.NodeID) error {
	a.mu.Lock()
	qerr := a.quarantines[node]
	a.mu.Unlock()
	if qerr != nil {
		return qerr
	}
	ss, err := a.st.EntriesByKey(ctx, a.ev.Slug, reconcile.QuarantineKey(node))
	if err != nil {
		return err
	}
	for _, s := range ss {
		if s.Entry.Kind != reconcile.KindNodeQuarantined {
			continue
		}
		if _, hub := a.hubKey(ctx, s.Entry.Node); !hub {
			continue
		}
		var q reconcile.Quarantine
		if json.Unmarshal(s.Entry.Body, &q) != nil || q.Node != node {
			continue
		}
		qerr = fmt.Errorf("%w: %s by hub %s (%s)", ErrQuarantinedAuthor, node, s.Entry.Node, q.Reason)
		a.mu.Lock()
		a.quarantines[node] = qerr
		a.mu.Unlock()
		return qerr
	}
	return nil
}

// blocked returns why entries of node are refused (revoked or
// quarantined), or nil.
func (a *authors) blocked(ctx context.Context, node ledger.NodeID) error {
	row, err := revocation.Lookup(ctx, a.st, a.ev.Slug, revocation.WhatNode, node.String())
	switch {
	case err != nil:
		return err
	case row != nil:
		return fmt.Errorf("%w: %s (%s)", ErrRevokedAuthor, node, row.Reason)
	}
	return a.quarantined(ctx, node)
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
	a.roles[e.Node] = enr.Role
	a.mu.Unlock()
	return enr.PublicKey, nil
}

// checkAll authenticates a chunk of received entries and returns how many
// of them, from the start, are authentic, and why the next one is not.
// Authors' enrolments, revocations, quarantines and held heads are looked
// up once per chunk; signatures of entries not checked already (by a
// cover) are checked in parallel on every core. An entry at a seq already
// held must be the held entry: another one is a fork (*ForkError), found
// only once its signature verified.
func (a *authors) checkAll(ctx context.Context, items []item) (int, error) {
	keys := make([]ed25519.PublicKey, len(items))
	blocked := map[ledger.NodeID]error{}
	heads := map[ledger.NodeID]uint64{}
	for i, it := range items {
		e := it.e
		if e.Event != a.ev.Slug {
			return i, fmt.Errorf("replica: %w: entry %s/%d is of event %q, not %q", ledger.ErrWrongEvent, e.Node, e.Seq, e.Event, a.ev.Slug)
		}
		berr, seen := blocked[e.Node]
		if !seen {
			berr = a.blocked(ctx, e.Node)
			blocked[e.Node] = berr
			if berr == nil {
				head, _, err := a.st.Head(ctx, a.ev.Slug, e.Node)
				if err != nil {
					berr = err
					blocked[e.Node] = err
				}
				heads[e.Node] = head
			}
		}
		if berr != nil {
			return i, berr
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
	bad := verifyEach(len(items), func(i int) error {
		if items[i].checked || items[i].e.Seq == 1 { // an enrolment entry was verified by learn
			return nil
		}
		return items[i].e.Verify(keys[i])
	})
	for i, err := range bad {
		if err != nil {
			return i, err
		}
		e := items[i].e
		if e.Seq > heads[e.Node] {
			continue
		}
		held, err := a.st.Entries(ctx, a.ev.Slug, e.Node, e.Seq, e.Seq, 1)
		if err != nil {
			return i, err
		}
		if len(held) == 1 && held[0].Hash != items[i].hash {
			return i, &ForkError{Held: held[0].Entry, Got: e}
		}
	}
	return len(items), nil
}

// verifyEach runs check(0..n-1) on every core and returns the errors by
// index.
func verifyEach(n int, check func(i int) error) []error {
	errs := make([]error, n)
	workers := min(runtime.GOMAXPROCS(0), n)
	var wg sync.WaitGroup
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := w; i < n; i += workers {
				errs[i] = check(i)
			}
		}(w)
	}
	wg.Wait()
	return errs
}

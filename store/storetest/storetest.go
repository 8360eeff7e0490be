// Package storetest is the conformance suite for store.Store: every
// implementation runs it from its own tests and must pass all of it.
//
// An implementation's test calls
//
//	storetest.Run(t, func(t *testing.T) store.Store { ... a new, empty store ... })
//
// or, to also prove that data survives closing and opening the store again,
//
//	storetest.RunOpener(t, storetest.Opener{Open: ..., Reopen: ...})
//
// The suite signs real entries with fixed Ed25519 keys, so failures are
// reproducible.
package storetest

import (
	"context"
	"errors"
	"math"
	"testing"

	"canopy/store"
)

// Opener tells the suite how to get stores.
type Opener struct {
	// Open returns a new, empty store that no other test shares. Required.
	// The suite closes the store when the test ends (Close must be safe to
	// call more than once), so Open need not.
	Open func(t *testing.T) store.Store

	// Reopen returns a new store over the same data as old, which the suite
	// has already closed (a SQLite implementation opens the same file
	// again; a PostgreSQL one connects to the same schema). Optional: when
	// nil, the durability-across-reopen test is skipped.
	Reopen func(t *testing.T, old store.Store) store.Store
}

// Run runs the conformance suite against the stores open returns.
func Run(t *testing.T, open func(t *testing.T) store.Store) {
	RunOpener(t, Opener{Open: open})
}

// RunOpener runs the conformance suite, including the reopen test when
// o.Reopen is set.
func RunOpener(t *testing.T, o Opener) {
	if o.Open == nil {
		t.Fatal("storetest: Opener.Open is nil")
	}
	s := &suite{o: o}
	tests := []struct {
		name string
		fn   func(t *testing.T)
	}{
		{"Empty", s.testEmpty},
		{"CommitAndRead", s.testCommitAndRead},
		{"EmptyBatch", s.testEmptyBatch},
		{"Invalid", s.testInvalid},
		{"Idempotent", s.testIdempotent},
		{"UnorderedBatch", s.testUnorderedBatch},
		{"Conflict", s.testConflict},
		{"Gap", s.testGap},
		{"BrokenChain", s.testBrokenChain},
		{"Atomicity", s.testAtomicity},
		{"Isolation", s.testIsolation},
		{"EntriesRange", s.testEntriesRange},
		{"Ordering", s.testOrdering},
		{"ScanStops", s.testScanStops},
		{"ScanWhileCommitting", s.testScanWhileCommitting},
		{"TreeHashes", s.testTreeHashes},
		{"Checkpoints", s.testCheckpoints},
		{"Views", s.testViews},
		{"ReplaceViews", s.testReplaceViews},
		{"CheckedViews", s.testCheckedViews},
		{"CanceledContext", s.testCanceledContext},
		{"Closed", s.testClosed},
		{"Concurrent", s.testConcurrent},
		{"ConcurrentSameAuthor", s.testConcurrentSameAuthor},
		{"Reopen", s.testReopen},
	}
	for _, tc := range tests {
		t.Run(tc.name, tc.fn)
	}
}

type suite struct {
	o Opener
}

// open returns a fresh store that is closed when t ends.
func (s *suite) open(t *testing.T) store.Store {
	t.Helper()
	st := s.o.Open(t)
	if st == nil {
		t.Fatal("storetest: Open returned a nil store")
	}
	t.Cleanup(func() {
		if err := st.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return st
}

// all is the "to" bound that means the whole log.
const all = math.MaxUint64

var ctx = context.Background()

func commit(t *testing.T, st store.Store, b *store.Batch) {
	t.Helper()
	if err := st.Commit(ctx, b); err != nil {
		t.Fatalf("Commit(%s, %d entries): %v", b.Event, len(b.Entries), err)
	}
}

func wantErr(t *testing.T, what string, err, want error) {
	t.Helper()
	if !errors.Is(err, want) {
		t.Fatalf("%s: got error %v, want %v", what, err, want)
	}
}

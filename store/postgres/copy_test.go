package postgres_test

import (
	"context"
	"errors"
	"testing"

	"canopy/store"
)

// TestLargeBatches exercises the COPY paths (batches of at least 64
// entries or tree hashes): a large batch is stored whole; re-delivering
// its tree hashes (stored already, so the COPY gives way to the insert that
// skips and compares) with new entries succeeds; a tree hash that differs
// from the stored one is a conflict that stores nothing.
func TestLargeBatches(t *testing.T) {
	ctx := context.Background()
	s := openDSN(t, freshDB(t))
	sg := newSigner(3)
	log := sg.history(t, "ev", nil, 200, "a")
	var tree memTree
	var ths []store.TreeHash
	for _, st := range log {
		ths = append(ths, tree.add(t, sg.id, st.Entry.Seq, st.Hash)...)
	}
	first := tlogCount(150)
	if err := s.Commit(ctx, &store.Batch{Event: "ev", Entries: log[:150], TreeHashes: ths[:first]}); err != nil {
		t.Fatal(err)
	}
	// Entries 151..200 with every tree hash again, old ones included.
	if err := s.Commit(ctx, &store.Batch{Event: "ev", Entries: log[150:], TreeHashes: ths}); err != nil {
		t.Fatalf("re-delivered tree hashes with new entries: %v", err)
	}
	got, err := s.Entries(ctx, "ev", sg.id, 1, 1000, 0)
	if err != nil {
		t.Fatal(err)
	}
	if !sameLog(got, log) {
		t.Fatalf("stored %d entries, want the 200 committed", len(got))
	}
	idx := make([]int64, len(ths))
	for i, th := range ths {
		idx[i] = th.Index
	}
	hs, err := s.ReadTreeHashes(ctx, "ev", sg.id, idx)
	if err != nil {
		t.Fatal(err)
	}
	for i := range ths {
		if hs[i] != ths[i].Hash {
			t.Fatalf("tree hash %d: stored %s, want %s", ths[i].Index, hs[i], ths[i].Hash)
		}
	}

	// A different hash at a stored index, among 100 others, with a new entry.
	more := sg.history(t, "ev", log, 1, "a")[200:]
	bad := append([]store.TreeHash(nil), ths[:100]...)
	bad[42].Hash[0] ^= 1
	err = s.Commit(ctx, &store.Batch{Event: "ev", Entries: more, TreeHashes: bad})
	if !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a differing tree hash: %v, want ErrConflict", err)
	}
	if head, _, err := s.Head(ctx, "ev", sg.id); err != nil || head != 200 {
		t.Fatalf("head after the refused batch: %d %v, want 200", head, err)
	}
}

// tlogCount is how many tree hashes a log of n entries stores.
func tlogCount(n int64) int {
	c := 0
	for i := int64(0); i < n; i++ {
		// Entry i adds one leaf plus one hash per trailing 1 bit of i.
		c++
		for k := i; k&1 == 1; k >>= 1 {
			c++
		}
	}
	return c
}

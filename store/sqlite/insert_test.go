package sqlite_test

import (
	"context"
	"errors"
	"path/filepath"
	"testing"

	"canopy/ledger"
	"canopy/store"
)

// TestInsertInterleavedAuthors: a batch of two authors' entries and tree
// hashes, interleaved and of counts that need every chunk size (whole
// chunks, then 64, 32, … 1), is stored whole; committing it again is
// harmless; a tree hash that differs from a stored one is a conflict.
func TestInsertInterleavedAuthors(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "s.db"))
	a, b := newChain(1), newChain(2)
	ba, bb := a.batch(t, 383, 50), b.batch(t, 129, 50)
	batch := &store.Batch{Event: "ev"}
	for i := range max(len(ba.Entries), len(bb.Entries)) {
		for _, bt := range []*store.Batch{ba, bb} {
			if i < len(bt.Entries) {
				batch.Entries = append(batch.Entries, bt.Entries[i])
				// Not a real tree: any hash at index seq-1 will do here.
				e := bt.Entries[i]
				batch.TreeHashes = append(batch.TreeHashes, store.TreeHash{Node: e.Entry.Node, Index: int64(e.Entry.Seq - 1), Hash: e.Hash})
			}
		}
	}
	if err := s.Commit(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, batch); err != nil {
		t.Fatalf("the same batch again: %v", err)
	}
	for _, bt := range []*store.Batch{ba, bb} {
		node := bt.Entries[0].Entry.Node
		got, err := s.Entries(ctx, "ev", node, 1, 1000, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(bt.Entries) {
			t.Fatalf("%s: %d entries stored, want %d", node, len(got), len(bt.Entries))
		}
		idx := make([]int64, len(bt.Entries))
		for i, e := range bt.Entries {
			if got[i].Hash != e.Hash || got[i].Entry.Seq != e.Entry.Seq || got[i].Entry.Key != e.Entry.Key {
				t.Fatalf("%s entry %d: stored %+v, want %+v", node, i, got[i], e)
			}
			idx[i] = int64(i)
		}
		hs, err := s.ReadTreeHashes(ctx, "ev", node, idx)
		if err != nil {
			t.Fatal(err)
		}
		for i, h := range hs {
			if h != bt.Entries[i].Hash {
				t.Fatalf("%s tree hash %d: %s, want %s", node, i, h, bt.Entries[i].Hash)
			}
		}
	}
	bad := &store.Batch{Event: "ev", TreeHashes: []store.TreeHash{{Node: b.node(), Index: 100, Hash: ledger.Hash{1}}}}
	if err := s.Commit(ctx, bad); !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a different tree hash at a stored index: %v, want ErrConflict", err)
	}
}

package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
	"canopy/store"
	"canopy/store/sqlite"
)

// BenchmarkCommit measures durable commits (WAL, synchronous=FULL) of
// batches of 1, 64 and 512 signed entries with 200-byte bodies, as a
// group-commit writer would send them. Batches are signed before the timer
// starts; entries/s is the figure to compare.
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
			if err != nil {
				b.Fatal(err)
			}
			defer s.Close()
			c := newChain(7)
			batches := make([]*store.Batch, b.N)
			for i := range batches {
				batches[i] = c.batch(b, n, 200)
			}
			ctx := context.Background()
			b.ResetTimer()
			for i := range b.N {
				if err := s.Commit(ctx, batches[i]); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
		})
	}
}

// BenchmarkCommitSync measures commits as a sync receiver makes them: 4,096
// entries of one author with their Merkle tree hashes (about two per
// entry), 340-byte entries.
func BenchmarkCommitSync(b *testing.B) {
	const n = 4096
	s, err := sqlite.Open(context.Background(), filepath.Join(b.TempDir(), "bench.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	c := newChain(9)
	tree := map[int64]tlog.Hash{}
	read := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = tree[x]
		}
		return out, nil
	})
	batches := make([]*store.Batch, b.N)
	for i := range batches {
		bt := c.batch(b, n, 200)
		for _, st := range bt.Entries {
			idx := int64(st.Entry.Seq - 1)
			hs, err := ledger.StoredHashes(idx, st.Hash, read)
			if err != nil {
				b.Fatal(err)
			}
			for k, h := range hs {
				at := tlog.StoredHashCount(idx) + int64(k)
				tree[at] = tlog.Hash(h)
				bt.TreeHashes = append(bt.TreeHashes, store.TreeHash{Node: c.node(), Index: at, Hash: h})
			}
		}
		batches[i] = bt
	}
	ctx := context.Background()
	b.ResetTimer()
	for i := range b.N {
		if err := s.Commit(ctx, batches[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "entries/s")
}

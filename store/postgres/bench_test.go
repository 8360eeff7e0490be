package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
	"canopy/store"
)

// BenchmarkCommit measures durable commits (fsync on, synchronous_commit
// on) of batches of 1, 64 and 512 signed entries with 200-byte bodies, as a
// group-commit writer would send them, over a loopback connection. It
// matches store/sqlite's BenchmarkCommit; entries/s is the figure to
// compare. Batches are signed before the timer starts. With trees=1 each
// batch also carries the entries' Merkle tree hashes, as a journal's do.
func BenchmarkCommit(b *testing.B) {
	for _, trees := range []bool{false, true} {
		for _, n := range []int{1, 64, 512} {
			name := fmt.Sprintf("batch=%d", n)
			if trees {
				name += "/trees=1"
			}
			b.Run(name, func(b *testing.B) { benchmarkCommit(b, n, trees) })
		}
	}
}

func benchmarkCommit(b *testing.B, n int, trees bool) {
	s := openDSN(b, freshDB(b))
	sg := newSigner(7)
	pad := strings.Repeat("p", 200)
	var prev ledger.Hash
	var seq uint64
	var tree memTree
	batches := make([]*store.Batch, b.N)
	for i := range batches {
		bt := &store.Batch{Event: "ev"}
		for range n {
			seq++
			e := &ledger.Entry{
				Event: "ev", Seq: seq, Prev: prev,
				HLC:  ledger.HLC{Wall: 1_700_000_000_000 + int64(seq)},
				Kind: "order.created/v1", Key: fmt.Sprintf("order/%d", seq%97),
				Body: fmt.Appendf(nil, `{"seq":%d,"pad":%q}`, seq, pad),
			}
			if err := e.Sign(sg.key); err != nil {
				b.Fatal(err)
			}
			h := e.Hash()
			bt.Entries = append(bt.Entries, store.Stored{Entry: e, Hash: h})
			prev = h
			if trees {
				bt.TreeHashes = append(bt.TreeHashes, tree.add(b, sg.id, seq, h)...)
			}
		}
		bt.Views = []store.ViewRow{{View: "batches", Key: fmt.Sprintf("%08d", seq), Value: []byte("done")}}
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

// memTree keeps one author's stored Merkle tree hashes in memory.
type memTree []tlog.Hash

// add stores the hashes of the entry at seq and returns them.
func (t *memTree) add(tb testing.TB, node ledger.NodeID, seq uint64, h ledger.Hash) []store.TreeHash {
	tb.Helper()
	hs, err := tlog.StoredHashesForRecordHash(int64(seq-1), tlog.RecordHash(h[:]),
		tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
			out := make([]tlog.Hash, len(idx))
			for i, x := range idx {
				out[i] = (*t)[x]
			}
			return out, nil
		}))
	if err != nil {
		tb.Fatal(err)
	}
	base := tlog.StoredHashCount(int64(seq - 1))
	out := make([]store.TreeHash, len(hs))
	for i, th := range hs {
		*t = append(*t, th)
		out[i] = store.TreeHash{Node: node, Index: base + int64(i), Hash: ledger.Hash(th)}
	}
	return out
}

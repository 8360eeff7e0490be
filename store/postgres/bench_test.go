package postgres_test

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"canopy/ledger"
	"canopy/store"
)

// BenchmarkCommit measures durable commits (fsync on, synchronous_commit
// on) of batches of 1, 64 and 512 signed entries with 200-byte bodies, as a
// group-commit writer would send them, over a loopback connection. It
// matches store/sqlite's BenchmarkCommit; entries/s is the figure to
// compare. Batches are signed before the timer starts.
func BenchmarkCommit(b *testing.B) {
	for _, n := range []int{1, 64, 512} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s := openDSN(b, freshDB(b))
			sg := newSigner(7)
			pad := strings.Repeat("p", 200)
			var prev ledger.Hash
			var seq uint64
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
		})
	}
}

package sqlite_test

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

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

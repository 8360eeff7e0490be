package postgres_test

import (
	"context"
	"sync"
	"testing"

	"canopy/internal/testutil"
	"canopy/store"
	"canopy/store/postgres"
	"canopy/store/storetest"
)

// freshDB creates an empty database for this test on the test server, drops
// it when the test ends, and returns its DSN.
func freshDB(tb testing.TB) string { return testutil.FreshPostgres(tb, "canopy_test_") }

// openDSN opens a store on dsn, closed when the test ends.
func openDSN(tb testing.TB, dsn string, opts ...postgres.Option) *postgres.Store {
	tb.Helper()
	s, err := postgres.Open(context.Background(), dsn, opts...)
	if err != nil {
		tb.Fatalf("Open: %v", err)
	}
	tb.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	testutil.PostgresDSN(t) // skip (or fail, on CI) once rather than in every subtest
	var mu sync.Mutex
	dsns := map[store.Store]string{}
	storetest.RunOpener(t, storetest.Opener{
		Open: func(t *testing.T) store.Store {
			dsn := freshDB(t)
			s := openDSN(t, dsn)
			mu.Lock()
			dsns[s] = dsn
			mu.Unlock()
			return s
		},
		Reopen: func(t *testing.T, old store.Store) store.Store {
			mu.Lock()
			dsn, ok := dsns[old]
			mu.Unlock()
			if !ok {
				t.Fatal("Reopen of a store this test did not open")
			}
			return openDSN(t, dsn)
		},
	})
}

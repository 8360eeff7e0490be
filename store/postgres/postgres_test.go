package postgres_test

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"net/url"
	"os"
	"strings"
	"sync"
	"testing"

	"github.com/jackc/pgx/v5"

	"canopy/store"
	"canopy/store/postgres"
	"canopy/store/storetest"
)

// adminDSN returns the DSN of the test server from CANOPY_TEST_POSTGRES.
// Without it the test is skipped, except on CI, which must run it.
func adminDSN(tb testing.TB) string {
	tb.Helper()
	dsn := os.Getenv("CANOPY_TEST_POSTGRES")
	if dsn != "" {
		return dsn
	}
	const how = `CANOPY_TEST_POSTGRES is not set; start a throwaway server with eval "$(./scripts/postgres.sh start)" ` +
		`(it prints the export line; ./scripts/postgres.sh stop stops it), or run ./scripts/test.sh, which does both`
	if os.Getenv("CI") == "true" {
		tb.Fatal(how)
	}
	tb.Skip(how)
	return ""
}

// withDatabase returns dsn with its database replaced by name.
func withDatabase(tb testing.TB, dsn, name string) string {
	tb.Helper()
	if strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://") {
		u, err := url.Parse(dsn)
		if err != nil {
			tb.Fatalf("CANOPY_TEST_POSTGRES: %v", err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return dsn + " dbname=" + name
}

// freshDB creates an empty database for this test on the test server, drops
// it when the test ends, and returns its DSN.
func freshDB(tb testing.TB) string {
	tb.Helper()
	admin := adminDSN(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to CANOPY_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(ctx)
	name := "canopy_test_" + randHex(tb, 8)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("DROP DATABASE %s: %v", name, err)
		}
	})
	return withDatabase(tb, admin, name)
}

func randHex(tb testing.TB, n int) string {
	tb.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		tb.Fatal(err)
	}
	return hex.EncodeToString(b)
}

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
	adminDSN(t) // skip (or fail, on CI) once rather than in every subtest
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

package postgres_test

import (
	"context"
	"errors"
	"net"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"

	"canopy/internal/testutil"
	"canopy/store"
	"canopy/store/postgres"
)

// rawExec runs statements on dsn through a connection of its own, as
// another tool or an administrator would.
func rawExec(tb testing.TB, dsn string, stmts ...string) {
	tb.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close(ctx)
	for _, q := range stmts {
		if _, err := conn.Exec(ctx, q); err != nil {
			tb.Fatalf("%s: %v", q, err)
		}
	}
}

func TestSchemaVersionWrittenAndKept(t *testing.T) {
	dsn := freshDB(t)
	openDSN(t, dsn).Close()
	openDSN(t, dsn).Close() // a second Open finds the schema and keeps it
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var n, v int
	if err := conn.QueryRow(ctx, `SELECT count(*), max(version) FROM canopy.schema_version`).Scan(&n, &v); err != nil {
		t.Fatal(err)
	}
	if n != 1 || v != postgres.SchemaVersion {
		t.Fatalf("schema_version has %d rows, version %d; want 1 row, %d", n, v, postgres.SchemaVersion)
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	dsn := freshDB(t)
	openDSN(t, dsn).Close()
	rawExec(t, dsn, `UPDATE canopy.schema_version SET version = 99`)
	_, err := postgres.Open(context.Background(), dsn)
	if !errors.Is(err, postgres.ErrNewerSchema) {
		t.Fatalf("Open of a newer schema: %v, want ErrNewerSchema", err)
	}
	if !strings.Contains(err.Error(), "99") || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("error does not name the version and the remedy: %v", err)
	}
}

func TestForeignSchemaRefused(t *testing.T) {
	dsn := freshDB(t)
	rawExec(t, dsn, `CREATE SCHEMA canopy`, `CREATE TABLE canopy.entries (x int)`)
	_, err := postgres.Open(context.Background(), dsn)
	if err == nil || !strings.Contains(err.Error(), "not a canopy store") {
		t.Fatalf("Open of a schema canopy made by someone else: %v, want 'not a canopy store'", err)
	}
}

func TestConcurrentOpenCreatesSchemaOnce(t *testing.T) {
	dsn := freshDB(t)
	errs := make(chan error, 6)
	for range cap(errs) {
		go func() {
			s, err := postgres.Open(context.Background(), dsn)
			if err == nil {
				err = s.Close()
			}
			errs <- err
		}()
	}
	for range cap(errs) {
		if err := <-errs; err != nil {
			t.Errorf("concurrent Open: %v", err)
		}
	}
}

func TestBadDSN(t *testing.T) {
	for _, dsn := range []string{"", "postgres://a:b@[::1", "host=127.0.0.1 port=notaport"} {
		_, err := postgres.Open(context.Background(), dsn)
		if err == nil {
			t.Fatalf("Open(%q) succeeded", dsn)
		}
		if errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("Open(%q) = %v: a malformed DSN is not a transient condition", dsn, err)
		}
	}
}

func TestUnreachableIsUnavailable(t *testing.T) {
	// A port nobody listens on: bind one, then close it.
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	_, err = postgres.Open(context.Background(), "postgres://postgres@"+addr+"/postgres?sslmode=disable&connect_timeout=5")
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Open of an unreachable server: %v, want ErrUnavailable", err)
	}
}

// TestReadOnlyIsUnavailable makes the database read-only, as a hot standby
// or an administrator would: a commit fails with ErrUnavailable, stores
// nothing, and succeeds once the database takes writes again.
func TestReadOnlyIsUnavailable(t *testing.T) {
	dsn := freshDB(t)
	openDSN(t, dsn).Close()
	name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	admin := testutil.PostgresDSN(t)
	rawExec(t, admin, `ALTER DATABASE `+name+` SET default_transaction_read_only = on`)
	s := openDSN(t, dsn) // new connections take the setting

	a := newSigner(3)
	log := a.history(t, "ev", nil, 3, "ro")
	err := s.Commit(context.Background(), &store.Batch{Event: "ev", Entries: log})
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Commit to a read-only database: %v, want ErrUnavailable", err)
	}
	if got, err := s.Entries(context.Background(), "ev", a.id, 0, ^uint64(0), 0); err != nil || len(got) != 0 {
		t.Fatalf("after the failed commit: %d entries, %v", len(got), err)
	}
	s.Close()

	rawExec(t, admin, `ALTER DATABASE `+name+` RESET default_transaction_read_only`)
	s = openDSN(t, dsn)
	if err := s.Commit(context.Background(), &store.Batch{Event: "ev", Entries: log}); err != nil {
		t.Fatalf("Commit once writable again: %v", err)
	}
}

// TestConnectionsTerminated kills every server process of the store's
// connections (pg_terminate_backend, as a failover or restart does): the
// next commit either succeeds on a new connection or fails with
// ErrUnavailable, and a retry then stores the batch exactly once.
func TestConnectionsTerminated(t *testing.T) {
	dsn := freshDB(t)
	s := openDSN(t, dsn)
	ctx := context.Background()
	a := newSigner(4)
	log := a.history(t, "ev", nil, 4, "t")
	if err := s.Commit(ctx, &store.Batch{Event: "ev", Entries: log[:2]}); err != nil {
		t.Fatal(err)
	}
	name := dsn[strings.LastIndex(dsn, "/")+1 : strings.Index(dsn, "?")]
	rawExec(t, testutil.PostgresDSN(t), `SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = '`+name+`' AND pid <> pg_backend_pid()`)
	err := s.Commit(ctx, &store.Batch{Event: "ev", Entries: log})
	if err != nil && !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Commit after the connections were terminated: %v, want nil or ErrUnavailable", err)
	}
	if err := s.Commit(ctx, &store.Batch{Event: "ev", Entries: log}); err != nil {
		t.Fatalf("retried Commit: %v", err)
	}
	got, err := s.Entries(ctx, "ev", a.id, 0, ^uint64(0), 0)
	if err != nil || !sameLog(got, log) {
		t.Fatalf("after the retry: %d entries, %v; want the 4 committed", len(got), err)
	}
}

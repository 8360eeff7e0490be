package sqlite_test

import (
	"context"
	"database/sql"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"canopy/store"
	"canopy/store/sqlite"
)

// rawExec runs statements on the file through a connection of its own, as
// another tool or process would.
func rawExec(t *testing.T, path string, stmts ...string) {
	t.Helper()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, q := range stmts {
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
}

func TestNewerSchemaRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canopy.db")
	s := openAt(t, path)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	rawExec(t, path, "PRAGMA user_version = 99")
	_, err := sqlite.Open(context.Background(), path)
	if !errors.Is(err, sqlite.ErrNewerSchema) {
		t.Fatalf("Open of a newer schema: %v, want ErrNewerSchema", err)
	}
	if !strings.Contains(err.Error(), "99") || !strings.Contains(err.Error(), "upgrade") {
		t.Fatalf("error does not name the version and the remedy: %v", err)
	}
}

func TestSchemaVersionWritten(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canopy.db")
	s := openAt(t, path)
	s.Close()
	db, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	if v != sqlite.SchemaVersion {
		t.Fatalf("user_version = %d, want %d", v, sqlite.SchemaVersion)
	}
	var mode string
	if err := db.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil || mode != "wal" {
		t.Fatalf("journal_mode = %q, %v; want wal", mode, err)
	}
}

func TestForeignDatabaseRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "other.db")
	rawExec(t, path, "CREATE TABLE entries (x)")
	_, err := sqlite.Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), "not a canopy store") {
		t.Fatalf("Open of a foreign database: %v, want a 'not a canopy store' error", err)
	}
}

func TestGarbageFileRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "garbage.db")
	if err := os.WriteFile(path, []byte(strings.Repeat("this is not a database ", 300)), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := sqlite.Open(context.Background(), path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("Open of a garbage file: %v, want an error naming the file", err)
	}
}

func TestBadOptions(t *testing.T) {
	dir := t.TempDir()
	if _, err := sqlite.Open(context.Background(), ""); err == nil {
		t.Fatal("Open(\"\") succeeded")
	}
	if _, err := sqlite.Open(context.Background(), filepath.Join(dir, "a.db"), sqlite.WithReaders(0)); err == nil {
		t.Fatal("Open with 0 readers succeeded")
	}
	if _, err := sqlite.Open(context.Background(), filepath.Join(dir, "no", "such", "dir", "a.db")); err == nil {
		t.Fatal("Open in a missing directory succeeded")
	}
}

// TestOddPath opens a file whose name holds URI syntax characters.
func TestOddPath(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a?b#c%20d e")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "canopy?.db")
	s := openAt(t, path)
	c := newChain(3)
	if err := s.Commit(context.Background(), c.batch(t, 2, 10)); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err != nil {
		t.Fatalf("the database is not at the path given: %v", err)
	}
}

// TestReadsDoNotWaitForWriter holds the write lock from another connection,
// as another process would: reads go on, and a commit fails with
// ErrUnavailable once the busy timeout passes, then succeeds when the lock
// is released.
func TestReadsDoNotWaitForWriter(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canopy.db")
	s := openAt(t, path, sqlite.WithBusyTimeout(50*time.Millisecond))
	ctx := context.Background()
	c := newChain(4)
	first := c.batch(t, 3, 10)
	if err := s.Commit(ctx, first); err != nil {
		t.Fatal(err)
	}

	other, err := sql.Open("sqlite", path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	other.SetMaxOpenConns(1)
	lock, err := other.Begin()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := lock.Exec("INSERT INTO views (event, view, key, value) VALUES ('x', 'y', 'z', x'00')"); err != nil {
		t.Fatal(err)
	}

	// The write lock is held; reads answer from the last commit.
	seq, _, err := s.Head(ctx, "ev", c.node())
	if err != nil || seq != 3 {
		t.Fatalf("Head while another connection writes = %d, %v; want 3", seq, err)
	}
	if err := s.Check(ctx); err != nil {
		t.Fatal(err)
	}
	second := c.batch(t, 3, 10)
	err = s.Commit(ctx, second)
	if !errors.Is(err, store.ErrUnavailable) {
		t.Fatalf("Commit while the lock is held elsewhere: %v, want ErrUnavailable", err)
	}
	if err := lock.Rollback(); err != nil {
		t.Fatal(err)
	}
	if err := s.Commit(ctx, second); err != nil {
		t.Fatalf("Commit after the lock was released: %v", err)
	}
	if seq, _, err := s.Head(ctx, "ev", c.node()); err != nil || seq != 6 {
		t.Fatalf("Head = %d, %v; want 6", seq, err)
	}
}

// TestCheckFindsCorruption overwrites part of the file and expects Check to
// say so.
func TestCheckFindsCorruption(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canopy.db")
	s := openAt(t, path)
	ctx := context.Background()
	c := newChain(5)
	for range 10 {
		if err := s.Commit(ctx, c.batch(t, 20, 300)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("Check of a sound database: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	// Leave page 1 (the header and schema) alone; scribble over pages 3–6.
	junk := []byte(strings.Repeat("\xde\xad\xbe\xef", 4096))
	if _, err := f.WriteAt(junk, 2*4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	s2, err := sqlite.Open(ctx, path)
	if err != nil {
		t.Logf("Open refused the corrupt file: %v", err) // also a correct answer
		return
	}
	defer s2.Close()
	err = s2.Check(ctx)
	if err == nil {
		t.Fatal("Check passed on a database with four overwritten pages")
	}
	t.Logf("Check: %v", err)
}

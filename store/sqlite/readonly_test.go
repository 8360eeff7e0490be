package sqlite_test

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"canopy/store/sqlite"
)

func TestReadOnly(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "canopy.db")
	rw := openAt(t, path)
	c := newChain(3)
	b := c.batch(t, 5, 50)
	if err := rw.Commit(ctx, b); err != nil {
		t.Fatal(err)
	}
	if err := rw.Close(); err != nil {
		t.Fatal(err)
	}
	before, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	ro := openAt(t, path, sqlite.WithReadOnly())
	node := b.Entries[0].Entry.Node
	got, err := ro.Entries(ctx, b.Event, node, 1, 5, 0)
	if err != nil || len(got) != 5 {
		t.Fatalf("read-only Entries: %d, %v", len(got), err)
	}
	if err := ro.Commit(ctx, c.batch(t, 1, 50)); !errors.Is(err, sqlite.ErrReadOnly) {
		t.Fatalf("Commit on a read-only store: %v, want ErrReadOnly", err)
	}
	if err := ro.Close(); err != nil {
		t.Fatal(err)
	}
	after, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(before, after) {
		t.Fatal("opening read-only changed the database file")
	}

	empty := filepath.Join(t.TempDir(), "empty.db")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := sqlite.Open(ctx, empty, sqlite.WithReadOnly()); err == nil {
		t.Fatal("read-only Open of an empty file succeeded")
	}
	if st, _ := os.Stat(empty); st.Size() != 0 {
		t.Fatalf("read-only Open wrote %d bytes into an empty file", st.Size())
	}
}

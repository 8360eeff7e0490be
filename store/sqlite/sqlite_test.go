package sqlite_test

import (
	"bytes"
	"context"
	"path/filepath"
	"testing"

	"canopy/store"
	"canopy/store/sqlite"
	"canopy/store/storetest"
)

func openAt(t *testing.T, path string, opts ...sqlite.Option) *sqlite.Store {
	t.Helper()
	s, err := sqlite.Open(context.Background(), path, opts...)
	if err != nil {
		t.Fatalf("Open(%s): %v", path, err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func TestConformance(t *testing.T) {
	storetest.RunOpener(t, storetest.Opener{
		Open: func(t *testing.T) store.Store {
			return openAt(t, filepath.Join(t.TempDir(), "canopy.db"))
		},
		Reopen: func(t *testing.T, old store.Store) store.Store {
			s := openAt(t, old.(*sqlite.Store).Path())
			if err := s.Check(context.Background()); err != nil {
				t.Fatalf("reopened store fails its integrity check: %v", err)
			}
			return s
		},
	})
}

// TestEncodedEntries: EncodedEntries returns exactly the encodings of what
// Entries returns, for the same range and limit.
func TestEncodedEntries(t *testing.T) {
	s := openAt(t, filepath.Join(t.TempDir(), "canopy.db"))
	ctx := context.Background()
	c := newChain(3)
	for range 3 {
		if err := s.Commit(ctx, c.batch(t, 10, 50)); err != nil {
			t.Fatal(err)
		}
	}
	for _, r := range []struct {
		from, to uint64
		limit    int
	}{{1, 30, 0}, {5, 12, 0}, {5, 30, 4}, {29, 40, 0}, {31, 40, 0}, {7, 3, 0}} {
		want, err := s.Entries(ctx, "ev", c.node(), r.from, r.to, r.limit)
		if err != nil {
			t.Fatal(err)
		}
		got, err := s.EncodedEntries(ctx, "ev", c.node(), r.from, r.to, r.limit)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("%+v: %d encoded entries, want %d", r, len(got), len(want))
		}
		for i := range got {
			if !bytes.Equal(got[i], want[i].Entry.Encode()) {
				t.Fatalf("%+v: encoded entry %d differs", r, i)
			}
		}
	}
}

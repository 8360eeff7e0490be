package sqlite_test

import (
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

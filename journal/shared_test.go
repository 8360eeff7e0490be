package journal_test

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"path/filepath"
	"slices"
	"sync"
	"testing"

	"canopy/internal/testutil"
	"canopy/journal"
	"canopy/store"
	"canopy/store/postgres"
	"canopy/views"
)

// hashSet is an order-independent reducer: one row holding the sorted hashes
// of every entry folded into it.
type hashSet struct{}

func (hashSet) View() string                 { return "seen" }
func (hashSet) Rows(s store.Stored) []string { return []string{"all"} }
func (hashSet) Fold(cur []byte, _ string, s store.Stored) []byte {
	var hs []string
	if cur != nil {
		_ = json.Unmarshal(cur, &hs)
	}
	h := s.Hash.String()
	if i, found := slices.BinarySearch(hs, h); !found {
		hs = slices.Insert(hs, i, h)
	}
	b, _ := json.Marshal(hs)
	return b
}

// TestSharedStoreLosesNoFold: two journals (two processes' worth of
// pipelines, each with its own overlay) write one store at once, every
// entry folding into the same view row. With Shared set, a commit whose
// rows the other changed first is folded again inside the commit, so the
// row ends up holding every entry and equals a rebuild. (Without Shared, a
// run of this test kept about half of the folds.) On PostgreSQL each
// journal has its own Store, as two hub processes would.
func TestSharedStoreLosesNoFold(t *testing.T) {
	t.Run("sqlite", func(t *testing.T) {
		st := openStore(t, filepath.Join(t.TempDir(), "shared.db"))
		sharedFolds(t, st, st)
	})
	t.Run("postgres", func(t *testing.T) {
		dsn := testutil.FreshPostgres(t, "canopy_journal_test_")
		var sts [2]store.Store
		for i := range sts {
			st, err := postgres.Open(context.Background(), dsn)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { st.Close() })
			sts[i] = st
		}
		sharedFolds(t, sts[0], sts[1])
	})
}

func sharedFolds(t *testing.T, a, b store.Store) {
	set, err := views.NewSet(hashSet{})
	if err != nil {
		t.Fatal(err)
	}
	const perJournal, writers = 150, 6
	var wg sync.WaitGroup
	for n, st := range []store.Store{a, b} {
		key := ed25519.NewKeyFromSeed([]byte(fmt.Sprintf("canopy shared-store test node #%d", n)))
		j := openJournal(t, journal.Config{Key: key, Store: st, Views: set, Shared: true})
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < perJournal; i += writers {
					if _, err := j.Append(context.Background(), "test.fact/v1", "k", []byte(fmt.Sprint(i))); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
	}
	wg.Wait()
	raw, err := a.View(context.Background(), "test-event", "seen", "all")
	if err != nil {
		t.Fatal(err)
	}
	var hs []string
	if err := json.Unmarshal(raw, &hs); err != nil {
		t.Fatal(err)
	}
	if len(hs) != 2*perJournal {
		t.Fatalf("the row holds %d of %d entries", len(hs), 2*perJournal)
	}
	if err := set.Verify(context.Background(), a, "test-event"); err != nil {
		t.Fatal(err)
	}
}

package sqlite_test

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"sync"
	"testing"

	"canopy/store"
)

// TestViewCacheNeverServesStale: while one goroutine commits increasing
// values to a row, readers (View and ReadViews) never see a value older
// than one they saw before, and once the writer is done every read returns
// the last value. Deletes and ReplaceViews are seen at once.
func TestViewCacheNeverServesStale(t *testing.T) {
	ctx := context.Background()
	s := openAt(t, filepath.Join(t.TempDir(), "db"))
	const n = 300
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 1; i <= n; i++ {
			if err := s.Commit(ctx, &store.Batch{Event: "ev", Views: []store.ViewRow{{View: "v", Key: "k", Value: []byte(strconv.Itoa(i))}}}); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	for r := 0; r < 4; r++ {
		wg.Add(1)
		go func(r int) {
			defer wg.Done()
			last := 0
			for last < n {
				var v []byte
				var err error
				if r%2 == 0 {
					v, err = s.View(ctx, "ev", "v", "k")
				} else {
					var vs [][]byte
					vs, err = s.ReadViews(ctx, "ev", []store.ViewKey{{View: "v", Key: "k"}})
					if err == nil {
						v = vs[0]
						if v == nil {
							err = store.ErrNotFound
						}
					}
				}
				if errors.Is(err, store.ErrNotFound) {
					if last > 0 {
						t.Errorf("reader %d: row vanished after value %d", r, last)
						return
					}
					continue
				}
				if err != nil {
					t.Error(err)
					return
				}
				got, _ := strconv.Atoi(string(v))
				if got < last {
					t.Errorf("reader %d: saw %d after %d (stale)", r, got, last)
					return
				}
				last = got
			}
		}(r)
	}
	wg.Wait()
	if v, err := s.View(ctx, "ev", "v", "k"); err != nil || string(v) != fmt.Sprint(n) {
		t.Fatalf("after the writer: %q, %v", v, err)
	}
	// A delete is seen at once, and so is a replacement of all views.
	if err := s.Commit(ctx, &store.Batch{Event: "ev", Views: []store.ViewRow{{View: "v", Key: "k"}}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.View(ctx, "ev", "v", "k"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("deleted row: %v", err)
	}
	if err := s.ReplaceViews(ctx, "ev", []store.ViewRow{{View: "v", Key: "k", Value: []byte("rebuilt")}}); err != nil {
		t.Fatal(err)
	}
	if v, err := s.View(ctx, "ev", "v", "k"); err != nil || string(v) != "rebuilt" {
		t.Fatalf("after ReplaceViews: %q, %v", v, err)
	}
}

package storetest

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"

	"canopy/ledger"
	"canopy/store"
)

func (s *suite) testCanceledContext(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 3)
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	err := st.Commit(cctx, fullBatch("ev", a.id, es))
	wantErr(t, "Commit with a canceled context", err, context.Canceled)
	checkNothing(t, st, "ev", a.id)
	commit(t, st, fullBatch("ev", a.id, es))
	checkLog(t, st, "ev", a, es)
}

func (s *suite) testClosed(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 2)
	commit(t, st, &store.Batch{Event: "ev", Entries: es[:1]})
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if err := st.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	calls := map[string]func() error{
		"Commit": func() error { return st.Commit(ctx, &store.Batch{Event: "ev", Entries: es[1:]}) },
		"Head": func() error {
			_, _, err := st.Head(ctx, "ev", a.id)
			return err
		},
		"Vector": func() error {
			_, err := st.Vector(ctx, "ev")
			return err
		},
		"Entries": func() error {
			_, err := st.Entries(ctx, "ev", a.id, 0, all, 0)
			return err
		},
		"EntriesByKey": func() error {
			_, err := st.EntriesByKey(ctx, "ev", "k")
			return err
		},
		"Scan": func() error {
			return st.Scan(ctx, "ev", func(store.Stored) error { return nil })
		},
		"ReadTreeHashes": func() error {
			_, err := st.ReadTreeHashes(ctx, "ev", a.id, []int64{0})
			return err
		},
		"LatestCheckpoint": func() error {
			_, err := st.LatestCheckpoint(ctx, "ev", a.id)
			return err
		},
		"Checkpoints": func() error {
			_, err := st.Checkpoints(ctx, "ev", a.id)
			return err
		},
		"View": func() error {
			_, err := st.View(ctx, "ev", "v", "k")
			return err
		},
		"ViewRows": func() error {
			_, err := st.ViewRows(ctx, "ev", "v")
			return err
		},
		"ReplaceViews": func() error { return st.ReplaceViews(ctx, "ev", nil) },
	}
	for name, call := range calls {
		wantErr(t, name+" after Close", call(), store.ErrClosed)
	}
}

// testConcurrent commits from many goroutines at once, each its own author,
// while others read.
func (s *suite) testConcurrent(t *testing.T) {
	st := s.open(t)
	const writers, batches, per = 16, 10, 5
	authors := make([]*author, writers)
	logs := make([][]store.Stored, writers)
	for i := range authors {
		authors[i] = newAuthor(byte(10 + i))
		logs[i] = authors[i].run(t, "ev", fmt.Sprintf("key%d", i%3), int64(1000+i), batches*per)
	}
	errc := make(chan error, writers+4)
	var wg sync.WaitGroup
	for i := range writers {
		wg.Go(func() {
			a := authors[i]
			for b := range batches {
				es := logs[i][b*per : (b+1)*per]
				batch := &store.Batch{
					Event:      "ev",
					Entries:    es,
					TreeHashes: []store.TreeHash{{Node: a.id, Index: int64(b), Hash: es[0].Hash}},
					Views:      []store.ViewRow{{View: "progress", Key: a.id.String(), Value: fmt.Appendf(nil, "%d", b)}},
					Checkpoints: []store.Checkpoint{{Node: a.id, Size: uint64((b + 1) * per), Root: es[per-1].Hash,
						Note: fmt.Appendf(nil, "size %d\n", (b+1)*per)}},
				}
				if err := st.Commit(ctx, batch); err != nil {
					errc <- fmt.Errorf("writer %d batch %d: %w", i, b, err)
					return
				}
			}
		})
	}
	done := make(chan struct{})
	var readers sync.WaitGroup
	for r := range 4 {
		readers.Go(func() {
			for {
				select {
				case <-done:
					return
				default:
				}
				var err error
				switch r {
				case 0:
					var v map[ledger.NodeID]uint64
					v, err = st.Vector(ctx, "ev")
					for n, seq := range v {
						if seq%per != 0 {
							err = fmt.Errorf("vector saw %s at seq %d: half a batch is visible", n, seq)
						}
					}
				case 1:
					var prev *ledger.Entry
					err = st.Scan(ctx, "ev", func(e store.Stored) error {
						if prev != nil && ledger.Less(e.Entry, prev) {
							return fmt.Errorf("scan out of order: %v after %v", e.Entry.HLC, prev.HLC)
						}
						prev = e.Entry
						return nil
					})
				case 2:
					_, err = st.EntriesByKey(ctx, "ev", "key1")
				case 3:
					_, err = st.ViewRows(ctx, "ev", "progress")
				}
				if err != nil {
					errc <- fmt.Errorf("reader %d: %w", r, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(done)
	readers.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	if t.Failed() {
		return
	}
	want := map[ledger.NodeID]uint64{}
	for i, a := range authors {
		want[a.id] = batches * per
		checkLog(t, st, "ev", a, logs[i])
		c, err := st.LatestCheckpoint(ctx, "ev", a.id)
		if err != nil || c.Size != batches*per {
			t.Fatalf("LatestCheckpoint(writer %d) = %+v, %v", i, c, err)
		}
	}
	checkVector(t, st, "ev", want)
	n := 0
	if err := st.Scan(ctx, "ev", func(store.Stored) error { n++; return nil }); err != nil || n != writers*batches*per {
		t.Fatalf("Scan saw %d entries, %v; want %d", n, err, writers*batches*per)
	}
	rows, err := st.ViewRows(ctx, "ev", "progress")
	if err != nil || len(rows) != writers {
		t.Fatalf("ViewRows(progress) = %d rows, %v; want %d", len(rows), err, writers)
	}
}

// testConcurrentSameAuthor races commits of one author's log: re-deliveries
// of the same entries all succeed, and of several forks at one seq exactly
// one wins.
func (s *suite) testConcurrentSameAuthor(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 40)
	const goroutines = 8
	errc := make(chan error, goroutines)
	var wg sync.WaitGroup
	for g := range goroutines {
		wg.Go(func() {
			for b := 0; b < len(es); b += 4 {
				if err := st.Commit(ctx, &store.Batch{Event: "ev", Entries: es[b : b+4]}); err != nil {
					errc <- fmt.Errorf("goroutine %d batch at %d: %w", g, b, err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	checkLog(t, st, "ev", a, es)

	// Forks: each goroutine tries its own seq 1 for author b.
	b := newAuthor(2)
	forks := make([]store.Stored, goroutines)
	for g := range forks {
		forks[g] = b.make(t, "ev", 1, ledger.Hash{}, ledger.HLC{Wall: 1}, "k", fmt.Sprintf(`{"fork":%d}`, g))
	}
	results := make([]error, goroutines)
	for g := range goroutines {
		wg.Go(func() {
			results[g] = st.Commit(ctx, &store.Batch{Event: "ev", Entries: forks[g : g+1]})
		})
	}
	wg.Wait()
	winner := -1
	for g, err := range results {
		switch {
		case err == nil && winner >= 0:
			t.Fatalf("forks %d and %d both committed", winner, g)
		case err == nil:
			winner = g
		case !errors.Is(err, store.ErrConflict):
			t.Fatalf("fork %d: %v, want nil or ErrConflict", g, err)
		}
	}
	if winner < 0 {
		t.Fatal("no fork committed")
	}
	checkLog(t, st, "ev", b, forks[winner:winner+1])
}

func (s *suite) testReopen(t *testing.T) {
	if s.o.Reopen == nil {
		t.Skip("storetest: Opener.Reopen not set; durability across reopen not checked")
	}
	st := s.open(t)
	a, b := newAuthor(1), newAuthor(2)
	as := a.run(t, "ev", "k", 1000, 3)
	bs := b.run(t, "other", "k", 1000, 2)
	commit(t, st, fullBatch("ev", a.id, as))
	commit(t, st, &store.Batch{Event: "other", Entries: bs, Views: []store.ViewRow{row("v", "k", "other")}})
	if err := st.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}

	re := s.o.Reopen(t, st)
	if re == nil {
		t.Fatal("storetest: Reopen returned a nil store")
	}
	t.Cleanup(func() {
		if err := re.Close(); err != nil {
			t.Errorf("Close reopened store: %v", err)
		}
	})
	checkLog(t, re, "ev", a, as)
	checkLog(t, re, "other", b, bs)
	checkView(t, re, "ev", "orders", row("orders", "o1", `{"state":"open"}`))
	checkView(t, re, "other", "v", row("v", "k", "other"))
	if c, err := re.LatestCheckpoint(ctx, "ev", a.id); err != nil || !sameCheckpoint(c, fullBatch("ev", a.id, nil).Checkpoints[0]) {
		t.Fatalf("reopened LatestCheckpoint = %+v, %v", c, err)
	}
	if h, err := re.ReadTreeHashes(ctx, "ev", a.id, []int64{0, 1}); err != nil || h[0] != hashOf("t0") || h[1] != hashOf("t1") {
		t.Fatalf("reopened ReadTreeHashes = %v, %v", h, err)
	}
	// The reopened store continues the logs and still rejects forks.
	more := a.run(t, "ev", "k", 5000, 2)
	commit(t, re, &store.Batch{Event: "ev", Entries: more})
	checkLog(t, re, "ev", a, concat(as, more))
	err := re.Commit(ctx, &store.Batch{Event: "other", Entries: []store.Stored{b.fork(t, bs[1])}})
	wantErr(t, "fork after reopen", err, store.ErrConflict)
}

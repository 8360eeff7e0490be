package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"

	"canopy/ledger"
	"canopy/store"
)

// checkHead fails unless the author's head in event is (seq, hash).
func checkHead(t *testing.T, st store.Store, event string, a *author, seq uint64, hash ledger.Hash) {
	t.Helper()
	gotSeq, gotHash, err := st.Head(ctx, event, a.id)
	if err != nil {
		t.Fatalf("Head(%s): %v", event, err)
	}
	if gotSeq != seq || gotHash != hash {
		t.Fatalf("Head(%s) = (%d, %s), want (%d, %s)", event, gotSeq, gotHash, seq, hash)
	}
}

// checkLog fails unless the author's whole log in event is want.
func checkLog(t *testing.T, st store.Store, event string, a *author, want []store.Stored) {
	t.Helper()
	got, err := st.Entries(ctx, event, a.id, 0, all, 0)
	if err != nil {
		t.Fatalf("Entries(%s): %v", event, err)
	}
	checkSame(t, "Entries("+event+")", got, want)
	if len(want) == 0 {
		checkHead(t, st, event, a, 0, ledger.Hash{})
	} else {
		last := want[len(want)-1]
		checkHead(t, st, event, a, last.Entry.Seq, last.Hash)
	}
}

func checkVector(t *testing.T, st store.Store, event string, want map[ledger.NodeID]uint64) {
	t.Helper()
	got, err := st.Vector(ctx, event)
	if err != nil {
		t.Fatalf("Vector(%s): %v", event, err)
	}
	if len(got) != len(want) {
		t.Fatalf("Vector(%s) = %v, want %v", event, got, want)
	}
	for n, seq := range want {
		if got[n] != seq {
			t.Fatalf("Vector(%s) = %v, want %v", event, got, want)
		}
	}
}

func (s *suite) testEmpty(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	checkLog(t, st, "ev", a, nil)
	checkVector(t, st, "ev", nil)
	got, err := st.EntriesByKey(ctx, "ev", "k")
	if err != nil || len(got) != 0 {
		t.Fatalf("EntriesByKey on an empty store = %d entries, %v; want none, nil", len(got), err)
	}
	n := 0
	if err := st.Scan(ctx, "ev", func(store.Stored) error { n++; return nil }); err != nil || n != 0 {
		t.Fatalf("Scan on an empty store: %d calls, %v; want 0, nil", n, err)
	}
}

func (s *suite) testCommitAndRead(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "order/1", 1000, 3)
	// One entry with a large body, to prove bodies are kept whole.
	big := bytes.Repeat([]byte("x"), 256<<10)
	tp := a.tips["ev"]
	e := a.make(t, "ev", tp.seq+1, tp.hash, ledger.HLC{Wall: 2000, Logical: 7}, "order/2", `{"big":"`+string(big)+`"}`)
	a.tips["ev"] = tip{e.Entry.Seq, e.Hash}
	es = append(es, e)
	commit(t, st, &store.Batch{Event: "ev", Entries: es})

	checkLog(t, st, "ev", a, es)
	checkVector(t, st, "ev", map[ledger.NodeID]uint64{a.id: 4})
	got, err := st.Entries(ctx, "ev", a.id, 1, all, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range got {
		if err := g.Entry.Verify(a.pub); err != nil {
			t.Fatalf("stored entry %s no longer verifies: %v", ref(g), err)
		}
	}
	byKey, err := st.EntriesByKey(ctx, "ev", "order/2")
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, "EntriesByKey(order/2)", byKey, es[3:])
}

func (s *suite) testEmptyBatch(t *testing.T) {
	st := s.open(t)
	commit(t, st, &store.Batch{Event: "ev"})
	checkVector(t, st, "ev", nil)
}

func (s *suite) testInvalid(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 2)
	other := newAuthor(2).run(t, "other", "k", 1000, 1)
	badHash := es[1]
	badHash.Hash[0] ^= 1
	cases := []struct {
		name string
		b    *store.Batch
	}{
		{"nil batch", nil},
		{"no event", &store.Batch{Entries: es}},
		{"nil entry", &store.Batch{Event: "ev", Entries: []store.Stored{es[0], {Hash: es[1].Hash}}}},
		{"entry of another event", &store.Batch{Event: "ev", Entries: []store.Stored{es[0], other[0]}}},
		{"hash not the entry's", &store.Batch{Event: "ev", Entries: []store.Stored{es[0], badHash}}},
		{"view without a name", &store.Batch{Event: "ev", Entries: es, Views: []store.ViewRow{{Key: "k", Value: []byte("v")}}}},
	}
	for _, c := range cases {
		err := st.Commit(ctx, c.b)
		wantErr(t, c.name, err, store.ErrInvalid)
	}
	checkLog(t, st, "ev", a, nil)
	checkVector(t, st, "other", nil)
	// The store is still usable.
	commit(t, st, &store.Batch{Event: "ev", Entries: es})
	checkLog(t, st, "ev", a, es)
}

func (s *suite) testIdempotent(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 5)
	commit(t, st, &store.Batch{Event: "ev", Entries: es[:3]})
	commit(t, st, &store.Batch{Event: "ev", Entries: es[:3]})
	checkLog(t, st, "ev", a, es[:3])
	// Overlapping re-delivery: 2..5 after 1..3.
	commit(t, st, &store.Batch{Event: "ev", Entries: es[1:]})
	checkLog(t, st, "ev", a, es)
	// The same entry twice in one batch.
	b := newAuthor(2)
	bs := b.run(t, "ev", "k", 1000, 2)
	commit(t, st, &store.Batch{Event: "ev", Entries: []store.Stored{bs[0], bs[0], bs[1], bs[1]}})
	checkLog(t, st, "ev", b, bs)
	// Only already-stored entries: a no-op.
	commit(t, st, &store.Batch{Event: "ev", Entries: es})
	checkLog(t, st, "ev", a, es)
}

func (s *suite) testUnorderedBatch(t *testing.T) {
	st := s.open(t)
	a, b := newAuthor(1), newAuthor(2)
	as := a.run(t, "ev", "k", 1000, 4)
	bs := b.run(t, "ev", "k", 1000, 3)
	mixed := []store.Stored{as[3], bs[1], as[0], bs[2], as[2], bs[0], as[1]}
	commit(t, st, &store.Batch{Event: "ev", Entries: mixed})
	checkLog(t, st, "ev", a, as)
	checkLog(t, st, "ev", b, bs)
}

func (s *suite) testConflict(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 3)
	commit(t, st, &store.Batch{Event: "ev", Entries: es})

	// A different entry at a stored seq.
	err := st.Commit(ctx, &store.Batch{Event: "ev", Entries: []store.Stored{a.fork(t, es[1])}})
	wantErr(t, "different entry at stored seq 2", err, store.ErrConflict)
	// A fork at the stored head, followed by a new entry.
	f := a.fork(t, es[2])
	after := a.make(t, "ev", 4, f.Hash, ledger.HLC{Wall: 5000}, "k", "{}")
	err = st.Commit(ctx, &store.Batch{Event: "ev", Entries: []store.Stored{f, after}})
	wantErr(t, "fork at head", err, store.ErrConflict)
	checkLog(t, st, "ev", a, es)

	// Two different entries at one new seq in one batch.
	b := newAuthor(2)
	bs := b.run(t, "ev", "k", 1000, 2)
	err = st.Commit(ctx, &store.Batch{Event: "ev", Entries: []store.Stored{bs[0], bs[1], b.fork(t, bs[1])}})
	wantErr(t, "two entries at one seq in one batch", err, store.ErrConflict)
	checkLog(t, st, "ev", b, nil)
}

func (s *suite) testGap(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 5)

	err := st.Commit(ctx, &store.Batch{Event: "ev", Entries: es[1:3]})
	wantErr(t, "log starting at seq 2", err, store.ErrConflict)
	checkLog(t, st, "ev", a, nil)

	err = st.Commit(ctx, &store.Batch{Event: "ev", Entries: []store.Stored{es[0], es[2]}})
	wantErr(t, "batch 1,3", err, store.ErrConflict)
	checkLog(t, st, "ev", a, nil)

	commit(t, st, &store.Batch{Event: "ev", Entries: es[:2]})
	err = st.Commit(ctx, &store.Batch{Event: "ev", Entries: es[3:]})
	wantErr(t, "batch 4,5 after head 2", err, store.ErrConflict)
	checkLog(t, st, "ev", a, es[:2])

	commit(t, st, &store.Batch{Event: "ev", Entries: es[2:]})
	checkLog(t, st, "ev", a, es)
}

func (s *suite) testBrokenChain(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 2)
	commit(t, st, &store.Batch{Event: "ev", Entries: es[:1]})

	wrongPrev := a.make(t, "ev", 2, hashOf("not the head"), ledger.HLC{Wall: 3000}, "k", "{}")
	err := st.Commit(ctx, &store.Batch{Event: "ev", Entries: []store.Stored{wrongPrev}})
	wantErr(t, "seq 2 whose prev is not seq 1", err, store.ErrConflict)

	// Within one batch too.
	b := newAuthor(2)
	b1 := b.make(t, "ev", 1, ledger.Hash{}, ledger.HLC{Wall: 1}, "k", "{}")
	b2 := b.make(t, "ev", 2, hashOf("elsewhere"), ledger.HLC{Wall: 2}, "k", "{}")
	err = st.Commit(ctx, &store.Batch{Event: "ev", Entries: []store.Stored{b1, b2}})
	wantErr(t, "chain broken inside a batch", err, store.ErrConflict)

	checkLog(t, st, "ev", a, es[:1])
	checkLog(t, st, "ev", b, nil)
	commit(t, st, &store.Batch{Event: "ev", Entries: es[1:]})
	checkLog(t, st, "ev", a, es)
}

// fullBatch is a batch touching every table, for atomicity checks.
func fullBatch(event string, node ledger.NodeID, entries []store.Stored) *store.Batch {
	return &store.Batch{
		Event:       event,
		Entries:     entries,
		TreeHashes:  []store.TreeHash{{Node: node, Index: 0, Hash: hashOf("t0")}, {Node: node, Index: 1, Hash: hashOf("t1")}},
		Views:       []store.ViewRow{{View: "orders", Key: "o1", Value: []byte(`{"state":"open"}`)}},
		Checkpoints: []store.Checkpoint{{Node: node, Size: 1, Root: hashOf("root1"), Note: []byte("note\n")}},
	}
}

// checkNothing fails if anything of fullBatch(event, node, ...) is stored.
func checkNothing(t *testing.T, st store.Store, event string, node ledger.NodeID) {
	t.Helper()
	v, err := st.Vector(ctx, event)
	if err != nil || len(v) != 0 {
		t.Fatalf("after a failed batch Vector = %v, %v; want empty", v, err)
	}
	if _, err := st.ReadTreeHashes(ctx, event, node, []int64{0}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after a failed batch ReadTreeHashes: %v, want ErrNotFound", err)
	}
	if _, err := st.View(ctx, event, "orders", "o1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after a failed batch View: %v, want ErrNotFound", err)
	}
	if _, err := st.LatestCheckpoint(ctx, event, node); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("after a failed batch LatestCheckpoint: %v, want ErrNotFound", err)
	}
}

func (s *suite) testAtomicity(t *testing.T) {
	t.Run("gap", func(t *testing.T) {
		st := s.open(t)
		a, b := newAuthor(1), newAuthor(2)
		as := a.run(t, "ev", "k", 1000, 3)
		bs := b.run(t, "ev", "k", 1000, 3)
		// a's entries are fine; b's skip seq 2.
		err := st.Commit(ctx, fullBatch("ev", a.id, []store.Stored{as[0], as[1], as[2], bs[0], bs[2]}))
		wantErr(t, "batch with a gap", err, store.ErrConflict)
		checkNothing(t, st, "ev", a.id)
	})
	t.Run("conflict", func(t *testing.T) {
		st := s.open(t)
		a, b := newAuthor(1), newAuthor(2)
		as := a.run(t, "ev", "k", 1000, 2)
		bs := b.run(t, "ev", "k", 1000, 2)
		other := newAuthor(3)
		ot := other.run(t, "ev", "k", 1000, 1)
		// Store other's seq 1, then send a batch whose last entry forks it.
		commit(t, st, &store.Batch{Event: "ev", Entries: ot})
		err := st.Commit(ctx, fullBatch("ev", a.id, []store.Stored{as[0], as[1], bs[0], bs[1], other.fork(t, ot[0])}))
		wantErr(t, "batch with a conflicting entry", err, store.ErrConflict)
		checkLog(t, st, "ev", a, nil)
		checkLog(t, st, "ev", b, nil)
		checkLog(t, st, "ev", other, ot)
		if _, err := st.View(ctx, "ev", "orders", "o1"); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("view written by a failed batch: %v", err)
		}
		if _, err := st.LatestCheckpoint(ctx, "ev", a.id); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("checkpoint written by a failed batch: %v", err)
		}
		if _, err := st.ReadTreeHashes(ctx, "ev", a.id, []int64{0}); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("tree hash written by a failed batch: %v", err)
		}
	})
	t.Run("success writes all", func(t *testing.T) {
		st := s.open(t)
		a := newAuthor(1)
		as := a.run(t, "ev", "k", 1000, 1)
		commit(t, st, fullBatch("ev", a.id, as))
		checkLog(t, st, "ev", a, as)
		if v, err := st.View(ctx, "ev", "orders", "o1"); err != nil || string(v) != `{"state":"open"}` {
			t.Fatalf("View = %q, %v", v, err)
		}
		if c, err := st.LatestCheckpoint(ctx, "ev", a.id); err != nil || c.Size != 1 {
			t.Fatalf("LatestCheckpoint = %+v, %v", c, err)
		}
		if h, err := st.ReadTreeHashes(ctx, "ev", a.id, []int64{1, 0}); err != nil || len(h) != 2 || h[0] != hashOf("t1") || h[1] != hashOf("t0") {
			t.Fatalf("ReadTreeHashes = %v, %v", h, err)
		}
	})
}

func (s *suite) testIsolation(t *testing.T) {
	st := s.open(t)
	a, b := newAuthor(1), newAuthor(2)
	a1 := a.run(t, "one", "k", 1000, 3)
	b1 := b.run(t, "one", "k", 1000, 2)
	a2 := a.run(t, "two", "k", 1000, 1)
	commit(t, st, &store.Batch{Event: "one", Entries: concat(a1, b1)})
	commit(t, st, &store.Batch{Event: "two", Entries: a2})

	checkLog(t, st, "one", a, a1)
	checkLog(t, st, "one", b, b1)
	checkLog(t, st, "two", a, a2)
	checkLog(t, st, "two", b, nil)
	checkVector(t, st, "one", map[ledger.NodeID]uint64{a.id: 3, b.id: 2})
	checkVector(t, st, "two", map[ledger.NodeID]uint64{a.id: 1})
	checkVector(t, st, "three", nil)

	byKey, err := st.EntriesByKey(ctx, "two", "k")
	if err != nil {
		t.Fatal(err)
	}
	checkSame(t, "EntriesByKey(two)", byKey, a2)
	var scanned []store.Stored
	if err := st.Scan(ctx, "two", func(e store.Stored) error { scanned = append(scanned, e); return nil }); err != nil {
		t.Fatal(err)
	}
	checkSame(t, "Scan(two)", scanned, a2)
}

func (s *suite) testEntriesRange(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 10)
	commit(t, st, &store.Batch{Event: "ev", Entries: es})
	cases := []struct {
		from, to uint64
		limit    int
		want     []store.Stored
	}{
		{0, all, 0, es},
		{1, 10, 0, es},
		{1, 10, -1, es},
		{3, 5, 0, es[2:5]},
		{3, 5, 2, es[2:4]},
		{4, 4, 0, es[3:4]},
		{8, all, 100, es[7:]},
		{1, all, 3, es[:3]},
		{11, all, 0, nil},
		{6, 5, 0, nil},
		{0, 0, 0, nil},
	}
	for _, c := range cases {
		got, err := st.Entries(ctx, "ev", a.id, c.from, c.to, c.limit)
		if err != nil {
			t.Fatalf("Entries(%d, %d, %d): %v", c.from, c.to, c.limit, err)
		}
		checkSame(t, fmt.Sprintf("Entries(%d, %d, %d)", c.from, c.to, c.limit), got, c.want)
		// A store that also serves entries as stored serves the same ones.
		if enc, ok := st.(store.EncodedReader); ok {
			raw, err := enc.EncodedEntries(ctx, "ev", a.id, c.from, c.to, c.limit)
			if err != nil {
				t.Fatalf("EncodedEntries(%d, %d, %d): %v", c.from, c.to, c.limit, err)
			}
			if len(raw) != len(c.want) {
				t.Fatalf("EncodedEntries(%d, %d, %d): %d entries, want %d", c.from, c.to, c.limit, len(raw), len(c.want))
			}
			for i := range raw {
				if !bytes.Equal(raw[i], c.want[i].Entry.Encode()) {
					t.Fatalf("EncodedEntries(%d, %d, %d): entry %d differs from its encoding", c.from, c.to, c.limit, i)
				}
			}
		}
	}
	got, err := st.Entries(ctx, "ev", newAuthor(9).id, 0, all, 0)
	if err != nil || len(got) != 0 {
		t.Fatalf("Entries of an unknown author = %d, %v", len(got), err)
	}
}

func (s *suite) testOrdering(t *testing.T) {
	st := s.open(t)
	a, b, c := newAuthor(1), newAuthor(2), newAuthor(3)
	h := func(w int64, l uint32) ledger.HLC { return ledger.HLC{Wall: w, Logical: l} }
	// HLCs chosen so that wall, then logical, then node, then seq decide.
	var all []store.Stored
	add := func(au *author, key string, hlc ledger.HLC) {
		all = append(all, au.next(t, "ev", key, hlc))
	}
	add(a, "x", h(300, 0))
	add(a, "y", h(300, 0)) // same author, same hlc: seq decides
	add(a, "x", h(100, 5))
	add(b, "x", h(100, 5)) // same hlc as a's: node decides
	add(b, "x", h(100, 2))
	add(c, "y", h(50, 0))
	add(c, "x", h(100, 5))
	add(c, "x", h(1<<40, 0))
	add(b, "y", h(0, 0))

	// Commit in several batches, in an order unlike the sorted one.
	commit(t, st, &store.Batch{Event: "ev", Entries: filter(all, c.id)})
	commit(t, st, &store.Batch{Event: "ev", Entries: filter(all, b.id)})
	commit(t, st, &store.Batch{Event: "ev", Entries: filter(all, a.id)})

	sorted := slices.Clone(all)
	slices.SortFunc(sorted, func(x, y store.Stored) int {
		if ledger.Less(x.Entry, y.Entry) {
			return -1
		}
		if ledger.Less(y.Entry, x.Entry) {
			return 1
		}
		return 0
	})
	var scanned []store.Stored
	if err := st.Scan(ctx, "ev", func(e store.Stored) error { scanned = append(scanned, e); return nil }); err != nil {
		t.Fatal(err)
	}
	checkSame(t, "Scan", scanned, sorted)

	for _, key := range []string{"x", "y", "z"} {
		var want []store.Stored
		for _, e := range sorted {
			if e.Entry.Key == key {
				want = append(want, e)
			}
		}
		got, err := st.EntriesByKey(ctx, "ev", key)
		if err != nil {
			t.Fatal(err)
		}
		checkSame(t, "EntriesByKey("+key+")", got, want)
	}
}

func filter(es []store.Stored, node ledger.NodeID) []store.Stored {
	var out []store.Stored
	for _, e := range es {
		if e.Entry.Node == node {
			out = append(out, e)
		}
	}
	return out
}

func (s *suite) testScanStops(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 1500) // more than one page of any sane paging
	commit(t, st, &store.Batch{Event: "ev", Entries: es})
	var seen []store.Stored
	if err := st.Scan(ctx, "ev", func(e store.Stored) error { seen = append(seen, e); return nil }); err != nil {
		t.Fatal(err)
	}
	checkSame(t, "Scan", seen, es)

	stop := errors.New("enough")
	n := 0
	err := st.Scan(ctx, "ev", func(store.Stored) error {
		n++
		if n == 700 {
			return fmt.Errorf("wrapped: %w", stop)
		}
		return nil
	})
	if !errors.Is(err, stop) {
		t.Fatalf("Scan returned %v, want the callback's error", err)
	}
	if n != 700 {
		t.Fatalf("Scan called fn %d times after it failed at call 700", n)
	}

	cctx, cancel := context.WithCancel(ctx)
	n = 0
	err = st.Scan(cctx, "ev", func(store.Stored) error {
		n++
		if n == 10 {
			cancel()
		}
		return nil
	})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Scan with a canceled context returned %v after %d calls, want context.Canceled", err, n)
	}
}

// testScanWhileCommitting commits from inside Scan's callback: a reducer
// folding entries into views does exactly this, and it must not deadlock.
func (s *suite) testScanWhileCommitting(t *testing.T) {
	st := s.open(t)
	a := newAuthor(1)
	es := a.run(t, "ev", "k", 1000, 20)
	commit(t, st, &store.Batch{Event: "ev", Entries: es})
	more := a.run(t, "ev", "k", 5000, 20)
	i := 0
	err := st.Scan(ctx, "ev", func(e store.Stored) error {
		b := &store.Batch{Event: "ev", Views: []store.ViewRow{{View: "seen", Key: fmt.Sprintf("%03d", e.Entry.Seq), Value: e.Hash[:]}}}
		if i < len(more) {
			b.Entries = more[i : i+1]
		}
		i++
		return st.Commit(ctx, b)
	})
	if err != nil {
		t.Fatalf("Scan with commits in the callback: %v", err)
	}
	rows, err := st.ViewRows(ctx, "ev", "seen")
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) < 20 {
		t.Fatalf("callback committed %d view rows, want at least 20", len(rows))
	}
	checkLog(t, st, "ev", a, concat(es, more))
}

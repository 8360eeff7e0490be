package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"testing"

	"canopy/ledger"
	"canopy/store"
)

func (s *suite) testTreeHashes(t *testing.T) {
	st := s.open(t)
	a, b := newAuthor(1), newAuthor(2)
	if _, err := st.ReadTreeHashes(ctx, "ev", a.id, []int64{0}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReadTreeHashes on an empty store: %v, want ErrNotFound", err)
	}
	var ths []store.TreeHash
	for i := range int64(10) {
		ths = append(ths, store.TreeHash{Node: a.id, Index: i, Hash: hashOf(fmt.Sprintf("a%d", i))})
	}
	ths = append(ths, store.TreeHash{Node: b.id, Index: 0, Hash: hashOf("b0")})
	commit(t, st, &store.Batch{Event: "ev", TreeHashes: ths})

	got, err := st.ReadTreeHashes(ctx, "ev", a.id, []int64{5, 0, 9, 5})
	if err != nil {
		t.Fatal(err)
	}
	want := []ledger.Hash{hashOf("a5"), hashOf("a0"), hashOf("a9"), hashOf("a5")}
	if len(got) != len(want) {
		t.Fatalf("ReadTreeHashes returned %d hashes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("ReadTreeHashes[%d] = %s, want %s", i, got[i], want[i])
		}
	}
	if got, err := st.ReadTreeHashes(ctx, "ev", a.id, nil); err != nil || len(got) != 0 {
		t.Fatalf("ReadTreeHashes(no indexes) = %v, %v; want none, nil", got, err)
	}
	if got, err := st.ReadTreeHashes(ctx, "ev", b.id, []int64{0}); err != nil || got[0] != hashOf("b0") {
		t.Fatalf("ReadTreeHashes(b, 0) = %v, %v; want b's own hash", got, err)
	}
	if _, err := st.ReadTreeHashes(ctx, "ev", a.id, []int64{3, 42}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReadTreeHashes with a missing index: %v, want ErrNotFound", err)
	}
	if _, err := st.ReadTreeHashes(ctx, "other", a.id, []int64{0}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("ReadTreeHashes in another event: %v, want ErrNotFound", err)
	}

	// Re-committing the same hashes is harmless; a different one conflicts.
	commit(t, st, &store.Batch{Event: "ev", TreeHashes: ths[:3]})
	err = st.Commit(ctx, &store.Batch{Event: "ev", TreeHashes: []store.TreeHash{{Node: a.id, Index: 10, Hash: hashOf("a10")}, {Node: a.id, Index: 3, Hash: hashOf("evil")}}})
	wantErr(t, "different tree hash at a stored index", err, store.ErrConflict)
	if got, err := st.ReadTreeHashes(ctx, "ev", a.id, []int64{3}); err != nil || got[0] != hashOf("a3") {
		t.Fatalf("after a conflicting tree hash, index 3 = %v, %v; want the original", got, err)
	}
	if _, err := st.ReadTreeHashes(ctx, "ev", a.id, []int64{10}); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("a conflicting batch stored index 10: %v", err)
	}
}

func (s *suite) testCheckpoints(t *testing.T) {
	st := s.open(t)
	a, b := newAuthor(1), newAuthor(2)
	if _, err := st.LatestCheckpoint(ctx, "ev", a.id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestCheckpoint on an empty store: %v, want ErrNotFound", err)
	}
	if cs, err := st.Checkpoints(ctx, "ev", a.id); err != nil || len(cs) != 0 {
		t.Fatalf("Checkpoints on an empty store = %v, %v; want none, nil", cs, err)
	}
	cp := func(n ledger.NodeID, size uint64, note string) store.Checkpoint {
		return store.Checkpoint{Node: n, Size: size, Root: hashOf(fmt.Sprintf("root%d", size)), Note: []byte(note)}
	}
	commit(t, st, &store.Batch{Event: "ev", Checkpoints: []store.Checkpoint{cp(a.id, 5, "five\n")}})
	commit(t, st, &store.Batch{Event: "ev", Checkpoints: []store.Checkpoint{cp(a.id, 2, "two\n"), cp(b.id, 100, "b\n")}})
	commit(t, st, &store.Batch{Event: "ev", Checkpoints: []store.Checkpoint{cp(a.id, 9, "nine\n\x00binary")}})

	checkCPs := func(want ...store.Checkpoint) {
		t.Helper()
		got, err := st.Checkpoints(ctx, "ev", a.id)
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(want) {
			t.Fatalf("Checkpoints = %d, want %d", len(got), len(want))
		}
		for i := range want {
			if !sameCheckpoint(got[i], want[i]) {
				t.Fatalf("Checkpoints[%d] = %+v, want %+v", i, got[i], want[i])
			}
		}
		latest, err := st.LatestCheckpoint(ctx, "ev", a.id)
		if err != nil || !sameCheckpoint(latest, want[len(want)-1]) {
			t.Fatalf("LatestCheckpoint = %+v, %v; want %+v", latest, err, want[len(want)-1])
		}
	}
	checkCPs(cp(a.id, 2, "two\n"), cp(a.id, 5, "five\n"), cp(a.id, 9, "nine\n\x00binary"))

	// The same checkpoint with a longer note (another cosignature) replaces the note.
	commit(t, st, &store.Batch{Event: "ev", Checkpoints: []store.Checkpoint{cp(a.id, 5, "five\n\n— witness sig\n")}})
	checkCPs(cp(a.id, 2, "two\n"), cp(a.id, 5, "five\n\n— witness sig\n"), cp(a.id, 9, "nine\n\x00binary"))

	// Another root at a stored size is a fork: a conflict, and nothing changes.
	fork := cp(a.id, 5, "fork\n")
	fork.Root = hashOf("another root")
	err := st.Commit(ctx, &store.Batch{Event: "ev", Checkpoints: []store.Checkpoint{cp(a.id, 12, "twelve\n"), fork}})
	wantErr(t, "checkpoint with another root at a stored size", err, store.ErrConflict)
	checkCPs(cp(a.id, 2, "two\n"), cp(a.id, 5, "five\n\n— witness sig\n"), cp(a.id, 9, "nine\n\x00binary"))

	if c, err := st.LatestCheckpoint(ctx, "ev", b.id); err != nil || !sameCheckpoint(c, cp(b.id, 100, "b\n")) {
		t.Fatalf("LatestCheckpoint(b) = %+v, %v", c, err)
	}
	if _, err := st.LatestCheckpoint(ctx, "other", a.id); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("LatestCheckpoint in another event: %v, want ErrNotFound", err)
	}
}

func sameCheckpoint(a, b store.Checkpoint) bool {
	return a.Node == b.Node && a.Size == b.Size && a.Root == b.Root && bytes.Equal(a.Note, b.Note)
}

func checkView(t *testing.T, st store.Store, event, view string, want ...store.ViewRow) {
	t.Helper()
	got, err := st.ViewRows(ctx, event, view)
	if err != nil {
		t.Fatalf("ViewRows(%s, %s): %v", event, view, err)
	}
	if len(got) != len(want) {
		t.Fatalf("ViewRows(%s, %s) = %s, want %s", event, view, rowsString(got), rowsString(want))
	}
	for i := range want {
		if got[i].View != want[i].View || got[i].Key != want[i].Key || !bytes.Equal(got[i].Value, want[i].Value) || got[i].Value == nil {
			t.Fatalf("ViewRows(%s, %s) = %s, want %s", event, view, rowsString(got), rowsString(want))
		}
		v, err := st.View(ctx, event, view, want[i].Key)
		if err != nil || !bytes.Equal(v, want[i].Value) || v == nil {
			t.Fatalf("View(%s, %s, %s) = %q, %v; want %q", event, view, want[i].Key, v, err, want[i].Value)
		}
	}
}

func rowsString(rs []store.ViewRow) string {
	var b bytes.Buffer
	for _, r := range rs {
		fmt.Fprintf(&b, "[%s/%s=%q]", r.View, r.Key, r.Value)
	}
	return b.String()
}

func row(view, key, value string) store.ViewRow {
	return store.ViewRow{View: view, Key: key, Value: []byte(value)}
}

func (s *suite) testViews(t *testing.T) {
	st := s.open(t)
	if _, err := st.View(ctx, "ev", "orders", "o1"); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("View on an empty store: %v, want ErrNotFound", err)
	}
	checkView(t, st, "ev", "orders")

	commit(t, st, &store.Batch{Event: "ev", Views: []store.ViewRow{
		row("orders", "c", "3"), row("orders", "a", "1"), row("stock", "x", "10"), row("orders", "b", "2"),
		row("orders", "B", "upper"), row("orders", "bin", "\x00\xff\x00"),
	}})
	commit(t, st, &store.Batch{Event: "other", Views: []store.ViewRow{row("orders", "a", "other event")}})
	checkView(t, st, "ev", "orders", row("orders", "B", "upper"), row("orders", "a", "1"), row("orders", "b", "2"), row("orders", "bin", "\x00\xff\x00"), row("orders", "c", "3"))
	checkView(t, st, "ev", "stock", row("stock", "x", "10"))
	checkView(t, st, "other", "orders", row("orders", "a", "other event"))

	// Update, delete (nil value), later rows win, deleting a missing row is fine,
	// and an empty non-nil value is a row.
	commit(t, st, &store.Batch{Event: "ev", Views: []store.ViewRow{
		row("orders", "b", "2 paid"),
		{View: "orders", Key: "c"},
		row("orders", "d", "first"), row("orders", "d", "second"),
		row("orders", "e", "gone"), {View: "orders", Key: "e"},
		{View: "orders", Key: "never"},
		{View: "orders", Key: "empty", Value: []byte{}},
	}})
	checkView(t, st, "ev", "orders", row("orders", "B", "upper"), row("orders", "a", "1"), row("orders", "b", "2 paid"),
		row("orders", "bin", "\x00\xff\x00"), row("orders", "d", "second"), row("orders", "empty", ""))
	for _, k := range []string{"c", "e", "never"} {
		if _, err := st.View(ctx, "ev", "orders", k); !errors.Is(err, store.ErrNotFound) {
			t.Fatalf("View of deleted row %q: %v, want ErrNotFound", k, err)
		}
	}
	checkView(t, st, "other", "orders", row("orders", "a", "other event"))

	// Pages: keys after the cursor, sorted byte-wise, at most limit.
	page := func(after string, limit int, want ...string) {
		t.Helper()
		got, err := st.ViewPage(ctx, "ev", "orders", after, limit)
		if err != nil {
			t.Fatalf("ViewPage(%q, %d): %v", after, limit, err)
		}
		var keys []string
		for _, r := range got {
			keys = append(keys, r.Key)
			if r.View != "orders" || r.Value == nil {
				t.Fatalf("ViewPage(%q, %d) row %+v", after, limit, r)
			}
		}
		if fmt.Sprint(keys) != fmt.Sprint(want) {
			t.Fatalf("ViewPage(%q, %d) = %v, want %v", after, limit, keys, want)
		}
	}
	page("", 2, "B", "a")
	page("a", 2, "b", "bin")
	page("bin", 10, "d", "empty")
	page("empty", 10)
	page("", 0)

	// Many rows at once, in the order asked, nil for missing ones,
	// duplicates answered twice, other events not seen.
	keys := []store.ViewKey{{View: "orders", Key: "d"}, {View: "stock", Key: "x"}, {View: "orders", Key: "c"},
		{View: "orders", Key: "empty"}, {View: "orders", Key: "d"}, {View: "lots", Key: "a"}}
	for i := 0; i < 450; i++ { // more than one chunk of an implementation's IN list
		keys = append(keys, store.ViewKey{View: "orders", Key: fmt.Sprintf("missing-%d", i)})
	}
	vals, err := st.ReadViews(ctx, "ev", keys)
	if err != nil {
		t.Fatal(err)
	}
	if len(vals) != len(keys) {
		t.Fatalf("ReadViews returned %d values for %d keys", len(vals), len(keys))
	}
	want := []string{"second", "10", "", "", "second", ""}
	for i, w := range want {
		missing := i == 2 || i == 5
		if missing != (vals[i] == nil) || string(vals[i]) != w {
			t.Fatalf("ReadViews[%d] (%v) = %q (nil %v), want %q (missing %v)", i, keys[i], vals[i], vals[i] == nil, w, missing)
		}
	}
	for i := len(want); i < len(keys); i++ {
		if vals[i] != nil {
			t.Fatalf("ReadViews[%d] of a missing row = %q", i, vals[i])
		}
	}
	if vals, err := st.ReadViews(ctx, "ev", nil); err != nil || len(vals) != 0 {
		t.Fatalf("ReadViews(nil) = %v, %v", vals, err)
	}
}

func (s *suite) testReplaceViews(t *testing.T) {
	st := s.open(t)
	commit(t, st, &store.Batch{Event: "ev", Views: []store.ViewRow{row("orders", "a", "1"), row("orders", "b", "2"), row("stock", "x", "1")}})
	commit(t, st, &store.Batch{Event: "other", Views: []store.ViewRow{row("orders", "a", "keep")}})

	if err := st.ReplaceViews(ctx, "ev", []store.ViewRow{row("orders", "z", "26"), row("lots", "1", "open"), row("orders", "y", "25")}); err != nil {
		t.Fatal(err)
	}
	checkView(t, st, "ev", "orders", row("orders", "y", "25"), row("orders", "z", "26"))
	checkView(t, st, "ev", "stock")
	checkView(t, st, "ev", "lots", row("lots", "1", "open"))
	checkView(t, st, "other", "orders", row("orders", "a", "keep"))

	err := st.ReplaceViews(ctx, "ev", []store.ViewRow{row("orders", "q", "1"), {Key: "no view", Value: []byte("x")}})
	wantErr(t, "ReplaceViews with a nameless view", err, store.ErrInvalid)
	checkView(t, st, "ev", "orders", row("orders", "y", "25"), row("orders", "z", "26"))

	if err := st.ReplaceViews(ctx, "ev", nil); err != nil {
		t.Fatal(err)
	}
	checkView(t, st, "ev", "orders")
	checkView(t, st, "ev", "lots")
	checkView(t, st, "other", "orders", row("orders", "a", "keep"))
}

// testCheckedViews: with CheckViews, a batch's view rows are written only
// if each key still holds the Prior of its first row; otherwise Commit
// returns ErrStaleView and nothing of the batch is stored. Without it,
// priors are ignored.
func (s *suite) testCheckedViews(t *testing.T) {
	st := s.open(t)
	prior := func(view, key, value, was string) store.ViewRow {
		r := row(view, key, value)
		r.Prior = []byte(was)
		return r
	}
	commit(t, st, &store.Batch{Event: "ev", Views: []store.ViewRow{
		row("lots", "a", "1"), row("lots", "b", "1"), row("lots", "e", ""),
	}})

	// Priors that hold: an update, an insert (nil prior), a delete, an
	// update of an empty value, and two rows of one key (the first row's
	// prior is the one checked).
	commit(t, st, &store.Batch{Event: "ev", CheckViews: true, Views: []store.ViewRow{
		prior("lots", "a", "2", "1"),
		row("lots", "n", "new"),
		{View: "lots", Key: "b", Prior: []byte("1")},
		prior("lots", "e", "filled", ""),
		row("lots", "m", "m1"), prior("lots", "m", "m2", "m1"),
	}})
	checkView(t, st, "ev", "lots", row("lots", "a", "2"), row("lots", "e", "filled"), row("lots", "m", "m2"), row("lots", "n", "new"))

	// Each way a prior can be stale fails the whole batch, entries included.
	a := newAuthor(41)
	for name, stale := range map[string]store.ViewRow{
		"update of a changed row":     prior("lots", "a", "3", "1"),
		"insert over a stored row":    row("lots", "a", "3"),
		"update of a deleted row":     prior("lots", "b", "2", "1"),
		"delete of a changed row":     {View: "lots", Key: "n", Prior: []byte("old")},
		"delete of an absent row":     {View: "lots", Key: "gone", Prior: []byte("x")},
		"absent row written by other": {View: "lots", Key: "a"},
		"empty value taken for none":  row("lots", "e", "x"),
	} {
		t.Run(name, func(t *testing.T) {
			e := a.make(t, "ev", 1, ledger.Hash{}, ledger.HLC{Wall: 1000}, "k", "body")
			b := &store.Batch{Event: "ev", CheckViews: true, Entries: []store.Stored{e},
				TreeHashes: []store.TreeHash{{Node: a.id, Index: 0, Hash: e.Hash}},
				Views:      []store.ViewRow{row("lots", "fresh", "1"), stale}}
			err := st.Commit(ctx, b)
			wantErr(t, "Commit with a stale prior", err, store.ErrStaleView)
			if v, err := st.Vector(ctx, "ev"); err != nil || len(v) != 0 {
				t.Fatalf("after a stale batch Vector = %v, %v; want empty", v, err)
			}
			checkView(t, st, "ev", "lots", row("lots", "a", "2"), row("lots", "e", "filled"), row("lots", "m", "m2"), row("lots", "n", "new"))
		})
	}

	// With Refold, a stale prior makes Commit fold again from the stored
	// values (read inside the commit) and write what that gives; the
	// entries are stored too.
	t.Run("refold", func(t *testing.T) {
		e := a.make(t, "ev", 1, ledger.Hash{}, ledger.HLC{Wall: 1000}, "k", "body")
		var asked [][]byte
		b := &store.Batch{Event: "ev", CheckViews: true, Entries: []store.Stored{e},
			TreeHashes: []store.TreeHash{{Node: a.id, Index: 0, Hash: e.Hash}},
			Views:      []store.ViewRow{prior("lots", "a", "3", "1"), row("lots", "q", "new")},
			Refold: func(ctx context.Context, read store.ReadViewsFunc) ([]store.ViewRow, error) {
				vals, err := read(ctx, []store.ViewKey{{View: "lots", Key: "a"}, {View: "lots", Key: "q"}, {View: "lots", Key: "e"}})
				if err != nil {
					return nil, err
				}
				asked = vals
				return []store.ViewRow{row("lots", "a", string(vals[0])+"+3"), row("lots", "q", "new")}, nil
			}}
		commit(t, st, b)
		if len(asked) != 3 || string(asked[0]) != "2" || asked[1] != nil || string(asked[2]) != "filled" {
			t.Fatalf("Refold read %q, want the stored values [2 <nil> filled]", asked)
		}
		checkView(t, st, "ev", "lots", row("lots", "a", "2+3"), row("lots", "e", "filled"), row("lots", "m", "m2"), row("lots", "n", "new"), row("lots", "q", "new"))
		if v, err := st.Vector(ctx, "ev"); err != nil || v[a.id] != 1 {
			t.Fatalf("after a refolded batch Vector = %v, %v; want the entry stored", v, err)
		}
		// Priors that hold need no refold.
		commit(t, st, &store.Batch{Event: "ev", CheckViews: true, Views: []store.ViewRow{prior("lots", "a", "4", "2+3")},
			Refold: func(context.Context, store.ReadViewsFunc) ([]store.ViewRow, error) {
				t.Fatal("Refold called although the priors hold")
				return nil, nil
			}})
		commit(t, st, &store.Batch{Event: "ev", Views: []store.ViewRow{row("lots", "a", "2"), {View: "lots", Key: "q"}}})
	})

	// Without CheckViews the same rows are written blindly.
	commit(t, st, &store.Batch{Event: "ev", Views: []store.ViewRow{prior("lots", "a", "blind", "not what is stored")}})
	checkView(t, st, "ev", "lots", row("lots", "a", "blind"), row("lots", "e", "filled"), row("lots", "m", "m2"), row("lots", "n", "new"))
}

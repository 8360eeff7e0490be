package journal_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/journal"
	"canopy/ledger"
	"canopy/store"
	"canopy/views"
)

var otherKey = ed25519.NewKeyFromSeed([]byte("canopy journal other node key 32"))

// signChain signs n entries of an author, continuing prev at seq.
func signChain(t *testing.T, key ed25519.PrivateKey, seq uint64, prev ledger.Hash, n int, keyPrefix string) []store.Stored {
	t.Helper()
	var out []store.Stored
	for i := 0; i < n; i++ {
		seq++
		e := &ledger.Entry{Event: "test-event", Seq: seq, Prev: prev, HLC: ledger.HLC{Wall: 1_000_000 + int64(seq)},
			Kind: "test.thing/v1", Key: keyPrefix,
			Body: []byte(fmt.Sprintf(`{"idempotency_key":"%s-%d","request_hash":"r"}`, keyPrefix, seq))}
		if err := e.Sign(key); err != nil {
			t.Fatal(err)
		}
		prev = e.Hash()
		out = append(out, store.Stored{Entry: e, Hash: prev})
	}
	return out
}

func TestIngestOtherAuthorsAlongsideAppends(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	j := openJournal(t, journal.Config{Store: st})
	ctx := context.Background()
	theirs := signChain(t, otherKey, 0, ledger.Hash{}, 300, "theirs")

	var wg sync.WaitGroup
	wg.Add(2)
	go func() { // this node keeps appending meanwhile
		defer wg.Done()
		for i := 0; i < 100; i++ {
			if _, err := j.Append(ctx, "test.thing/v1", "mine", []byte(fmt.Sprintf(`{"idempotency_key":"mine-%d","request_hash":"r"}`, i))); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	go func() { // and a peer delivers overlapping chunks
		defer wg.Done()
		total := 0
		for from := 0; from < len(theirs); from += 40 {
			lo := max(0, from-15) // overlaps what was delivered before
			n, err := j.Ingest(ctx, theirs[lo:min(len(theirs), from+40)])
			if err != nil {
				t.Error(err)
				return
			}
			total += n
		}
		if total != len(theirs) {
			t.Errorf("ingested %d new entries, want %d", total, len(theirs))
		}
	}()
	wg.Wait()

	// Everything of theirs is held once, in order, with their tree.
	got, err := st.Entries(ctx, "test-event", theirs[0].Entry.Node, 1, ^uint64(0), 0)
	if err != nil || len(got) != len(theirs) {
		t.Fatalf("held %d of their entries, %v", len(got), err)
	}
	entries := make([]*ledger.Entry, len(got))
	for i, s := range got {
		entries[i] = s.Entry
	}
	root := ledger.RootOf(hashesOf(theirs))
	note, err := ledger.SignCheckpoint(otherKey, "test-event", uint64(len(theirs)), root)
	if err != nil {
		t.Fatal(err)
	}
	if err := ledger.VerifyLog("test-event", otherKey.Public().(ed25519.PublicKey), entries, [][]byte{note}); err != nil {
		t.Fatalf("their log as held: %v", err)
	}
	treeRoot, err := ledger.TreeRoot(int64(len(theirs)), storeHashes{st, theirs[0].Entry.Node})
	if err != nil || treeRoot != root {
		t.Fatalf("their stored tree root %s, %v; want %s", treeRoot, err, root)
	}
	verifyAll(t, st, "test-event") // this node's log is intact and views rebuild equal
	if err := views.Default().Verify(ctx, st, "test-event"); err != nil {
		t.Fatal(err)
	}
	// The next own entry sorts after everything seen.
	e, err := j.Append(ctx, "test.thing/v1", "mine", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if e.HLC.Compare(theirs[len(theirs)-1].Entry.HLC) <= 0 {
		t.Fatalf("own HLC %s not after observed %s", e.HLC, theirs[len(theirs)-1].Entry.HLC)
	}
}

func TestIngestRefusesGapsAndForks(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	j := openJournal(t, journal.Config{Store: st})
	ctx := context.Background()
	theirs := signChain(t, otherKey, 0, ledger.Hash{}, 10, "theirs")
	if n, err := j.Ingest(ctx, theirs[:5]); n != 5 || err != nil {
		t.Fatalf("Ingest = %d, %v", n, err)
	}
	if n, err := j.Ingest(ctx, theirs[6:]); n != 0 || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a gap: Ingest = %d, %v; want ErrConflict", n, err)
	}
	fork := signChain(t, otherKey, 5, ledger.Hash{1}, 2, "fork")
	if n, err := j.Ingest(ctx, fork); n != 0 || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("a fork: Ingest = %d, %v; want ErrConflict", n, err)
	}
	// The valid prefix of a bad delivery is kept.
	mixed := append(append([]store.Stored{}, theirs[5:7]...), theirs[8])
	if n, err := j.Ingest(ctx, mixed); n != 2 || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("prefix then gap: Ingest = %d, %v; want 2 and ErrConflict", n, err)
	}
	if n, err := j.Ingest(ctx, theirs); n != 3 || err != nil {
		t.Fatalf("the rest: Ingest = %d, %v; want 3", n, err)
	}
	seq, _, _ := st.Head(ctx, "test-event", theirs[0].Entry.Node)
	if seq != 10 {
		t.Fatalf("held head %d, want 10", seq)
	}
}

func hashesOf(ss []store.Stored) []ledger.Hash {
	out := make([]ledger.Hash, len(ss))
	for i, s := range ss {
		out[i] = s.Hash
	}
	return out
}

// storeHashes reads an author's stored tree hashes.
type storeHashes struct {
	st   store.Store
	node ledger.NodeID
}

func (s storeHashes) ReadHashes(idx []int64) ([]tlog.Hash, error) {
	hs, err := s.st.ReadTreeHashes(context.Background(), "test-event", s.node, idx)
	out := make([]tlog.Hash, len(hs))
	for i, h := range hs {
		out[i] = tlog.Hash(h)
	}
	return out, err
}

// TestIngestRefusesAnotherEntryAtAHeldSeq: an entry at a seq already held
// (at the head, or below it) that is not the held one is a fork, not a
// duplicate to skip; the same entries again are skipped. So is one queued
// right behind the ingest that stores the first history.
func TestIngestRefusesAnotherEntryAtAHeldSeq(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	j := openJournal(t, journal.Config{Store: st})
	ctx := context.Background()
	theirs := signChain(t, otherKey, 0, ledger.Hash{}, 6, "theirs")
	if n, err := j.Ingest(ctx, theirs); n != 6 || err != nil {
		t.Fatalf("Ingest = %d, %v", n, err)
	}
	if n, err := j.Ingest(ctx, theirs); n != 0 || err != nil {
		t.Fatalf("the same again: Ingest = %d, %v; want 0, nil", n, err)
	}
	for _, at := range []uint64{6, 3, 1} {
		other := signChain(t, otherKey, at-1, theirs[at-1].Entry.Prev, 1, "other")
		if n, err := j.Ingest(ctx, other); n != 0 || !errors.Is(err, store.ErrConflict) {
			t.Fatalf("another entry at held seq %d: Ingest = %d, %v; want ErrConflict", at, n, err)
		}
	}
	// Two histories queued back to back: the second is refused.
	mine := signChain(t, otherKey, 6, theirs[5].Hash, 3, "mine")
	yours := signChain(t, otherKey, 6, theirs[5].Hash, 3, "yours")
	p1, err := j.StartIngest(ctx, mine)
	if err != nil {
		t.Fatal(err)
	}
	p2, err := j.StartIngest(ctx, yours)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := p1.Wait(ctx); len(got) != 3 || err != nil {
		t.Fatalf("first history: %d stored, %v", len(got), err)
	}
	if got, err := p2.Wait(ctx); len(got) != 0 || !errors.Is(err, store.ErrConflict) {
		t.Fatalf("second history: %d stored, %v; want ErrConflict", len(got), err)
	}
}

package sqlite_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"

	"canopy/ledger"
	"canopy/store"
	"canopy/store/sqlite"
)

// chain signs one author's consecutive entries.
type chain struct {
	key  ed25519.PrivateKey
	seq  uint64
	prev ledger.Hash
}

func newChain(seed byte) *chain {
	return &chain{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))}
}

func (c *chain) node() ledger.NodeID {
	return ledger.NodeIDOf(c.key.Public().(ed25519.PublicKey))
}

// batch signs the next n entries, each with a body of bodySize bytes, plus
// one view row naming the batch.
func (c *chain) batch(tb testing.TB, n, bodySize int) *store.Batch {
	tb.Helper()
	b := &store.Batch{Event: "ev"}
	pad := strings.Repeat("p", bodySize)
	for range n {
		c.seq++
		e := &ledger.Entry{
			Event: "ev", Seq: c.seq, Prev: c.prev,
			HLC:  ledger.HLC{Wall: 1_700_000_000_000 + int64(c.seq)},
			Kind: "order.created/v1", Key: fmt.Sprintf("order/%d", c.seq%97),
			Body: fmt.Appendf(nil, `{"seq":%d,"pad":%q}`, c.seq, pad),
		}
		if err := e.Sign(c.key); err != nil {
			tb.Fatal(err)
		}
		h := e.Hash()
		b.Entries = append(b.Entries, store.Stored{Entry: e, Hash: h})
		c.prev = h
	}
	b.Views = []store.ViewRow{{View: "batches", Key: fmt.Sprintf("%08d", c.seq), Value: []byte("done")}}
	return b
}

// fillUntilUnavailable commits batches until one fails, which must be with
// store.ErrUnavailable, and returns the entries committed before and the
// batch that failed.
func fillUntilUnavailable(t *testing.T, s *sqlite.Store, c *chain, n, bodySize, maxBatches int) ([]store.Stored, *store.Batch) {
	t.Helper()
	ctx := context.Background()
	var committed []store.Stored
	for range maxBatches {
		b := c.batch(t, n, bodySize)
		err := s.Commit(ctx, b)
		if err == nil {
			committed = append(committed, b.Entries...)
			continue
		}
		if !errors.Is(err, store.ErrUnavailable) {
			t.Fatalf("commit on a full disk: %v, want store.ErrUnavailable", err)
		}
		if !strings.Contains(err.Error(), "full") {
			t.Errorf("full-disk error does not say so: %v", err)
		}
		t.Logf("after %d entries: %v", len(committed), err)
		return committed, b
	}
	t.Fatalf("%d batches committed without filling the disk", maxBatches)
	return nil, nil
}

// checkIntact asserts that exactly the committed entries are stored and the
// database passes its integrity check.
func checkIntact(t *testing.T, s *sqlite.Store, node ledger.NodeID, committed []store.Stored) {
	t.Helper()
	ctx := context.Background()
	got, err := s.Entries(ctx, "ev", node, 1, ^uint64(0), 0)
	if err != nil {
		t.Fatalf("reading back after the failure: %v", err)
	}
	if len(got) != len(committed) {
		t.Fatalf("after the failure %d entries are stored, %d were committed", len(got), len(committed))
	}
	for i := range got {
		if got[i].Hash != committed[i].Hash || !bytes.Equal(got[i].Entry.Encode(), committed[i].Entry.Encode()) {
			t.Fatalf("entry %d changed after the failure", i+1)
		}
	}
	seq, _, err := s.Head(ctx, "ev", node)
	if err != nil || seq != uint64(len(committed)) {
		t.Fatalf("Head after the failure = %d, %v; want %d", seq, err, len(committed))
	}
	if err := s.Check(ctx); err != nil {
		t.Fatalf("integrity check after the failure: %v", err)
	}
}

// TestMaxPageCount is the deterministic variant: the database is capped at a
// page budget, and reopening it with a larger budget lets commits continue.
func TestMaxPageCount(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canopy.db")
	s := openAt(t, path, sqlite.WithMaxPageCount(64))
	c := newChain(2)
	committed, failed := fillUntilUnavailable(t, s, c, 8, 1000, 1000)
	if len(committed) == 0 {
		t.Fatal("the first batch already failed; the test learns nothing")
	}
	checkIntact(t, s, c.node(), committed)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openAt(t, path, sqlite.WithMaxPageCount(4096))
	checkIntact(t, s, c.node(), committed)
	if err := s.Commit(context.Background(), failed); err != nil {
		t.Fatalf("commit with a larger budget: %v", err)
	}
	checkIntact(t, s, c.node(), append(committed, failed.Entries...))
}

package postgres_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"sync"
	"testing"

	"canopy/ledger"
	"canopy/store"
	"canopy/store/postgres"
)

// signer signs entries of one author with a deterministic key.
type signer struct {
	key ed25519.PrivateKey
	id  ledger.NodeID
}

func newSigner(seed byte) *signer {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return &signer{key: key, id: ledger.NodeIDOf(key.Public().(ed25519.PublicKey))}
}

// history signs n entries of event continuing after prefix (which may be
// empty), each with the given body tag, and returns prefix plus them.
func (s *signer) history(tb testing.TB, event string, prefix []store.Stored, n int, tag string) []store.Stored {
	tb.Helper()
	out := append([]store.Stored(nil), prefix...)
	var prev ledger.Hash
	if len(prefix) > 0 {
		prev = prefix[len(prefix)-1].Hash
	}
	for range n {
		seq := uint64(len(out) + 1)
		e := &ledger.Entry{
			Event: event, Seq: seq, Prev: prev,
			HLC:  ledger.HLC{Wall: 1_700_000_000_000 + int64(seq)},
			Kind: "test.fact/v1", Key: fmt.Sprintf("k%d", seq%3),
			Body: fmt.Appendf(nil, `{"seq":%d,"history":%q}`, seq, tag),
		}
		if err := e.Sign(s.key); err != nil {
			tb.Fatal(err)
		}
		st := store.Stored{Entry: e, Hash: e.Hash()}
		out = append(out, st)
		prev = st.Hash
	}
	return out
}

// sameLog reports whether got is exactly want, hash for hash.
func sameLog(got, want []store.Stored) bool {
	if len(got) != len(want) {
		return false
	}
	for i := range got {
		if got[i].Hash != want[i].Hash || !bytes.Equal(got[i].Entry.Encode(), want[i].Entry.Encode()) {
			return false
		}
	}
	return true
}

// TestTwoStoresOneAuthor is two hubs on one database receiving the same
// author's log at once: some deliver one history, some an identical copy of
// it, some a fork that diverges at seq 11; a second author's log forks at
// seq 1. Exactly one history of each author wins whole, every error is
// ErrConflict, and both stores read the same, consistent state.
func TestTwoStoresOneAuthor(t *testing.T) {
	dsn := freshDB(t)
	stores := []*postgres.Store{openDSN(t, dsn), openDSN(t, dsn)}
	ctx := context.Background()

	a := newSigner(1)
	x := a.history(t, "ev", nil, 40, "x")
	y := a.history(t, "ev", x[:10], 30, "y")
	b := newSigner(2)
	u := b.history(t, "ev", nil, 12, "u")
	v := b.history(t, "ev", nil, 12, "v")
	histories := [][]store.Stored{x, y, u, v}

	const perHistory = 4 // deliverers of each history, alternating stores
	type result struct {
		history   int
		delivered int // entries committed before the first error
		err       error
	}
	results := make(chan result, len(histories)*perHistory)
	var wg sync.WaitGroup
	for h, log := range histories {
		for d := range perHistory {
			st := stores[(h+d)%len(stores)]
			wg.Go(func() {
				for i := 0; i < len(log); i += 4 {
					es := log[i:min(i+4, len(log))]
					node := es[0].Entry.Node
					last := es[len(es)-1]
					err := st.Commit(ctx, &store.Batch{
						Event:   "ev",
						Entries: es,
						Checkpoints: []store.Checkpoint{{Node: node, Size: last.Entry.Seq, Root: last.Hash,
							Note: fmt.Appendf(nil, "deliverer %d\n", d)}},
						Views: []store.ViewRow{{View: "last", Key: node.String(), Value: last.Hash[:]}},
					})
					if err != nil {
						results <- result{h, i, err}
						return
					}
				}
				results <- result{h, len(log), nil}
			})
		}
	}
	wg.Wait()
	close(results)
	complete := map[int]int{}
	for r := range results {
		if r.err != nil && !errors.Is(r.err, store.ErrConflict) {
			t.Errorf("history %d after %d entries: %v, want nil or ErrConflict", r.history, r.delivered, r.err)
		}
		if r.err == nil {
			complete[r.history]++
		}
	}
	if t.Failed() {
		return
	}

	for _, pair := range []struct {
		s    *signer
		a, b int
	}{{a, 0, 1}, {b, 2, 3}} {
		ca, cb := complete[pair.a], complete[pair.b]
		if (ca == perHistory) == (cb == perHistory) || ca+cb != perHistory {
			t.Fatalf("author %s: %d deliverers of history %d and %d of history %d finished; want all of exactly one",
				pair.s.id, ca, pair.a, cb, pair.b)
		}
		want := histories[pair.a]
		if cb == perHistory {
			want = histories[pair.b]
		}
		last := want[len(want)-1]
		for i, st := range stores {
			got, err := st.Entries(ctx, "ev", pair.s.id, 0, ^uint64(0), 0)
			if err != nil {
				t.Fatal(err)
			}
			if !sameLog(got, want) {
				t.Fatalf("store %d: author %s holds %d entries that are not the winning history", i, pair.s.id, len(got))
			}
			seq, h, err := st.Head(ctx, "ev", pair.s.id)
			if err != nil || seq != last.Entry.Seq || h != last.Hash {
				t.Fatalf("store %d: Head = %d %s, %v; want %d %s", i, seq, h, err, last.Entry.Seq, last.Hash)
			}
			cps, err := st.Checkpoints(ctx, "ev", pair.s.id)
			if err != nil {
				t.Fatal(err)
			}
			for _, c := range cps {
				if c.Size == 0 || c.Size > uint64(len(want)) || c.Root != want[c.Size-1].Hash {
					t.Fatalf("store %d: checkpoint of size %d has root %s, not the winning history's", i, c.Size, c.Root)
				}
			}
			if len(cps) == 0 || cps[len(cps)-1].Size != last.Entry.Seq {
				t.Fatalf("store %d: %d checkpoints, none of the whole log", i, len(cps))
			}
			val, err := st.View(ctx, "ev", "last", pair.s.id.String())
			if err != nil {
				t.Fatal(err)
			}
			// Re-deliveries commit in any order, so the row may name any
			// entry of the winning history, but never a losing one.
			if !inLog(val, want) {
				t.Fatalf("store %d: view row names %x, an entry that is not stored", i, val)
			}
		}
	}

	// Both stores scan the same entries, in (hlc, node, seq) order.
	var scans [2][]store.Stored
	for i, st := range stores {
		err := st.Scan(ctx, "ev", func(e store.Stored) error {
			if n := len(scans[i]); n > 0 && ledger.Less(e.Entry, scans[i][n-1].Entry) {
				return fmt.Errorf("scan out of order at %s seq %d", e.Entry.Node, e.Entry.Seq)
			}
			scans[i] = append(scans[i], e)
			return nil
		})
		if err != nil {
			t.Fatalf("store %d: Scan: %v", i, err)
		}
	}
	if !sameLog(scans[0], scans[1]) || len(scans[0]) != 40+12 {
		t.Fatalf("scans differ or are incomplete: %d and %d entries, want %d", len(scans[0]), len(scans[1]), 40+12)
	}
	for i, st := range stores {
		vec, err := st.Vector(ctx, "ev")
		if err != nil || len(vec) != 2 || vec[a.id] != 40 || vec[b.id] != 12 {
			t.Fatalf("store %d: Vector = %v, %v", i, vec, err)
		}
	}
}

func inLog(hash []byte, log []store.Stored) bool {
	for _, e := range log {
		if bytes.Equal(hash, e.Hash[:]) {
			return true
		}
	}
	return false
}

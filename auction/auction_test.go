package auction_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"canopy/auction"
	"canopy/ledger"
	"canopy/store"
	"canopy/views"
)

type author struct {
	key  ed25519.PrivateKey
	seq  uint64
	prev ledger.Hash
}

func (a *author) sign(t *rapid.T, wall int64, kind string, body any, lot string) store.Stored {
	b, _ := json.Marshal(body)
	a.seq++
	e := &ledger.Entry{Event: "ev", Seq: a.seq, Prev: a.prev, HLC: ledger.HLC{Wall: wall, Logical: uint32(a.seq)}, Kind: kind, Key: auction.LotKey(lot), Body: b}
	if err := e.Sign(a.key); err != nil {
		t.Fatal(err)
	}
	a.prev = e.Hash()
	return store.Stored{Entry: e, Hash: a.prev}
}

func fold(t *rapid.T, es []store.Stored) (auction.Row, []byte) {
	set, _ := views.NewSet(auction.Reducer{})
	rows := map[string][]byte{}
	seen := map[ledger.Hash]bool{}
	for _, s := range es {
		if seen[s.Hash] {
			continue
		}
		seen[s.Hash] = true
		out, err := set.Apply(context.Background(), views.ReadEach(func(_ context.Context, _, key string) ([]byte, error) {
			if v, ok := rows[key]; ok {
				return v, nil
			}
			return nil, store.ErrNotFound
		}), []store.Stored{s})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out {
			rows[r.Key] = r.Value
		}
	}
	var r auction.Row
	if err := json.Unmarshal(rows["L"], &r); err != nil {
		t.Fatal(err)
	}
	return r, rows["L"]
}

// TestPriceTimeWinner: for random bid sequences, the high bid is the
// earliest bid at the highest amount among bids that each beat the running
// high by the increment before the (extended) close; any arrival order
// gives the same row.
func TestPriceTimeWinner(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		home := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
		away := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))}
		soft := rapid.Bool().Draw(t, "soft")
		lot := auction.Lot{ID: "L", StartPrice: 100, Increment: 10, ClosesAt: 2000}
		if soft {
			lot.SoftCloseMs, lot.ExtendMs = 100, 150
		}
		es := []store.Stored{home.sign(t, 1000, auction.KindOpened, lot, "L")}
		type bid struct {
			wall   int64
			amount int64
			intent bool
		}
		for i, n := 0, rapid.IntRange(0, 25).Draw(t, "n"); i < n; i++ {
			b := bid{
				wall:   int64(rapid.IntRange(1001, 2400).Draw(t, "wall")),
				amount: int64(rapid.IntRange(9, 40).Draw(t, "amount")) * 10,
				intent: rapid.IntRange(0, 4).Draw(t, "intent") == 0,
			}
			a := home
			if b.intent {
				a = away
			}
			es = append(es, a.sign(t, b.wall, auction.KindBid, auction.Bid{Lot: "L", ID: fmt.Sprint(i), Amount: b.amount, Intent: b.intent}, "L"))
		}
		row, raw := fold(t, es)
		_, again := fold(t, rapid.Permutation(es).Draw(t, "perm"))
		if !bytes.Equal(raw, again) {
			t.Fatalf("arrival order changed the row")
		}
		// Model: replay in (hlc, node, seq) order.
		sorted := append([]store.Stored(nil), es[1:]...)
		for i := range sorted {
			for j := i + 1; j < len(sorted); j++ {
				if ledger.Less(sorted[j].Entry, sorted[i].Entry) {
					sorted[i], sorted[j] = sorted[j], sorted[i]
				}
			}
		}
		closes := lot.ClosesAt
		var high *auction.Bid
		for _, s := range sorted {
			var b auction.Bid
			json.Unmarshal(s.Entry.Body, &b)
			w := s.Entry.HLC.Wall
			if w >= closes {
				continue
			}
			min := lot.StartPrice
			if high != nil {
				min = high.Amount + lot.Increment
			}
			if b.Amount < min {
				continue
			}
			bb := b
			high = &bb
			if soft && !b.Intent && w >= closes-lot.SoftCloseMs {
				closes = max(closes, w+lot.ExtendMs)
			}
		}
		switch {
		case high == nil && row.High != nil:
			t.Fatalf("high %+v, want none", row.High)
		case high != nil && (row.High == nil || row.High.ID != high.ID):
			t.Fatalf("high %+v, want bid %s", row.High, high.ID)
		}
		if row.ClosesAt != closes {
			t.Fatalf("closes at %d, want %d", row.ClosesAt, closes)
		}
		if high != nil && row.IntentWon != high.Intent {
			t.Fatalf("intent_won %v, want %v", row.IntentWon, high.Intent)
		}
	})
}

func TestSoftCloseExtendsExactly(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
		lot := auction.Lot{ID: "L", StartPrice: 100, Increment: 10, ClosesAt: 10_000, SoftCloseMs: 1000, ExtendMs: 2000}
		w := int64(rapid.IntRange(8_000, 9_999).Draw(t, "w"))
		row, _ := fold(t, []store.Stored{
			a.sign(t, 1, auction.KindOpened, lot, "L"),
			a.sign(t, w, auction.KindBid, auction.Bid{Lot: "L", ID: "b", Amount: 100}, "L"),
		})
		want := int64(10_000)
		if w >= 9_000 {
			want = w + 2000
		}
		if row.ClosesAt != want {
			t.Fatalf("bid at %d: closes at %d, want %d", w, row.ClosesAt, want)
		}
		// An intent in the window never extends.
		row, _ = fold(t, []store.Stored{
			a.sign(t, 1, auction.KindOpened, lot, "L"),
			a.sign(t, w, auction.KindBid, auction.Bid{Lot: "L", ID: "i", Amount: 100, Intent: true}, "L"),
		})
		if row.ClosesAt != 10_000 || !row.IntentWon {
			t.Fatalf("intent: closes at %d, intent_won %v", row.ClosesAt, row.IntentWon)
		}
	})
}

func TestEqualBidsEarlierWins(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
		lot := auction.Lot{ID: "L", StartPrice: 100, Increment: 10, ClosesAt: 10_000}
		es := []store.Stored{
			a.sign(t, 1, auction.KindOpened, lot, "L"),
			a.sign(t, 50, auction.KindBid, auction.Bid{Lot: "L", ID: "first", Amount: 200}, "L"),
			a.sign(t, 50, auction.KindBid, auction.Bid{Lot: "L", ID: "second", Amount: 200}, "L"),
		}
		row, _ := fold(t, rapid.Permutation(es).Draw(t, "perm"))
		if row.High == nil || row.High.ID != "first" {
			t.Fatalf("high %+v, want the earlier equal bid", row.High)
		}
		if row.Bids[1].Reason != auction.ReasonBelowIncrement {
			t.Fatalf("later equal bid: %+v", row.Bids[1])
		}
	})
}

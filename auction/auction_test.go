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

// TestForwardedBidCountsOnce: a bid the home edge accepted from a forward
// that timed out at the forwarding edge, which then also recorded it as an
// intent, counts once — the home edge's entry — in any arrival order. An
// intent that only looks alike (another node, ID, paddle or amount) still
// counts as an intent.
func TestForwardedBidCountsOnce(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		home := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
		away := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))}
		other := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{3}, 32))}
		awayID := ledger.NodeIDOf(away.key.Public().(ed25519.PublicKey)).String()
		lot := auction.Lot{ID: "L", StartPrice: 100, Increment: 10, ClosesAt: 10_000}
		fwd := auction.Bid{Lot: "L", ID: "bid-1", Paddle: "p7", Amount: 300}
		atHome := fwd
		atHome.Via = awayID
		intent := fwd
		intent.Intent = true
		// The intent is stamped after the home edge's entry (the forward
		// arrived there first) or before it (clock differences).
		iw := int64(rapid.IntRange(40, 60).Draw(t, "intent wall"))
		es := []store.Stored{
			home.sign(t, 1, auction.KindOpened, lot, "L"),
			home.sign(t, 50, auction.KindBid, atHome, "L"),
			away.sign(t, iw, auction.KindBid, intent, "L"),
		}
		// Look-alikes that are not the same forwarded bid.
		var alike auction.Bid
		var by *author
		switch rapid.IntRange(0, 3).Draw(t, "look-alike") {
		case 0:
			alike, by = intent, other // another node's intent with the same ID
		case 1:
			alike, by = intent, away
			alike.ID = "bid-2"
		case 2:
			alike, by = intent, away
			alike.Amount = 400
			alike.ID = "bid-3"
		case 3:
			alike, by = intent, away
			alike.Paddle, alike.ID = "p8", "bid-4"
		}
		es = append(es, by.sign(t, 70, auction.KindBid, alike, "L"))
		row, raw := fold(t, es)
		_, again := fold(t, rapid.Permutation(es).Draw(t, "perm"))
		if !bytes.Equal(raw, again) {
			t.Fatalf("arrival order changed the row")
		}
		counted := 0
		for _, b := range row.Bids {
			switch {
			case b.Entry.Node == ledger.NodeIDOf(away.key.Public().(ed25519.PublicKey)) && b.ID == "bid-1":
				if b.Accepted || b.Reason != auction.ReasonJudgedAtHome {
					t.Fatalf("the forward's intent: %+v, want refused as %s", b, auction.ReasonJudgedAtHome)
				}
			case b.ID == "bid-1" && !b.Intent:
				if !b.Accepted {
					t.Fatalf("the home edge's entry: %+v, want accepted", b)
				}
				counted++
			case b.Reason == auction.ReasonJudgedAtHome:
				t.Fatalf("look-alike %+v refused as judged at home", b)
			}
		}
		if counted != 1 {
			t.Fatalf("the forwarded bid counted %d times", counted)
		}
	})
}

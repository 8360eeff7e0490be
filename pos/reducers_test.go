package pos_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"sort"
	"testing"

	"pgregory.net/rapid"

	"canopy/ledger"
	"canopy/pos"
	"canopy/store"
	"canopy/views"
)

// author signs a chain of entries for one node.
type author struct {
	key  ed25519.PrivateKey
	seq  uint64
	prev ledger.Hash
}

func (a *author) sign(t *rapid.T, wall int64, kind, key string, body any) store.Stored {
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	a.seq++
	e := &ledger.Entry{Event: "ev", Seq: a.seq, Prev: a.prev, HLC: ledger.HLC{Wall: wall, Logical: uint32(a.seq)}, Kind: kind, Key: key, Body: b}
	if err := e.Sign(a.key); err != nil {
		t.Fatal(err)
	}
	a.prev = e.Hash()
	return store.Stored{Entry: e, Hash: a.prev}
}

// history draws a random POS history written by three nodes that could
// not see each other: catalog changes, orders, payments (some racing on the
// same order from two nodes), moves, refunds and stock adjustments.
func history(t *rapid.T) []store.Stored {
	nodes := make([]*author, 3)
	for i := range nodes {
		nodes[i] = &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(i + 7)}, 32))}
	}
	var out []store.Stored
	wall := func() int64 { return int64(rapid.IntRange(1_000, 1_020).Draw(t, "wall")) }
	node := func() *author { return nodes[rapid.IntRange(0, 2).Draw(t, "node")] }
	skus := []string{"tea", "cake", "mug"}
	orders := []string{"o-1", "o-2", "o-3"}
	n := rapid.IntRange(1, 40).Draw(t, "n")
	for i := 0; i < n; i++ {
		a := node()
		switch rapid.IntRange(0, 6).Draw(t, "what") {
		case 0:
			out = append(out, a.sign(t, wall(), pos.KindVendorSet, "vendor:v1", pos.Vendor{ID: "v1", Name: rapid.SampledFrom([]string{"Tea Stall", "Cake Stall"}).Draw(t, "vname"), Active: true}))
		case 1:
			sku := rapid.SampledFrom(skus).Draw(t, "sku")
			out = append(out, a.sign(t, wall(), pos.KindSKUSet, "sku:"+sku, pos.SKU{SKU: sku, Vendor: "v1", Name: sku, Price: int64(rapid.IntRange(100, 900).Draw(t, "price")), TaxRate: 700, TrackStock: true, Active: true}))
		case 2:
			id := rapid.SampledFrom(orders).Draw(t, "order")
			lines, tot, err := pos.PriceLines([]pos.Line{{SKU: rapid.SampledFrom(skus).Draw(t, "lsku"), Qty: int64(rapid.IntRange(1, 3).Draw(t, "qty")), UnitPrice: 500, TaxRate: 700}}, 0, 0)
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, a.sign(t, wall(), pos.KindOrderCreated, pos.OrderKey(id), pos.Created{ID: id, Vendor: "v1", Device: "till", Currency: "EUR", Lines: lines, Totals: tot}))
		case 3:
			id := rapid.SampledFrom(orders).Draw(t, "order")
			method := rapid.SampledFrom([]string{pos.MethodCash, pos.MethodCard}).Draw(t, "method")
			amt := int64(rapid.IntRange(1, 1700).Draw(t, "amount"))
			out = append(out, a.sign(t, wall(), pos.KindPaymentRecorded, pos.OrderKey(id), pos.PaymentBody{Order: id, ID: fmt.Sprintf("p%d", i), Method: method, Amount: amt, Tendered: amt}))
		case 4:
			id := rapid.SampledFrom(orders).Draw(t, "order")
			to := rapid.SampledFrom([]pos.State{pos.StateReady, pos.StateFulfilled, pos.StateCancelled}).Draw(t, "to")
			out = append(out, a.sign(t, wall(), pos.KindOrderMoved, pos.OrderKey(id), pos.MoveBody{Order: id, To: to}))
		case 5:
			id := rapid.SampledFrom(orders).Draw(t, "order")
			out = append(out, a.sign(t, wall(), pos.KindRefundRecorded, pos.OrderKey(id), pos.RefundBody{Order: id, ID: fmt.Sprintf("r%d", i), Amount: int64(rapid.IntRange(1, 800).Draw(t, "ramt")), Method: pos.MethodCard, Reason: "r"}))
		case 6:
			sku := rapid.SampledFrom(skus).Draw(t, "sku")
			out = append(out, a.sign(t, wall(), pos.KindStockAdjusted, "sku:"+sku, pos.StockAdjusted{SKU: sku, Delta: int64(rapid.IntRange(-5, 20).Draw(t, "delta"))}))
		}
	}
	return out
}

// node folds entries the way a node does: each distinct entry once (the
// store keeps an entry once, however often it is delivered), in arrival
// order, through the registered reducers.
func node(t *rapid.T, set *views.Set, arrivals []store.Stored) (rows map[string][]byte, digest [32]byte) {
	rows = map[string][]byte{}
	seen := map[ledger.Hash]bool{}
	read := func(_ context.Context, view, key string) ([]byte, error) {
		if v, ok := rows[view+"\x00"+key]; ok {
			return v, nil
		}
		return nil, store.ErrNotFound
	}
	for _, s := range arrivals {
		if seen[s.Hash] {
			continue
		}
		seen[s.Hash] = true
		out, err := set.Apply(context.Background(), views.ReadEach(read), []store.Stored{s})
		if err != nil {
			t.Fatal(err)
		}
		for _, r := range out {
			rows[r.View+"\x00"+r.Key] = r.Value
		}
	}
	keys := make([]string, 0, len(rows))
	for k := range rows {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	h := sha256.New()
	for _, k := range keys {
		fmt.Fprintf(h, "%d:%s%d:", len(k), k, len(rows[k]))
		h.Write(rows[k])
	}
	copy(digest[:], h.Sum(nil))
	return rows, digest
}

// TestReducersIgnoreArrivalOrder: any permutation of the same entries, with
// any duplicates, gives identical views and an identical hash of all views.
func TestReducersIgnoreArrivalOrder(t *testing.T) {
	set, err := views.NewSet(pos.Reducers()...)
	if err != nil {
		t.Fatal(err)
	}
	rapid.Check(t, func(t *rapid.T) {
		es := history(t)
		want, wantDigest := node(t, set, es)
		perm := rapid.Permutation(es).Draw(t, "perm")
		for i, n := 0, rapid.IntRange(0, 5).Draw(t, "dups"); i < n; i++ {
			perm = append(perm, perm[rapid.IntRange(0, len(perm)-1).Draw(t, "dup")])
		}
		got, gotDigest := node(t, set, perm)
		if gotDigest != wantDigest {
			for k, v := range want {
				if !bytes.Equal(got[k], v) {
					t.Fatalf("row %q differs:\n in order:  %s\n permuted: %s", k, v, got[k])
				}
			}
			t.Fatalf("views differ: %d rows vs %d", len(want), len(got))
		}
	})
}

// TestOrderRules folds one order's life and checks the derived state.
func TestOrderRules(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		set, _ := views.NewSet(pos.Reducers()...)
		a := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
		lines, tot, _ := pos.PriceLines([]pos.Line{{SKU: "tea", Qty: 2, UnitPrice: 500}}, 0, 100)
		es := []store.Stored{
			a.sign(t, 1, pos.KindOrderCreated, "order:o", pos.Created{ID: "o", Vendor: "v", Lines: lines, Totals: tot}),
			a.sign(t, 2, pos.KindPaymentRecorded, "order:o", pos.PaymentBody{Order: "o", ID: "p1", Method: pos.MethodCard, Amount: 600, Tendered: 600}),
			a.sign(t, 3, pos.KindPaymentRecorded, "order:o", pos.PaymentBody{Order: "o", ID: "p2", Method: pos.MethodCard, Amount: 600, Tendered: 600}),
			a.sign(t, 4, pos.KindPaymentRecorded, "order:o", pos.PaymentBody{Order: "o", ID: "p3", Method: pos.MethodCash, Amount: 500, Tendered: 1000}),
			a.sign(t, 5, pos.KindOrderMoved, "order:o", pos.MoveBody{Order: "o", To: pos.StateCancelled}),
			a.sign(t, 6, pos.KindRefundRecorded, "order:o", pos.RefundBody{Order: "o", ID: "r1", Amount: 1100, Method: pos.MethodCard}),
			a.sign(t, 7, pos.KindOrderMoved, "order:o", pos.MoveBody{Order: "o", To: pos.StateReady}),
			a.sign(t, 8, pos.KindRefundRecorded, "order:o", pos.RefundBody{Order: "o", ID: "r2", Amount: 1100, Method: pos.MethodCard}),
		}
		rows, _ := node(t, set, rapid.Permutation(es).Draw(t, "perm"))
		var o pos.Order
		if err := json.Unmarshal(rows[pos.ViewOrders+"\x00o"], &o); err != nil {
			t.Fatal(err)
		}
		// 1100 total: card 600 accepted, card 600 refused (overpayment),
		// cash 1000 tendered settles 500 with 500 change → paid; the cancel is
		// illegal after paid; the first refund exceeds nothing (1100 ≤ 1100)
		// and refunds fully → refunded; ready and the second refund are refused.
		if o.State != pos.StateRefunded || o.Paid != 1100 || o.Change != 500 || o.Refunded != 1100 {
			t.Fatalf("order %+v", o)
		}
		if o.Receipt == nil || o.Receipt.Entry.Seq != 4 {
			t.Fatalf("receipt %+v, want the cash payment (seq 4)", o.Receipt)
		}
		reasons := map[string]bool{}
		for _, c := range o.Conflicts {
			reasons[c.Reason] = true
		}
		for _, want := range []string{"overpayment", "illegal_transition_paid_to_cancelled", "illegal_transition_refunded_to_ready", "order_refunded"} {
			if !reasons[want] {
				t.Errorf("conflict %q not reported; got %v", want, o.Conflicts)
			}
		}
	})
}

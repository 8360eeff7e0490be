package pos

import (
	"encoding/json"
	"strings"

	"canopy/store"
	"canopy/views"
)

// Views maintained by this package.
const (
	ViewVendors = "pos.vendors" // key: vendor id; value: VendorRow
	ViewSKUs    = "pos.skus"    // key: sku; value: SKURow
	ViewOrders  = "pos.orders"  // key: order id (time-ordered); value: Order
	ViewStock   = "pos.stock"   // key: sku; value: Stock
)

// Reducers returns this package's reducers, for tests that build a set.
func Reducers() []views.Reducer {
	return []views.Reducer{vendorReducer{}, skuReducer{}, orderReducer{}, stockReducer{}}
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("pos: marshal view row: " + err.Error())
	}
	return b
}

// VendorRow is the vendors view's row: the latest vendor.set by
// (hlc, node, seq) wins.
type VendorRow struct {
	Vendor
	Set Fact `json:"set"`
}

type vendorReducer struct{}

func (vendorReducer) View() string { return ViewVendors }

func (vendorReducer) Rows(s store.Stored) []string {
	if s.Entry.Kind != KindVendorSet {
		return nil
	}
	var v Vendor
	if json.Unmarshal(s.Entry.Body, &v) != nil || v.ID == "" {
		return nil
	}
	return []string{v.ID}
}

func (vendorReducer) Fold(cur []byte, _ string, s store.Stored) []byte {
	var v Vendor
	if json.Unmarshal(s.Entry.Body, &v) != nil {
		return cur
	}
	f := factOf(s.Entry, s.Hash)
	var row VendorRow
	if cur != nil && json.Unmarshal(cur, &row) == nil && !row.Set.less(f) {
		return cur
	}
	return mustJSON(VendorRow{Vendor: v, Set: f})
}

// SKURow is the catalog view's row: the latest sku.set wins.
type SKURow struct {
	SKU
	Set Fact `json:"set"`
}

type skuReducer struct{}

func (skuReducer) View() string { return ViewSKUs }

func (skuReducer) Rows(s store.Stored) []string {
	if s.Entry.Kind != KindSKUSet {
		return nil
	}
	var v SKU
	if json.Unmarshal(s.Entry.Body, &v) != nil || v.SKU == "" {
		return nil
	}
	return []string{v.SKU}
}

func (skuReducer) Fold(cur []byte, _ string, s store.Stored) []byte {
	var v SKU
	if json.Unmarshal(s.Entry.Body, &v) != nil {
		return cur
	}
	f := factOf(s.Entry, s.Hash)
	var row SKURow
	if cur != nil && json.Unmarshal(cur, &row) == nil && !row.Set.less(f) {
		return cur
	}
	return mustJSON(SKURow{SKU: v, Set: f})
}

type orderReducer struct{}

func (orderReducer) View() string { return ViewOrders }

func (orderReducer) Rows(s store.Stored) []string {
	switch s.Entry.Kind {
	case KindOrderCreated, KindPaymentRecorded, KindOrderMoved, KindRefundRecorded:
		if id, ok := strings.CutPrefix(s.Entry.Key, "order:"); ok && id != "" {
			return []string{id}
		}
	}
	return nil
}

// known reports whether the row already holds the fact.
func (o *Order) known(f Fact) bool {
	if o.Created != nil && o.Created.Entry == f.Entry {
		return true
	}
	for _, x := range o.Extra {
		if x.Entry == f.Entry {
			return true
		}
	}
	for _, x := range o.Payments {
		if x.Entry == f.Entry {
			return true
		}
	}
	for _, x := range o.Moves {
		if x.Entry == f.Entry {
			return true
		}
	}
	for _, x := range o.Refunds {
		if x.Entry == f.Entry {
			return true
		}
	}
	return false
}

func (orderReducer) Fold(cur []byte, key string, s store.Stored) []byte {
	o := Order{ID: key, State: StateOpen}
	if cur != nil && json.Unmarshal(cur, &o) != nil {
		o = Order{ID: key, State: StateOpen}
	}
	f := factOf(s.Entry, s.Hash)
	if o.known(f) {
		return cur
	}
	switch s.Entry.Kind {
	case KindOrderCreated:
		var c Created
		if json.Unmarshal(s.Entry.Body, &c) != nil {
			return cur
		}
		switch {
		case o.Created == nil:
			o.Created, o.CreatedBody = &f, &c
		case f.less(*o.Created):
			o.Extra = append(o.Extra, *o.Created)
			o.Created, o.CreatedBody = &f, &c
		default:
			o.Extra = append(o.Extra, f)
		}
	case KindPaymentRecorded:
		var p PaymentBody
		if json.Unmarshal(s.Entry.Body, &p) != nil {
			return cur
		}
		o.Payments = append(o.Payments, PaymentFact{Fact: f, PaymentBody: p})
	case KindOrderMoved:
		var m MoveBody
		if json.Unmarshal(s.Entry.Body, &m) != nil {
			return cur
		}
		o.Moves = append(o.Moves, MoveFact{Fact: f, MoveBody: m})
	case KindRefundRecorded:
		var r RefundBody
		if json.Unmarshal(s.Entry.Body, &r) != nil {
			return cur
		}
		o.Refunds = append(o.Refunds, RefundFact{Fact: f, RefundBody: r})
	default:
		return cur
	}
	o.derive()
	return mustJSON(o)
}

// Entry kind of stock changes, key "sku:<sku>".
const KindStockAdjusted = "stock.adjusted/v1"

// StockAdjusted is the body of a stock.adjusted entry. Setting stock to a
// count is recorded as the adjustment that reaches it (SetTo says so), so
// stock is a sum and does not depend on the order entries arrive in.
type StockAdjusted struct {
	SKU    string `json:"sku"`
	Delta  int64  `json:"delta"`
	SetTo  *int64 `json:"set_to,omitempty"`
	Reason string `json:"reason,omitempty"`
	Device string `json:"device"`
}

// Stock is the stock view's row for a SKU.
type Stock struct {
	SKU string `json:"sku"`
	// Adjusted is the sum of adjustments; Sold what orders took (less what
	// cancellations returned). OnHand = Adjusted - Sold.
	Adjusted int64 `json:"adjusted"`
	Sold     int64 `json:"sold"`
	OnHand   int64 `json:"on_hand"`
	// Oversold: OnHand went below zero (sales accepted offline).
	Oversold bool `json:"oversold"`
	// Entries counts the facts folded, a cheap check against duplicates.
	Entries int `json:"entries"`
	// Last is the latest fact folded by (hlc, node, seq).
	Last Fact `json:"last"`
}

type stockReducer struct{}

func (stockReducer) View() string { return ViewStock }

func (stockReducer) Rows(s store.Stored) []string {
	switch s.Entry.Kind {
	case KindStockAdjusted:
		var a StockAdjusted
		if json.Unmarshal(s.Entry.Body, &a) == nil && a.SKU != "" {
			return []string{a.SKU}
		}
	case KindOrderCreated:
		var c Created
		if json.Unmarshal(s.Entry.Body, &c) != nil {
			return nil
		}
		return lineSKUs(c.Lines)
	case KindOrderMoved:
		var m MoveBody
		if json.Unmarshal(s.Entry.Body, &m) != nil {
			return nil
		}
		var keys []string
		for _, r := range m.Restock {
			keys = appendOnce(keys, r.SKU)
		}
		return keys
	}
	return nil
}

func lineSKUs(lines []Line) []string {
	var keys []string
	for _, l := range lines {
		keys = appendOnce(keys, l.SKU)
	}
	return keys
}

func appendOnce(keys []string, k string) []string {
	for _, x := range keys {
		if x == k {
			return keys
		}
	}
	return append(keys, k)
}

func (stockReducer) Fold(cur []byte, key string, s store.Stored) []byte {
	st := Stock{SKU: key}
	if cur != nil && json.Unmarshal(cur, &st) != nil {
		st = Stock{SKU: key}
	}
	switch s.Entry.Kind {
	case KindStockAdjusted:
		var a StockAdjusted
		if json.Unmarshal(s.Entry.Body, &a) != nil {
			return cur
		}
		st.Adjusted += a.Delta
	case KindOrderCreated:
		var c Created
		if json.Unmarshal(s.Entry.Body, &c) != nil {
			return cur
		}
		for _, l := range c.Lines {
			if l.SKU == key {
				st.Sold += l.Qty
			}
		}
	case KindOrderMoved:
		var m MoveBody
		if json.Unmarshal(s.Entry.Body, &m) != nil {
			return cur
		}
		for _, r := range m.Restock {
			if r.SKU == key {
				st.Sold -= r.Qty
			}
		}
	default:
		return cur
	}
	st.OnHand = st.Adjusted - st.Sold
	st.Oversold = st.OnHand < 0
	st.Entries++
	if f := factOf(s.Entry, s.Hash); st.Last.less(f) {
		st.Last = f
	}
	return mustJSON(st)
}

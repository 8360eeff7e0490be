package pos

import (
	"bytes"
	"fmt"
	"sort"

	"canopy/ledger"
)

// Entry kinds of orders. Every one of them has the key "order:<id>".
const (
	// KindOrderCreated records a new order with its priced lines.
	KindOrderCreated = "order.created/v1"
	// KindPaymentRecorded records one payment. The payment that brings the
	// order to paid carries the receipt (Payment.Receipt).
	KindPaymentRecorded = "payment.recorded/v1"
	// KindOrderMoved records a move to ready, fulfilled or cancelled.
	KindOrderMoved = "order.moved/v1"
	// KindRefundRecorded records a refund.
	KindRefundRecorded = "refund.recorded/v1"
)

// OrderKey returns the entry key of an order.
func OrderKey(id string) string { return "order:" + id }

// State is where an order is in its life.
type State string

// Order states, as in the architecture's table.
const (
	StateOpen      State = "open"
	StatePaid      State = "paid"
	StateReady     State = "ready"
	StateFulfilled State = "fulfilled"
	StateCancelled State = "cancelled"
	StateRefunded  State = "refunded"
)

// allowed lists the moves out of each state. Payments move open → paid and
// refunds move to refunded; order.moved covers the rest.
var allowed = map[State][]State{
	StateOpen:      {StatePaid, StateCancelled},
	StatePaid:      {StateReady, StateFulfilled, StateRefunded},
	StateReady:     {StateFulfilled, StateRefunded},
	StateFulfilled: {StateRefunded},
}

// CanMove reports whether an order in state from may move to to.
func CanMove(from, to State) bool {
	for _, s := range allowed[from] {
		if s == to {
			return true
		}
	}
	return false
}

// Payment methods.
const (
	MethodCash   = "cash"
	MethodCard   = "card"
	MethodWallet = "wallet"
	MethodOther  = "other"
)

// ValidMethod reports whether m is a payment method.
func ValidMethod(m string) bool {
	return m == MethodCash || m == MethodCard || m == MethodWallet || m == MethodOther
}

// Line is one priced line of an order, priced from the catalog when the
// order was created (or manually, flagged).
type Line struct {
	SKU          string `json:"sku"`
	Name         string `json:"name"`
	Qty          int64  `json:"qty"`
	UnitPrice    int64  `json:"unit_price"`
	TaxRate      int    `json:"tax_rate"`
	TaxInclusive bool   `json:"tax_inclusive"`
	ManualPrice  bool   `json:"manual_price,omitempty"`
	// Amount is what the customer pays for the line, tax included.
	Amount int64 `json:"amount"`
	// Tax is the tax contained in Amount.
	Tax int64 `json:"tax"`
}

// Discount is an order-level discount.
type Discount struct {
	Amount int64  `json:"amount"`
	Reason string `json:"reason"`
}

// Totals are an order's amounts. Total = Items - Discount + Tip. Tax is the
// tax contained in Items, reduced in proportion by the discount.
type Totals struct {
	Items    int64 `json:"items"`
	Discount int64 `json:"discount"`
	Tax      int64 `json:"tax"`
	Tip      int64 `json:"tip"`
	Total    int64 `json:"total"`
}

// Created is the body of an order.created entry (besides the API's
// idempotency members).
type Created struct {
	ID       string    `json:"id"`
	Vendor   string    `json:"vendor"`
	Device   string    `json:"device"`
	Currency string    `json:"currency"`
	Lines    []Line    `json:"lines"`
	Discount *Discount `json:"discount,omitempty"`
	Tip      int64     `json:"tip"`
	Totals   Totals    `json:"totals"`
	// Customer is the customer's personal data sealed to the organizer's
	// age recipient (base64 of the age ciphertext); never plaintext.
	Customer string `json:"customer,omitempty"`
}

// PriceLines computes each line's amount and tax, and the order totals.
func PriceLines(lines []Line, discount int64, tip int64) ([]Line, Totals, error) {
	out := make([]Line, len(lines))
	var t Totals
	for i, l := range lines {
		if l.Qty < 1 || l.Qty > MaxQty {
			return nil, t, fmt.Errorf("%w: line %d quantity %d not in 1..%d", ErrAmount, i, l.Qty, MaxQty)
		}
		if err := checkAmount("unit price", l.UnitPrice); err != nil {
			return nil, t, err
		}
		if l.UnitPrice > MaxAmount/l.Qty {
			return nil, t, fmt.Errorf("%w: line %d: %d × %d exceeds %d", ErrAmount, i, l.Qty, l.UnitPrice, int64(MaxAmount))
		}
		net := l.UnitPrice * l.Qty
		l.Tax = LineTax(net, l.TaxRate, l.TaxInclusive)
		l.Amount = net
		if !l.TaxInclusive {
			l.Amount = net + l.Tax
		}
		t.Items += l.Amount
		t.Tax += l.Tax
		if t.Items > MaxAmount || l.Amount > MaxAmount {
			return nil, t, fmt.Errorf("%w: order items total exceeds %d", ErrAmount, int64(MaxAmount))
		}
		out[i] = l
	}
	if err := checkAmount("discount", discount); err != nil {
		return nil, t, err
	}
	if discount > t.Items {
		return nil, t, fmt.Errorf("%w: discount %d above the items total %d", ErrAmount, discount, t.Items)
	}
	if err := checkAmount("tip", tip); err != nil {
		return nil, t, err
	}
	t.Discount, t.Tip = discount, tip
	if discount > 0 && t.Items > 0 {
		t.Tax = mulDivRound(t.Tax, t.Items-discount, t.Items)
	}
	t.Total = t.Items - discount + tip
	if t.Total > MaxAmount {
		return nil, t, fmt.Errorf("%w: order total exceeds %d", ErrAmount, int64(MaxAmount))
	}
	return out, t, nil
}

// PaymentBody is the body of a payment.recorded entry.
type PaymentBody struct {
	Order     string `json:"order"`
	ID        string `json:"id"`
	Method    string `json:"method"`
	Amount    int64  `json:"amount"`   // what the payment settles
	Tendered  int64  `json:"tendered"` // what was handed over (cash); = Amount otherwise
	Change    int64  `json:"change"`   // Tendered - Amount
	Reference string `json:"reference,omitempty"`
	Device    string `json:"device"`
	// Receipt is set on the payment that brings the order to paid: the
	// order as the customer bought it, so the signed entry is the receipt.
	Receipt *ReceiptBody `json:"receipt,omitempty"`
}

// ReceiptBody is what a receipt states, signed inside the completing
// payment's entry.
type ReceiptBody struct {
	Order    string    `json:"order"`
	Vendor   string    `json:"vendor"`
	Currency string    `json:"currency"`
	Lines    []Line    `json:"lines"`
	Discount *Discount `json:"discount,omitempty"`
	Totals   Totals    `json:"totals"`
	Payments []Paid    `json:"payments"`
}

// Paid is one payment as listed on a receipt or an order.
type Paid struct {
	ID        string `json:"id"`
	Method    string `json:"method"`
	Amount    int64  `json:"amount"`
	Tendered  int64  `json:"tendered"`
	Change    int64  `json:"change"`
	Reference string `json:"reference,omitempty"`
}

// MoveBody is the body of an order.moved entry. Restock lists the stock
// returned by a cancellation.
type MoveBody struct {
	Order   string    `json:"order"`
	To      State     `json:"to"`
	Device  string    `json:"device"`
	Restock []Restock `json:"restock,omitempty"`
}

// Restock is stock returned to a SKU.
type Restock struct {
	SKU string `json:"sku"`
	Qty int64  `json:"qty"`
}

// RefundBody is the body of a refund.recorded entry.
type RefundBody struct {
	Order  string `json:"order"`
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
	Method string `json:"method"`
	Reason string `json:"reason"`
	Device string `json:"device"`
}

// Fact is an entry's place in the (hlc, node, seq) order and its ref.
type Fact struct {
	Entry ledger.Ref `json:"entry"`
	HLC   ledger.HLC `json:"hlc"`
}

func factOf(e *ledger.Entry, h ledger.Hash) Fact {
	return Fact{Entry: ledger.Ref{Node: e.Node, Seq: e.Seq, Hash: h}, HLC: e.HLC}
}

func (f Fact) less(o Fact) bool {
	if c := f.HLC.Compare(o.HLC); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(f.Entry.Node[:], o.Entry.Node[:]); c != 0 {
		return c < 0
	}
	return f.Entry.Seq < o.Entry.Seq
}

// Conflict is a fact the order's rules refused when the entries were
// folded — possible only when nodes accepted writes they could not check
// against each other (a partition). It is kept for the reconciliation
// report.
type Conflict struct {
	Fact
	Kind   string `json:"kind"`
	Reason string `json:"reason"`
}

// Order is the orders view's row: the facts about one order and what they
// add up to. Derived fields are recomputed from the sorted facts on every
// fold, so the row does not depend on the order entries arrive in.
type Order struct {
	ID       string    `json:"id"`
	Vendor   string    `json:"vendor,omitempty"`
	Device   string    `json:"device,omitempty"`
	Currency string    `json:"currency,omitempty"`
	Lines    []Line    `json:"lines,omitempty"`
	Discount *Discount `json:"discount,omitempty"`
	Totals   Totals    `json:"totals"`
	Customer string    `json:"customer,omitempty"`
	Manual   bool      `json:"manual_price,omitempty"`

	Created *Fact `json:"created,omitempty"` // nil: payments etc. arrived before the order
	State   State `json:"state"`
	// Paid is what the payments settle (change excluded); Change the cash
	// handed back; Refunded what was refunded.
	Paid     int64 `json:"paid"`
	Change   int64 `json:"change"`
	Refunded int64 `json:"refunded"`
	// Receipt is the payment entry that brought the order to paid.
	Receipt *Fact `json:"receipt,omitempty"`

	Payments  []PaymentFact `json:"payments,omitempty"`
	Moves     []MoveFact    `json:"moves,omitempty"`
	Refunds   []RefundFact  `json:"refunds,omitempty"`
	Conflicts []Conflict    `json:"conflicts,omitempty"`
	// Extra holds order.created facts beyond the first (the same order id
	// created twice); the earliest wins.
	Extra []Fact `json:"extra_created,omitempty"`
	// createdBody of the winning created fact, kept to refold.
	CreatedBody *Created `json:"created_body,omitempty"`
}

// PaymentFact is a payment with its place in the order.
type PaymentFact struct {
	Fact
	PaymentBody
	Accepted bool `json:"accepted"`
}

// MoveFact is a move with its place in the order.
type MoveFact struct {
	Fact
	MoveBody
	Accepted bool `json:"accepted"`
}

// RefundFact is a refund with its place in the order.
type RefundFact struct {
	Fact
	RefundBody
	Accepted bool `json:"accepted"`
}

// Owed returns what is still to be paid.
func (o *Order) Owed() int64 {
	if o.State != StateOpen {
		return 0
	}
	return o.Totals.Total - o.Paid
}

// Refundable returns what may still be refunded.
func (o *Order) Refundable() int64 { return o.Paid - o.Refunded }

// derive recomputes state, amounts and conflicts by replaying the facts in
// (hlc, node, seq) order.
func (o *Order) derive() {
	sort.Slice(o.Payments, func(i, j int) bool { return o.Payments[i].less(o.Payments[j].Fact) })
	sort.Slice(o.Moves, func(i, j int) bool { return o.Moves[i].less(o.Moves[j].Fact) })
	sort.Slice(o.Refunds, func(i, j int) bool { return o.Refunds[i].less(o.Refunds[j].Fact) })
	sort.Slice(o.Extra, func(i, j int) bool { return o.Extra[i].less(o.Extra[j]) })
	o.State, o.Paid, o.Change, o.Refunded, o.Receipt, o.Conflicts = StateOpen, 0, 0, 0, nil, nil
	if o.CreatedBody != nil {
		c := o.CreatedBody
		o.Vendor, o.Device, o.Currency, o.Lines, o.Discount, o.Totals, o.Customer = c.Vendor, c.Device, c.Currency, c.Lines, c.Discount, c.Totals, c.Customer
		o.Manual = false
		for _, l := range c.Lines {
			o.Manual = o.Manual || l.ManualPrice
		}
	}
	for _, x := range o.Extra {
		o.Conflicts = append(o.Conflicts, Conflict{Fact: x, Kind: KindOrderCreated, Reason: "duplicate_order_id"})
	}
	// Merge the three fact lists into one timeline.
	type step struct {
		f    Fact
		kind int // 0 payment, 1 move, 2 refund
		i    int
	}
	var steps []step
	for i := range o.Payments {
		steps = append(steps, step{o.Payments[i].Fact, 0, i})
	}
	for i := range o.Moves {
		steps = append(steps, step{o.Moves[i].Fact, 1, i})
	}
	for i := range o.Refunds {
		steps = append(steps, step{o.Refunds[i].Fact, 2, i})
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].f.less(steps[j].f) })
	reject := func(f Fact, kind, reason string) {
		o.Conflicts = append(o.Conflicts, Conflict{Fact: f, Kind: kind, Reason: reason})
	}
	for _, s := range steps {
		switch s.kind {
		case 0:
			p := &o.Payments[s.i]
			p.Accepted = false
			switch {
			case o.Created == nil:
				reject(p.Fact, KindPaymentRecorded, "unknown_order")
			case o.State != StateOpen:
				reject(p.Fact, KindPaymentRecorded, "order_"+string(o.State))
			case p.Method != MethodCash && p.Amount > o.Totals.Total-o.Paid:
				reject(p.Fact, KindPaymentRecorded, "overpayment")
			default:
				amount := min(p.Amount, o.Totals.Total-o.Paid)
				o.Paid += amount
				o.Change += p.Tendered - amount
				p.Accepted = true
				if o.Paid >= o.Totals.Total {
					o.State = StatePaid
					f := p.Fact
					o.Receipt = &f
				}
			}
		case 1:
			m := &o.Moves[s.i]
			m.Accepted = false
			if o.Created == nil || !CanMove(o.State, m.To) {
				reject(m.Fact, KindOrderMoved, fmt.Sprintf("illegal_transition_%s_to_%s", o.State, m.To))
				continue
			}
			o.State = m.To
			m.Accepted = true
		case 2:
			r := &o.Refunds[s.i]
			r.Accepted = false
			switch {
			case o.Created == nil || (o.State != StatePaid && o.State != StateReady && o.State != StateFulfilled):
				reject(r.Fact, KindRefundRecorded, "order_"+string(o.State))
			case r.Amount > o.Paid-o.Refunded:
				reject(r.Fact, KindRefundRecorded, "refund_above_paid")
			default:
				o.Refunded += r.Amount
				r.Accepted = true
				if o.Refunded == o.Paid {
					o.State = StateRefunded
				}
			}
		}
	}
}

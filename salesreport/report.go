// Package salesreport computes the end-of-day sales report (the Z-report)
// of an event from its orders view — per vendor, per device and in total —
// and serves it as GET /v1/reports/sales.
package salesreport

import (
	"bytes"
	"sort"
	"time"

	"canopy/pos"
)

// Methods are the payment methods every Figures.Payments and
// Figures.RefundsByMethod lists, even at zero, so a report always has the
// same shape. A method outside this list that appears in the facts is
// listed too.
var Methods = []string{pos.MethodCash, pos.MethodCard, pos.MethodWallet, pos.MethodOther}

// Figures are the sales figures of one vendor, one device, or the event.
// Amounts are integer minor units of Report.Currency.
//
// Order-level figures (the counts, Gross, Discounts, Tax, Tips, OpenOwed,
// ManualPriceLines) are attributed to the device that created the order;
// payments to the device that recorded them; refunds to the device that
// recorded them. Only accepted payments and refunds count.
type Figures struct {
	// Orders counts the orders created; Orders = Sold + Open + Cancelled.
	Orders int `json:"orders"`
	// Sold counts orders that reached paid (paid, ready, fulfilled or
	// refunded since).
	Sold int `json:"sold"`
	// Open counts orders not (fully) paid yet; OpenOwed is what they owe.
	Open     int   `json:"open"`
	OpenOwed int64 `json:"open_owed"`
	// Cancelled counts cancelled orders.
	Cancelled int `json:"cancelled"`
	// ManualPriceLines counts lines priced by hand rather than from the
	// catalog, in all orders created.
	ManualPriceLines int `json:"manual_price_lines"`

	// Gross is the sum of the sold orders' items (tax included); Discounts,
	// Tax (contained in Gross less Discounts) and Tips are theirs too.
	Gross     int64 `json:"gross"`
	Discounts int64 `json:"discounts"`
	Tax       int64 `json:"tax"`
	Tips      int64 `json:"tips"`
	// Refunds is what was refunded.
	Refunds int64 `json:"refunds"`
	// Net = Gross - Discounts + Tips - Refunds.
	Net int64 `json:"net"`

	// Payments is what the payments settle, by method (change excluded).
	Payments map[string]int64 `json:"payments"`
	// RefundsByMethod is Refunds by the method refunded through.
	RefundsByMethod map[string]int64 `json:"refunds_by_method"`
	// UnsoldPayments is what payments settle on orders that are not sold
	// (part payments of open or cancelled orders). For the event,
	// sum(Payments) - Refunds = Net + UnsoldPayments.
	UnsoldPayments int64 `json:"unsold_payments"`
	// CashTendered is the cash handed over, ChangeGiven the cash handed
	// back; CashExpected is what the drawer should hold from these orders:
	// cash settled minus cash refunded.
	CashTendered int64 `json:"cash_tendered"`
	ChangeGiven  int64 `json:"change_given"`
	CashExpected int64 `json:"cash_expected"`
}

// VendorFigures are one vendor's figures.
type VendorFigures struct {
	Vendor string `json:"vendor"`
	Figures
}

// DeviceFigures are one device's figures; Device is the device name of the
// token that wrote the facts.
type DeviceFigures struct {
	Device string `json:"device"`
	Figures
}

// Report is the sales report over the orders created in [From, To).
type Report struct {
	From     time.Time `json:"from"`
	To       time.Time `json:"to"`
	TimeZone string    `json:"time_zone"`
	// Currency of every amount. An event has one currency; an order in
	// another one is left out of the figures and listed in OtherCurrency.
	Currency string          `json:"currency"`
	Totals   Figures         `json:"totals"`
	Vendors  []VendorFigures `json:"vendors"` // sorted by vendor
	Devices  []DeviceFigures `json:"devices"` // sorted by device
	// ManualPriceOrders lists the orders with a manually priced line,
	// flagged for review.
	ManualPriceOrders []string `json:"manual_price_orders"`
	OtherCurrency     []string `json:"other_currency_orders,omitempty"`
}

// Build computes the report over the orders (rows of the pos.orders view)
// created in [from, to), judged by the HLC time of their order.created
// fact; every accepted payment and refund of those orders counts, whenever
// it was recorded. Orders whose creation has not arrived (Created nil) are
// left out. Times in the report are in loc (nil: UTC). Build is a pure
// function: the same orders give the same report, whatever their order.
func Build(orders []pos.Order, from, to time.Time, loc *time.Location) Report {
	if loc == nil {
		loc = time.UTC
	}
	r := Report{
		From: from.In(loc), To: to.In(loc), TimeZone: loc.String(),
		Totals:            newFigures(),
		Vendors:           []VendorFigures{},
		Devices:           []DeviceFigures{},
		ManualPriceOrders: []string{},
	}
	var in []*pos.Order
	currencies := map[string]int{}
	for i := range orders {
		o := &orders[i]
		if o.Created == nil {
			continue
		}
		t := time.UnixMilli(o.Created.HLC.Wall)
		if t.Before(from) || !t.Before(to) {
			continue
		}
		in = append(in, o)
		currencies[o.Currency]++
	}
	r.Currency = majority(currencies)
	sort.Slice(in, func(i, j int) bool { return in[i].ID < in[j].ID })

	vendors := map[string]*Figures{}
	devices := map[string]*Figures{}
	get := func(m map[string]*Figures, k string) *Figures {
		f := m[k]
		if f == nil {
			g := newFigures()
			f = &g
			m[k] = f
		}
		return f
	}
	for _, o := range in {
		if o.Currency != r.Currency {
			r.OtherCurrency = append(r.OtherCurrency, o.ID)
			continue
		}
		vendor, creator := get(vendors, o.Vendor), get(devices, o.Device)
		both := []*Figures{&r.Totals, vendor, creator}
		sold := isSold(o.State)
		manual := 0
		for _, l := range o.Lines {
			if l.ManualPrice {
				manual++
			}
		}
		if manual > 0 {
			r.ManualPriceOrders = append(r.ManualPriceOrders, o.ID)
		}
		for _, f := range both {
			f.Orders++
			f.ManualPriceLines += manual
			switch {
			case sold:
				f.Sold++
				f.Gross += o.Totals.Items
				f.Discounts += o.Totals.Discount
				f.Tax += o.Totals.Tax
				f.Tips += o.Totals.Tip
			case o.State == pos.StateOpen:
				f.Open++
				f.OpenOwed += max(o.Totals.Total-o.Paid, 0)
			case o.State == pos.StateCancelled:
				f.Cancelled++
			}
		}
		for _, p := range settled(o) {
			for _, f := range []*Figures{&r.Totals, vendor, get(devices, p.device)} {
				f.Payments[p.method] += p.amount
				if !sold {
					f.UnsoldPayments += p.amount
				}
				if p.method == pos.MethodCash {
					f.CashTendered += p.tendered
					f.ChangeGiven += p.tendered - p.amount
					f.CashExpected += p.amount
				}
			}
		}
		for _, rf := range o.Refunds {
			if !rf.Accepted {
				continue
			}
			for _, f := range []*Figures{&r.Totals, vendor, get(devices, rf.Device)} {
				f.Refunds += rf.Amount
				f.RefundsByMethod[rf.Method] += rf.Amount
				if rf.Method == pos.MethodCash {
					f.CashExpected -= rf.Amount
				}
			}
		}
	}
	r.Totals.finish()
	for _, k := range sortedKeys(vendors) {
		vendors[k].finish()
		r.Vendors = append(r.Vendors, VendorFigures{Vendor: k, Figures: *vendors[k]})
	}
	for _, k := range sortedKeys(devices) {
		devices[k].finish()
		r.Devices = append(r.Devices, DeviceFigures{Device: k, Figures: *devices[k]})
	}
	return r
}

func newFigures() Figures {
	f := Figures{Payments: map[string]int64{}, RefundsByMethod: map[string]int64{}}
	for _, m := range Methods {
		f.Payments[m], f.RefundsByMethod[m] = 0, 0
	}
	return f
}

func (f *Figures) finish() { f.Net = f.Gross - f.Discounts + f.Tips - f.Refunds }

// isSold reports whether an order in state s has reached paid.
func isSold(s pos.State) bool {
	switch s {
	case pos.StatePaid, pos.StateReady, pos.StateFulfilled, pos.StateRefunded:
		return true
	}
	return false
}

type payment struct {
	method, device   string
	amount, tendered int64
}

// settled replays an order's accepted payments in (hlc, node, seq) order
// as the orders reducer does: each settles at most what was still owed,
// and what cash was tendered beyond that is change.
func settled(o *pos.Order) []payment {
	ps := make([]pos.PaymentFact, 0, len(o.Payments))
	for _, p := range o.Payments {
		if p.Accepted {
			ps = append(ps, p)
		}
	}
	sort.SliceStable(ps, func(i, j int) bool { return factLess(ps[i].Fact, ps[j].Fact) })
	out := make([]payment, 0, len(ps))
	paid := int64(0)
	for _, p := range ps {
		amount := max(min(p.Amount, o.Totals.Total-paid), 0)
		paid += amount
		tendered := p.Tendered
		if p.Method != pos.MethodCash || tendered < amount {
			tendered = amount
		}
		out = append(out, payment{method: p.Method, device: p.Device, amount: amount, tendered: tendered})
	}
	return out
}

// factLess orders facts by (hlc, node, seq).
func factLess(a, b pos.Fact) bool {
	if c := a.HLC.Compare(b.HLC); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(a.Entry.Node[:], b.Entry.Node[:]); c != 0 {
		return c < 0
	}
	return a.Entry.Seq < b.Entry.Seq
}

// majority returns the most frequent key, the smallest on a tie.
func majority(m map[string]int) string {
	best, n := "", -1
	for _, k := range sortedKeys(m) {
		if m[k] > n {
			best, n = k, m[k]
		}
	}
	return best
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

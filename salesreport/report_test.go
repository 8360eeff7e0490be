package salesreport_test

import (
	"encoding/json"
	"reflect"
	"slices"
	"testing"
	"time"

	"pgregory.net/rapid"

	"canopy/ledger"
	"canopy/pos"
	"canopy/salesreport"
)

var berlin = mustLoc("Europe/Berlin")

func mustLoc(name string) *time.Location {
	loc, err := time.LoadLocation(name)
	if err != nil {
		panic(err)
	}
	return loc
}

// t0 opens the reporting day.
var t0 = time.Date(2026, 5, 1, 10, 0, 0, 0, berlin)

var seqs uint64

// at returns a fact at t0 plus d.
func at(d time.Duration) pos.Fact {
	seqs++
	return pos.Fact{Entry: ledger.Ref{Seq: seqs}, HLC: ledger.HLC{Wall: t0.Add(d).UnixMilli()}}
}

func atp(d time.Duration) *pos.Fact { f := at(d); return &f }

func pay(d time.Duration, method string, amount, tendered int64, device string, accepted bool) pos.PaymentFact {
	return pos.PaymentFact{Fact: at(d), Accepted: accepted, PaymentBody: pos.PaymentBody{
		Method: method, Amount: amount, Tendered: tendered, Change: tendered - amount, Device: device,
	}}
}

func refund(d time.Duration, method string, amount int64, device string, accepted bool) pos.RefundFact {
	return pos.RefundFact{Fact: at(d), Accepted: accepted, RefundBody: pos.RefundBody{
		Method: method, Amount: amount, Device: device,
	}}
}

func figures(f salesreport.Figures, payments, refunds map[string]int64) salesreport.Figures {
	f.Payments = map[string]int64{"cash": 0, "card": 0, "wallet": 0, "other": 0}
	f.RefundsByMethod = map[string]int64{"cash": 0, "card": 0, "wallet": 0, "other": 0}
	for k, v := range payments {
		f.Payments[k] = v
	}
	for k, v := range refunds {
		f.RefundsByMethod[k] = v
	}
	return f
}

// dayOrders covers split payments, cash change, partial and full refunds,
// discounts, tips, cancelled and open orders, two vendors, two devices,
// orders outside the range, an order whose creation has not arrived and an
// order in another currency.
func dayOrders() []pos.Order {
	h := time.Hour
	return []pos.Order{
		{ // split card + cash with change, discount and tip; a refused card payment
			ID: "o1", Vendor: "bakery", Device: "till-1", Currency: "EUR", Created: atp(1 * h), State: pos.StatePaid,
			Totals: pos.Totals{Items: 1000, Discount: 100, Tax: 60, Tip: 50, Total: 950}, Paid: 950, Change: 500,
			Payments: []pos.PaymentFact{
				pay(h+1, "card", 450, 450, "till-2", true),
				pay(h+2, "cash", 500, 1000, "till-1", true),
				pay(h+3, "card", 300, 300, "till-2", false),
			},
		},
		{ // a manual price, a partial cash refund, a refused refund
			ID: "o2", Vendor: "bakery", Device: "till-1", Currency: "EUR", Created: atp(2 * h), State: pos.StatePaid,
			Lines:  []pos.Line{{SKU: "bread", Amount: 1500}, {SKU: "cake", Amount: 500, ManualPrice: true}},
			Totals: pos.Totals{Items: 2000, Tax: 130, Total: 2000}, Paid: 2000, Refunded: 500, Manual: true,
			Payments: []pos.PaymentFact{pay(2*h+1, "cash", 2000, 2000, "till-1", true)},
			Refunds: []pos.RefundFact{
				refund(2*h+2, "cash", 500, "till-2", true),
				refund(2*h+3, "cash", 5000, "till-2", false),
			},
		},
		{ // fully refunded, with a tip
			ID: "o3", Vendor: "coffee", Device: "till-2", Currency: "EUR", Created: atp(3 * h), State: pos.StateRefunded,
			Totals: pos.Totals{Items: 400, Tax: 26, Tip: 100, Total: 500}, Paid: 500, Refunded: 500,
			Payments: []pos.PaymentFact{pay(3*h+1, "card", 500, 500, "till-2", true)},
			Refunds:  []pos.RefundFact{refund(3*h+2, "card", 500, "till-2", true)},
		},
		{ // cancelled
			ID: "o4", Vendor: "coffee", Device: "till-2", Currency: "EUR", Created: atp(4 * h), State: pos.StateCancelled,
			Totals: pos.Totals{Items: 300, Total: 300},
		},
		{ // open, part paid by wallet
			ID: "o5", Vendor: "coffee", Device: "till-1", Currency: "EUR", Created: atp(5 * h), State: pos.StateOpen,
			Totals: pos.Totals{Items: 800, Total: 800}, Paid: 100,
			Payments: []pos.PaymentFact{pay(5*h+1, "wallet", 100, 100, "till-1", true)},
		},
		{ // before the range
			ID: "o6", Vendor: "bakery", Device: "till-1", Currency: "EUR", Created: atp(-1 * h), State: pos.StatePaid,
			Totals: pos.Totals{Items: 700, Total: 700}, Paid: 700,
			Payments: []pos.PaymentFact{pay(-h+1, "cash", 700, 700, "till-1", true)},
		},
		{ // at the end of the range, which is exclusive
			ID: "o7", Vendor: "coffee", Device: "till-2", Currency: "EUR", Created: atp(12 * h), State: pos.StatePaid,
			Totals: pos.Totals{Items: 900, Total: 900}, Paid: 900,
			Payments: []pos.PaymentFact{pay(12*h+1, "card", 900, 900, "till-2", true)},
		},
		{ // a payment whose order has not arrived
			ID: "o8", State: pos.StateOpen,
			Payments: []pos.PaymentFact{pay(6*h, "cash", 100, 100, "till-1", false)},
		},
		{ // another currency
			ID: "o9", Vendor: "coffee", Device: "till-2", Currency: "USD", Created: atp(6 * h), State: pos.StatePaid,
			Totals: pos.Totals{Items: 100, Total: 100}, Paid: 100,
			Payments: []pos.PaymentFact{pay(6*h+1, "card", 100, 100, "till-2", true)},
		},
	}
}

func TestBuildDay(t *testing.T) {
	from, to := t0, t0.Add(12*time.Hour)
	got := salesreport.Build(dayOrders(), from.UTC(), to.UTC(), berlin)

	want := salesreport.Report{
		From: from, To: to, TimeZone: "Europe/Berlin", Currency: "EUR",
		Totals: figures(salesreport.Figures{
			Orders: 5, Sold: 3, Open: 1, OpenOwed: 700, Cancelled: 1, ManualPriceLines: 1,
			Gross: 3400, Discounts: 100, Tax: 216, Tips: 150, Refunds: 1000, Net: 2450,
			UnsoldPayments: 100, CashTendered: 3000, ChangeGiven: 500, CashExpected: 2000,
		}, map[string]int64{"cash": 2500, "card": 950, "wallet": 100}, map[string]int64{"cash": 500, "card": 500}),
		Vendors: []salesreport.VendorFigures{
			{Vendor: "bakery", Figures: figures(salesreport.Figures{
				Orders: 2, Sold: 2, ManualPriceLines: 1,
				Gross: 3000, Discounts: 100, Tax: 190, Tips: 50, Refunds: 500, Net: 2450,
				CashTendered: 3000, ChangeGiven: 500, CashExpected: 2000,
			}, map[string]int64{"cash": 2500, "card": 450}, map[string]int64{"cash": 500})},
			{Vendor: "coffee", Figures: figures(salesreport.Figures{
				Orders: 3, Sold: 1, Open: 1, OpenOwed: 700, Cancelled: 1,
				Gross: 400, Tax: 26, Tips: 100, Refunds: 500, Net: 0, UnsoldPayments: 100,
			}, map[string]int64{"card": 500, "wallet": 100}, map[string]int64{"card": 500})},
		},
		Devices: []salesreport.DeviceFigures{
			{Device: "till-1", Figures: figures(salesreport.Figures{
				Orders: 3, Sold: 2, Open: 1, OpenOwed: 700, ManualPriceLines: 1,
				Gross: 3000, Discounts: 100, Tax: 190, Tips: 50, Net: 2950, UnsoldPayments: 100,
				CashTendered: 3000, ChangeGiven: 500, CashExpected: 2500,
			}, map[string]int64{"cash": 2500, "wallet": 100}, nil)},
			{Device: "till-2", Figures: figures(salesreport.Figures{
				Orders: 2, Sold: 1, Cancelled: 1,
				Gross: 400, Tax: 26, Tips: 100, Refunds: 1000, Net: -500, CashExpected: -500,
			}, map[string]int64{"card": 950}, map[string]int64{"cash": 500, "card": 500})},
		},
		ManualPriceOrders: []string{"o2"},
		OtherCurrency:     []string{"o9"},
	}
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("report:\n%s\nwant:\n%s", g, w)
	}
	if got.From.Location() != berlin || got.From.Format(time.RFC3339) != "2026-05-01T10:00:00+02:00" {
		t.Fatalf("from %s not in the event's zone", got.From.Format(time.RFC3339))
	}

	// The same orders in another order give byte-identical JSON.
	orders := dayOrders()
	slices.Reverse(orders)
	for i := range orders {
		slices.Reverse(orders[i].Payments)
		slices.Reverse(orders[i].Refunds)
	}
	a, _ := json.Marshal(got)
	b, _ := json.Marshal(salesreport.Build(orders, from, to, berlin))
	if string(a) != string(b) {
		t.Fatalf("order-dependent:\n%s\n%s", a, b)
	}
}

func TestBuildCashOverpaysWhatIsOwed(t *testing.T) {
	// A cash payment whose amount exceeds what is owed settles only what is
	// owed, as the reducer does; the rest is change.
	o := pos.Order{
		ID: "x", Vendor: "v", Device: "d", Currency: "EUR", Created: atp(time.Minute), State: pos.StatePaid,
		Totals: pos.Totals{Items: 700, Total: 700}, Paid: 700,
		Payments: []pos.PaymentFact{
			pay(2*time.Minute, "card", 200, 200, "d", true),
			pay(3*time.Minute, "cash", 1000, 1000, "d", true),
		},
	}
	r := salesreport.Build([]pos.Order{o}, t0, t0.Add(time.Hour), nil)
	f := r.Totals
	if f.Payments["cash"] != 500 || f.CashTendered != 1000 || f.ChangeGiven != 500 || f.CashExpected != 500 || f.Net != 700 {
		t.Fatalf("figures %+v", f)
	}
	if r.TimeZone != "UTC" {
		t.Fatalf("time zone %q", r.TimeZone)
	}
}

func TestBuildEmpty(t *testing.T) {
	r := salesreport.Build(nil, t0, t0.Add(time.Hour), berlin)
	b, err := json.Marshal(r)
	if err != nil {
		t.Fatal(err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"vendors", "devices", "manual_price_orders"} {
		if _, ok := m[k].([]any); !ok {
			t.Fatalf("%s is %v, want an empty list", k, m[k])
		}
	}
	if r.Totals.Orders != 0 || r.Totals.Payments["cash"] != 0 || len(r.Totals.Payments) != 4 {
		t.Fatalf("totals %+v", r.Totals)
	}
}

// add sums the additive figures of b into a.
func add(a *salesreport.Figures, b salesreport.Figures) {
	a.Orders += b.Orders
	a.Sold += b.Sold
	a.Open += b.Open
	a.OpenOwed += b.OpenOwed
	a.Cancelled += b.Cancelled
	a.ManualPriceLines += b.ManualPriceLines
	a.Gross += b.Gross
	a.Discounts += b.Discounts
	a.Tax += b.Tax
	a.Tips += b.Tips
	a.Refunds += b.Refunds
	a.Net += b.Net
	a.UnsoldPayments += b.UnsoldPayments
	a.CashTendered += b.CashTendered
	a.ChangeGiven += b.ChangeGiven
	a.CashExpected += b.CashExpected
	if a.Payments == nil {
		a.Payments, a.RefundsByMethod = map[string]int64{}, map[string]int64{}
	}
	for k, v := range b.Payments {
		a.Payments[k] += v
	}
	for k, v := range b.RefundsByMethod {
		a.RefundsByMethod[k] += v
	}
}

func checkNet(t *rapid.T, what string, f salesreport.Figures) {
	if f.Net != f.Gross-f.Discounts+f.Tips-f.Refunds {
		t.Fatalf("%s: net %d != gross %d - discounts %d + tips %d - refunds %d", what, f.Net, f.Gross, f.Discounts, f.Tips, f.Refunds)
	}
	if f.Orders != f.Sold+f.Open+f.Cancelled {
		t.Fatalf("%s: orders %d != sold %d + open %d + cancelled %d", what, f.Orders, f.Sold, f.Open, f.Cancelled)
	}
	var refunds int64
	for _, v := range f.RefundsByMethod {
		refunds += v
	}
	if refunds != f.Refunds {
		t.Fatalf("%s: refunds by method add up to %d, not %d", what, refunds, f.Refunds)
	}
}

func TestBuildProperties(t *testing.T) {
	states := []pos.State{pos.StateOpen, pos.StatePaid, pos.StateReady, pos.StateFulfilled, pos.StateCancelled, pos.StateRefunded}
	methods := []string{"cash", "card", "wallet", "other"}
	rapid.Check(t, func(t *rapid.T) {
		n := rapid.IntRange(0, 30).Draw(t, "orders")
		orders := make([]pos.Order, n)
		minute := func(label string) time.Duration {
			return time.Duration(rapid.IntRange(-120, 24*60).Draw(t, label)) * time.Minute
		}
		for i := range orders {
			items := rapid.Int64Range(0, 100_000).Draw(t, "items")
			discount := rapid.Int64Range(0, items).Draw(t, "discount")
			tip := rapid.Int64Range(0, 5_000).Draw(t, "tip")
			o := pos.Order{
				ID:       string(rune('a'+i%26)) + string(rune('0'+i/26)),
				Vendor:   rapid.SampledFrom([]string{"v1", "v2", "v3"}).Draw(t, "vendor"),
				Device:   rapid.SampledFrom([]string{"d1", "d2", "d3"}).Draw(t, "device"),
				Currency: "EUR",
				State:    rapid.SampledFrom(states).Draw(t, "state"),
				Totals:   pos.Totals{Items: items, Discount: discount, Tax: items / 10, Tip: tip, Total: items - discount + tip},
			}
			if rapid.IntRange(0, 9).Draw(t, "created?") > 0 {
				o.Created = atp(minute("created"))
			}
			for range rapid.IntRange(0, 4).Draw(t, "payments") {
				amount := rapid.Int64Range(0, o.Totals.Total+100).Draw(t, "amount")
				m := rapid.SampledFrom(methods).Draw(t, "method")
				o.Payments = append(o.Payments, pay(minute("paid"), m, amount, amount+rapid.Int64Range(0, 500).Draw(t, "extra"),
					rapid.SampledFrom([]string{"d1", "d2", "d4"}).Draw(t, "payer"), rapid.Bool().Draw(t, "accepted")))
			}
			for range rapid.IntRange(0, 3).Draw(t, "refunds") {
				o.Refunds = append(o.Refunds, refund(minute("refunded"), rapid.SampledFrom(methods).Draw(t, "rmethod"),
					rapid.Int64Range(1, 1000).Draw(t, "ramount"), rapid.SampledFrom([]string{"d1", "d5"}).Draw(t, "refunder"),
					rapid.Bool().Draw(t, "raccepted")))
			}
			if rapid.Bool().Draw(t, "manual") {
				o.Lines = []pos.Line{{SKU: "m", ManualPrice: true}, {SKU: "c"}}
			}
			orders[i] = o
		}
		from := t0.Add(minute("from"))
		to := from.Add(time.Duration(rapid.IntRange(1, 24*60).Draw(t, "span")) * time.Minute)
		r := salesreport.Build(orders, from, to, berlin)

		inRange := 0
		for _, o := range orders {
			if o.Created != nil {
				c := time.UnixMilli(o.Created.HLC.Wall)
				if !c.Before(from) && c.Before(to) {
					inRange++
				}
			}
		}
		if r.Totals.Orders != inRange {
			t.Fatalf("report counts %d orders, %d were created in range", r.Totals.Orders, inRange)
		}
		checkNet(t, "totals", r.Totals)
		var byVendor, byDevice salesreport.Figures
		for _, v := range r.Vendors {
			checkNet(t, "vendor "+v.Vendor, v.Figures)
			add(&byVendor, v.Figures)
		}
		for _, d := range r.Devices {
			checkNet(t, "device "+d.Device, d.Figures)
			add(&byDevice, d.Figures)
		}
		if !reflect.DeepEqual(byVendor, r.Totals) && !(len(r.Vendors) == 0 && r.Totals.Orders == 0) {
			t.Fatalf("vendors add up to %+v, totals are %+v", byVendor, r.Totals)
		}
		if !reflect.DeepEqual(byDevice, r.Totals) && !(len(r.Devices) == 0 && r.Totals.Orders == 0) {
			t.Fatalf("devices add up to %+v, totals are %+v", byDevice, r.Totals)
		}
		if !slices.IsSortedFunc(r.Vendors, func(a, b salesreport.VendorFigures) int { return compare(a.Vendor, b.Vendor) }) ||
			!slices.IsSortedFunc(r.Devices, func(a, b salesreport.DeviceFigures) int { return compare(a.Device, b.Device) }) {
			t.Fatalf("groups not sorted")
		}
		// Any order of the rows gives the same report.
		perm := rapid.Permutation(orders).Draw(t, "perm")
		if !reflect.DeepEqual(salesreport.Build(perm, from, to, berlin), r) {
			t.Fatalf("report depends on the order of the rows")
		}
	})
}

func compare(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

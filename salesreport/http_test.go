package salesreport_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"canopy/api"
	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/pos"
	"canopy/salesreport"
)

// appendJSON appends one entry through the edge's journal, as the POS
// routes do.
func appendJSON(t *testing.T, e *edge.Edge, kind, key string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.Journal.Append(context.Background(), kind, key, b); err != nil {
		t.Fatalf("append %s %s: %v", kind, key, err)
	}
}

// createOrder prices lines and appends the order.created entry.
func createOrder(t *testing.T, e *edge.Edge, id, vendor, device string, lines []pos.Line, discount, tip int64) pos.Totals {
	t.Helper()
	priced, totals, err := pos.PriceLines(lines, discount, tip)
	if err != nil {
		t.Fatal(err)
	}
	c := pos.Created{ID: id, Vendor: vendor, Device: device, Currency: "EUR", Lines: priced, Tip: tip, Totals: totals}
	if discount > 0 {
		c.Discount = &pos.Discount{Amount: discount, Reason: "staff"}
	}
	appendJSON(t, e, pos.KindOrderCreated, pos.OrderKey(id), c)
	return totals
}

// seedDay writes a small trading day through the journal:
//
//	A bakery, till-1: 2 × bread (250, 7 % incl.) less 50 → 450; card 200 at
//	  till-2, cash 250 tendered 1000 at till-1 (change 750); fulfilled.
//	B coffee, till-2: 1 × latte (300 + 19 %) + tip 100 → 457; card; 100
//	  refunded by card at till-2.
//	C coffee, till-2: 1 × latte, cancelled.
//	D bakery, till-1: 1 × bread at a manual 999, open.
func seedDay(t *testing.T, e *edge.Edge) {
	t.Helper()
	appendJSON(t, e, pos.KindVendorSet, "vendor:bakery", pos.Vendor{ID: "bakery", Name: "Bakery", Active: true})
	appendJSON(t, e, pos.KindVendorSet, "vendor:coffee", pos.Vendor{ID: "coffee", Name: "Coffee", Active: true})
	bread := pos.SKU{SKU: "bread", Vendor: "bakery", Name: "Bread", Price: 250, TaxRate: 700, TaxInclusive: true, Active: true}
	latte := pos.SKU{SKU: "latte", Vendor: "coffee", Name: "Latte", Price: 300, TaxRate: 1900, Active: true}
	appendJSON(t, e, pos.KindSKUSet, "sku:bread", bread)
	appendJSON(t, e, pos.KindSKUSet, "sku:latte", latte)
	line := func(s pos.SKU, qty int64) pos.Line {
		return pos.Line{SKU: s.SKU, Name: s.Name, Qty: qty, UnitPrice: s.Price, TaxRate: s.TaxRate, TaxInclusive: s.TaxInclusive}
	}

	ta := createOrder(t, e, "A", "bakery", "till-1", []pos.Line{line(bread, 2)}, 50, 0)
	appendJSON(t, e, pos.KindPaymentRecorded, pos.OrderKey("A"), pos.PaymentBody{Order: "A", ID: "A-1", Method: pos.MethodCard, Amount: 200, Tendered: 200, Reference: "auth-1", Device: "till-2"})
	appendJSON(t, e, pos.KindPaymentRecorded, pos.OrderKey("A"), pos.PaymentBody{Order: "A", ID: "A-2", Method: pos.MethodCash, Amount: ta.Total - 200, Tendered: 1000, Change: 1000 - (ta.Total - 200), Device: "till-1",
		Receipt: &pos.ReceiptBody{Order: "A", Vendor: "bakery", Currency: "EUR", Totals: ta}})
	appendJSON(t, e, pos.KindOrderMoved, pos.OrderKey("A"), pos.MoveBody{Order: "A", To: pos.StateFulfilled, Device: "till-1"})

	tb := createOrder(t, e, "B", "coffee", "till-2", []pos.Line{line(latte, 1)}, 0, 100)
	appendJSON(t, e, pos.KindPaymentRecorded, pos.OrderKey("B"), pos.PaymentBody{Order: "B", ID: "B-1", Method: pos.MethodCard, Amount: tb.Total, Tendered: tb.Total, Device: "till-2",
		Receipt: &pos.ReceiptBody{Order: "B", Vendor: "coffee", Currency: "EUR", Totals: tb}})
	appendJSON(t, e, pos.KindRefundRecorded, pos.OrderKey("B"), pos.RefundBody{Order: "B", ID: "B-r1", Amount: 100, Method: pos.MethodCard, Reason: "spilt", Device: "till-2"})

	createOrder(t, e, "C", "coffee", "till-2", []pos.Line{line(latte, 1)}, 0, 0)
	appendJSON(t, e, pos.KindOrderMoved, pos.OrderKey("C"), pos.MoveBody{Order: "C", To: pos.StateCancelled, Device: "till-2"})

	manual := line(bread, 1)
	manual.UnitPrice, manual.ManualPrice = 999, true
	createOrder(t, e, "D", "bakery", "till-1", []pos.Line{manual}, 0, 0)
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func get(t *testing.T, u, token string) reply {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	return reply{res.StatusCode, res.Header, b}
}

func wantProblem(t *testing.T, r reply, status int, typ string) api.FieldError {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != api.ContentTypeProblem {
		t.Fatalf("status %d %q, want %d problem: %s", r.status, r.header.Get("Content-Type"), status, r.body)
	}
	var p struct {
		Type   string           `json:"type"`
		Detail string           `json:"detail"`
		Errors []api.FieldError `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Type != typ || p.Detail == "" {
		t.Fatalf("problem %s, want %s", r.body, typ)
	}
	if len(p.Errors) > 0 {
		return p.Errors[0]
	}
	return api.FieldError{}
}

func TestSalesReportRoute(t *testing.T) {
	ev := testutil.NewEvent(t, "z-market")
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	seedDay(t, e)
	base := e.URL() + salesreport.Path
	organizer := ev.ValidToken(t, auth.RoleOrganizer)

	r := get(t, base, organizer)
	if r.status != http.StatusOK || r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("status %d %q: %s", r.status, r.header.Get("Content-Type"), r.body)
	}
	var rep salesreport.Report
	if err := json.Unmarshal(r.body, &rep); err != nil {
		t.Fatal(err)
	}
	// A: 500 items, 50 off, tax 33 → 30, total 450. B: 357 + 100 tip = 457.
	// C: 357, cancelled. D: 999, open.
	tot := rep.Totals
	type figs struct {
		Orders, Sold, Open, Cancelled, Manual                                   int
		Gross, Discounts, Tax, Tips, Refunds, Net, Cash, Card, Tendered, Change int64
		Drawer, Owed                                                            int64
	}
	of := func(f salesreport.Figures) figs {
		return figs{f.Orders, f.Sold, f.Open, f.Cancelled, f.ManualPriceLines,
			f.Gross, f.Discounts, f.Tax, f.Tips, f.Refunds, f.Net, f.Payments["cash"], f.Payments["card"], f.CashTendered, f.ChangeGiven,
			f.CashExpected, f.OpenOwed}
	}
	if got, want := of(tot), (figs{4, 2, 1, 1, 1, 857, 50, 87, 100, 100, 807, 250, 657, 1000, 750, 250, 999}); got != want {
		t.Fatalf("totals %+v, want %+v", got, want)
	}
	if len(rep.Vendors) != 2 || rep.Vendors[0].Vendor != "bakery" || rep.Vendors[1].Vendor != "coffee" {
		t.Fatalf("vendors %+v", rep.Vendors)
	}
	if got, want := of(rep.Vendors[0].Figures), (figs{2, 1, 1, 0, 1, 500, 50, 30, 0, 0, 450, 250, 200, 1000, 750, 250, 999}); got != want {
		t.Fatalf("bakery %+v, want %+v", got, want)
	}
	if len(rep.Devices) != 2 || rep.Devices[0].Device != "till-1" || rep.Devices[1].Device != "till-2" {
		t.Fatalf("devices %+v", rep.Devices)
	}
	// till-2 created B and C, took A's card part and B's payment, refunded B.
	if got, want := of(rep.Devices[1].Figures), (figs{2, 1, 0, 1, 0, 357, 0, 57, 100, 100, 357, 0, 657, 0, 0, 0, 0}); got != want {
		t.Fatalf("till-2 %+v, want %+v", got, want)
	}
	if rep.Currency != "EUR" || rep.TimeZone != "Europe/Berlin" || len(rep.ManualPriceOrders) != 1 || rep.ManualPriceOrders[0] != "D" {
		t.Fatalf("report %s", r.body)
	}
	if !rep.From.Equal(ev.Event.StartsAt) || !rep.To.Equal(ev.Event.EndsAt) {
		t.Fatalf("default range %s..%s, want the event's %s..%s", rep.From, rep.To, ev.Event.StartsAt, ev.Event.EndsAt)
	}
	if _, off := rep.From.Zone(); off != 3600 && off != 7200 {
		t.Fatalf("from %s not in Europe/Berlin", rep.From)
	}

	// An admin may read it too; a range after the sales holds nothing.
	later := time.Now().Add(time.Hour)
	q := url.Values{"from": {later.Format(time.RFC3339)}, "to": {later.Add(time.Hour).In(time.FixedZone("", -5*3600)).Format(time.RFC3339)}}
	r = get(t, base+"?"+q.Encode(), ev.ValidToken(t, auth.RoleAdmin))
	if r.status != http.StatusOK {
		t.Fatalf("admin: %d %s", r.status, r.body)
	}
	rep = salesreport.Report{}
	if err := json.Unmarshal(r.body, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Totals.Orders != 0 || len(rep.Vendors) != 0 || rep.Currency != "EUR" || !rep.From.Equal(later.Truncate(time.Second)) {
		t.Fatalf("later range: %s", r.body)
	}
	// A range that holds the sales counts them.
	q = url.Values{"from": {time.Now().Add(-time.Minute).UTC().Format(time.RFC3339)}, "to": {later.Format(time.RFC3339)}}
	rep = salesreport.Report{}
	if r = get(t, base+"?"+q.Encode(), organizer); r.status != http.StatusOK || json.Unmarshal(r.body, &rep) != nil || rep.Totals.Orders != 4 {
		t.Fatalf("explicit range: %d %s", r.status, r.body)
	}

	// Who may not read it, and bad ranges.
	wantProblem(t, get(t, base, ev.ValidToken(t, auth.RolePOS)), http.StatusForbidden, api.TypeForbiddenRole)
	wantProblem(t, get(t, base, ""), http.StatusUnauthorized, api.TypeTokenMissing)
	for _, c := range []struct{ query, param string }{
		{"from=yesterday", "from"},
		{"from=2026-05-01T10:00:00", "from"}, // no offset
		{"to=2026-13-01T10:00:00Z", "to"},
		{"from=2026-05-02T10:00:00%2B02:00&to=2026-05-02T08:00:00Z", "to"}, // to = from
		{"from=2026-05-01T10:00:00Z&from=2026-05-01T11:00:00Z", "from"},
		{"since=2026-05-01T10:00:00Z", "since"},
	} {
		fe := wantProblem(t, get(t, base+"?"+c.query, organizer), http.StatusBadRequest, api.TypeInvalidParameter)
		if fe.Parameter != c.param || fe.Detail == "" {
			t.Errorf("%s: error %+v, want parameter %s", c.query, fe, c.param)
		}
	}
}

// send makes one request with a JSON body and an Idempotency-Key.
func send(t *testing.T, method, u, token, body string) reply {
	t.Helper()
	req, err := http.NewRequest(method, u, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", fmt.Sprintf("k-%d", time.Now().UnixNano()))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatal(err)
	}
	if res.StatusCode >= 300 {
		t.Fatalf("%s %s: %d %s", method, u, res.StatusCode, b)
	}
	return reply{res.StatusCode, res.Header, b}
}

// TestSalesReportThroughPOSRoutes sells through the real POS routes and
// checks the report reads what they wrote.
func TestSalesReportThroughPOSRoutes(t *testing.T) {
	ev := testutil.NewEvent(t, "z-pos")
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	organizer := ev.ValidToken(t, auth.RoleOrganizer)
	till := ev.Token(t, auth.RolePOS, "till-9", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
	send(t, "PUT", e.URL()+"/v1/vendors/bakery", organizer, `{"name":"Bakery","active":true}`)
	send(t, "PUT", e.URL()+"/v1/catalog/bread", organizer, `{"vendor":"bakery","name":"Bread","price":250,"tax_rate":700,"tax_inclusive":true,"active":true}`)

	var created struct {
		Order struct {
			ID     string     `json:"id"`
			Totals pos.Totals `json:"totals"`
		} `json:"order"`
	}
	r := send(t, "POST", e.URL()+"/v1/orders", till, `{"vendor":"bakery","lines":[{"sku":"bread","qty":3}],"discount":{"amount":50,"reason":"regular"},"tip":20}`)
	o := &created.Order
	if err := json.Unmarshal(r.body, &created); err != nil || o.ID == "" {
		t.Fatalf("order %s: %v", r.body, err)
	}
	// 750 - 50 + 20 = 720: 200 by card, then 1000 cash for the 520 left.
	send(t, "POST", e.URL()+"/v1/orders/"+o.ID+"/payments", till, `{"method":"card","amount":200,"reference":"auth-7"}`)
	send(t, "POST", e.URL()+"/v1/orders/"+o.ID+"/payments", till, `{"method":"cash","amount":1000}`)
	send(t, "POST", e.URL()+"/v1/orders/"+o.ID+"/refunds", till, `{"amount":120,"method":"cash","reason":"stale"}`)
	// A second order stays open.
	send(t, "POST", e.URL()+"/v1/orders", till, `{"vendor":"bakery","lines":[{"sku":"bread","qty":1}]}`)

	r = get(t, e.URL()+salesreport.Path, organizer)
	var rep salesreport.Report
	if r.status != http.StatusOK || json.Unmarshal(r.body, &rep) != nil {
		t.Fatalf("%d %s", r.status, r.body)
	}
	f := rep.Totals
	if o.Totals.Total != 720 || f.Orders != 2 || f.Sold != 1 || f.Open != 1 || f.OpenOwed != 250 ||
		f.Gross != 750 || f.Discounts != 50 || f.Tips != 20 || f.Refunds != 120 || f.Net != 600 ||
		f.Payments["card"] != 200 || f.Payments["cash"] != 520 || f.CashTendered != 1000 || f.ChangeGiven != 480 ||
		f.CashExpected != 400 || f.RefundsByMethod["cash"] != 120 {
		t.Fatalf("totals %+v (order %+v)", f, o.Totals)
	}
	if len(rep.Devices) != 1 || rep.Devices[0].Device != "till-9" || len(rep.Vendors) != 1 || rep.Vendors[0].Vendor != "bakery" {
		t.Fatalf("groups %s", r.body)
	}
}

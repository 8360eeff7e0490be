package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"testing"

	"canopy/auth"
	"canopy/cli"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/pos"
	"canopy/salesreport"
)

type runResult struct {
	code           int
	stdout, stderr string
}

func runCLI(args ...string) runResult {
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, &out, &errOut)
	return runResult{code, out.String(), errOut.String()}
}

// seedSales appends, through the edge's journal as the POS routes do, two
// orders: bakery at till-1 (2 × 250 incl. 7 % tax, paid 500 cash of 2000
// tendered) and coffee at till-2 (357 with a tip of 100 = 457 by card, 157
// refunded by card at till-1).
func seedSales(t *testing.T, e *edge.Edge) {
	t.Helper()
	put := func(kind, key string, v any) {
		b, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Journal.Append(context.Background(), kind, key, b); err != nil {
			t.Fatal(err)
		}
	}
	put(pos.KindVendorSet, "vendor:bakery", pos.Vendor{ID: "bakery", Name: "Bakery", Active: true})
	put(pos.KindVendorSet, "vendor:coffee", pos.Vendor{ID: "coffee", Name: "Coffee", Active: true})
	order := func(id, vendor, device string, l pos.Line, tip int64) pos.Totals {
		lines, totals, err := pos.PriceLines([]pos.Line{l}, 0, tip)
		if err != nil {
			t.Fatal(err)
		}
		put(pos.KindOrderCreated, pos.OrderKey(id), pos.Created{ID: id, Vendor: vendor, Device: device, Currency: "EUR", Lines: lines, Tip: tip, Totals: totals})
		return totals
	}
	a := order("A", "bakery", "till-1", pos.Line{SKU: "bread", Name: "Bread", Qty: 2, UnitPrice: 250, TaxRate: 700, TaxInclusive: true}, 0)
	put(pos.KindPaymentRecorded, pos.OrderKey("A"), pos.PaymentBody{Order: "A", ID: "A-1", Method: pos.MethodCash, Amount: a.Total, Tendered: 2000, Change: 2000 - a.Total, Device: "till-1"})
	b := order("B", "coffee", "till-2", pos.Line{SKU: "latte", Name: "Latte", Qty: 1, UnitPrice: 300, TaxRate: 1900}, 100)
	put(pos.KindPaymentRecorded, pos.OrderKey("B"), pos.PaymentBody{Order: "B", ID: "B-1", Method: pos.MethodCard, Amount: b.Total, Tendered: b.Total, Device: "till-2"})
	put(pos.KindRefundRecorded, pos.OrderKey("B"), pos.RefundBody{Order: "B", ID: "B-r", Amount: 157, Method: pos.MethodCard, Reason: "cold", Device: "till-1"})
}

func TestReportSales(t *testing.T) {
	ev := testutil.NewEvent(t, "z-cli")
	data := t.TempDir()
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", data), nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			e.Close(context.Background())
		}
	})
	seedSales(t, e)
	organizer := ev.ValidToken(t, auth.RoleOrganizer)

	// Online, as a table.
	r := runCLI("report", "sales", "--url", e.URL(), "--token", organizer)
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	// Gross 500 + 357 = 857; net 857 + 100 - 157 = 800; drawer 5.00.
	for _, want := range []string{"Z-REPORT", "EUR", "Europe/Berlin", "Sales by vendor", "Tender by device",
		"bakery", "coffee", "till-1", "till-2", "TOTAL", "8.57", "8.00", "20.00", "15.00", "4.57", "3.43"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	var total string
	for _, l := range strings.Split(r.stdout, "\n") {
		if strings.HasPrefix(strings.TrimSpace(l), "TOTAL") && strings.Contains(l, "8.57") {
			total = strings.Join(strings.Fields(l), " ")
			break
		}
	}
	// TOTAL orders sold open cancelled manual gross discounts tax tips refunds net
	if total != "TOTAL 2 2 0 0 0 8.57 0.00 0.90 1.00 1.57 8.00" {
		t.Errorf("sales total line %q", total)
	}

	// Online as JSON, with the token from the environment.
	t.Setenv("CANOPY_TOKEN", ev.ValidToken(t, auth.RoleAdmin))
	r = runCLI("report", "sales", "--url", e.URL()+"/", "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	online := r.stdout
	var rep salesreport.Report
	if err := json.Unmarshal([]byte(online), &rep); err != nil {
		t.Fatal(err)
	}
	if f := rep.Totals; f.Gross != 857 || f.Net != 800 || f.CashExpected != 500 || f.ChangeGiven != 1500 || f.Payments["card"] != 457 {
		t.Fatalf("totals %+v", f)
	}
	if len(rep.Devices) != 2 || rep.Devices[0].Device != "till-1" || rep.Devices[0].Refunds != 157 || rep.Devices[0].Net != 500-157 {
		t.Fatalf("devices %+v", rep.Devices)
	}

	// A POS token may not read it; a node that does not answer is an error.
	r = runCLI("report", "sales", "--url", e.URL(), "--token", ev.ValidToken(t, auth.RolePOS))
	if r.code != 1 || !strings.Contains(r.stderr, "403") || !strings.Contains(r.stderr, "forbidden-role") {
		t.Fatalf("pos token: exit %d: %s", r.code, r.stderr)
	}
	// The node rejects a range that ends before it starts.
	r = runCLI("report", "sales", "--url", e.URL(), "--from", "2026-05-02T00:00:00Z", "--to", "2026-05-01T00:00:00Z")
	if r.code != 1 || !strings.Contains(r.stderr, "400") || !strings.Contains(r.stderr, "must be after from") {
		t.Fatalf("reversed range: exit %d: %s", r.code, r.stderr)
	}
	url := e.URL()

	// Offline from the stopped node's data directory: the same report.
	closed = true
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	r = runCLI("report", "sales", "--dir", data, "--event", ev.Dir, "--json")
	if r.code != 0 {
		t.Fatalf("exit %d: %s", r.code, r.stderr)
	}
	if r.stdout != online {
		t.Fatalf("offline report differs from online:\n%s\n%s", r.stdout, online)
	}
	r = runCLI("report", "sales", "--dir", filepath.Join(data, edge.StoreFile), "--event", filepath.Join(ev.Dir, auth.EventFile),
		"--from", "2020-01-01T00:00:00+01:00", "--to", "2020-01-02T00:00:00+01:00")
	if r.code != 0 || !strings.Contains(r.stdout, "2020-01-01 00:00:00 +01:00") || strings.Contains(r.stdout, "bakery") {
		t.Fatalf("empty range: exit %d\n%s%s", r.code, r.stdout, r.stderr)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{}, 2, "give --url URL"},
		{[]string{"--url", url, "--dir", data}, 2, "not both"},
		{[]string{"--dir", data}, 2, "--dir needs --event"},
		{[]string{"--dir", data, "--event", ev.Dir, "--from", "today"}, 2, "--from must be an RFC 3339 time"},
		{[]string{"--dir", data, "--event", ev.Dir, "--to", "2026-05-01T10:00:00"}, 2, "--to must be an RFC 3339 time"},
		{[]string{"--dir", data, "--event", ev.Dir, "--from", "2026-05-02T00:00:00Z", "--to", "2026-05-01T00:00:00Z"}, 2, "must be after from"},
		{[]string{"--dir", filepath.Join(data, "nope"), "--event", ev.Dir}, 1, "no store at"},
		{[]string{"--dir", data, "--event", filepath.Join(data, "nope")}, 1, "nope"},
		{[]string{"--url", "ftp://x"}, 2, "--url must be an http://"},
		{[]string{"--url", url}, 1, "GET " + url}, // the node is stopped
		{[]string{"--url", url, "extra"}, 2, "unexpected argument"},
	} {
		r := runCLI(append([]string{"report", "sales"}, c.args...)...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, want %d with %q: %s", c.args, r.code, c.code, c.want, r.stderr)
		}
	}
	t.Setenv("CANOPY_TOKEN", "")
	if r := runCLI("report", "sales", "--url", url); r.code != 2 || !strings.Contains(r.stderr, "CANOPY_TOKEN") {
		t.Errorf("no token: exit %d: %s", r.code, r.stderr)
	}
}

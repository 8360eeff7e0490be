package cli_test

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/pos"
	"canopy/receipt"
)

// paidReceipt runs a real edge, appends an order and the payment that
// completes it (as the POS routes do), fetches the receipt over HTTP and
// writes it to a file. It returns the file, the event and the order total.
func paidReceipt(t *testing.T) (file string, ev *testutil.Event, total int64) {
	t.Helper()
	ctx := context.Background()
	ev = testutil.NewEvent(t, "cli-receipts")
	e, err := edge.Open(ctx, ev.EdgeConfig(t, "edge-1", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(ctx) })
	add := func(kind, key string, body any) {
		b, err := json.Marshal(body)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := e.Journal.Append(ctx, kind, key, b); err != nil {
			t.Fatal(err)
		}
	}
	lines, totals, err := pos.PriceLines([]pos.Line{{SKU: "crepe", Name: "Crêpe", Qty: 2, UnitPrice: 450, TaxRate: 700, TaxInclusive: true}}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	add(pos.KindOrderCreated, pos.OrderKey("o-77"), pos.Created{ID: "o-77", Vendor: "v-crepes", Device: "till-2", Currency: "EUR", Lines: lines, Totals: totals})
	paid := pos.Paid{ID: "p1", Method: pos.MethodCard, Amount: totals.Total, Tendered: totals.Total}
	add(pos.KindPaymentRecorded, pos.OrderKey("o-77"), pos.PaymentBody{
		Order: "o-77", ID: "p1", Method: pos.MethodCard, Amount: totals.Total, Tendered: totals.Total, Device: "till-2",
		Receipt: &pos.ReceiptBody{Order: "o-77", Vendor: "v-crepes", Currency: "EUR", Lines: lines, Totals: totals, Payments: []pos.Paid{paid}},
	})
	req, err := http.NewRequest("GET", e.URL()+"/v1/receipts/o-77", nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+ev.ValidToken(t, auth.RolePOS))
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	doc, err := io.ReadAll(res.Body)
	if err != nil || res.StatusCode != 200 {
		t.Fatalf("GET receipt: %d %v %s", res.StatusCode, err, doc)
	}
	file = filepath.Join(t.TempDir(), "receipt.json")
	if err := os.WriteFile(file, doc, 0o644); err != nil {
		t.Fatal(err)
	}
	return file, ev, totals.Total
}

// alter writes a changed copy of the receipt document in file.
func alter(t *testing.T, file string, edit func(d *receipt.Document)) string {
	t.Helper()
	b, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	d, err := receipt.Decode(b)
	if err != nil {
		t.Fatal(err)
	}
	edit(d)
	if b, err = d.Encode(); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "altered.json")
	if err := os.WriteFile(out, b, 0o644); err != nil {
		t.Fatal(err)
	}
	return out
}

func TestVerifyReceipt(t *testing.T) {
	file, ev, total := paidReceipt(t)
	eventJSON := filepath.Join(ev.Dir, auth.EventFile)

	// Flags before or after FILE; --require-proof holds: the route signed a
	// checkpoint before answering.
	for _, args := range [][]string{
		{"verify", "receipt", file, "--event", eventJSON},
		{"verify", "receipt", "--require-proof", "--event", ev.Dir, file},
	} {
		r := ceremonyRun(t, args...).mustSucceed(t)
		for _, want := range []string{"order o-77", "total " + receipt.Money(total, "EUR") + " EUR", "seq 3", "checkpoint of size"} {
			if !strings.Contains(r.stdout, want) {
				t.Fatalf("%v: summary lacks %q:\n%s", args, want, r.stdout)
			}
		}
	}

	d, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	doc, err := receipt.Decode(d)
	if err != nil {
		t.Fatal(err)
	}
	size := doc.Proof.Size
	other := testutil.NewEvent(t, "cli-receipts") // same slug, another key
	cases := []struct {
		name, file, event, mention string
	}{
		{"proof hash changed", alter(t, file, func(d *receipt.Document) { d.Proof.Hashes[0][5] ^= 0x40 }), eventJSON,
			fmt.Sprintf("inclusion proof: root does not match checkpoint size %d", size)},
		{"another event key", file, other.Dir, "enrolment: signed by another event key"},
		{"entry byte changed", alter(t, file, func(d *receipt.Document) { d.Entry.Encoded[40] ^= 1 }), eventJSON, "entry: hash"},
		{"entry re-hashed", alter(t, file, func(d *receipt.Document) {
			// A consistent forgery: signature byte, sig field and hash all changed.
			d.Entry.Encoded[len(d.Entry.Encoded)-1] ^= 1
			d.Entry.Sig[len(d.Entry.Sig)-1] ^= 1
			d.Entry.Hash = sha256.Sum256(d.Entry.Encoded)
		}), eventJSON, "signature: the entry's signature does not verify with the node key"},
		{"another order", alter(t, file, func(d *receipt.Document) { d.Order = "o-78" }), eventJSON, "receipt body: the entry is about \"order:o-77\""},
		{"not JSON", writeTemp(t, "not json"), eventJSON, "document: not a receipt document"},
		{"missing file", filepath.Join(t.TempDir(), "none.json"), eventJSON, "no such file"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ceremonyRun(t, "verify", "receipt", c.file, "--event", c.event)
			if r.code != 1 {
				t.Fatalf("exit %d, want 1\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
			}
			if !strings.Contains(r.stderr, c.mention) {
				t.Fatalf("stderr %q does not mention %q", r.stderr, c.mention)
			}
		})
	}

	for _, args := range [][]string{
		{"verify", "receipt", "--event", eventJSON},
		{"verify", "receipt", file},
		{"verify", "receipt", file, "second", "--event", eventJSON},
		{"verify", "receipt", "--bogus", file},
	} {
		if r := ceremonyRun(t, args...); r.code != 2 || r.stderr == "" {
			t.Fatalf("%v: exit %d, want 2 with a message\nstderr: %s", args, r.code, r.stderr)
		}
	}
}

func writeTemp(t *testing.T, s string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "doc.json")
	if err := os.WriteFile(p, []byte(s), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

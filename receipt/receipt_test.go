package receipt_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/santhosh-tekuri/jsonschema/v6"
	"pgregory.net/rapid"

	"canopy/auth"
	"canopy/edge"
	"canopy/internal/apicontract"
	"canopy/internal/testutil"
	"canopy/journal"
	"canopy/ledger"
	"canopy/pos"
	"canopy/receipt"
	"canopy/store/sqlite"
	"canopy/viewset"
)

type fixture struct {
	ev       *testutil.Event
	e        *edge.Edge
	org      string
	appender interface {
		Append(ctx context.Context, kind, key string, body []byte) (*ledger.Entry, error)
	}
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ev := testutil.NewEvent(t, "receipt-market")
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return &fixture{ev: ev, e: e, org: ev.ValidToken(t, auth.RoleOrganizer), appender: e.Journal}
}

func (f *fixture) append(t *testing.T, kind, key string, body any) {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.appender.Append(context.Background(), kind, key, b); err != nil {
		t.Fatal(err)
	}
}

// paidOrder appends what the POS routes append for an order of two lines,
// a discount and a tip, paid by card then cash with change: order.created,
// a partial payment, and the completing payment carrying the receipt.
func (f *fixture) paidOrder(t *testing.T, id, vendor, lineName string) pos.ReceiptBody {
	t.Helper()
	f.append(t, pos.KindVendorSet, "vendor:"+vendor, pos.Vendor{ID: vendor, Name: "Tacos & <b>Co</b>", Active: true})
	lines, totals, err := pos.PriceLines([]pos.Line{
		{SKU: "taco", Name: lineName, Qty: 3, UnitPrice: 350, TaxRate: 700, TaxInclusive: true},
		{SKU: "lemonade", Name: "Lemonade", Qty: 1, UnitPrice: 300, TaxRate: 1900},
	}, 100, 50)
	if err != nil {
		t.Fatal(err)
	}
	disc := &pos.Discount{Amount: 100, Reason: "staff"}
	f.append(t, pos.KindOrderCreated, pos.OrderKey(id), pos.Created{
		ID: id, Vendor: vendor, Device: "till-1", Currency: "EUR", Lines: lines, Discount: disc, Tip: 50, Totals: totals,
	})
	first := pos.Paid{ID: "p1", Method: pos.MethodCard, Amount: 500, Tendered: 500, Reference: "auth-77"}
	f.append(t, pos.KindPaymentRecorded, pos.OrderKey(id), pos.PaymentBody{
		Order: id, ID: first.ID, Method: first.Method, Amount: first.Amount, Tendered: first.Tendered, Reference: first.Reference, Device: "till-1",
	})
	rest := totals.Total - 500
	second := pos.Paid{ID: "p2", Method: pos.MethodCash, Amount: rest, Tendered: rest + 1000 - rest%1000, Change: 1000 - rest%1000}
	rb := pos.ReceiptBody{Order: id, Vendor: vendor, Currency: "EUR", Lines: lines, Discount: disc, Totals: totals, Payments: []pos.Paid{first, second}}
	f.append(t, pos.KindPaymentRecorded, pos.OrderKey(id), pos.PaymentBody{
		Order: id, ID: second.ID, Method: second.Method, Amount: second.Amount, Tendered: second.Tendered, Change: second.Change,
		Device: "till-1", Receipt: &rb,
	})
	return rb
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func get(t *testing.T, url, token, accept string) reply {
	t.Helper()
	req, err := http.NewRequest("GET", url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
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

func (f *fixture) receipt(t *testing.T, id, accept string) reply {
	t.Helper()
	r := get(t, f.e.URL()+"/v1/receipts/"+id, f.org, accept)
	if r.status != 200 {
		t.Fatalf("GET receipt %s (%s): %d %s", id, accept, r.status, r.body)
	}
	return r
}

func compileSchema(t testing.TB) *jsonschema.Schema {
	t.Helper()
	doc, err := jsonschema.UnmarshalJSON(bytes.NewReader(receipt.Schema))
	if err != nil {
		t.Fatal(err)
	}
	c := jsonschema.NewCompiler()
	if err := c.AddResource("schema.json", doc); err != nil {
		t.Fatal(err)
	}
	s, err := c.Compile("schema.json")
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func validate(t testing.TB, s *jsonschema.Schema, b []byte) error {
	t.Helper()
	v, err := jsonschema.UnmarshalJSON(bytes.NewReader(b))
	if err != nil {
		t.Fatal(err)
	}
	return s.Validate(v)
}

func TestReceiptOverHTTPVerifies(t *testing.T) {
	f := newFixture(t)
	rb := f.paidOrder(t, "o-1001", "v-tacos", "Taco al pastor")

	// The default and application/json answer the document.
	for _, accept := range []string{"", "application/json", receipt.MediaType, "*/*", "text/html;q=0.5, application/*"} {
		r := f.receipt(t, "o-1001", accept)
		ct := r.header.Get("Content-Type")
		want := receipt.MediaType
		if accept == "application/json" {
			want = "application/json"
		}
		if accept == "text/html;q=0.5, application/*" {
			want = receipt.MediaType
		}
		if ct != want {
			t.Fatalf("Accept %q: Content-Type %q, want %q", accept, ct, want)
		}
		if !strings.Contains(r.header.Get("Vary"), "Accept") {
			t.Fatalf("Accept %q: no Vary: Accept", accept)
		}
	}
	r := f.receipt(t, "o-1001", "")
	got, err := receipt.Verify(r.body, f.ev.Event, receipt.Options{RequireProof: true})
	if err != nil {
		t.Fatalf("verify: %v\n%s", err, r.body)
	}
	if got.Payment.Receipt.Totals.Total != rb.Totals.Total || got.Document.Order != "o-1001" {
		t.Fatalf("verified receipt %+v, want total %d", got.Payment.Receipt, rb.Totals.Total)
	}
	// The route forced a checkpoint: the proof is there at once, and the
	// checkpoint covers the whole log (enrolment, vendor, order, 2 payments).
	if got.Document.PendingCheckpoint || got.Checkpoint == nil || got.Checkpoint.Size < got.Entry.Seq || got.Entry.Seq != 5 {
		t.Fatalf("checkpoint %+v for entry seq %d, pending %v", got.Checkpoint, got.Entry.Seq, got.Document.PendingCheckpoint)
	}
	if err := validate(t, compileSchema(t), r.body); err != nil {
		t.Fatalf("document does not match receipt/schema.json: %v", err)
	}
}

func TestReceiptTextAndHTML(t *testing.T) {
	f := newFixture(t)
	rb := f.paidOrder(t, "o-2002", "v-tacos", `<script>alert("x")</script> Taco`)
	total := receipt.Money(rb.Totals.Total, "EUR")

	txt := f.receipt(t, "o-2002", "text/plain")
	if ct := txt.header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	s := string(txt.body)
	for _, want := range []string{total, "o-2002", "TOTAL EUR", "Change", "Tacos & <b>Co</b>", "3 x 3.50", "Discount (staff)", "Tip", "incl. tax", "canopy verify receipt"} {
		if !strings.Contains(s, want) {
			t.Errorf("text receipt lacks %q:\n%s", want, s)
		}
	}
	for i, l := range strings.Split(strings.TrimSuffix(s, "\n"), "\n") {
		if n := len([]rune(l)); n > receipt.Columns {
			t.Errorf("text line %d has %d columns, more than %d: %q", i+1, n, receipt.Columns, l)
		}
	}

	page := f.receipt(t, "o-2002", "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8")
	if ct := page.header.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Fatalf("Content-Type %q", ct)
	}
	if csp := page.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Fatalf("Content-Security-Policy %q", csp)
	}
	h := string(page.body)
	for _, want := range []string{total, "o-2002", "&lt;script&gt;", "Tacos &amp; &lt;b&gt;Co&lt;/b&gt;"} {
		if !strings.Contains(h, want) {
			t.Errorf("page lacks %q:\n%s", want, h)
		}
	}
	for _, bad := range []string{"<script", "<b>Co", "src=", "href=", "@import"} {
		if strings.Contains(h, bad) {
			t.Errorf("page contains %q:\n%s", bad, h)
		}
	}
}

func TestReceiptNotFound(t *testing.T) {
	f := newFixture(t)
	f.append(t, pos.KindOrderCreated, pos.OrderKey("o-open"), pos.Created{ID: "o-open", Vendor: "v", Currency: "EUR",
		Lines: []pos.Line{{SKU: "a", Name: "A", Qty: 1, UnitPrice: 100, Amount: 100}}, Totals: pos.Totals{Items: 100, Total: 100}})
	for _, id := range []string{"o-open", "o-unknown", strings.Repeat("x", 300)} {
		r := get(t, f.e.URL()+"/v1/receipts/"+id, f.org, "")
		if r.status != 404 || r.header.Get("Content-Type") != "application/problem+json" {
			t.Fatalf("%s: %d %s %s", id, r.status, r.header.Get("Content-Type"), r.body)
		}
		var p struct{ Type, Detail string }
		if err := json.Unmarshal(r.body, &p); err != nil || p.Type != "urn:canopy:problem:not-found" || p.Detail == "" {
			t.Fatalf("%s: problem %s", id, r.body)
		}
	}
	// Roles: a door token may not read receipts; a POS token bound to
	// another vendor is told the receipt does not exist.
	f.paidOrder(t, "o-3003", "v-tacos", "Taco")
	door := f.ev.ValidToken(t, auth.RoleDoor)
	if r := get(t, f.e.URL()+"/v1/receipts/o-3003", door, ""); r.status != 403 {
		t.Fatalf("door token: %d %s", r.status, r.body)
	}
	now := time.Now()
	other, err := auth.IssueDevice(f.ev.Key, auth.Device{Event: f.ev.Event.Slug, Role: auth.RolePOS, Name: "till-9", Vendor: "v-crepes", NotBefore: now.Add(-time.Minute), Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if r := get(t, f.e.URL()+"/v1/receipts/o-3003", other, ""); r.status != 404 {
		t.Fatalf("another vendor's POS token: %d %s", r.status, r.body)
	}
	own, err := auth.IssueDevice(f.ev.Key, auth.Device{Event: f.ev.Event.Slug, Role: auth.RolePOS, Name: "till-1", Vendor: "v-tacos", NotBefore: now.Add(-time.Minute), Expires: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	if r := get(t, f.e.URL()+"/v1/receipts/o-3003", own, ""); r.status != 200 {
		t.Fatalf("the vendor's own POS token: %d %s", r.status, r.body)
	}
}

// TestPendingCheckpoint builds a receipt on a real journal that signs no
// checkpoint on its own: the document says it is pending, verifies, and
// fails only when a proof is required; with a Checkpointer the same build
// signs one and carries the proof.
func TestPendingCheckpoint(t *testing.T) {
	ctx := context.Background()
	ev := testutil.NewEvent(t, "pending-market")
	key, token, err := auth.EnrollNode(ev.Key, ev.Event, "edge-p", auth.NodeEdge, time.Now().Add(-time.Hour), time.Now().Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(t.TempDir(), "canopy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	j, err := journal.Open(ctx, journal.Config{Event: ev.Event.Slug, Key: key, Store: st, Views: viewset.All(), CheckpointEvery: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(ctx) })
	if _, err := j.Append(ctx, auth.EnrolledKind, ledger.NodeIDOf(key.Public().(ed25519.PublicKey)).String(), auth.EnrolledBody(token)); err != nil {
		t.Fatal(err)
	}
	f := &fixture{ev: ev, appender: j}
	f.paidOrder(t, "o-4004", "v-tacos", "Taco")

	rc, err := receipt.Build(ctx, receipt.Deps{Event: ev.Event, Store: st}, "o-4004")
	if err != nil {
		t.Fatal(err)
	}
	if !rc.Document.PendingCheckpoint || rc.Document.Proof != nil || rc.Document.Checkpoint != "" {
		t.Fatalf("document not pending: %+v", rc.Document)
	}
	b, err := rc.Document.Encode()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := receipt.Verify(b, ev.Event, receipt.Options{}); err != nil {
		t.Fatalf("pending receipt: %v", err)
	}
	var fl *receipt.Failure
	if _, err := receipt.Verify(b, ev.Event, receipt.Options{RequireProof: true}); !errors.As(err, &fl) || fl.Check != receipt.CheckProof {
		t.Fatalf("pending receipt with a proof required: %v", err)
	}
	if err := validate(t, compileSchema(t), b); err != nil {
		t.Fatalf("pending document does not match the schema: %v", err)
	}

	rc, err = receipt.Build(ctx, receipt.Deps{Event: ev.Event, Store: st, Checkpointer: j}, "o-4004")
	if err != nil {
		t.Fatal(err)
	}
	if rc.Document.PendingCheckpoint || rc.Checkpoint == nil || rc.Checkpoint.Size != rc.Entry.Seq {
		t.Fatalf("with a Checkpointer: pending %v, checkpoint %+v, seq %d", rc.Document.PendingCheckpoint, rc.Checkpoint, rc.Entry.Seq)
	}
	if b, err = rc.Document.Encode(); err != nil {
		t.Fatal(err)
	}
	if _, err := receipt.Verify(b, ev.Event, receipt.Options{RequireProof: true}); err != nil {
		t.Fatalf("receipt with proof: %v", err)
	}
}

// TestSingleByteChanges: changing any one byte of a receipt document makes
// it fail to verify, unless the byte was insignificant whitespace and the
// decoded content is identical.
func TestSingleByteChanges(t *testing.T) {
	f := newFixture(t)
	f.paidOrder(t, "o-5005", "v-tacos", "Taco")
	orig := f.receipt(t, "o-5005", "").body
	want, err := receipt.Verify(orig, f.ev.Event, receipt.Options{})
	if err != nil {
		t.Fatal(err)
	}
	var compactOrig bytes.Buffer
	if err := json.Compact(&compactOrig, orig); err != nil {
		t.Fatal(err)
	}
	// Every offset once, with its lowest bit flipped, then random offsets
	// and values.
	for at := range orig {
		doc := bytes.Clone(orig)
		doc[at] ^= 1
		if got, err := receipt.Verify(doc, f.ev.Event, receipt.Options{}); err == nil {
			var c bytes.Buffer
			if !reflect.DeepEqual(got.Document, want.Document) || json.Compact(&c, doc) != nil || !bytes.Equal(c.Bytes(), compactOrig.Bytes()) {
				t.Fatalf("byte %d %q → %q verifies", at, orig[at], doc[at])
			}
		}
	}
	rapid.Check(t, func(rt *rapid.T) {
		at := rapid.IntRange(0, len(orig)-1).Draw(rt, "offset")
		v := byte(rapid.IntRange(0, 255).Filter(func(x int) bool { return byte(x) != orig[at] }).Draw(rt, "value"))
		doc := bytes.Clone(orig)
		doc[at] = v
		got, err := receipt.Verify(doc, f.ev.Event, receipt.Options{})
		if err != nil {
			var fl *receipt.Failure
			if !errors.As(err, &fl) || fl.Detail == "" {
				rt.Fatalf("error is not a Failure with a detail: %v", err)
			}
			return
		}
		if !reflect.DeepEqual(got.Document, want.Document) {
			rt.Fatalf("byte %d %q → %q verifies with different content", at, orig[at], v)
		}
		var c bytes.Buffer
		if json.Compact(&c, doc) != nil || !bytes.Equal(c.Bytes(), compactOrig.Bytes()) {
			rt.Fatalf("byte %d %q → %q verifies though it is not insignificant whitespace", at, orig[at], v)
		}
	})
}

// TestVerifyFailures names what failed for documents altered in ways a
// single byte cannot reach.
func TestVerifyFailures(t *testing.T) {
	f := newFixture(t)
	f.paidOrder(t, "o-6006", "v-tacos", "Taco")
	orig := f.receipt(t, "o-6006", "").body
	base, err := receipt.Decode(orig)
	if err != nil {
		t.Fatal(err)
	}
	otherEvent := testutil.NewEvent(t, "receipt-market") // same slug, another key
	cases := []struct {
		name   string
		edit   func(d *receipt.Document)
		ev     *auth.Event
		check  string
		detail string
	}{
		{"another event key", nil, otherEvent.Event, receipt.CheckEnrolment, "signed by another event key"},
		{"proof for another size", func(d *receipt.Document) { d.Proof.Size++ }, nil, receipt.CheckProof, "the checkpoint has size"},
		{"proof hash changed", func(d *receipt.Document) { d.Proof.Hashes[0][0] ^= 1 }, nil, receipt.CheckProof, "root does not match checkpoint size"},
		{"entry hash field", func(d *receipt.Document) { d.Entry.Hash[0] ^= 1 }, nil, receipt.CheckEntry, "does not match the encoded entry"},
		{"decoded seq", func(d *receipt.Document) { d.Entry.Seq++ }, nil, receipt.CheckEntry, "field seq"},
		{"order id", func(d *receipt.Document) { d.Order = "o-other" }, nil, receipt.CheckBody, "receipt names order"},
		{"node key", func(d *receipt.Document) { d.NodeKey = otherEvent.Event.PublicKeyPASERK }, nil, receipt.CheckNodeKey, "the key is node"},
		{"checkpoint", func(d *receipt.Document) { d.Checkpoint = strings.Replace(d.Checkpoint, "\n", "x\n", 1) }, nil, receipt.CheckCheckpoint, "signature"},
		{"format", func(d *receipt.Document) { d.Format = "canopy.receipt/v2" }, nil, receipt.CheckDocument, "format"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := *base
			p := *base.Proof
			p.Hashes = append(p.Hashes[:0:0], base.Proof.Hashes...)
			d.Proof = &p
			if c.edit != nil {
				c.edit(&d)
			}
			b, err := d.Encode()
			if err != nil {
				t.Fatal(err)
			}
			ev := c.ev
			if ev == nil {
				ev = f.ev.Event
			}
			_, err = receipt.Verify(b, ev, receipt.Options{})
			var fl *receipt.Failure
			if !errors.As(err, &fl) || fl.Check != c.check || !strings.Contains(fl.Detail, c.detail) {
				t.Fatalf("got %v, want a %q failure mentioning %q", err, c.check, c.detail)
			}
		})
	}
	// A re-indented document still verifies; a re-encoded one (upper-case
	// hex) does not.
	var indented bytes.Buffer
	if err := json.Indent(&indented, orig, "", "\t"); err != nil {
		t.Fatal(err)
	}
	if _, err := receipt.Verify(indented.Bytes(), f.ev.Event, receipt.Options{}); err != nil {
		t.Fatalf("re-indented document: %v", err)
	}
	upper := bytes.Replace(orig, []byte(base.Entry.Hash.String()), []byte(strings.ToUpper(base.Entry.Hash.String())), 1)
	if _, err := receipt.Verify(upper, f.ev.Event, receipt.Options{}); err == nil || !strings.Contains(err.Error(), "canonical") {
		t.Fatalf("upper-case hash: %v", err)
	}
}

// TestReceiptRouteContract checks every answer of GET /v1/receipts/{id}
// against the OpenAPI document the edge serves (kin-openapi, through
// internal/apicontract) and that each documented status but 503 (a store
// that cannot be read) is produced.
func TestReceiptRouteContract(t *testing.T) {
	f := newFixture(t)
	f.paidOrder(t, "o-7007", "v-tacos", "Taco")
	spec := get(t, f.e.URL()+"/v1/openapi.yaml", "", "")
	c, err := apicontract.New(spec.body)
	if err != nil {
		t.Fatal(err)
	}
	client := c.Client()
	do := func(id, token, accept string, want int) {
		t.Helper()
		req, err := http.NewRequest("GET", f.e.URL()+"/v1/receipts/"+id, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		if accept != "" {
			req.Header.Set("Accept", accept)
		}
		res, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != want {
			t.Fatalf("GET %s (%q): %d, want %d", id, accept, res.StatusCode, want)
		}
	}
	for _, accept := range []string{"", "application/json", "text/plain", "text/html"} {
		do("o-7007", f.org, accept, 200)
	}
	do("o-7007", f.ev.ValidToken(t, auth.RolePOS), "", 200)
	do("o-7007", "", "", 401)
	do("o-7007", f.ev.ValidToken(t, auth.RoleDoor), "", 403)
	do("o-none", f.org, "", 404)
	for _, err := range c.Errors() {
		t.Error(err)
	}
	for _, m := range c.Missing() {
		if strings.HasPrefix(m, "GET /v1/receipts/{id} ") && m != "GET /v1/receipts/{id} 503" {
			t.Errorf("not exercised: %s", m)
		}
	}
}

func FuzzReceiptDecode(f *testing.F) {
	f.Add([]byte(`{"format":"canopy.receipt/v1"}`))
	f.Add([]byte(`{"format":"canopy.receipt/v1","event":"e","order":"o","entry":{"encoded":"AA==","hash":"` + strings.Repeat("0", 64) + `","event":"e","node":"` + strings.Repeat("0", 32) + `","seq":1,"prev":"` + strings.Repeat("0", 64) + `","hlc":{"wall":1,"logical":0},"kind":"k","key":"order:o","body":{},"sig":"AA=="},"node_key":"k","enrolment":"t","pending_checkpoint":true}`))
	f.Add([]byte(`null`))
	f.Add([]byte(`{"format":"canopy.receipt/v1","inclusion_proof":{"index":0,"size":1,"hashes":[]}}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		d, err := receipt.Decode(b)
		if err != nil {
			var de *receipt.DecodeError
			if !errors.As(err, &de) {
				t.Fatalf("error is not a DecodeError: %v", err)
			}
			return
		}
		// What decodes re-encodes to a document that decodes to the same.
		again, err := d.Encode()
		if err != nil {
			t.Fatal(err)
		}
		d2, err := receipt.Decode(again)
		if err != nil {
			t.Fatalf("re-encoded document does not decode: %v", err)
		}
		if !reflect.DeepEqual(d, d2) {
			t.Fatalf("decode(encode(d)) differs")
		}
	})
}

package posapi_test

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"

	"canopy/api"
	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/posapi"
)

// syncBuffer collects the edge's slog output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fixture struct {
	t    *testing.T
	ev   *testutil.Event
	e    *edge.Edge
	dir  string
	logs *syncBuffer
	org  string // organizer token
	pos  string // pos token, unbound
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ev := testutil.NewEvent(t, "pos-market")
	dir := t.TempDir()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", dir), logger)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return &fixture{t: t, ev: ev, e: e, dir: dir, logs: logs,
		org: ev.ValidToken(t, auth.RoleOrganizer), pos: ev.ValidToken(t, auth.RolePOS)}
}

// token issues a device token with a vendor and permissions.
func (f *fixture) token(role auth.Role, vendor string, perms ...string) string {
	f.t.Helper()
	tok, err := auth.IssueDevice(f.ev.Key, auth.Device{Event: f.ev.Event.Slug, Role: role, Name: "till-" + vendor,
		Vendor: vendor, Permissions: perms, NotBefore: time.Now().Add(-time.Minute), Expires: time.Now().Add(time.Hour)})
	if err != nil {
		f.t.Fatal(err)
	}
	return tok
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request; hdr are name/value pairs.
func (f *fixture) do(method, path, token, body string, hdr ...string) reply {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.e.URL()+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, b}
}

var keySeq struct {
	sync.Mutex
	n int
}

func newKey() string {
	keySeq.Lock()
	defer keySeq.Unlock()
	keySeq.n++
	return fmt.Sprintf("key-%d", keySeq.n)
}

// post sends a POST with a fresh Idempotency-Key and wants status.
func (f *fixture) post(path, token, body string, status int, out any) reply {
	f.t.Helper()
	r := f.do("POST", path, token, body, "Idempotency-Key", newKey())
	if r.status != status {
		f.t.Fatalf("POST %s %s: %d, want %d: %s", path, body, r.status, status, r.body)
	}
	if out != nil {
		r.decode(f.t, out)
	}
	return r
}

func (f *fixture) put(path, token, body string) {
	f.t.Helper()
	if r := f.do("PUT", path, token, body); r.status != 200 {
		f.t.Fatalf("PUT %s: %d %s", path, r.status, r.body)
	}
}

func (f *fixture) get(path, token string, out any) {
	f.t.Helper()
	r := f.do("GET", path, token, "")
	if r.status != 200 {
		f.t.Fatalf("GET %s: %d %s", path, r.status, r.body)
	}
	r.decode(f.t, out)
}

func (f *fixture) head() uint64 {
	f.t.Helper()
	seq, _, err := f.e.Store.Head(context.Background(), f.ev.Event.Slug, f.e.Journal.Node())
	if err != nil {
		f.t.Fatal(err)
	}
	return seq
}

// catalog sets up two vendors and their SKUs.
func (f *fixture) catalog() {
	f.t.Helper()
	f.put("/v1/vendors/crepes", f.org, `{"name":"Crêpes Lola","active":true}`)
	f.put("/v1/vendors/cider", f.org, `{"name":"Cider Bar","active":true}`)
	f.put("/v1/catalog/crepe-sugar", f.org, `{"vendor":"crepes","name":"Sugar crêpe","price":450,"tax_rate":700,"tax_inclusive":true,"track_stock":true,"active":true}`)
	f.put("/v1/catalog/crepe-nutella", f.org, `{"vendor":"crepes","name":"Nutella crêpe","price":600,"tax_rate":700,"tax_inclusive":true,"active":true}`)
	f.put("/v1/catalog/old-crepe", f.org, `{"vendor":"crepes","name":"Retired","price":100,"active":false}`)
	f.put("/v1/catalog/cider-pint", f.org, `{"vendor":"cider","name":"Pint","price":1000,"tax_rate":1900,"track_stock":true,"active":true}`)
	f.put("/v1/catalog/gold", f.org, `{"vendor":"cider","name":"Gold","price":900000000000,"active":true}`)
}

type order = posapi.OrderResponse

func (f *fixture) createOrder(token, body string) order {
	f.t.Helper()
	var c posapi.OrderCreated
	f.post("/v1/orders", token, body, 201, &c)
	return c.Order
}

func TestSaleFlow(t *testing.T) {
	f := newFixture(t)
	f.catalog()
	var vendors posapi.VendorList
	f.get("/v1/vendors", f.pos, &vendors)
	if len(vendors.Vendors) != 2 || vendors.Vendors[0].ID != "cider" {
		t.Fatalf("vendors %+v", vendors)
	}
	till := f.token(auth.RolePOS, "crepes")
	var cat posapi.Catalog
	f.get("/v1/catalog", till, &cat)
	if len(cat.SKUs) != 3 {
		t.Fatalf("a till bound to crepes sees %d SKUs, want its 3", len(cat.SKUs))
	}
	f.get("/v1/catalog?vendor=cider", f.pos, &cat)
	if len(cat.SKUs) != 2 {
		t.Fatalf("catalog?vendor=cider: %+v", cat)
	}

	o := f.createOrder(till, `{"lines":[{"sku":"crepe-sugar","qty":2},{"sku":"crepe-nutella","qty":1}],"discount":{"amount":100,"reason":"regular"},"tip":50}`)
	if o.Vendor != "crepes" || o.Totals.Items != 1500 || o.Totals.Total != 1450 || o.State != "open" || o.Owed != 1450 || o.Device != "till-crepes" {
		t.Fatalf("order %+v", o)
	}
	if !strings.HasPrefix(o.ID, "o-") || len(o.ID) != len("o-0123456789ab_01234567") {
		t.Fatalf("order id %q", o.ID)
	}
	// Split payment: 1000 by card, then 1000 cash for the 450 left: 550 change.
	var p posapi.PaymentResponse
	f.post("/v1/orders/"+o.ID+"/payments", till, `{"method":"card","amount":1000,"reference":"sumup-TX-77"}`, 201, &p)
	if p.State != "open" || p.Receipt != "" {
		t.Fatalf("first payment %+v", p)
	}
	r := f.post("/v1/orders/"+o.ID+"/payments", till, `{"method":"cash","amount":1000}`, 201, &p)
	if p.State != "paid" || p.Receipt != "/v1/receipts/"+o.ID || p.Payment.Amount != 450 || p.Payment.Change != 550 || p.Payment.Tendered != 1000 {
		t.Fatalf("completing payment %+v", p)
	}
	var ref struct {
		Entry struct {
			Seq uint64 `json:"seq"`
		} `json:"entry"`
	}
	r.decode(t, &ref)
	if ref.Entry.Seq == 0 {
		t.Fatalf("payment response names no entry: %s", r.body)
	}
	// The completing entry carries the receipt with both payments.
	entries, err := f.e.Store.Entries(context.Background(), f.ev.Event.Slug, f.e.Journal.Node(), ref.Entry.Seq, ref.Entry.Seq, 1)
	if err != nil || len(entries) != 1 {
		t.Fatal(err)
	}
	var body struct {
		Receipt struct {
			Payments []json.RawMessage     `json:"payments"`
			Totals   struct{ Total int64 } `json:"totals"`
		} `json:"receipt"`
	}
	json.Unmarshal(entries[0].Entry.Body, &body)
	if len(body.Receipt.Payments) != 2 || body.Receipt.Totals.Total != 1450 {
		t.Fatalf("receipt in the entry: %s", entries[0].Entry.Body)
	}

	var got order
	f.get("/v1/orders/"+o.ID, till, &got)
	if got.State != "paid" || got.Paid != 1450 || got.Change != 550 || len(got.Payments) != 2 || got.Receipt == "" {
		t.Fatalf("paid order %+v", got)
	}
	var mv posapi.FulfilmentResponse
	f.post("/v1/orders/"+o.ID+"/fulfilment", till, `{"state":"ready"}`, 200, &mv)
	f.post("/v1/orders/"+o.ID+"/fulfilment", till, `{"state":"fulfilled"}`, 200, &mv)
	f.post("/v1/orders/"+o.ID+"/refunds", till, `{"amount":450,"method":"cash","reason":"cold"}`, 201, nil)
	f.get("/v1/orders/"+o.ID, till, &got)
	if got.State != "fulfilled" || got.Refunded != 450 {
		t.Fatalf("after partial refund %+v", got)
	}
	f.post("/v1/orders/"+o.ID+"/refunds", f.org, `{"amount":1000,"method":"card","reason":"all cold"}`, 201, nil)
	f.get("/v1/orders/"+o.ID, till, &got)
	if got.State != "refunded" || got.Refunded != 1450 || len(got.Refunds) != 2 {
		t.Fatalf("after full refund %+v", got)
	}

	// A replay returns the same order (same id) and appends nothing.
	before := f.head()
	body1 := `{"lines":[{"sku":"cider-pint","qty":1}]}`
	a := f.do("POST", "/v1/orders", f.pos, body1, "Idempotency-Key", "replay-1")
	b := f.do("POST", "/v1/orders", f.pos, body1, "Idempotency-Key", "replay-1")
	if a.status != 201 || b.status != 201 || !bytes.Equal(a.body, b.body) || b.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("replay: %d %s / %d %s", a.status, a.body, b.status, b.body)
	}
	if f.head() != before+1 {
		t.Fatalf("a replay appended: head %d, want %d", f.head(), before+1)
	}

	// Cancelling an open order returns stock of SKUs that track it.
	stockSet := f.do("PUT", "/v1/inventory/crepe-sugar", f.org, `{"on_hand":10,"reason":"morning count"}`)
	if stockSet.status != 200 {
		t.Fatalf("set stock: %d %s", stockSet.status, stockSet.body)
	}
	c := f.createOrder(till, `{"lines":[{"sku":"crepe-sugar","qty":3},{"sku":"crepe-nutella","qty":1}]}`)
	f.post("/v1/orders/"+c.ID+"/fulfilment", till, `{"state":"cancelled"}`, 200, &mv)
	if len(mv.Restock) != 1 || mv.Restock[0].SKU != "crepe-sugar" || mv.Restock[0].Qty != 3 {
		t.Fatalf("cancel restock %+v", mv)
	}
	var inv posapi.Inventory
	f.get("/v1/inventory?vendor=crepes", f.pos, &inv)
	for _, it := range inv.Items {
		if it.SKU == "crepe-sugar" && (it.OnHand != 10 || it.Sold != 2 || it.Oversold) { // counted 10 after the first sale; the cancelled 3 came back
			t.Fatalf("crepe-sugar stock %+v", it)
		}
	}

	// Manual prices need the permission; they are flagged.
	r = f.do("POST", "/v1/orders", till, `{"lines":[{"sku":"crepe-sugar","qty":1,"unit_price":1}]}`, "Idempotency-Key", newKey())
	wantProblem(t, r, 403, api.TypePriceOverrideDenied)
	boss := f.token(auth.RolePOS, "crepes", auth.PermPriceOverride)
	m := f.createOrder(boss, `{"lines":[{"sku":"crepe-sugar","qty":1,"unit_price":1}]}`)
	if !m.Manual || !m.Lines[0].ManualPrice || m.Totals.Total != 1 {
		t.Fatalf("manual price %+v", m)
	}
	m = f.createOrder(f.org, `{"vendor":"cider","lines":[{"sku":"cider-pint","qty":2,"unit_price":800}]}`)
	if !m.Manual || m.Totals.Total != 1904 { // 1600 + 19 % exclusive
		t.Fatalf("organizer manual price %+v", m)
	}
}

func wantProblem(t *testing.T, r reply, status int, typ string) {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != api.ContentTypeProblem {
		t.Fatalf("status %d (%s), want %d %s: %s", r.status, r.header.Get("Content-Type"), status, typ, r.body)
	}
	var p struct {
		Type   string `json:"type"`
		Detail string `json:"detail"`
	}
	r.decode(t, &p)
	if p.Type != typ || p.Detail == "" {
		t.Fatalf("problem %s, want %s", r.body, typ)
	}
}

func TestBadInputChangesNothing(t *testing.T) {
	f := newFixture(t)
	f.catalog()
	till := f.token(auth.RolePOS, "crepes")
	open := f.createOrder(f.pos, `{"lines":[{"sku":"crepe-sugar","qty":2}]}`)
	paid := f.createOrder(f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}]}`)
	f.post("/v1/orders/"+paid.ID+"/payments", f.pos, `{"method":"card","amount":450}`, 201, nil)
	f.do("POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}]}`, "Idempotency-Key", "used")

	const pan = "4111 1111 1111 1111"
	cases := []struct {
		name, method, path, token, body string
		hdr                             []string
		status                          int
		typ                             string
	}{
		{"malformed JSON", "POST", "/v1/orders", f.pos, `{"lines":[`, nil, 400, api.TypeMalformedJSON},
		{"unknown field", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}],"coupon":"x"}`, nil, 400, api.TypeUnknownField},
		{"wrong type", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":"two"}]}`, nil, 400, api.TypeWrongFieldType},
		{"zero qty", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":0}]}`, nil, 422, api.TypeValidationFailed},
		{"negative qty", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":-3}]}`, nil, 422, api.TypeValidationFailed},
		{"no lines", "POST", "/v1/orders", f.pos, `{"lines":[]}`, nil, 422, api.TypeValidationFailed},
		{"unknown SKU", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1},{"sku":"crepe-sugar","qty":1},{"sku":"waffle","qty":1}]}`, nil, 422, api.TypeUnknownSKU},
		{"inactive SKU", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"old-crepe","qty":1}]}`, nil, 422, api.TypeUnknownSKU},
		{"another vendor's SKU", "POST", "/v1/orders", till, `{"lines":[{"sku":"cider-pint","qty":1}]}`, nil, 422, api.TypeVendorMismatch},
		{"two vendors", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1},{"sku":"cider-pint","qty":1}]}`, nil, 422, api.TypeVendorMismatch},
		{"bound device names another vendor", "POST", "/v1/orders", till, `{"vendor":"cider","lines":[{"sku":"crepe-sugar","qty":1}]}`, nil, 422, api.TypeVendorMismatch},
		{"overflowing totals", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"gold","qty":2}]}`, nil, 422, api.TypeAmountOutOfRange},
		{"discount without reason", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}],"discount":{"amount":10,"reason":""}}`, nil, 422, api.TypeValidationFailed},
		{"discount above items", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}],"discount":{"amount":451,"reason":"x"}}`, nil, 422, api.TypeAmountOutOfRange},
		{"oversized body", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}],"vendor":"` + strings.Repeat("x", 2<<20) + `"}`, nil, 413, api.TypeBodyTooLarge},
		{"card number in body", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}],"customer":{"name":"` + pan + `"}}`, nil, 422, api.TypeCardNumberRefused},
		{"card number escaped", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}],"customer":{"phone":"\u0034` + strings.Repeat("1", 15) + `"}}`, nil, 422, api.TypeCardNumberRefused},
		{"card number in reference", "POST", "/v1/orders/" + open.ID + "/payments", f.pos, `{"method":"card","amount":100,"reference":"` + pan + `"}`, nil, 422, api.TypeCardNumberRefused},
		{"card number in query", "GET", "/v1/orders?after=4111111111111111", f.pos, "", nil, 422, api.TypeCardNumberRefused},
		{"card number as key", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}]}`, []string{"Idempotency-Key", "4111-1111-1111-1111"}, 422, api.TypeCardNumberRefused},
		{"reused key, other body", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":2}]}`, []string{"Idempotency-Key", "used"}, 422, api.TypeIdempotencyReused},
		{"no key", "POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}]}`, []string{"Idempotency-Key", ""}, 400, api.TypeIdempotencyBadKey},
		{"illegal transition", "POST", "/v1/orders/" + open.ID + "/fulfilment", f.pos, `{"state":"fulfilled"}`, nil, 409, api.TypeIllegalTransition},
		{"bad target state", "POST", "/v1/orders/" + open.ID + "/fulfilment", f.pos, `{"state":"paid"}`, nil, 422, api.TypeValidationFailed},
		{"refund above paid", "POST", "/v1/orders/" + paid.ID + "/refunds", f.pos, `{"amount":451,"method":"card","reason":"x"}`, nil, 422, api.TypeRefundAbovePaid},
		{"refund of open order", "POST", "/v1/orders/" + open.ID + "/refunds", f.pos, `{"amount":1,"method":"card","reason":"x"}`, nil, 409, api.TypeOrderState},
		{"payment on paid order", "POST", "/v1/orders/" + paid.ID + "/payments", f.pos, `{"method":"cash","amount":1}`, nil, 409, api.TypeOrderState},
		{"card overpayment", "POST", "/v1/orders/" + open.ID + "/payments", f.pos, `{"method":"card","amount":901}`, nil, 422, api.TypeOverpayment},
		{"zero payment", "POST", "/v1/orders/" + open.ID + "/payments", f.pos, `{"method":"cash","amount":0}`, nil, 422, api.TypeValidationFailed},
		{"bad method", "POST", "/v1/orders/" + open.ID + "/payments", f.pos, `{"method":"iou","amount":5}`, nil, 422, api.TypeValidationFailed},
		{"unknown order", "POST", "/v1/orders/o-nope/payments", f.pos, `{"method":"cash","amount":5}`, nil, 404, api.TypeNotFound},
		{"unknown order get", "GET", "/v1/orders/o-nope", f.pos, "", nil, 404, api.TypeNotFound},
		{"another vendor's order", "GET", "/v1/orders/" + open.ID, f.token(auth.RolePOS, "cider"), "", nil, 404, api.TypeNotFound},
		{"bad list param", "GET", "/v1/orders?limit=0", f.pos, "", nil, 400, api.TypeInvalidParameter},
		{"bad state param", "GET", "/v1/orders?state=lost", f.pos, "", nil, 400, api.TypeInvalidParameter},
		{"bad time param", "GET", "/v1/orders?from=yesterday", f.pos, "", nil, 400, api.TypeInvalidParameter},
		{"unknown param", "GET", "/v1/orders?colour=red", f.pos, "", nil, 400, api.TypeInvalidParameter},
		{"SKU of unknown vendor", "PUT", "/v1/catalog/x", f.org, `{"vendor":"nobody","name":"X","price":1,"active":true}`, nil, 422, api.TypeUnknownVendor},
		{"pos may not set the catalog", "PUT", "/v1/catalog/x", f.pos, `{"vendor":"crepes","name":"X","price":1,"active":true}`, nil, 403, api.TypeForbiddenRole},
		{"vendor without active", "PUT", "/v1/vendors/v", f.org, `{"name":"V"}`, nil, 422, api.TypeValidationFailed},
		{"stock of unknown SKU", "POST", "/v1/inventory/none/adjustments", f.pos, `{"delta":1,"reason":"x"}`, nil, 404, api.TypeNotFound},
		{"zero adjustment", "POST", "/v1/inventory/crepe-sugar/adjustments", f.pos, `{"delta":0,"reason":"x"}`, nil, 422, api.TypeValidationFailed},
		{"negative stock count", "PUT", "/v1/inventory/crepe-sugar", f.org, `{"on_hand":-1}`, nil, 422, api.TypeValidationFailed},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := f.head()
			hdr := tc.hdr
			if tc.method == "POST" && len(hdr) == 0 {
				hdr = []string{"Idempotency-Key", newKey()}
			}
			r := f.do(tc.method, tc.path, tc.token, tc.body, hdr...)
			wantProblem(t, r, tc.status, tc.typ)
			if strings.Contains(string(r.body), "4111") {
				t.Fatalf("the problem echoes the card number: %s", r.body)
			}
			if after := f.head(); after != before {
				t.Fatalf("head moved from %d to %d", before, after)
			}
		})
	}
	// The illegal transition names both states; the unknown SKU its line.
	r := f.do("POST", "/v1/orders/"+open.ID+"/fulfilment", f.pos, `{"state":"ready"}`, "Idempotency-Key", newKey())
	var p struct {
		From, To string
	}
	r.decode(t, &p)
	if p.From != "open" || p.To != "ready" {
		t.Fatalf("illegal transition problem %s", r.body)
	}
	r = f.do("POST", "/v1/orders", f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1},{"sku":"crepe-sugar","qty":1},{"sku":"waffle","qty":1}]}`, "Idempotency-Key", newKey())
	if !strings.Contains(string(r.body), `"pointer":"/lines/2/sku"`) {
		t.Fatalf("unknown SKU problem does not point at the line: %s", r.body)
	}
	if strings.Contains(f.logs.String(), "4111") {
		t.Fatal("a card number reached the log")
	}
}

func TestListOrders(t *testing.T) {
	f := newFixture(t)
	f.catalog()
	var ids []string
	for i := range 7 {
		sku := "crepe-sugar"
		if i%2 == 1 {
			sku = "cider-pint"
		}
		ids = append(ids, f.createOrder(f.pos, `{"lines":[{"sku":"`+sku+`","qty":1}]}`).ID)
	}
	f.post("/v1/orders/"+ids[0]+"/payments", f.pos, `{"method":"cash","amount":5000}`, 201, nil)
	// Pages of 3, in id order, cover everything once.
	var seen []string
	after := ""
	for range 5 {
		var page posapi.OrderPage
		path := "/v1/orders?limit=3"
		if after != "" {
			path += "&after=" + after
		}
		f.get(path, f.org, &page)
		for _, o := range page.Orders {
			seen = append(seen, o.ID)
		}
		if page.Next == nil {
			break
		}
		after = *page.Next
	}
	if strings.Join(seen, ",") != strings.Join(ids, ",") {
		t.Fatalf("paged %v, want %v", seen, ids)
	}
	var page posapi.OrderPage
	f.get("/v1/orders?vendor=cider", f.org, &page)
	if len(page.Orders) != 3 || page.Next != nil {
		t.Fatalf("vendor filter: %d orders", len(page.Orders))
	}
	f.get("/v1/orders?state=paid", f.org, &page)
	if len(page.Orders) != 1 || page.Orders[0].ID != ids[0] {
		t.Fatalf("state filter: %+v", page.Orders)
	}
	f.get("/v1/orders?vendor=crepes", f.token(auth.RolePOS, "cider"), &page)
	if len(page.Orders) != 0 {
		t.Fatalf("a till bound to cider sees crepes orders: %+v", page.Orders)
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	past := time.Now().Add(-time.Hour).UTC().Format(time.RFC3339)
	f.get("/v1/orders?from="+future, f.org, &page)
	if len(page.Orders) != 0 {
		t.Fatalf("from the future: %d orders", len(page.Orders))
	}
	f.get("/v1/orders?from="+past+"&to="+future, f.org, &page)
	if len(page.Orders) != 7 {
		t.Fatalf("time range: %d orders", len(page.Orders))
	}
}

func TestConcurrentPaymentsOnOneOrder(t *testing.T) {
	f := newFixture(t)
	f.catalog()
	o := f.createOrder(f.pos, `{"lines":[{"sku":"crepe-sugar","qty":10}]}`) // 4500
	const n = 32
	var wg sync.WaitGroup
	statuses := make([]int, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := f.do("POST", "/v1/orders/"+o.ID+"/payments", f.pos, `{"method":"card","amount":300}`, "Idempotency-Key", fmt.Sprintf("c-%d", i))
			statuses[i] = r.status
		}()
	}
	wg.Wait()
	ok := 0
	for _, s := range statuses {
		switch s {
		case 201:
			ok++
		case 409, 422:
		default:
			t.Fatalf("status %d", s)
		}
	}
	if ok != 15 {
		t.Fatalf("%d payments of 300 accepted on 4500 owed, want 15", ok)
	}
	var got order
	f.get("/v1/orders/"+o.ID, f.pos, &got)
	if got.Paid != 4500 || got.State != "paid" || len(got.Payments) != 15 || len(got.Conflicts) != 0 {
		t.Fatalf("order %+v", got)
	}
}

func TestStockBelowZeroIsOversold(t *testing.T) {
	f := newFixture(t)
	f.catalog()
	f.post("/v1/inventory/cider-pint/adjustments", f.pos, `{"delta":2,"reason":"delivery"}`, 201, nil)
	f.createOrder(f.pos, `{"lines":[{"sku":"cider-pint","qty":3}]}`)
	var inv posapi.Inventory
	f.get("/v1/inventory", f.pos, &inv)
	var found bool
	for _, it := range inv.Items {
		if it.SKU == "cider-pint" {
			found = true
			if it.OnHand != -1 || !it.Oversold || it.Sold != 3 || it.Adjusted != 2 {
				t.Fatalf("stock %+v", it)
			}
		}
	}
	if !found {
		t.Fatalf("inventory %+v", inv)
	}
	var adj posapi.StockAdjustment
	r := f.do("PUT", "/v1/inventory/cider-pint", f.org, `{"on_hand":5,"reason":"recount"}`)
	r.decode(t, &adj)
	if r.status != 200 || adj.Delta != 6 || adj.SetTo == nil || *adj.SetTo != 5 {
		t.Fatalf("set stock: %d %s", r.status, r.body)
	}
	f.get("/v1/inventory", f.pos, &inv)
	for _, it := range inv.Items {
		if it.SKU == "cider-pint" && (it.OnHand != 5 || it.Oversold) {
			t.Fatalf("after recount %+v", it)
		}
	}
}

func TestCustomerDataOnlyForTheOrganizer(t *testing.T) {
	f := newFixture(t)
	f.catalog()
	const name = "Zebulon Quixote-Marchetti"
	const email = "zebulon.qm@example.org"
	sig := base64.StdEncoding.EncodeToString(append([]byte("\x89PNG\r\n\x1a\n"), "signature-pixels"...))
	o := f.createOrder(f.pos, `{"lines":[{"sku":"crepe-sugar","qty":1}],"customer":{"name":"`+name+`","email":"`+email+`","signature_png":"`+sig+`"}}`)
	if !o.HasCustomer || o.Customer != "" {
		t.Fatalf("create response shows customer data to a pos token: %+v", o)
	}
	// A bad request carrying the name must not log or echo it either.
	r := f.do("POST", "/v1/orders", f.pos, `{"lines":[{"sku":"waffle","qty":1}],"customer":{"name":"`+name+`"}}`, "Idempotency-Key", newKey())
	if r.status != 422 || strings.Contains(string(r.body), "Zebulon") {
		t.Fatalf("%d %s", r.status, r.body)
	}
	var seen order
	f.get("/v1/orders/"+o.ID, f.pos, &seen)
	if !seen.HasCustomer || seen.Customer != "" {
		t.Fatalf("a pos token sees the ciphertext: %+v", seen)
	}
	f.get("/v1/orders/"+o.ID, f.org, &seen)
	ct, err := base64.StdEncoding.DecodeString(seen.Customer)
	if err != nil || len(ct) == 0 {
		t.Fatalf("organizer's customer %q: %v", seen.Customer, err)
	}
	id, err := auth.LoadOrganizerIdentity(f.ev.Dir)
	if err != nil {
		t.Fatal(err)
	}
	rd, err := age.Decrypt(bytes.NewReader(ct), id)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(rd)
	var c posapi.Customer
	if err := json.Unmarshal(plain, &c); err != nil || c.Name != name || c.Email != email || !bytes.HasPrefix(c.SignaturePNG, []byte("\x89PNG")) {
		t.Fatalf("decrypted %s: %v", plain, err)
	}

	// Nothing under the data directory (the store and its -wal, read while
	// the edge runs) nor the log holds the plaintext.
	files := 0
	err = filepath.WalkDir(f.dir, func(path string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files++
		for _, needle := range []string{name, "Zebulon", email} {
			if bytes.Contains(b, []byte(needle)) {
				t.Errorf("%s holds %q in plaintext", path, needle)
			}
		}
		return nil
	})
	if err != nil || files == 0 {
		t.Fatalf("walk %s: %d files, %v", f.dir, files, err)
	}
	if logs := f.logs.String(); logs == "" || strings.Contains(logs, "Zebulon") || strings.Contains(logs, email) {
		t.Fatalf("log (%d bytes) holds the customer's data or is empty", len(logs))
	}
}

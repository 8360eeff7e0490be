package edge_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"canopy/api"
	"canopy/auth"

	"canopy/internal/apicontract"
	"canopy/internal/testutil"
	"canopy/replica"
)

// contract drives a real edge through the OpenAPI checker's client: every
// request and response is validated against api/openapi.yaml, and the
// checker records which documented operation/status pairs were produced.
type contract struct {
	chk  *apicontract.Checker
	hc   *http.Client
	base string
	keys atomic.Int64
}

// key returns a fresh Idempotency-Key.
func (c *contract) key() string { return fmt.Sprintf("contract-%d", c.keys.Add(1)) }

// do sends one request. hdr holds header name/value pairs; a non-empty body
// is sent as application/json unless hdr sets Content-Type.
func (c *contract) do(t *testing.T, method, path, token, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, c.base+path, rd)
	if err != nil {
		t.Fatal(err)
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
	res, err := c.hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		t.Fatalf("%s %s: read body: %v", method, path, err)
	}
	return reply{res.StatusCode, res.Header, b}
}

// expect sends one request and fails t unless it is answered with want.
func (c *contract) expect(t *testing.T, want int, method, path, token, body string, hdr ...string) reply {
	t.Helper()
	r := c.do(t, method, path, token, body, hdr...)
	if r.status != want {
		t.Fatalf("%s %s: status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	return r
}

// post sends a POST with a fresh Idempotency-Key and expects want.
func (c *contract) post(t *testing.T, want int, path, token, body string, hdr ...string) reply {
	t.Helper()
	return c.expect(t, want, http.MethodPost, path, token, body, append([]string{"Idempotency-Key", c.key()}, hdr...)...)
}

// problem sends a request and expects a problem of type typ (its status is
// the type's).
func (c *contract) problem(t *testing.T, status int, typ, method, path, token, body string, hdr ...string) {
	t.Helper()
	wantProblem(t, c.do(t, method, path, token, body, hdr...), status, typ)
}

func decodeInto[T any](t *testing.T, r reply) T {
	t.Helper()
	var v T
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
	return v
}

// cannotProduce lists documented pairs no test can produce on a real edge,
// each with the reason. The test fails if one of them is produced after
// all: then it belongs in the test, not here.
var cannotProduce = map[string]string{}

func init() {
	cannotProduce["POST /v1/lots/{id}/bids 202"] = "an intent needs a lot whose home is another edge that is down: two edges, covered by auctionapi's TestBidForwardedToHomeOrRecordedAsIntent"
	// A read answers 503 only when the store fails to read (an I/O error,
	// SQLITE_IOERR/BUSY past the timeout), which needs fault injection
	// below the file system: a full disk does not stop reads, and a store
	// closed under the server is answered 500 (store.ErrClosed is not a
	// transient condition). The request's device-token check reads the
	// revocations view, so this also holds for the checkpoint route.
	for _, route := range []string{
		"GET /v1/catalog", "GET /v1/inventory", "GET /v1/log/checkpoint", "GET /v1/log/entries",
		"GET /v1/lots", "GET /v1/lots/{id}", "GET /v1/lots/{id}/events", "GET /v1/occupancy",
		"GET /v1/orders", "GET /v1/orders/{id}", "GET /v1/receipts/{id}", "GET /v1/reconciliation", "GET /v1/revocations",
		"GET /v1/vendors",
	} {
		cannotProduce[route+" 503"] = "a read fails only on a failing disk (I/O error), which a test cannot cause without fault injection"
	}
}

// TestContract drives every operation of the device API on a real edge
// (its data on a tmpfs, so the disk can be filled) with real tokens, to
// produce every documented status code, and checks every response against
// the OpenAPI document.
func TestContract(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestContract must run as root: it mounts a tmpfs to fill the disk (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=64m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })

	chk, err := apicontract.New(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	ev := testutil.NewEvent(t, "contract-market")
	e := openEdge(t, ev, dir)
	// The journal signs its first checkpoint a second after it opens, so
	// an edge asked at once has none yet. On a machine too slow for that,
	// a fresh edge is asked again.
	t.Run("checkpoint before the first", func(t *testing.T) {
		org := ev.ValidToken(t, auth.RoleOrganizer)
		for try := 0; ; try++ {
			edg := e
			if try > 0 {
				edg = openEdge(t, ev, "")
			}
			c := &contract{chk: chk, hc: chk.Client(), base: edg.URL()}
			r := c.do(t, "GET", "/v1/log/checkpoint", org, "")
			if r.status == http.StatusNotFound {
				wantProblem(t, r, 404, api.TypeNotFound)
				return
			}
			if try == 3 {
				t.Fatalf("every fresh edge had signed a checkpoint before it was asked: %d %s", r.status, r.body)
			}
		}
	})

	c := &contract{chk: chk, hc: chk.Client(), base: e.URL()}
	now := time.Now()
	tok := struct {
		org, admin, pos, posBound, posOverride, door, auctioneer, bidder string
	}{
		org:        ev.ValidToken(t, auth.RoleOrganizer),
		admin:      ev.ValidToken(t, auth.RoleAdmin),
		pos:        ev.ValidToken(t, auth.RolePOS),
		door:       ev.ValidToken(t, auth.RoleDoor),
		auctioneer: ev.ValidToken(t, auth.RoleAuctioneer),
		bidder:     ev.Token(t, auth.RoleBidder, "paddle-7", now.Add(-time.Minute), now.Add(time.Hour)),
	}
	device := func(d auth.Device) string {
		d.Event, d.NotBefore, d.Expires = ev.Event.Slug, now.Add(-time.Minute), now.Add(time.Hour)
		s, err := auth.IssueDevice(ev.Key, d)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	tok.posBound = device(auth.Device{Role: auth.RolePOS, Name: "till-tea", Vendor: "tea-stall"})
	tok.posOverride = device(auth.Device{Role: auth.RolePOS, Name: "till-boss", Permissions: []string{auth.PermPriceOverride}})
	big := `{"text":"` + strings.Repeat("x", 2<<20) + `"}`

	t.Run("ops", func(t *testing.T) {
		for _, p := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.yaml"} {
			c.expect(t, 200, "GET", p, "", "")
		}
		if r := c.expect(t, 200, "GET", "/v1/openapi.yaml", "", ""); string(r.body) != string(api.OpenAPI) {
			t.Fatal("the served document is not the embedded one")
		}
		// A route that does not exist and a method a path does not take.
		wantProblem(t, call(t, "GET", e.URL()+"/v1/nope", tok.org, ""), 404, api.TypeRouteNotFound)
		r := call(t, "DELETE", e.URL()+"/v1/orders", tok.org, "")
		wantProblem(t, r, 405, api.TypeMethodNotAllowed)
		if r.header.Get("Allow") == "" {
			t.Fatal("405 without Allow")
		}
	})

	t.Run("audit", func(t *testing.T) {
		note := c.post(t, 201, "/v1/log/notes", tok.org, `{"text":"doors open"}`)
		if n := decodeInto[api.NoteResponse](t, note); n.Text != "doors open" || n.Role != "organizer" {
			t.Fatalf("note %s", note.body)
		}
		c.post(t, 201, "/v1/log/notes", tok.admin, `{"text":"drill"}`)
		c.problem(t, 422, api.TypeValidationFailed, "POST", "/v1/log/notes", tok.org, `{"text":"  "}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeMalformedJSON, "POST", "/v1/log/notes", tok.org, `{"text":`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeIdempotencyNeeded, "POST", "/v1/log/notes", tok.org, `{"text":"x"}`)
		// The same key with another body is refused.
		k := c.key()
		c.expect(t, 201, "POST", "/v1/log/notes", tok.org, `{"text":"first"}`, "Idempotency-Key", k)
		c.problem(t, 422, api.TypeIdempotencyReused, "POST", "/v1/log/notes", tok.org, `{"text":"second"}`, "Idempotency-Key", k)

		page := decodeInto[api.EntryPage](t, c.expect(t, 200, "GET", "/v1/log/entries?limit=2", tok.org, ""))
		if len(page.Entries) != 2 || page.Entries[0].Seq != 1 || page.Next == nil || *page.Next != 3 {
			t.Fatalf("first page of two: %+v", page)
		}
		c.expect(t, 200, "GET", "/v1/log/entries?from=2&to=3", tok.admin, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/log/entries?limit=0", tok.org, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/log/entries?from=5&to=2", tok.org, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/log/entries?colour=red", tok.org, "")
		// The journal signs a checkpoint within a second of a write.
		deadline := time.Now().Add(10 * time.Second)
		for {
			r := c.do(t, "GET", "/v1/log/checkpoint", tok.admin, "")
			if r.status == 200 {
				if !strings.HasPrefix(string(r.body), "canopy/contract-market/") {
					t.Fatalf("checkpoint %q", r.body)
				}
				break
			}
			if r.status != 404 || time.Now().After(deadline) {
				t.Fatalf("checkpoint: %d %s", r.status, r.body)
			}
			time.Sleep(20 * time.Millisecond) // polling for the signer, with a deadline
		}
	})
	// Orders the later subtests use: one left open, one paid.
	var openOrder, paidOrder string

	t.Run("pos", func(t *testing.T) {
		put := func(want int, path, token, body string) reply {
			t.Helper()
			return c.expect(t, want, "PUT", path, token, body)
		}
		// Vendors: organizer and admin write, with or without a key.
		put(200, "/v1/vendors/tea-stall", tok.org, `{"name":"Tea stall","active":true}`)
		c.expect(t, 200, "PUT", "/v1/vendors/bakery", tok.admin, `{"name":"Bakery","active":true}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeValidationFailed, "PUT", "/v1/vendors/tea-stall", tok.org, `{"name":"Tea stall"}`)
		c.problem(t, 422, api.TypeValidationFailed, "PUT", "/v1/vendors/tea-stall", tok.org, `{"name":"","active":true}`)
		c.problem(t, 400, api.TypeUnknownField, "PUT", "/v1/vendors/tea-stall", tok.org, `{"name":"T","active":true,"colour":"red"}`)
		c.problem(t, 413, api.TypeBodyTooLarge, "PUT", "/v1/vendors/tea-stall", tok.org, big)
		vendors := c.expect(t, 200, "GET", "/v1/vendors", tok.pos, "")
		if !strings.Contains(string(vendors.body), `"tea-stall"`) {
			t.Fatalf("vendors %s", vendors.body)
		}
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/vendors?all=1", tok.pos, "")
		c.problem(t, 422, api.TypeCardNumberRefused, "GET", "/v1/vendors?q=4111111111111111", tok.pos, "")

		// Catalog.
		put(200, "/v1/catalog/tea", tok.org, `{"vendor":"tea-stall","name":"Tea","price":300,"tax_rate":700,"tax_inclusive":true,"track_stock":true,"active":true}`)
		put(200, "/v1/catalog/bun", tok.admin, `{"vendor":"bakery","name":"Bun","price":250,"tax_rate":700,"active":true}`)
		c.problem(t, 422, api.TypeUnknownVendor, "PUT", "/v1/catalog/cake", tok.org, `{"vendor":"nobody","name":"Cake","price":1,"active":true}`)
		c.problem(t, 422, api.TypeValidationFailed, "PUT", "/v1/catalog/cake", tok.org, `{"vendor":"bakery","name":"Cake","price":-1,"active":true}`)
		c.problem(t, 400, api.TypeWrongFieldType, "PUT", "/v1/catalog/cake", tok.org, `{"vendor":"bakery","name":"Cake","price":"one","active":true}`)
		c.problem(t, 413, api.TypeBodyTooLarge, "PUT", "/v1/catalog/cake", tok.org, big)
		cat := c.expect(t, 200, "GET", "/v1/catalog?vendor=tea-stall", tok.posBound, "")
		if strings.Contains(string(cat.body), `"bun"`) || !strings.Contains(string(cat.body), `"tea"`) {
			t.Fatalf("catalog for the tea stall %s", cat.body)
		}
		c.expect(t, 200, "GET", "/v1/catalog", tok.admin, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/catalog?vendor=no%20such", tok.pos, "")
		c.problem(t, 422, api.TypeCardNumberRefused, "GET", "/v1/catalog?vendor=4111111111111111", tok.pos, "")

		// Inventory.
		put(200, "/v1/inventory/tea", tok.org, `{"on_hand":50,"reason":"delivery"}`)
		c.problem(t, 404, api.TypeNotFound, "PUT", "/v1/inventory/cake", tok.org, `{"on_hand":5}`)
		c.problem(t, 422, api.TypeValidationFailed, "PUT", "/v1/inventory/tea", tok.org, `{"reason":"count"}`)
		c.problem(t, 400, api.TypeEmptyBody, "PUT", "/v1/inventory/tea", tok.org, " ")
		c.post(t, 201, "/v1/inventory/tea/adjustments", tok.pos, `{"delta":-2,"reason":"spilt"}`)
		c.problem(t, 404, api.TypeNotFound, "POST", "/v1/inventory/cake/adjustments", tok.pos, `{"delta":1,"reason":"found"}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeValidationFailed, "POST", "/v1/inventory/tea/adjustments", tok.pos, `{"delta":0,"reason":"none"}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeIdempotencyNeeded, "POST", "/v1/inventory/tea/adjustments", tok.pos, `{"delta":1,"reason":"found"}`)
		inv := c.expect(t, 200, "GET", "/v1/inventory", tok.pos, "")
		if !strings.Contains(string(inv.body), `"on_hand":48`) {
			t.Fatalf("inventory after set 50 and -2: %s", inv.body)
		}
		c.expect(t, 200, "GET", "/v1/inventory?vendor=bakery", tok.posBound, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/inventory?vendor=", tok.pos, "")
		c.problem(t, 422, api.TypeCardNumberRefused, "GET", "/v1/inventory?note=4111111111111111", tok.pos, "")

		// Orders: a bound till sells for its vendor; an unbound one names it
		// by the SKUs; a manual price needs the permission.
		type created struct {
			Order struct {
				ID     string `json:"id"`
				Vendor string `json:"vendor"`
				State  string `json:"state"`
				Totals struct {
					Total int64 `json:"total"`
				} `json:"totals"`
			} `json:"order"`
		}
		o1 := decodeInto[created](t, c.post(t, 201, "/v1/orders", tok.posBound, `{"lines":[{"sku":"tea","qty":2}]}`))
		if o1.Order.Vendor != "tea-stall" || o1.Order.State != "open" || o1.Order.Totals.Total != 600 {
			t.Fatalf("order %+v", o1)
		}
		openOrder = o1.Order.ID
		o2 := decodeInto[created](t, c.post(t, 201, "/v1/orders", tok.org, `{"lines":[{"sku":"bun","qty":1}],"tip":50,"customer":{"name":"Ada","email":"ada@example.org"}}`))
		o3 := decodeInto[created](t, c.post(t, 201, "/v1/orders", tok.posOverride, `{"lines":[{"sku":"tea","qty":1,"unit_price":100}]}`))
		c.problem(t, 403, api.TypePriceOverrideDenied, "POST", "/v1/orders", tok.pos, `{"lines":[{"sku":"tea","qty":1,"unit_price":100}]}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeValidationFailed, "POST", "/v1/orders", tok.pos, `{"lines":[]}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeUnknownSKU, "POST", "/v1/orders", tok.pos, `{"lines":[{"sku":"cake","qty":1}]}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeVendorMismatch, "POST", "/v1/orders", tok.posBound, `{"lines":[{"sku":"bun","qty":1}]}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeCardNumberRefused, "POST", "/v1/orders", tok.pos, `{"lines":[{"sku":"tea","qty":1}],"customer":{"name":"4111 1111 1111 1111"}}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeTrailingData, "POST", "/v1/orders", tok.pos, `{"lines":[{"sku":"tea","qty":1}]} {}`, "Idempotency-Key", c.key())
		c.problem(t, 415, api.TypeUnsupportedMedia, "POST", "/v1/orders", tok.pos, `{"lines":[{"sku":"tea","qty":1}]}`, "Idempotency-Key", c.key(), "Content-Type", "text/plain")
		c.problem(t, 413, api.TypeBodyTooLarge, "POST", "/v1/orders", tok.pos, big, "Idempotency-Key", c.key())
		// A replay answers the first response again.
		k := c.key()
		first := c.expect(t, 201, "POST", "/v1/orders", tok.pos, `{"lines":[{"sku":"bun","qty":3}]}`, "Idempotency-Key", k)
		again := c.expect(t, 201, "POST", "/v1/orders", tok.pos, `{"lines":[{"sku":"bun","qty":3}]}`, "Idempotency-Key", k)
		if string(first.body) != string(again.body) || again.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay %s, first %s", again.body, first.body)
		}

		// Reading orders.
		got := c.expect(t, 200, "GET", "/v1/orders/"+o2.Order.ID, tok.org, "")
		if !strings.Contains(string(got.body), `"customer":"`) {
			t.Fatalf("the organizer sees the sealed customer data: %s", got.body)
		}
		c.expect(t, 200, "GET", "/v1/orders/"+openOrder, tok.posBound, "")
		c.problem(t, 404, api.TypeNotFound, "GET", "/v1/orders/"+o2.Order.ID, tok.posBound, "") // another vendor's order
		c.problem(t, 404, api.TypeNotFound, "GET", "/v1/orders/o-nothing", tok.pos, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/orders/"+openOrder+"?full=1", tok.pos, "")
		c.problem(t, 422, api.TypeCardNumberRefused, "GET", "/v1/orders/4111111111111111", tok.pos, "")
		page := c.expect(t, 200, "GET", "/v1/orders?state=open&limit=2", tok.admin, "")
		if !strings.Contains(string(page.body), `"next":"`) {
			t.Fatalf("a page of two of four open orders has a next cursor: %s", page.body)
		}
		c.expect(t, 200, "GET", "/v1/orders?vendor=tea-stall&from="+now.Add(-time.Hour).Format(time.RFC3339), tok.posBound, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/orders?state=lost", tok.pos, "")
		c.problem(t, 422, api.TypeCardNumberRefused, "GET", "/v1/orders?after=4111111111111111", tok.pos, "")

		// Payments: split, cash over the total with change, refusals.
		pay := func(order string) string { return "/v1/orders/" + order + "/payments" }
		c.post(t, 201, pay(o2.Order.ID), tok.org, `{"method":"card","amount":100,"reference":"psp-1"}`)
		c.problem(t, 422, api.TypeOverpayment, "POST", pay(o2.Order.ID), tok.org, `{"method":"card","amount":100000}`, "Idempotency-Key", c.key())
		paid := c.post(t, 201, pay(o2.Order.ID), tok.org, `{"method":"cash","amount":1000}`)
		if !strings.Contains(string(paid.body), `"state":"paid"`) || !strings.Contains(string(paid.body), `"receipt":"/v1/receipts/`) {
			t.Fatalf("the payment that settles the order: %s", paid.body)
		}
		paidOrder = o2.Order.ID
		c.problem(t, 409, api.TypeOrderState, "POST", pay(paidOrder), tok.org, `{"method":"cash","amount":1}`, "Idempotency-Key", c.key())
		c.problem(t, 404, api.TypeNotFound, "POST", pay("o-nothing"), tok.pos, `{"method":"cash","amount":1}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeValidationFailed, "POST", pay(openOrder), tok.pos, `{"method":"iou","amount":1}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeCardNumberRefused, "POST", pay(openOrder), tok.pos, `{"method":"card","amount":1,"reference":"4111111111111111"}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeMalformedJSON, "POST", pay(openOrder), tok.pos, `{"method":"cash",`, "Idempotency-Key", c.key())
		c.problem(t, 413, api.TypeBodyTooLarge, "POST", pay(openOrder), tok.pos, big, "Idempotency-Key", c.key())

		// Fulfilment.
		ful := func(order string) string { return "/v1/orders/" + order + "/fulfilment" }
		c.post(t, 200, ful(paidOrder), tok.org, `{"state":"ready"}`)
		c.post(t, 200, ful(o3.Order.ID), tok.posOverride, `{"state":"cancelled"}`)
		c.problem(t, 409, api.TypeIllegalTransition, "POST", ful(o3.Order.ID), tok.posOverride, `{"state":"ready"}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeValidationFailed, "POST", ful(openOrder), tok.pos, `{"state":"paid"}`, "Idempotency-Key", c.key())
		c.problem(t, 404, api.TypeNotFound, "POST", ful("o-nothing"), tok.pos, `{"state":"ready"}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeUnknownField, "POST", ful(openOrder), tok.pos, `{"state":"ready","when":"now"}`, "Idempotency-Key", c.key())

		// Refunds.
		ref := func(order string) string { return "/v1/orders/" + order + "/refunds" }
		c.post(t, 201, ref(paidOrder), tok.org, `{"amount":50,"method":"cash","reason":"cold bun"}`)
		c.problem(t, 422, api.TypeRefundAbovePaid, "POST", ref(paidOrder), tok.org, `{"amount":100000,"method":"cash","reason":"all"}`, "Idempotency-Key", c.key())
		c.problem(t, 409, api.TypeOrderState, "POST", ref(openOrder), tok.pos, `{"amount":1,"method":"cash","reason":"unpaid"}`, "Idempotency-Key", c.key())
		c.problem(t, 404, api.TypeNotFound, "POST", ref("o-nothing"), tok.pos, `{"amount":1,"method":"cash","reason":"x"}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeIdempotencyNeeded, "POST", ref(paidOrder), tok.org, `{"amount":1,"method":"cash","reason":"x"}`)
	})

	t.Run("receipts", func(t *testing.T) {
		if paidOrder == "" {
			t.Fatal("no paid order (the pos subtest failed)")
		}
		path := "/v1/receipts/" + paidOrder
		for _, accept := range []string{"", "application/json", "text/plain", "text/html"} {
			r := c.expect(t, 200, "GET", path, tok.org, "", "Accept", accept)
			if accept != "" && !strings.HasPrefix(r.header.Get("Content-Type"), accept) {
				t.Fatalf("Accept %s answered %s", accept, r.header.Get("Content-Type"))
			}
		}
		c.expect(t, 200, "GET", path, tok.pos, "")
		c.problem(t, 404, api.TypeNotFound, "GET", "/v1/receipts/"+openOrder, tok.pos, "")      // not paid
		c.problem(t, 404, api.TypeNotFound, "GET", "/v1/receipts/"+paidOrder, tok.posBound, "") // another vendor's
	})

	t.Run("reports", func(t *testing.T) {
		r := c.expect(t, 200, "GET", "/v1/reports/sales", tok.org, "")
		if !strings.Contains(string(r.body), `"currency":"EUR"`) {
			t.Fatalf("sales report %s", r.body)
		}
		c.expect(t, 200, "GET", "/v1/reports/sales?from="+now.Add(-time.Hour).Format(time.RFC3339)+"&to="+now.Add(time.Hour).Format(time.RFC3339), tok.admin, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/reports/sales?from=yesterday", tok.org, "")
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/reports/sales?vendor=x", tok.org, "")
		r = c.expect(t, 200, "GET", "/v1/reconciliation", tok.admin, "")
		if !strings.Contains(string(r.body), `"hash":"`) {
			t.Fatalf("reconciliation report %s", r.body)
		}
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/reconciliation?kind=x", tok.org, "")
	})

	ticket := func(id string, doors ...string) string {
		tk, err := auth.IssueTicket(ev.Key, auth.Ticket{ID: id, Event: ev.Event.Slug, Type: "general", Doors: doors, Reentry: true,
			ValidFrom: now.Add(-time.Hour), ValidUntil: now.Add(24 * time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		return tk
	}

	t.Run("doors", func(t *testing.T) {
		type scan struct {
			Accepted bool   `json:"accepted"`
			Reason   string `json:"reason"`
		}
		scanBody := func(tk, door, dir string) string {
			return fmt.Sprintf(`{"ticket":%q,"door":%q,"direction":%q}`, tk, door, dir)
		}
		tk := ticket("contract-t1")
		if s := decodeInto[scan](t, c.post(t, 200, "/v1/checkins", tok.door, scanBody(tk, "main", "in"))); !s.Accepted {
			t.Fatalf("first scan in: %+v", s)
		}
		if s := decodeInto[scan](t, c.post(t, 200, "/v1/checkins", tok.org, scanBody(tk, "main", "in"))); s.Accepted || s.Reason != "already_inside" {
			t.Fatalf("second scan in: %+v", s)
		}
		if s := decodeInto[scan](t, c.post(t, 200, "/v1/checkins", tok.door, scanBody(ticket("contract-t2", "vip"), "main", "in"))); s.Accepted || s.Reason != "wrong_door" {
			t.Fatalf("scan at a door the ticket may not use: %+v", s)
		}
		if s := decodeInto[scan](t, c.post(t, 200, "/v1/checkins", tok.door, scanBody("not-a-ticket", "main", "in"))); s.Accepted {
			t.Fatalf("a garbage ticket: %+v", s)
		}
		c.problem(t, 422, api.TypeTicketMissing, "POST", "/v1/checkins", tok.door, scanBody("", "main", "in"), "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeInvalidDoor, "POST", "/v1/checkins", tok.door, scanBody(tk, "main gate", "in"), "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeInvalidDirection, "POST", "/v1/checkins", tok.door, scanBody(tk, "main", "up"), "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeTicketTooLong, "POST", "/v1/checkins", tok.door, scanBody(strings.Repeat("t", 2000), "main", "in"), "Idempotency-Key", c.key())
		c.problem(t, 413, api.TypeBodyTooLarge, "POST", "/v1/checkins", tok.door, scanBody(strings.Repeat("t", 8000), "main", "in"), "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeMalformedJSON, "POST", "/v1/checkins", tok.door, `{"ticket":`, "Idempotency-Key", c.key())
		occ := c.expect(t, 200, "GET", "/v1/occupancy", tok.door, "")
		if !strings.Contains(string(occ.body), `"main":1`) {
			t.Fatalf("occupancy after one admission at main: %s", occ.body)
		}
		c.expect(t, 200, "GET", "/v1/occupancy", tok.admin, "")
	})

	t.Run("revocations", func(t *testing.T) {
		c.post(t, 201, "/v1/revocations", tok.org, `{"what":"ticket","id":"contract-t3","reason":"refunded"}`)
		s := c.post(t, 200, "/v1/checkins", tok.door, fmt.Sprintf(`{"ticket":%q,"door":"main","direction":"in"}`, ticket("contract-t3")))
		if !strings.Contains(string(s.body), `"reason":"revoked"`) {
			t.Fatalf("scan of a revoked ticket: %s", s.body)
		}
		// A revoked device token is refused on every call.
		stolen := ev.Token(t, auth.RolePOS, "stolen-till", now.Add(-time.Minute), now.Add(time.Hour))
		dev, err := auth.NewVerifier(ev.Event, nil).VerifyDevice(stolen)
		if err != nil {
			t.Fatal(err)
		}
		c.expect(t, 200, "GET", "/v1/vendors", stolen, "")
		c.post(t, 201, "/v1/revocations", tok.admin, fmt.Sprintf(`{"what":"token","id":%q,"reason":"stolen"}`, dev.TokenID))
		c.problem(t, 401, api.TypeTokenRevoked, "GET", "/v1/vendors", stolen, "")
		c.problem(t, 422, api.TypeValidationFailed, "POST", "/v1/revocations", tok.org, `{"what":"node","id":"not-hex"}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeUnknownField, "POST", "/v1/revocations", tok.org, `{"what":"ticket","id":"x","why":"y"}`, "Idempotency-Key", c.key())
		list := c.expect(t, 200, "GET", "/v1/revocations", tok.org, "")
		if !strings.Contains(string(list.body), `"contract-t3"`) || !strings.Contains(string(list.body), dev.TokenID) {
			t.Fatalf("revocations %s", list.body)
		}
		c.expect(t, 200, "GET", "/v1/revocations", tok.admin, "")
	})

	t.Run("auctions", func(t *testing.T) {
		c.post(t, 201, "/v1/lots", tok.auctioneer, `{"id":"lot-1","title":"Teapot","start_price":1000,"increment":100,"duration_s":3600}`)
		c.post(t, 201, "/v1/lots", tok.org, `{"title":"Cup","start_price":100,"increment":10,"closes_at":"`+now.Add(time.Hour).Format(time.RFC3339)+`","soft_close_s":60}`)
		c.problem(t, 409, api.TypeConflict, "POST", "/v1/lots", tok.auctioneer, `{"id":"lot-1","title":"Again","start_price":1,"increment":1,"duration_s":60}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeValidationFailed, "POST", "/v1/lots", tok.auctioneer, `{"title":"No price","increment":1,"duration_s":60}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeWrongFieldType, "POST", "/v1/lots", tok.auctioneer, `{"title":"T","start_price":"ten","increment":1,"duration_s":60}`, "Idempotency-Key", c.key())

		bids := "/v1/lots/lot-1/bids"
		c.problem(t, 422, api.TypeBidBelowStart, "POST", bids, tok.bidder, `{"amount":900}`, "Idempotency-Key", c.key())
		b := c.post(t, 201, bids, tok.bidder, `{"amount":1000}`)
		if !strings.Contains(string(b.body), `"paddle":"paddle-7"`) {
			t.Fatalf("bid %s", b.body)
		}
		c.post(t, 201, bids, tok.auctioneer, `{"amount":1100,"paddle":"floor-12"}`)
		c.problem(t, 422, api.TypeBidBelowIncrement, "POST", bids, tok.bidder, `{"amount":1150}`, "Idempotency-Key", c.key())
		c.problem(t, 422, api.TypeValidationFailed, "POST", bids, tok.auctioneer, `{"amount":2000}`, "Idempotency-Key", c.key()) // no paddle
		c.problem(t, 404, api.TypeNotFound, "POST", "/v1/lots/lot-none/bids", tok.bidder, `{"amount":1}`, "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeIdempotencyNeeded, "POST", bids, tok.bidder, `{"amount":5000}`)

		c.expect(t, 200, "GET", "/v1/lots", tok.bidder, "")
		lot := c.expect(t, 200, "GET", "/v1/lots/lot-1", tok.admin, "")
		if !strings.Contains(string(lot.body), `"minimum":1200`) {
			t.Fatalf("lot after a bid of 1100: %s", lot.body)
		}
		c.problem(t, 404, api.TypeNotFound, "GET", "/v1/lots/lot-none", tok.auctioneer, "")

		closed := c.post(t, 200, "/v1/lots/lot-1/close", tok.auctioneer, "")
		if !strings.Contains(string(closed.body), `"winner":"floor-12"`) {
			t.Fatalf("close %s", closed.body)
		}
		c.problem(t, 409, api.TypeLotClosed, "POST", "/v1/lots/lot-1/close", tok.org, "", "Idempotency-Key", c.key())
		c.problem(t, 409, api.TypeLotClosed, "POST", bids, tok.bidder, `{"amount":9000}`, "Idempotency-Key", c.key())
		c.problem(t, 404, api.TypeNotFound, "POST", "/v1/lots/lot-none/close", tok.org, "", "Idempotency-Key", c.key())
		c.problem(t, 400, api.TypeUnknownField, "POST", "/v1/lots/lot-1/close", tok.org, `{"now":true}`, "Idempotency-Key", c.key())

		// The stream of a closed lot: the snapshot, then it ends; resumed
		// with nothing missed it answers 204.
		ev := c.expect(t, 200, "GET", "/v1/lots/lot-1/events", tok.bidder, "")
		if !strings.HasPrefix(ev.header.Get("Content-Type"), "text/event-stream") || !strings.Contains(string(ev.body), "event: snapshot") {
			t.Fatalf("stream %s: %s", ev.header.Get("Content-Type"), ev.body)
		}
		var last string
		for _, line := range strings.Split(string(ev.body), "\n") {
			if id, ok := strings.CutPrefix(line, "id: "); ok {
				last = id
			}
		}
		if last == "" {
			t.Fatalf("no event id in %s", ev.body)
		}
		c.expect(t, 204, "GET", "/v1/lots/lot-1/events", tok.org, "", "Last-Event-ID", last)
		c.problem(t, 400, api.TypeInvalidParameter, "GET", "/v1/lots/lot-1/events", tok.org, "", "Last-Event-ID", "last")
		c.problem(t, 404, api.TypeNotFound, "GET", "/v1/lots/lot-none/events", tok.org, "")
	})

	// Every documented operation refuses a request without a token (401)
	// and one from a role it does not serve (403).
	t.Run("auth", func(t *testing.T) {
		ops := []struct{ method, path, forbidden string }{
			{"GET", "/v1/log/checkpoint", tok.door},
			{"GET", "/v1/log/entries", tok.pos},
			{"POST", "/v1/log/notes", tok.auctioneer},
			{"GET", "/v1/vendors", tok.door},
			{"PUT", "/v1/vendors/tea-stall", tok.pos},
			{"GET", "/v1/catalog", tok.bidder},
			{"PUT", "/v1/catalog/tea", tok.posBound},
			{"GET", "/v1/inventory", tok.door},
			{"PUT", "/v1/inventory/tea", tok.pos},
			{"POST", "/v1/inventory/tea/adjustments", tok.door},
			{"POST", "/v1/orders", tok.admin},
			{"GET", "/v1/orders", tok.door},
			{"GET", "/v1/orders/" + openOrder, tok.auctioneer},
			{"POST", "/v1/orders/" + openOrder + "/payments", tok.admin},
			{"POST", "/v1/orders/" + openOrder + "/fulfilment", tok.door},
			{"POST", "/v1/orders/" + openOrder + "/refunds", tok.bidder},
			{"GET", "/v1/receipts/" + paidOrder, tok.door},
			{"GET", "/v1/reports/sales", tok.pos},
			{"GET", "/v1/reconciliation", tok.door},
			{"POST", "/v1/checkins", tok.pos},
			{"GET", "/v1/occupancy", tok.bidder},
			{"POST", "/v1/revocations", tok.door},
			{"GET", "/v1/revocations", tok.pos},
			{"POST", "/v1/lots", tok.bidder},
			{"GET", "/v1/lots", tok.pos},
			{"GET", "/v1/lots/lot-1", tok.door},
			{"POST", "/v1/lots/lot-1/bids", tok.org},
			{"POST", "/v1/lots/lot-1/close", tok.bidder},
			{"GET", "/v1/lots/lot-1/events", tok.pos},
		}
		expired := ev.Token(t, auth.RoleOrganizer, "old", now.Add(-2*time.Hour), now.Add(-time.Hour))
		forged := testutil.NewEvent(t, ev.Event.Slug).ValidToken(t, auth.RoleOrganizer)
		for _, op := range ops {
			body := ""
			if op.method != "GET" {
				body = "{}"
			}
			key := []string{"Idempotency-Key", c.key()}
			c.problem(t, 401, api.TypeTokenMissing, op.method, op.path, "", body, key...)
			c.problem(t, 401, api.TypeTokenExpired, op.method, op.path, expired, body, key...)
			c.problem(t, 401, api.TypeTokenForged, op.method, op.path, forged, body, key...)
			c.problem(t, 403, api.TypeForbiddenRole, op.method, op.path, op.forbidden, body, key...)
		}
	})

	// The sync routes take node-signed requests (package replica), not
	// device tokens: without a signature they are refused.
	t.Run("sync", func(t *testing.T) {
		c.expect(t, 401, "GET", "/v1/sync/vector", "", "")
		c.expect(t, 401, "POST", "/v1/sync/pull", "", `{"protocol":1,"vector":{}}`)
		c.expect(t, 401, "POST", "/v1/sync/push", tok.org, "", "Content-Type", "application/octet-stream")

		// The sync status needs no credentials.
		c.expect(t, 200, "GET", "/v1/sync/status", "", "")
		// A bid another edge forwards: signed by an enrolled node.
		c.post(t, 201, "/v1/lots", tok.auctioneer, `{"id":"lot-fwd","title":"Bowl","start_price":100,"increment":10,"duration_s":3600}`)
		fwd := `{"lot":"lot-fwd","amount":100,"token":"` + tok.bidder + `","idempotency_key":"` + c.key() + `"}`
		c.expect(t, 401, "POST", "/v1/sync/bids", "", fwd)
		other := ev.EdgeConfig(t, "edge-peer", "")
		key, enrolment, err := auth.LoadNode(other.Node.Key)
		if err != nil {
			t.Fatal(err)
		}
		signedAs := func(method, path string, body []byte) []string {
			req, _ := http.NewRequest(method, c.base+path, nil)
			replica.Sign(req, key, enrolment, body)
			return []string{"Canopy-Node-Enrolment", req.Header.Get("Canopy-Node-Enrolment"), "Canopy-Node-Signature", req.Header.Get("Canopy-Node-Signature")}
		}
		signed := func(body string) []string { return signedAs("POST", "/v1/sync/bids", []byte(body)) }
		c.expect(t, 201, "POST", "/v1/sync/bids", "", fwd, signed(fwd)...)
		bad := `{"lot":"lot-fwd","amount":100,"token":"","idempotency_key":"k"}`
		c.expect(t, 422, "POST", "/v1/sync/bids", "", bad, signed(bad)...)

		// A signed peer: its vector, a pull (not followed), a push of an
		// empty stream; and the 400s that follow a verified signature.
		c.expect(t, 200, "GET", "/v1/sync/vector", "", "", signedAs("GET", "/v1/sync/vector", nil)...)
		pull := `{"protocol":1,"vector":{}}`
		c.expect(t, 200, "POST", "/v1/sync/pull", "", pull, append(signedAs("POST", "/v1/sync/pull", []byte(pull)), "Content-Type", "application/json")...)
		badPull := `{"protocol":99,"vector":{}}`
		c.expect(t, 400, "POST", "/v1/sync/pull", "", badPull, append(signedAs("POST", "/v1/sync/pull", []byte(badPull)), "Content-Type", "application/json")...)
		var stream bytes.Buffer
		sw, err := replica.NewStreamWriter(&stream)
		if err != nil {
			t.Fatal(err)
		}
		sw.End()
		sw.Flush()
		c.expect(t, 200, "POST", "/v1/sync/push", "", stream.String(), append(signedAs("POST", "/v1/sync/push", nil), "Content-Type", replica.ContentType)...)
		c.expect(t, 400, "POST", "/v1/sync/push", "", "not an entry stream", append(signedAs("POST", "/v1/sync/push", nil), "Content-Type", replica.ContentType)...)
	})

	// A full disk: every mutation answers 503 store-unavailable with
	// Retry-After once its entry cannot be made durable, and the node takes
	// writes again when space returns.
	t.Run("full disk", func(t *testing.T) {
		c.post(t, 201, "/v1/lots", tok.auctioneer, `{"id":"lot-2","title":"Kettle","start_price":100,"increment":10,"duration_s":3600}`)
		var st syscall.Statfs_t
		if err := syscall.Statfs(dir, &st); err != nil {
			t.Fatal(err)
		}
		used := int64(st.Blocks-st.Bfree) * st.Bsize
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, fmt.Sprintf("size=%d", used+512<<10)); err != nil {
			t.Fatalf("shrink tmpfs to %d bytes: %v", used+512<<10, err)
		}
		text := strings.Repeat("n", 1900)
		for i := 0; ; i++ {
			if i > 5000 {
				t.Fatal("the disk never filled")
			}
			r := c.do(t, "POST", "/v1/log/notes", tok.org, fmt.Sprintf(`{"text":"%s %d"}`, text, i), "Idempotency-Key", c.key())
			if r.status == 201 {
				continue
			}
			wantProblem(t, r, 503, api.TypeStoreUnavailable)
			break
		}
		full := []struct{ method, path, token, body string }{
			{"POST", "/v1/log/notes", tok.admin, `{"text":"full"}`},
			{"PUT", "/v1/vendors/tea-stall", tok.org, `{"name":"Tea stall","active":false}`},
			{"PUT", "/v1/catalog/tea", tok.org, `{"vendor":"tea-stall","name":"Tea","price":350,"active":true}`},
			{"PUT", "/v1/inventory/tea", tok.org, `{"on_hand":10}`},
			{"POST", "/v1/inventory/tea/adjustments", tok.pos, `{"delta":1,"reason":"found"}`},
			{"POST", "/v1/orders", tok.pos, `{"lines":[{"sku":"tea","qty":1}]}`},
			{"POST", "/v1/orders/" + openOrder + "/payments", tok.posBound, `{"method":"cash","amount":600}`},
			{"POST", "/v1/orders/" + paidOrder + "/fulfilment", tok.org, `{"state":"fulfilled"}`},
			{"POST", "/v1/orders/" + paidOrder + "/refunds", tok.org, `{"amount":10,"method":"cash","reason":"late"}`},
			{"POST", "/v1/checkins", tok.door, fmt.Sprintf(`{"ticket":%q,"door":"main","direction":"in"}`, ticket("contract-t4"))},
			{"POST", "/v1/revocations", tok.org, `{"what":"ticket","id":"contract-t5"}`},
			{"POST", "/v1/lots", tok.auctioneer, `{"title":"Spoon","start_price":1,"increment":1,"duration_s":60}`},
			{"POST", "/v1/lots/lot-2/bids", tok.bidder, `{"amount":100}`},
			{"POST", "/v1/lots/lot-2/close", tok.auctioneer, ""},
		}
		for _, m := range full {
			r := c.do(t, m.method, m.path, m.token, m.body, "Idempotency-Key", c.key())
			wantProblem(t, r, 503, api.TypeStoreUnavailable)
			if r.header.Get("Retry-After") == "" {
				t.Fatalf("%s %s: 503 without Retry-After", m.method, m.path)
			}
		}
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=64m"); err != nil {
			t.Fatalf("grow tmpfs: %v", err)
		}
		c.post(t, 201, "/v1/lots/lot-2/bids", tok.bidder, `{"amount":100}`)
	})

	// Readiness is the store answering: closed under the server, the node
	// is not ready. This is the last request of the test.
	t.Run("not ready", func(t *testing.T) {
		if err := e.Store.Close(); err != nil {
			t.Fatal(err)
		}
		r := c.do(t, "GET", "/readyz", "", "")
		wantProblem(t, r, 503, api.TypeNotReady)
		if r.header.Get("Retry-After") == "" {
			t.Fatal("503 without Retry-After")
		}
	})

	var missing []string
	unseen := map[string]bool{}
	for _, m := range chk.Missing() {
		unseen[m] = true
		if _, ok := cannotProduce[m]; !ok {
			missing = append(missing, m)
		}
	}
	for _, d := range chk.Documented() {
		if _, ok := cannotProduce[d]; ok && !unseen[d] {
			t.Errorf("%s was produced after all; remove it from cannotProduce", d)
		}
	}
	if len(missing) > 0 {
		t.Errorf("%d documented operation/status pairs were never produced:\n%s", len(missing), strings.Join(missing, "\n"))
	}
	if errs := chk.Errors(); len(errs) > 0 {
		msgs := make([]string, len(errs))
		for i, err := range errs {
			msgs[i] = err.Error()
		}
		t.Errorf("%d responses or requests do not match the document:\n%s", len(errs), strings.Join(msgs, "\n"))
	}
}

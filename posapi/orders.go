package posapi

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"time"
	"unicode/utf8"

	"filippo.io/age"

	"canopy/api"
	"canopy/auth"
	"canopy/ledger"
	"canopy/pos"
)

// Limits of an order request.
const (
	MaxLines        = 200
	MaxReasonLen    = 200 // characters of a discount, refund or stock reason
	MaxNameLen      = 200
	MaxEmailLen     = 254
	MaxPhoneLen     = 40
	MaxSignatureLen = 256 << 10 // bytes of the signature PNG
	DefaultPageSize = 100
	MaxPageSize     = 1000
)

// CreateOrderRequest is the body of POST /v1/orders.
type CreateOrderRequest struct {
	Vendor   string        `json:"vendor,omitempty"`
	Lines    []LineRequest `json:"lines"`
	Discount *pos.Discount `json:"discount,omitempty"`
	Tip      int64         `json:"tip,omitempty"`
	Customer *Customer     `json:"customer,omitempty"`
}

// LineRequest is one line of an order request. UnitPrice, when given, is a
// manual price (needs the price_override permission).
type LineRequest struct {
	SKU       string `json:"sku"`
	Qty       int64  `json:"qty"`
	UnitPrice *int64 `json:"unit_price,omitempty"`
}

// Customer is the customer's personal data. It is sealed to the
// organizer's age recipient before anything is written.
type Customer struct {
	Name         string `json:"name,omitempty"`
	Email        string `json:"email,omitempty"`
	Phone        string `json:"phone,omitempty"`
	SignaturePNG []byte `json:"signature_png,omitempty"`
}

// pngMagic opens every PNG file.
var pngMagic = []byte("\x89PNG\r\n\x1a\n")

// ValidateOrder checks an order request's shape (without the catalog).
// Messages never contain the customer's data.
func ValidateOrder(req *CreateOrderRequest) error {
	var v api.Validation
	if req.Vendor != "" && !pos.ValidID(req.Vendor) {
		v.Field("/vendor", "must be 1 to 64 of A-Z a-z 0-9 . _ -")
	}
	switch {
	case len(req.Lines) == 0:
		v.Field("/lines", "must have at least one line")
	case len(req.Lines) > MaxLines:
		v.Field("/lines", "must have at most %d lines, got %d", MaxLines, len(req.Lines))
	}
	for i, l := range req.Lines {
		if i >= MaxLines {
			break
		}
		p := "/lines/" + strconv.Itoa(i)
		if !pos.ValidID(l.SKU) {
			v.Field(p+"/sku", "must be a SKU (1 to 64 of A-Z a-z 0-9 . _ -)")
		}
		if l.Qty < 1 || l.Qty > pos.MaxQty {
			v.Field(p+"/qty", "must be 1..%d, got %d", pos.MaxQty, l.Qty)
		}
		if l.UnitPrice != nil && (*l.UnitPrice < 0 || *l.UnitPrice > pos.MaxAmount) {
			v.Field(p+"/unit_price", "must be 0..%d minor units", int64(pos.MaxAmount))
		}
	}
	if d := req.Discount; d != nil {
		if d.Amount < 1 || d.Amount > pos.MaxAmount {
			v.Field("/discount/amount", "must be 1..%d minor units", int64(pos.MaxAmount))
		}
		checkText(&v, "/discount/reason", d.Reason, MaxReasonLen, true)
	}
	if req.Tip < 0 || req.Tip > pos.MaxAmount {
		v.Field("/tip", "must be 0..%d minor units", int64(pos.MaxAmount))
	}
	if c := req.Customer; c != nil {
		checkText(&v, "/customer/name", c.Name, MaxNameLen, false)
		checkText(&v, "/customer/email", c.Email, MaxEmailLen, false)
		checkText(&v, "/customer/phone", c.Phone, MaxPhoneLen, false)
		switch {
		case len(c.SignaturePNG) > MaxSignatureLen:
			v.Field("/customer/signature_png", "must be at most %d bytes", MaxSignatureLen)
		case len(c.SignaturePNG) > 0 && !bytes.HasPrefix(c.SignaturePNG, pngMagic):
			v.Field("/customer/signature_png", "must be a PNG image")
		}
		if c.Name == "" && c.Email == "" && c.Phone == "" && len(c.SignaturePNG) == 0 {
			v.Field("/customer", "must have at least one member, or be left out")
		}
	}
	return v.Err()
}

func checkText(v *api.Validation, ptr, s string, max int, required bool) {
	n := utf8.RuneCountInString(s)
	switch {
	case !utf8.ValidString(s):
		v.Field(ptr, "must be valid UTF-8")
	case required && n == 0:
		v.Field(ptr, "must not be empty")
	case n > max:
		v.Field(ptr, "must be at most %d characters, got %d", max, n)
	}
}

// Catalog lookups for pricing: nil when the row does not exist.
type lookup struct {
	vendor func(id string) (*pos.VendorRow, error)
	sku    func(sku string) (*pos.SKURow, error)
}

// PriceOrder prices a validated order request against the catalog for the
// device: it picks the order's vendor (the device's bound vendor, else the
// request's, else the first line's), checks every line's SKU is active and
// the vendor's, applies manual prices the device may set, and computes the
// totals. The returned Created has no ID, Device or Customer yet.
func priceOrder(req *CreateOrderRequest, dev *auth.Device, currency string, lk lookup) (pos.Created, error) {
	c := pos.Created{Currency: currency, Tip: req.Tip, Discount: req.Discount}
	skus := make([]*pos.SKURow, len(req.Lines))
	for i, l := range req.Lines {
		row, err := lk.sku(l.SKU)
		if err != nil {
			return c, err
		}
		if row == nil || !row.Active {
			ptr := fmt.Sprintf("/lines/%d/sku", i)
			state := "is not in the catalog"
			if row != nil {
				state = "is not active"
			}
			p := api.NewProblem(api.TypeUnknownSKU, "%s: SKU %q %s", ptr, l.SKU, state)
			p.Errors = []api.FieldError{{Pointer: ptr, Detail: "SKU " + state}}
			return c, p
		}
		skus[i] = row
	}
	vendor := req.Vendor
	if dev.Vendor != "" {
		if req.Vendor != "" && req.Vendor != dev.Vendor {
			p := api.NewProblem(api.TypeVendorMismatch, "/vendor: this device sells for vendor %q, not %q", dev.Vendor, req.Vendor)
			p.Errors = []api.FieldError{{Pointer: "/vendor", Detail: "not the device's vendor"}}
			return c, p
		}
		vendor = dev.Vendor
	}
	if vendor == "" {
		vendor = skus[0].Vendor
	}
	v, err := lk.vendor(vendor)
	if err != nil {
		return c, err
	}
	if v == nil || !v.Active {
		p := api.NewProblem(api.TypeUnknownVendor, "vendor %q does not exist or is not active", vendor)
		p.Errors = []api.FieldError{{Pointer: "/vendor", Detail: "unknown or inactive vendor"}}
		return c, p
	}
	c.Vendor = vendor
	lines := make([]pos.Line, len(req.Lines))
	for i, l := range req.Lines {
		row := skus[i]
		if row.Vendor != vendor {
			ptr := fmt.Sprintf("/lines/%d/sku", i)
			p := api.NewProblem(api.TypeVendorMismatch, "%s: SKU %q belongs to vendor %q, this order is for vendor %q", ptr, l.SKU, row.Vendor, vendor)
			p.Errors = []api.FieldError{{Pointer: ptr, Detail: "SKU of another vendor"}}
			return c, p
		}
		lines[i] = pos.Line{SKU: l.SKU, Name: row.Name, Qty: l.Qty, UnitPrice: row.Price, TaxRate: row.TaxRate, TaxInclusive: row.TaxInclusive}
		if l.UnitPrice != nil {
			if !isManager(dev) && !dev.Can(auth.PermPriceOverride) {
				ptr := fmt.Sprintf("/lines/%d/unit_price", i)
				p := api.NewProblem(api.TypePriceOverrideDenied, "%s: device %q may not set a manual price (its token lacks the %s permission)", ptr, dev.Name, auth.PermPriceOverride)
				p.Errors = []api.FieldError{{Pointer: ptr, Detail: "manual price not permitted"}}
				return c, p
			}
			lines[i].UnitPrice, lines[i].ManualPrice = *l.UnitPrice, true
		}
	}
	var discount int64
	if req.Discount != nil {
		discount = req.Discount.Amount
	}
	priced, totals, err := pos.PriceLines(lines, discount, req.Tip)
	if err != nil {
		return c, api.NewProblem(api.TypeAmountOutOfRange, "the order cannot be priced: %s", err.Error())
	}
	c.Lines, c.Totals = priced, totals
	return c, nil
}

// seal encrypts the customer's data to the organizer's recipient and
// returns base64 of the age ciphertext.
func seal(c *Customer, to age.Recipient) (string, error) {
	plain, err := json.Marshal(c)
	if err != nil {
		return "", fmt.Errorf("posapi: encode customer: %w", err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, to)
	if err != nil {
		return "", fmt.Errorf("posapi: seal customer: %w", err)
	}
	if _, err := w.Write(plain); err != nil {
		return "", fmt.Errorf("posapi: seal customer: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("posapi: seal customer: %w", err)
	}
	clear(plain)
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// OrderResponse is an order as the API shows it.
type OrderResponse struct {
	ID       string        `json:"id"`
	Vendor   string        `json:"vendor"`
	Device   string        `json:"device"`
	Currency string        `json:"currency"`
	Lines    []pos.Line    `json:"lines"`
	Discount *pos.Discount `json:"discount,omitempty"`
	Totals   pos.Totals    `json:"totals"`
	Manual   bool          `json:"manual_price"`
	State    pos.State     `json:"state"`
	Paid     int64         `json:"paid"`
	Change   int64         `json:"change"`
	Refunded int64         `json:"refunded"`
	Owed     int64         `json:"owed"`
	// HasCustomer says the order carries sealed customer data; Customer is
	// that ciphertext (base64 of age), shown to organizer tokens only.
	HasCustomer bool       `json:"has_customer"`
	Customer    string     `json:"customer,omitempty"`
	Payments    []pos.Paid `json:"payments"`
	Refunds     []Refund   `json:"refunds"`
	// Receipt links the receipt once the order is paid.
	Receipt   string         `json:"receipt,omitempty"`
	CreatedAt ledger.HLC     `json:"created_hlc"`
	Created   ledger.Ref     `json:"created"`
	Conflicts []pos.Conflict `json:"conflicts,omitempty"`
}

// Refund is one accepted refund of an order.
type Refund struct {
	ID     string `json:"id"`
	Amount int64  `json:"amount"`
	Method string `json:"method"`
	Reason string `json:"reason"`
}

// OrderCreated answers POST /v1/orders.
type OrderCreated struct {
	Order OrderResponse `json:"order"`
}

// OrderPage answers GET /v1/orders.
type OrderPage struct {
	Orders []OrderResponse `json:"orders"`
	// Next is the "after" of the next page, or null at the end.
	Next *string `json:"next"`
}

func showOrder(o *pos.Order, dev *auth.Device) OrderResponse {
	out := OrderResponse{
		ID: o.ID, Vendor: o.Vendor, Device: o.Device, Currency: o.Currency, Lines: o.Lines,
		Discount: o.Discount, Totals: o.Totals, Manual: o.Manual, State: o.State,
		Paid: o.Paid, Change: o.Change, Refunded: o.Refunded, Owed: o.Owed(),
		HasCustomer: o.Customer != "", Payments: []pos.Paid{}, Refunds: []Refund{},
		Conflicts: o.Conflicts,
	}
	if dev != nil && dev.Role == auth.RoleOrganizer {
		out.Customer = o.Customer
	}
	if o.Created != nil {
		out.CreatedAt, out.Created = o.Created.HLC, o.Created.Entry
	}
	for _, p := range o.Payments {
		if p.Accepted {
			out.Payments = append(out.Payments, paidOf(p.PaymentBody))
		}
	}
	for _, r := range o.Refunds {
		if r.Accepted {
			out.Refunds = append(out.Refunds, Refund{ID: r.ID, Amount: r.Amount, Method: r.Method, Reason: r.Reason})
		}
	}
	if o.Receipt != nil {
		out.Receipt = receiptLink(o.ID)
	}
	return out
}

func paidOf(p pos.PaymentBody) pos.Paid {
	return pos.Paid{ID: p.ID, Method: p.Method, Amount: p.Amount, Tendered: p.Tendered, Change: p.Change, Reference: p.Reference}
}

func (h *handler) lookup(ctx context.Context) lookup {
	return lookup{
		vendor: func(id string) (*pos.VendorRow, error) { return h.vendor(ctx, id) },
		sku:    func(sku string) (*pos.SKURow, error) { return h.sku(ctx, sku) },
	}
}

func (h *handler) registerOrders(s *api.Server) {
	api.HandleMutation(s, api.MutationRoute[CreateOrderRequest]{
		Pattern: "POST /v1/orders",
		Roles:   sellers,
		Screen:  refuseCardNumbers,
		Prepare: func(r *http.Request, req *CreateOrderRequest) (api.Mutation, error) {
			if err := ValidateOrder(req); err != nil {
				return api.Mutation{}, err
			}
			dev := api.DeviceFrom(r.Context())
			c, err := priceOrder(req, dev, h.currency, h.lookup(r.Context()))
			if err != nil {
				return api.Mutation{}, err
			}
			if c.ID, err = h.newID("o"); err != nil {
				return api.Mutation{}, err
			}
			c.Device = dev.Name
			if req.Customer != nil {
				if c.Customer, err = seal(req.Customer, h.recipient); err != nil {
					return api.Mutation{}, err
				}
			}
			return api.Mutation{Kind: pos.KindOrderCreated, Key: pos.OrderKey(c.ID), Body: c}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			var c pos.Created
			if err := decodeEntry(e, &c); err != nil {
				return 0, nil, err
			}
			hash := e.Hash()
			o := pos.Order{ID: c.ID, Vendor: c.Vendor, Device: c.Device, Currency: c.Currency, Lines: c.Lines,
				Discount: c.Discount, Totals: c.Totals, Customer: c.Customer, State: pos.StateOpen,
				Created: &pos.Fact{Entry: ledger.Ref{Node: e.Node, Seq: e.Seq, Hash: hash}, HLC: e.HLC}}
			for _, l := range c.Lines {
				o.Manual = o.Manual || l.ManualPrice
			}
			return http.StatusCreated, OrderCreated{Order: showOrder(&o, nil)}, nil
		},
	})

	s.Handle(api.Route{Pattern: "GET /v1/orders/{id}", Roles: readers, Screen: refuseCardNumbers,
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			if err := onlyParams(r.URL.Query()); err != nil {
				return err
			}
			dev := api.DeviceFrom(r.Context())
			o, err := h.order(r.Context(), dev, r.PathValue("id"))
			if err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusOK, showOrder(o, dev))
		}})

	s.Handle(api.Route{Pattern: "GET /v1/orders", Roles: readers, Screen: refuseCardNumbers,
		Handler: h.listOrders})
}

// orderFilter is the parsed query of GET /v1/orders.
type orderFilter struct {
	vendor, after string
	state         pos.State
	from, to      int64 // Unix ms; 0: unbounded
	limit         int
}

func parseOrderFilter(r *http.Request) (orderFilter, error) {
	q := r.URL.Query()
	if err := onlyParams(q, "vendor", "state", "from", "to", "limit", "after"); err != nil {
		return orderFilter{}, err
	}
	var pv paramValidation
	f := orderFilter{vendor: pv.id(q, "vendor"), after: pv.id(q, "after"), limit: DefaultPageSize}
	if s := pv.single(q, "state"); s != "" {
		switch st := pos.State(s); st {
		case pos.StateOpen, pos.StatePaid, pos.StateReady, pos.StateFulfilled, pos.StateCancelled, pos.StateRefunded:
			f.state = st
		default:
			pv.add("state", "must be one of open, paid, ready, fulfilled, cancelled, refunded")
		}
	}
	for _, name := range []string{"from", "to"} {
		if s := pv.single(q, name); s != "" {
			t, err := time.Parse(time.RFC3339, s)
			if err != nil {
				pv.add(name, "must be an RFC 3339 time, e.g. 2026-07-04T18:00:00+02:00")
				continue
			}
			ms := t.UnixMilli()
			if name == "from" {
				f.from = ms
			} else {
				f.to = ms
			}
		}
	}
	if s := pv.single(q, "limit"); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 || n > MaxPageSize {
			pv.add("limit", fmt.Sprintf("must be an integer 1..%d", MaxPageSize))
		} else {
			f.limit = n
		}
	}
	if f.from != 0 && f.to != 0 && f.to < f.from {
		pv.add("to", "must not be before from")
	}
	return f, pv.err()
}

// listOrders serves GET /v1/orders: orders by id (so by creation time),
// filtered, one page after the cursor.
func (h *handler) listOrders(w http.ResponseWriter, r *http.Request) error {
	f, err := parseOrderFilter(r)
	if err != nil {
		return err
	}
	dev := api.DeviceFrom(r.Context())
	rows, err := h.views.ViewRows(r.Context(), h.event, pos.ViewOrders)
	if err != nil {
		return err
	}
	page := OrderPage{Orders: []OrderResponse{}}
	for _, row := range rows {
		if f.after != "" && row.Key <= f.after {
			continue
		}
		var o pos.Order
		if err := unmarshalRow(row, &o); err != nil {
			return err
		}
		switch {
		case o.Created == nil,
			dev.Vendor != "" && o.Vendor != dev.Vendor,
			f.vendor != "" && o.Vendor != f.vendor,
			f.state != "" && o.State != f.state,
			f.from != 0 && o.Created.HLC.Wall < f.from,
			f.to != 0 && o.Created.HLC.Wall >= f.to:
			continue
		}
		if len(page.Orders) == f.limit {
			next := page.Orders[len(page.Orders)-1].ID
			page.Next = &next
			break
		}
		page.Orders = append(page.Orders, showOrder(&o, dev))
	}
	return api.WriteJSON(w, http.StatusOK, page)
}

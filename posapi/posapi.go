// Package posapi serves the point-of-sale routes of the edge's device API:
// vendors, catalog, orders, payments, fulfilment, refunds and stock, each
// mutation appended as an entry of package pos through the api package's
// Idempotency-Key machinery.
package posapi

import (
	"bytes"
	"canopy/keylock"
	"context"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"sync"

	"filippo.io/age"

	"canopy/api"
	"canopy/auth"
	"canopy/ledger"
	"canopy/pos"
	"canopy/store"
)

// Views reads the event's derived state. View returns an error wrapping
// store.ErrNotFound for a missing row; ViewRows returns every row of a
// view sorted by key. *sqlite.Store satisfies it.
type Views interface {
	View(ctx context.Context, event, view, key string) ([]byte, error)
	ViewRows(ctx context.Context, event, view string) ([]store.ViewRow, error)
}

// Deps is what the point-of-sale routes need from the daemon.
type Deps struct {
	Event *auth.Event  // the event served: slug, currency, organizer's age recipient
	Views Views        // the node's views
	Clock ledger.Clock // nil: ledger.SystemClock{}; dates order ids
	Rand  io.Reader    // nil: crypto/rand; the random part of ids
}

// Role sets of the routes.
var (
	catalogWriters = []auth.Role{auth.RoleOrganizer, auth.RoleAdmin}
	readers        = []auth.Role{auth.RolePOS, auth.RoleOrganizer, auth.RoleAdmin}
	sellers        = []auth.Role{auth.RolePOS, auth.RoleOrganizer}
)

// Register adds the point-of-sale routes to s.
func Register(s *api.Server, d Deps) error {
	if d.Event == nil || d.Views == nil {
		return errors.New("posapi: Deps needs Event and Views")
	}
	rcpt, err := d.Event.Recipient()
	if err != nil {
		return fmt.Errorf("posapi: organizer recipient: %w", err)
	}
	if d.Clock == nil {
		d.Clock = ledger.SystemClock{}
	}
	if d.Rand == nil {
		d.Rand = rand.Reader
	}
	h := &handler{event: d.Event.Slug, currency: d.Event.Currency, recipient: rcpt, views: d.Views, clock: d.Clock, rand: d.Rand}
	h.registerCatalog(s)
	h.registerOrders(s)
	h.registerPayments(s)
	h.registerInventory(s)
	return nil
}

type handler struct {
	event     string
	currency  string
	recipient age.Recipient
	views     Views
	clock     ledger.Clock
	rand      io.Reader
	randMu    sync.Mutex
	locks     keylock.Map
}

// newID returns a time-ordered id: prefix, 12 hex digits of Unix
// milliseconds, "_", 8 random hex digits. The "_" keeps the two digit runs
// apart, so an id never looks like a card number to pos.LooksLikePAN.
func (h *handler) newID(prefix string) (string, error) {
	var b [4]byte
	h.randMu.Lock()
	_, err := io.ReadFull(h.rand, b[:])
	h.randMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("posapi: random id: %w", err)
	}
	ms := h.clock.Now().UnixMilli()
	if ms < 0 {
		ms = 0
	}
	return fmt.Sprintf("%s-%012x_%08x", prefix, ms&0xffffffffffff, binary.BigEndian.Uint32(b[:])), nil
}

// row reads one view row into v; found is false when it does not exist.
func (h *handler) row(ctx context.Context, view, key string, v any) (found bool, err error) {
	b, err := h.views.View(ctx, h.event, view, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s row: %w", view, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return false, fmt.Errorf("decode %s row %q: %w", view, key, err)
	}
	return true, nil
}

func (h *handler) vendor(ctx context.Context, id string) (*pos.VendorRow, error) {
	var v pos.VendorRow
	ok, err := h.row(ctx, pos.ViewVendors, id, &v)
	if err != nil || !ok {
		return nil, err
	}
	return &v, nil
}

func (h *handler) sku(ctx context.Context, sku string) (*pos.SKURow, error) {
	var v pos.SKURow
	ok, err := h.row(ctx, pos.ViewSKUs, sku, &v)
	if err != nil || !ok {
		return nil, err
	}
	return &v, nil
}

// order reads an order the device may see, or answers 404: an unknown id,
// an order known only from later facts (not yet created here), or another
// vendor's order for a device bound to a vendor.
func (h *handler) order(ctx context.Context, dev *auth.Device, id string) (*pos.Order, error) {
	notFound := api.NotFound("no order %q", id)
	if !pos.ValidID(id) {
		return nil, notFound
	}
	var o pos.Order
	ok, err := h.row(ctx, pos.ViewOrders, id, &o)
	if err != nil {
		return nil, err
	}
	if !ok || o.Created == nil || (dev.Vendor != "" && o.Vendor != dev.Vendor) {
		return nil, notFound
	}
	return &o, nil
}

// isManager reports whether the device is an organizer or admin, who have
// every permission.
func isManager(d *auth.Device) bool {
	return d.Role == auth.RoleOrganizer || d.Role == auth.RoleAdmin
}

// lockPath returns a MutationRoute.Lock that locks prefix + the path value.
func (h *handler) lockPath(prefix, name string) func(r *http.Request) (func(), error) {
	return func(r *http.Request) (func(), error) {
		return h.locks.Lock(r.Context(), prefix+r.PathValue(name))
	}
}

// refuseCardNumbers is every point-of-sale route's Screen: anything that
// looks like a payment card number in the path, the query, the
// Idempotency-Key or the body refuses the request before it is decoded,
// stored or logged. The value is never echoed.
func refuseCardNumbers(r *http.Request, body []byte) error {
	where := ""
	switch {
	case pos.LooksLikePAN(r.URL.Path) || pos.LooksLikePAN(r.URL.EscapedPath()):
		where = "path"
	case pos.LooksLikePAN(r.URL.RawQuery) || unescapedPAN(r.URL.RawQuery):
		where = "query string"
	case anyPAN(r.Header.Values("Idempotency-Key")):
		where = "Idempotency-Key header"
	case pos.LooksLikePAN(string(body)) || escapedPAN(body):
		where = "body"
	default:
		return nil
	}
	return api.NewProblem(api.TypeCardNumberRefused,
		"the request's %s contains what looks like a payment card number; card numbers are never accepted or stored — send the payment provider's reference instead", where)
}

func unescapedPAN(q string) bool {
	u, err := url.QueryUnescape(q)
	return err == nil && u != q && pos.LooksLikePAN(u)
}

func anyPAN(ss []string) bool {
	for _, s := range ss {
		if pos.LooksLikePAN(s) {
			return true
		}
	}
	return false
}

// escapedPAN catches digits written as JSON \u escapes: a body with escapes
// is decoded and every string in it checked.
func escapedPAN(body []byte) bool {
	if !bytes.Contains(body, []byte(`\u`)) {
		return false
	}
	var v any
	if json.Unmarshal(body, &v) != nil {
		return false
	}
	var walk func(any) bool
	walk = func(v any) bool {
		switch x := v.(type) {
		case string:
			return pos.LooksLikePAN(x)
		case []any:
			for _, e := range x {
				if walk(e) {
					return true
				}
			}
		case map[string]any:
			for k, e := range x {
				if pos.LooksLikePAN(k) || walk(e) {
					return true
				}
			}
		}
		return false
	}
	return walk(v)
}

// fieldErrors turns pos validation errors into the API's field errors.
func fieldErrors(err error, prefix string) error {
	var inv pos.Invalid
	if !errors.As(err, &inv) {
		return err
	}
	fe := make([]api.FieldError, len(inv))
	for i, f := range inv {
		fe[i] = api.FieldError{Pointer: prefix + f.Pointer, Detail: f.Detail}
	}
	return api.Invalid(fe...)
}

// decodeEntry decodes an entry body leniently (it also holds the
// idempotency members).
func decodeEntry(e *ledger.Entry, v any) error {
	if err := json.Unmarshal(e.Body, v); err != nil {
		return fmt.Errorf("%s entry %s/%d: %w", e.Kind, e.Node, e.Seq, err)
	}
	return nil
}

// receiptLink is where the receipt of an order is served.
func receiptLink(order string) string { return "/v1/receipts/" + order }

func unmarshalRow(row store.ViewRow, v any) error {
	if err := json.Unmarshal(row.Value, v); err != nil {
		return fmt.Errorf("decode %s row %q: %w", row.View, row.Key, err)
	}
	return nil
}

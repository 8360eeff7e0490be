package receipt

import (
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"strings"

	"canopy/api"
	"canopy/auth"
	"canopy/pos"
)

// Media types GET /v1/receipts/{id} can answer with, in order of
// preference when the client likes several equally.
var offers = []string{MediaType, "application/json", "text/plain", "text/html"}

// Register adds GET /v1/receipts/{id} to srv: the receipt of paid order id
// as a receipt document (MediaType, the default, or application/json), as
// text for a thermal printer (text/plain) or as a web page (text/html),
// chosen by the Accept header. A POS token bound to a vendor sees only that
// vendor's receipts. If no checkpoint covers the receipt entry yet, the
// route asks deps.Checkpointer to sign one first, so a receipt fetched right
// after payment carries its inclusion proof; if that fails the document is
// served with pending_checkpoint set.
func Register(srv *api.Server, deps Deps) {
	srv.Handle(api.Route{
		Pattern: "GET /v1/receipts/{id}",
		Roles:   []auth.Role{auth.RolePOS, auth.RoleOrganizer, auth.RoleAdmin},
		Handler: func(w http.ResponseWriter, r *http.Request) error { return serve(w, r, deps) },
	})
}

func serve(w http.ResponseWriter, r *http.Request, deps Deps) error {
	id := r.PathValue("id")
	if id == "" || len(id) > 256 {
		return api.NotFound("no paid order %q", id)
	}
	rc, err := Build(r.Context(), deps, id)
	if errors.Is(err, ErrNotFound) {
		return api.NotFound("no paid order %q: a receipt exists once the order is paid", id)
	}
	if err != nil {
		return err
	}
	rb := rc.Payment.Receipt
	if d := api.DeviceFrom(r.Context()); d != nil && d.Role == auth.RolePOS && d.Vendor != "" && d.Vendor != rb.Vendor {
		// Another vendor's receipt: answered as if it did not exist.
		return api.NotFound("no paid order %q", id)
	}
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Add("Vary", "Accept")
	var body []byte
	switch ct := negotiate(r.Header.Values("Accept")); ct {
	case "text/plain":
		body = Text(rc, presentation(r, deps, rb.Vendor))
		h.Set("Content-Type", "text/plain; charset=utf-8")
	case "text/html":
		body, err = HTML(rc, presentation(r, deps, rb.Vendor))
		if err != nil {
			return err
		}
		h.Set("Content-Type", "text/html; charset=utf-8")
		h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	default:
		body, err = rc.Document.Encode()
		if err != nil {
			return err
		}
		h.Set("Content-Type", ct)
		h.Set("Content-Disposition", `attachment; filename="receipt-`+safeName(id)+`.json"`)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(http.StatusOK)
	_, _ = w.Write(body)
	return nil
}

// presentation looks up the unsigned names a rendering shows.
func presentation(r *http.Request, deps Deps, vendor string) Presentation {
	p := Presentation{EventName: deps.Event.Name, Location: deps.Event.Location()}
	if b, err := deps.Store.View(r.Context(), deps.Event.Slug, pos.ViewVendors, vendor); err == nil {
		var row pos.VendorRow
		if json.Unmarshal(b, &row) == nil {
			p.VendorName = row.Name
		}
	}
	return p
}

// safeName keeps a file name to [A-Za-z0-9._-].
func safeName(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '.', r == '_', r == '-':
			return r
		}
		return '_'
	}, s)
}

// negotiate picks the offer the Accept header values prefer (RFC 9110
// §12.5.1): the highest quality, a more specific range deciding an offer's
// quality, ties going to the earlier offer. With no Accept header, or when
// nothing offered is acceptable, it answers the receipt document: the
// server may disregard Accept rather than answer 406.
func negotiate(accept []string) string {
	type rng struct {
		typ, sub string
		q        float64
	}
	var ranges []rng
	for _, v := range accept {
		for _, part := range strings.Split(v, ",") {
			params := strings.Split(part, ";")
			mt := strings.ToLower(strings.TrimSpace(params[0]))
			typ, sub, ok := strings.Cut(mt, "/")
			if !ok || typ == "" || sub == "" {
				continue
			}
			q := 1.0
			for _, p := range params[1:] {
				k, val, _ := strings.Cut(strings.TrimSpace(p), "=")
				if strings.EqualFold(strings.TrimSpace(k), "q") {
					f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
					if err != nil || f < 0 || f > 1 {
						f = 0
					}
					q = f
				}
			}
			ranges = append(ranges, rng{typ, sub, q})
		}
	}
	if len(ranges) == 0 {
		return MediaType
	}
	best, bestQ := MediaType, 0.0
	for _, offer := range offers {
		typ, sub, _ := strings.Cut(offer, "/")
		q, spec := 0.0, -1
		for _, r := range ranges {
			s := -1
			switch {
			case r.typ == typ && r.sub == sub:
				s = 2
			case r.typ == typ && r.sub == "*":
				s = 1
			case r.typ == "*" && r.sub == "*":
				s = 0
			}
			if s > spec {
				q, spec = r.q, s
			}
		}
		if q > bestQ {
			best, bestQ = offer, q
		}
	}
	return best
}

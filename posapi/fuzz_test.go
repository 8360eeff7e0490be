package posapi

import (
	"errors"
	"net/http/httptest"
	"strings"
	"testing"

	"canopy/api"
	"canopy/auth"
	"canopy/pos"
)

// FuzzCreateOrder runs the order request decoder, validator and pricing on
// arbitrary bodies: no panic, every refusal is a problem, and an accepted
// order's totals add up.
func FuzzCreateOrder(f *testing.F) {
	for _, s := range []string{
		`{"lines":[{"sku":"a","qty":1}]}`,
		`{"vendor":"v","lines":[{"sku":"a","qty":2,"unit_price":5},{"sku":"b","qty":1}],"discount":{"amount":3,"reason":"r"},"tip":7}`,
		`{"lines":[{"sku":"big","qty":100000}]}`,
		`{"lines":[{"sku":"a","qty":1}],"customer":{"name":"n","signature_png":"iVBORw0KGgo="}}`,
		`{"lines":[{"sku":"a","qty":-1}]}`, `{"lines":[`, `null`, ``, `{"lines":[{"sku":"x","qty":1}]} {}`,
	} {
		f.Add(s)
	}
	skus := map[string]*pos.SKURow{
		"a":   {SKU: pos.SKU{SKU: "a", Vendor: "v", Name: "A", Price: 450, TaxRate: 700, TaxInclusive: true, Active: true}},
		"b":   {SKU: pos.SKU{SKU: "b", Vendor: "v", Name: "B", Price: 1000, TaxRate: 1900, Active: true}},
		"big": {SKU: pos.SKU{SKU: "big", Vendor: "v", Name: "Big", Price: pos.MaxAmount, Active: true}},
		"w":   {SKU: pos.SKU{SKU: "w", Vendor: "w", Name: "W", Price: 1, Active: true}},
	}
	lk := lookup{
		vendor: func(id string) (*pos.VendorRow, error) {
			if id == "v" || id == "w" {
				return &pos.VendorRow{Vendor: pos.Vendor{ID: id, Name: id, Active: true}}, nil
			}
			return nil, nil
		},
		sku: func(s string) (*pos.SKURow, error) { return skus[s], nil },
	}
	dev := &auth.Device{Name: "till", Role: auth.RolePOS, Permissions: []string{auth.PermPriceOverride}}
	f.Fuzz(func(t *testing.T, body string) {
		r := httptest.NewRequest("POST", "/v1/orders", strings.NewReader(body))
		r.Header.Set("Content-Type", "application/json")
		var req CreateOrderRequest
		err := api.DecodeJSON(r, &req)
		if err == nil {
			err = ValidateOrder(&req)
		}
		if err == nil {
			var c pos.Created
			c, err = priceOrder(&req, dev, "EUR", lk)
			if err == nil {
				var items int64
				for _, l := range c.Lines {
					items += l.Amount
				}
				tot := c.Totals
				if items != tot.Items || tot.Total != tot.Items-tot.Discount+tot.Tip || tot.Total < 0 || tot.Total > pos.MaxAmount || len(c.Lines) != len(req.Lines) {
					t.Fatalf("totals do not add up: %+v", c)
				}
			}
		}
		var p *api.Problem
		if err != nil && !errors.As(err, &p) {
			t.Fatalf("refusal is not a problem: %v", err)
		}
		if p != nil && (p.Status < 400 || p.Status >= 500) {
			t.Fatalf("refusal with status %d: %v", p.Status, p)
		}
	})
}

package posapi

import (
	"net/http"
	"net/url"
	"slices"

	"canopy/api"
	"canopy/ledger"
	"canopy/pos"
)

// VendorRequest is the body of PUT /v1/vendors/{id}.
type VendorRequest struct {
	Name   string `json:"name"`
	Active *bool  `json:"active"`
}

// SKURequest is the body of PUT /v1/catalog/{sku}.
type SKURequest struct {
	Vendor       string `json:"vendor"`
	Name         string `json:"name"`
	Price        int64  `json:"price"`
	TaxRate      int    `json:"tax_rate"`
	TaxInclusive bool   `json:"tax_inclusive"`
	TrackStock   bool   `json:"track_stock"`
	Active       *bool  `json:"active"`
}

// VendorResponse answers PUT /v1/vendors/{id}.
type VendorResponse struct {
	Vendor pos.Vendor `json:"vendor"`
}

// SKUResponse answers PUT /v1/catalog/{sku}.
type SKUResponse struct {
	SKU pos.SKU `json:"sku"`
}

// VendorList answers GET /v1/vendors.
type VendorList struct {
	Vendors []pos.Vendor `json:"vendors"`
}

// Catalog answers GET /v1/catalog.
type Catalog struct {
	SKUs []pos.SKU `json:"skus"`
}

func (h *handler) registerCatalog(s *api.Server) {
	api.HandleMutation(s, api.MutationRoute[VendorRequest]{
		Pattern: "PUT /v1/vendors/{id}",
		Roles:   catalogWriters,
		Screen:  refuseCardNumbers,
		Prepare: func(r *http.Request, req *VendorRequest) (api.Mutation, error) {
			v := pos.Vendor{ID: r.PathValue("id"), Name: req.Name}
			if req.Active != nil {
				v.Active = *req.Active
			}
			if !pos.ValidID(v.ID) {
				return api.Mutation{}, api.NewProblem(api.TypeValidationFailed, "the vendor id in the path must be 1 to 64 of A-Z a-z 0-9 . _ -")
			}
			if err := v.Validate(); err != nil {
				return api.Mutation{}, fieldErrors(err, "")
			}
			if req.Active == nil {
				return api.Mutation{}, api.Invalid(api.FieldError{Pointer: "/active", Detail: "is required (true or false)"})
			}
			return api.Mutation{Kind: pos.KindVendorSet, Key: "vendor:" + v.ID, Body: v}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			var v pos.Vendor
			if err := decodeEntry(e, &v); err != nil {
				return 0, nil, err
			}
			return http.StatusOK, VendorResponse{Vendor: v}, nil
		},
	})
	s.Handle(api.Route{Pattern: "GET /v1/vendors", Roles: readers, Screen: refuseCardNumbers,
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			if err := onlyParams(r.URL.Query()); err != nil {
				return err
			}
			rows, err := h.views.ViewRows(r.Context(), h.event, pos.ViewVendors)
			if err != nil {
				return err
			}
			out := VendorList{Vendors: []pos.Vendor{}}
			for _, row := range rows {
				var v pos.VendorRow
				if err := unmarshalRow(row, &v); err != nil {
					return err
				}
				out.Vendors = append(out.Vendors, v.Vendor)
			}
			return api.WriteJSON(w, http.StatusOK, out)
		}})

	api.HandleMutation(s, api.MutationRoute[SKURequest]{
		Pattern: "PUT /v1/catalog/{sku}",
		Roles:   catalogWriters,
		Screen:  refuseCardNumbers,
		Prepare: func(r *http.Request, req *SKURequest) (api.Mutation, error) {
			x := pos.SKU{SKU: r.PathValue("sku"), Vendor: req.Vendor, Name: req.Name, Price: req.Price,
				TaxRate: req.TaxRate, TaxInclusive: req.TaxInclusive, TrackStock: req.TrackStock}
			if req.Active != nil {
				x.Active = *req.Active
			}
			if !pos.ValidID(x.SKU) {
				return api.Mutation{}, api.NewProblem(api.TypeValidationFailed, "the SKU in the path must be 1 to 64 of A-Z a-z 0-9 . _ -")
			}
			if err := x.Validate(); err != nil {
				return api.Mutation{}, fieldErrors(err, "")
			}
			if req.Active == nil {
				return api.Mutation{}, api.Invalid(api.FieldError{Pointer: "/active", Detail: "is required (true or false)"})
			}
			v, err := h.vendor(r.Context(), x.Vendor)
			if err != nil {
				return api.Mutation{}, err
			}
			if v == nil {
				p := api.NewProblem(api.TypeUnknownVendor, "/vendor: there is no vendor %q; create it with PUT /v1/vendors/{id} first", x.Vendor)
				p.Errors = []api.FieldError{{Pointer: "/vendor", Detail: "unknown vendor"}}
				return api.Mutation{}, p
			}
			return api.Mutation{Kind: pos.KindSKUSet, Key: "sku:" + x.SKU, Body: x}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			var x pos.SKU
			if err := decodeEntry(e, &x); err != nil {
				return 0, nil, err
			}
			return http.StatusOK, SKUResponse{SKU: x}, nil
		},
	})
	s.Handle(api.Route{Pattern: "GET /v1/catalog", Roles: readers, Screen: refuseCardNumbers,
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			q := r.URL.Query()
			if err := onlyParams(q, "vendor"); err != nil {
				return err
			}
			var pv paramValidation
			vendor := pv.id(q, "vendor")
			if err := pv.err(); err != nil {
				return err
			}
			dev := api.DeviceFrom(r.Context())
			rows, err := h.views.ViewRows(r.Context(), h.event, pos.ViewSKUs)
			if err != nil {
				return err
			}
			out := Catalog{SKUs: []pos.SKU{}}
			for _, row := range rows {
				var x pos.SKURow
				if err := unmarshalRow(row, &x); err != nil {
					return err
				}
				if (vendor != "" && x.Vendor != vendor) || (dev.Vendor != "" && x.Vendor != dev.Vendor) {
					continue
				}
				out.SKUs = append(out.SKUs, x.SKU)
			}
			return api.WriteJSON(w, http.StatusOK, out)
		}})
}

// paramValidation collects query parameter errors.
type paramValidation struct {
	errs []api.FieldError
}

func (p *paramValidation) add(name, detail string) {
	p.errs = append(p.errs, api.FieldError{Parameter: name, Detail: detail})
}

func (p *paramValidation) err() error {
	if len(p.errs) == 0 {
		return nil
	}
	pr := api.NewProblem(api.TypeInvalidParameter, "parameter %s: %s", p.errs[0].Parameter, p.errs[0].Detail)
	pr.Errors = p.errs
	return pr
}

// id returns the parameter's single value, checked as a vendor id / SKU /
// order id ("" if absent).
func (p *paramValidation) id(q url.Values, name string) string {
	v := p.single(q, name)
	if v != "" && !pos.ValidID(v) {
		p.add(name, "must be 1 to 64 of A-Z a-z 0-9 . _ -")
		return ""
	}
	return v
}

func (p *paramValidation) single(q url.Values, name string) string {
	vs, ok := q[name]
	switch {
	case !ok:
		return ""
	case len(vs) > 1:
		p.add(name, "must be given at most once")
		return ""
	case vs[0] == "":
		p.add(name, "must not be empty")
	}
	return vs[0]
}

// onlyParams refuses query parameters other than the allowed ones.
func onlyParams(q url.Values, allowed ...string) error {
	var p paramValidation
	for k := range q {
		if !slices.Contains(allowed, k) {
			p.add(k, "is not a parameter of this route")
		}
	}
	slices.SortFunc(p.errs, func(a, b api.FieldError) int {
		if a.Parameter < b.Parameter {
			return -1
		}
		return 1
	})
	return p.err()
}

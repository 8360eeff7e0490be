package posapi

import (
	"context"
	"net/http"

	"canopy/api"
	"canopy/ledger"
	"canopy/pos"
)

// MaxStock bounds a stock count or adjustment.
const MaxStock = 1_000_000_000

// StockSetRequest is the body of PUT /v1/inventory/{sku}.
type StockSetRequest struct {
	OnHand *int64 `json:"on_hand"`
	Reason string `json:"reason,omitempty"`
}

// StockAdjustRequest is the body of POST /v1/inventory/{sku}/adjustments.
type StockAdjustRequest struct {
	Delta  int64  `json:"delta"`
	Reason string `json:"reason"`
}

// StockAdjustment answers a stock change: the adjustment as recorded.
type StockAdjustment struct {
	SKU    string `json:"sku"`
	Delta  int64  `json:"delta"`
	SetTo  *int64 `json:"set_to,omitempty"`
	Reason string `json:"reason,omitempty"`
	Device string `json:"device"`
}

// StockItem is one SKU's stock in GET /v1/inventory.
type StockItem struct {
	SKU        string `json:"sku"`
	Vendor     string `json:"vendor,omitempty"`
	Name       string `json:"name,omitempty"`
	TrackStock bool   `json:"track_stock"`
	OnHand     int64  `json:"on_hand"`
	Adjusted   int64  `json:"adjusted"`
	Sold       int64  `json:"sold"`
	// Oversold: stock went below zero (sales accepted while it was short).
	Oversold bool `json:"oversold"`
}

// Inventory answers GET /v1/inventory.
type Inventory struct {
	Items []StockItem `json:"items"`
}

func (h *handler) registerInventory(s *api.Server) {
	lockSKU := h.lockPath("sku:", "sku")
	render := func(e *ledger.Entry) (int, any, error) {
		var a pos.StockAdjusted
		if err := decodeEntry(e, &a); err != nil {
			return 0, nil, err
		}
		return http.StatusOK, StockAdjustment(a), nil
	}

	s.Handle(api.Route{Pattern: "GET /v1/inventory", Roles: readers, Screen: refuseCardNumbers,
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
			inv, err := h.inventory(r.Context())
			if err != nil {
				return err
			}
			dev := api.DeviceFrom(r.Context())
			out := Inventory{Items: []StockItem{}}
			for _, it := range inv {
				if (vendor != "" && it.Vendor != vendor) || (dev.Vendor != "" && it.Vendor != dev.Vendor) {
					continue
				}
				out.Items = append(out.Items, it)
			}
			return api.WriteJSON(w, http.StatusOK, out)
		}})

	api.HandleMutation(s, api.MutationRoute[StockSetRequest]{
		Pattern: "PUT /v1/inventory/{sku}",
		Roles:   catalogWriters,
		Screen:  refuseCardNumbers,
		Lock:    lockSKU,
		Prepare: func(r *http.Request, req *StockSetRequest) (api.Mutation, error) {
			var v api.Validation
			if req.OnHand == nil {
				v.Field("/on_hand", "is required")
			} else if *req.OnHand < 0 || *req.OnHand > MaxStock {
				v.Field("/on_hand", "must be 0..%d, got %d", MaxStock, *req.OnHand)
			}
			checkText(&v, "/reason", req.Reason, MaxReasonLen, false)
			if err := v.Err(); err != nil {
				return api.Mutation{}, err
			}
			sku := r.PathValue("sku")
			if err := h.knownSKU(r.Context(), sku); err != nil {
				return api.Mutation{}, err
			}
			var st pos.Stock
			if _, err := h.row(r.Context(), pos.ViewStock, sku, &st); err != nil {
				return api.Mutation{}, err
			}
			to := *req.OnHand
			return api.Mutation{Kind: pos.KindStockAdjusted, Key: "sku:" + sku, Body: pos.StockAdjusted{
				SKU: sku, Delta: to - st.OnHand, SetTo: &to, Reason: req.Reason, Device: api.DeviceFrom(r.Context()).Name,
			}}, nil
		},
		Render: render,
	})

	api.HandleMutation(s, api.MutationRoute[StockAdjustRequest]{
		Pattern: "POST /v1/inventory/{sku}/adjustments",
		Roles:   readers,
		Screen:  refuseCardNumbers,
		Lock:    lockSKU,
		Prepare: func(r *http.Request, req *StockAdjustRequest) (api.Mutation, error) {
			var v api.Validation
			if req.Delta == 0 || req.Delta < -MaxStock || req.Delta > MaxStock {
				v.Field("/delta", "must be a non-zero count in -%d..%d", MaxStock, MaxStock)
			}
			checkText(&v, "/reason", req.Reason, MaxReasonLen, true)
			if err := v.Err(); err != nil {
				return api.Mutation{}, err
			}
			sku := r.PathValue("sku")
			if err := h.knownSKU(r.Context(), sku); err != nil {
				return api.Mutation{}, err
			}
			return api.Mutation{Kind: pos.KindStockAdjusted, Key: "sku:" + sku, Body: pos.StockAdjusted{
				SKU: sku, Delta: req.Delta, Reason: req.Reason, Device: api.DeviceFrom(r.Context()).Name,
			}}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			status, body, err := render(e)
			if err == nil {
				status = http.StatusCreated
			}
			return status, body, err
		},
	})
}

// knownSKU answers 404 unless the SKU is in the catalog.
func (h *handler) knownSKU(ctx context.Context, sku string) error {
	if !pos.ValidID(sku) {
		return api.NotFound("no SKU %q in the catalog", sku)
	}
	row, err := h.sku(ctx, sku)
	if err != nil {
		return err
	}
	if row == nil {
		return api.NotFound("no SKU %q in the catalog", sku)
	}
	return nil
}

// inventory joins the stock view with the catalog: every SKU that tracks
// stock or has stock facts, by SKU.
func (h *handler) inventory(ctx context.Context) ([]StockItem, error) {
	skuRows, err := h.views.ViewRows(ctx, h.event, pos.ViewSKUs)
	if err != nil {
		return nil, err
	}
	stockRows, err := h.views.ViewRows(ctx, h.event, pos.ViewStock)
	if err != nil {
		return nil, err
	}
	stock := map[string]pos.Stock{}
	for _, row := range stockRows {
		var st pos.Stock
		if err := unmarshalRow(row, &st); err != nil {
			return nil, err
		}
		stock[row.Key] = st
	}
	var out []StockItem
	seen := map[string]bool{}
	for _, row := range skuRows {
		var x pos.SKURow
		if err := unmarshalRow(row, &x); err != nil {
			return nil, err
		}
		st, has := stock[x.SKU.SKU]
		if !x.TrackStock && !has {
			continue
		}
		seen[x.SKU.SKU] = true
		out = append(out, StockItem{SKU: x.SKU.SKU, Vendor: x.Vendor, Name: x.Name, TrackStock: x.TrackStock,
			OnHand: st.OnHand, Adjusted: st.Adjusted, Sold: st.Sold, Oversold: x.TrackStock && st.Oversold})
	}
	for _, row := range stockRows {
		if !seen[row.Key] {
			st := stock[row.Key]
			out = append(out, StockItem{SKU: st.SKU, OnHand: st.OnHand, Adjusted: st.Adjusted, Sold: st.Sold})
		}
	}
	return out, nil
}

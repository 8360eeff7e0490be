package posapi

import (
	"net/http"

	"canopy/api"
	"canopy/ledger"
	"canopy/pos"
)

// MaxReferenceLen bounds a payment's provider reference, in characters.
const MaxReferenceLen = 200

// PaymentRequest is the body of POST /v1/orders/{id}/payments. For cash,
// Amount is what was tendered; for other methods, what is charged.
type PaymentRequest struct {
	Method    string `json:"method"`
	Amount    int64  `json:"amount"`
	Reference string `json:"reference,omitempty"`
}

// PaymentResponse answers a payment: the payment as recorded, the state
// it leaves the order in (paid or open) and, once paid, the receipt link.
type PaymentResponse struct {
	Order   string    `json:"order"`
	Payment pos.Paid  `json:"payment"`
	State   pos.State `json:"state"`
	Receipt string    `json:"receipt,omitempty"`
}

// FulfilmentRequest is the body of POST /v1/orders/{id}/fulfilment.
type FulfilmentRequest struct {
	State pos.State `json:"state"`
}

// FulfilmentResponse answers a move.
type FulfilmentResponse struct {
	Order   string        `json:"order"`
	State   pos.State     `json:"state"`
	Restock []pos.Restock `json:"restock,omitempty"`
}

// RefundRequest is the body of POST /v1/orders/{id}/refunds.
type RefundRequest struct {
	Amount int64  `json:"amount"`
	Method string `json:"method"`
	Reason string `json:"reason"`
}

// RefundResponse answers a refund.
type RefundResponse struct {
	Order  string `json:"order"`
	Refund Refund `json:"refund"`
}

func (h *handler) registerPayments(s *api.Server) {
	lockOrder := h.lockPath("order:", "id")

	api.HandleMutation(s, api.MutationRoute[PaymentRequest]{
		Pattern: "POST /v1/orders/{id}/payments",
		Roles:   sellers,
		Screen:  refuseCardNumbers,
		Lock:    lockOrder,
		Prepare: func(r *http.Request, req *PaymentRequest) (api.Mutation, error) {
			var v api.Validation
			if !pos.ValidMethod(req.Method) {
				v.Field("/method", "must be one of cash, card, wallet, other")
			}
			if req.Amount < 1 || req.Amount > pos.MaxAmount {
				v.Field("/amount", "must be 1..%d minor units, got %d", int64(pos.MaxAmount), req.Amount)
			}
			checkText(&v, "/reference", req.Reference, MaxReferenceLen, false)
			if err := v.Err(); err != nil {
				return api.Mutation{}, err
			}
			dev := api.DeviceFrom(r.Context())
			o, err := h.order(r.Context(), dev, r.PathValue("id"))
			if err != nil {
				return api.Mutation{}, err
			}
			if o.State != pos.StateOpen {
				p := api.NewProblem(api.TypeOrderState, "order %s is %s; payments are taken only while it is open", o.ID, o.State)
				p.Extensions = map[string]any{"state": o.State}
				return api.Mutation{}, p
			}
			owed := o.Totals.Total - o.Paid
			settle := req.Amount
			if req.Method == pos.MethodCash {
				settle = min(req.Amount, owed)
			} else if req.Amount > owed {
				p := api.NewProblem(api.TypeOverpayment, "a %s payment of %d is above the %d still owed on order %s; only cash may exceed it", req.Method, req.Amount, owed, o.ID)
				p.Extensions = map[string]any{"owed": owed}
				return api.Mutation{}, p
			}
			id, err := h.newID("p")
			if err != nil {
				return api.Mutation{}, err
			}
			pay := pos.PaymentBody{Order: o.ID, ID: id, Method: req.Method, Amount: settle, Tendered: req.Amount,
				Change: req.Amount - settle, Reference: req.Reference, Device: dev.Name}
			if o.Paid+settle >= o.Totals.Total {
				rb := &pos.ReceiptBody{Order: o.ID, Vendor: o.Vendor, Currency: o.Currency, Lines: o.Lines,
					Discount: o.Discount, Totals: o.Totals}
				for _, p := range o.Payments {
					if p.Accepted {
						rb.Payments = append(rb.Payments, paidOf(p.PaymentBody))
					}
				}
				rb.Payments = append(rb.Payments, paidOf(pay))
				pay.Receipt = rb
			}
			return api.Mutation{Kind: pos.KindPaymentRecorded, Key: pos.OrderKey(o.ID), Body: pay}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			var p pos.PaymentBody
			if err := decodeEntry(e, &p); err != nil {
				return 0, nil, err
			}
			out := PaymentResponse{Order: p.Order, Payment: paidOf(p), State: pos.StateOpen}
			if p.Receipt != nil {
				out.State, out.Receipt = pos.StatePaid, receiptLink(p.Order)
			}
			return http.StatusCreated, out, nil
		},
	})

	api.HandleMutation(s, api.MutationRoute[FulfilmentRequest]{
		Pattern: "POST /v1/orders/{id}/fulfilment",
		Roles:   sellers,
		Screen:  refuseCardNumbers,
		Lock:    lockOrder,
		Prepare: func(r *http.Request, req *FulfilmentRequest) (api.Mutation, error) {
			switch req.State {
			case pos.StateReady, pos.StateFulfilled, pos.StateCancelled:
			default:
				return api.Mutation{}, api.Invalid(api.FieldError{Pointer: "/state", Detail: "must be one of ready, fulfilled, cancelled"})
			}
			dev := api.DeviceFrom(r.Context())
			o, err := h.order(r.Context(), dev, r.PathValue("id"))
			if err != nil {
				return api.Mutation{}, err
			}
			if !pos.CanMove(o.State, req.State) {
				p := api.NewProblem(api.TypeIllegalTransition, "order %s cannot move from %s to %s", o.ID, o.State, req.State)
				p.Extensions = map[string]any{"from": o.State, "to": req.State}
				return api.Mutation{}, p
			}
			m := pos.MoveBody{Order: o.ID, To: req.State, Device: dev.Name}
			if req.State == pos.StateCancelled {
				for _, l := range o.Lines {
					row, err := h.sku(r.Context(), l.SKU)
					if err != nil {
						return api.Mutation{}, err
					}
					if row != nil && row.TrackStock {
						m.Restock = append(m.Restock, pos.Restock{SKU: l.SKU, Qty: l.Qty})
					}
				}
			}
			return api.Mutation{Kind: pos.KindOrderMoved, Key: pos.OrderKey(o.ID), Body: m}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			var m pos.MoveBody
			if err := decodeEntry(e, &m); err != nil {
				return 0, nil, err
			}
			return http.StatusOK, FulfilmentResponse{Order: m.Order, State: m.To, Restock: m.Restock}, nil
		},
	})

	api.HandleMutation(s, api.MutationRoute[RefundRequest]{
		Pattern: "POST /v1/orders/{id}/refunds",
		Roles:   sellers,
		Screen:  refuseCardNumbers,
		Lock:    lockOrder,
		Prepare: func(r *http.Request, req *RefundRequest) (api.Mutation, error) {
			var v api.Validation
			if req.Amount < 1 || req.Amount > pos.MaxAmount {
				v.Field("/amount", "must be 1..%d minor units, got %d", int64(pos.MaxAmount), req.Amount)
			}
			if !pos.ValidMethod(req.Method) {
				v.Field("/method", "must be one of cash, card, wallet, other")
			}
			checkText(&v, "/reason", req.Reason, MaxReasonLen, true)
			if err := v.Err(); err != nil {
				return api.Mutation{}, err
			}
			dev := api.DeviceFrom(r.Context())
			o, err := h.order(r.Context(), dev, r.PathValue("id"))
			if err != nil {
				return api.Mutation{}, err
			}
			switch o.State {
			case pos.StatePaid, pos.StateReady, pos.StateFulfilled:
			default:
				p := api.NewProblem(api.TypeOrderState, "order %s is %s; refunds are possible once it is paid, ready or fulfilled", o.ID, o.State)
				p.Extensions = map[string]any{"state": o.State}
				return api.Mutation{}, p
			}
			if req.Amount > o.Refundable() {
				p := api.NewProblem(api.TypeRefundAbovePaid, "a refund of %d is above the %d that may still be refunded on order %s (paid %d, refunded %d)", req.Amount, o.Refundable(), o.ID, o.Paid, o.Refunded)
				p.Extensions = map[string]any{"refundable": o.Refundable()}
				return api.Mutation{}, p
			}
			id, err := h.newID("r")
			if err != nil {
				return api.Mutation{}, err
			}
			return api.Mutation{Kind: pos.KindRefundRecorded, Key: pos.OrderKey(o.ID), Body: pos.RefundBody{
				Order: o.ID, ID: id, Amount: req.Amount, Method: req.Method, Reason: req.Reason, Device: dev.Name,
			}}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			var b pos.RefundBody
			if err := decodeEntry(e, &b); err != nil {
				return 0, nil, err
			}
			return http.StatusCreated, RefundResponse{Order: b.Order, Refund: Refund{ID: b.ID, Amount: b.Amount, Method: b.Method, Reason: b.Reason}}, nil
		},
	})
}

package simulate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"time"

	"canopy/pos"
	"canopy/posapi"
)

// payStep is one payment of a sale: what the customer hands over and what
// the till expects the edge to settle and give back.
type payStep struct {
	method string
	tender int64 // the request's amount
	settle int64 // what it pays of the order
	change int64
}

// payPlan splits the n-th sale's total over payments, cycling through the
// ways customers pay: card; cash and card; cash with change; card and cash
// with change.
func payPlan(n int, total int64) []payStep {
	card := func(a int64) payStep { return payStep{method: pos.MethodCard, tender: a, settle: a} }
	cash := func(owed, tender int64) payStep {
		return payStep{method: pos.MethodCash, tender: tender, settle: min(owed, tender), change: max(tender-owed, 0)}
	}
	// above rounds up to the next multiple of unit strictly above a.
	above := func(a, unit int64) int64 { return (a/unit + 1) * unit }
	switch n % 4 {
	case 1:
		part := total / 2 / 100 * 100
		if part == 0 {
			return []payStep{card(total)}
		}
		return []payStep{cash(total, part), card(total - part)}
	case 2:
		return []payStep{cash(total, above(total, 500))}
	case 3:
		part := total / 2
		if part == 0 {
			return []payStep{cash(total, above(total, 1000))}
		}
		return []payStep{card(part), cash(total-part, above(total-part, 1000))}
	}
	return []payStep{card(total)}
}

// playTill sells from the vendor's catalog at the till's rate until ctx
// ends; a sale started is finished.
func (s *Sim) playTill(ctx context.Context, vi, ti int, dev uint64) {
	v := &s.vendors[vi]
	t := &v.tills[ti]
	rng := s.rng(dev)
	tick := pace(t.rate)
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.sale(ctx, v, t, rng, n)
	}
}

// sale is one customer at a till: order, payments, sometimes the receipt,
// fulfilment and a refund.
func (s *Sim) sale(ctx context.Context, v *vendor, t *till, rng *rand.Rand, n int) {
	pc := func(method, path, step string, body any) call {
		c := call{device: t.name, token: t.token, edge: v.edge, method: method, path: path, body: body}
		if method == http.MethodPost {
			c.idem = s.idem(t.name, n, step)
		}
		return c
	}
	var lines []posapi.LineRequest
	var want int64
	for _, i := range rng.Perm(len(v.skus))[:1+rng.IntN(len(v.skus))] {
		it := v.skus[i]
		q := int64(1 + rng.IntN(3))
		lines = append(lines, posapi.LineRequest{SKU: it.sku, Qty: q})
		want += it.price * q
	}
	var created posapi.OrderCreated
	c := pc(http.MethodPost, "/v1/orders", "order", posapi.CreateOrderRequest{Lines: lines})
	if !s.expect(ctx, c, http.StatusCreated, &created) {
		return
	}
	s.stats.order(time.Now())
	o := created.Order
	if o.Vendor != v.id || o.State != pos.StateOpen || o.Totals.Total != want || o.Device != t.name {
		s.mismatch(c, "order %s: vendor %q state %s total %d device %q, want %q open %d %q", o.ID, o.Vendor, o.State, o.Totals.Total, o.Device, v.id, want, t.name)
		return
	}
	orderPath := "/v1/orders/" + o.ID
	plan := payPlan(n, o.Totals.Total)
	for i, p := range plan {
		var pr posapi.PaymentResponse
		c := pc(http.MethodPost, orderPath+"/payments", fmt.Sprintf("pay%d", i+1),
			posapi.PaymentRequest{Method: p.method, Amount: p.tender, Reference: fmt.Sprintf("%s-%s-%d-%d", p.method, t.name, n, i+1)})
		if !s.expect(ctx, c, http.StatusCreated, &pr) {
			return
		}
		wantState := pos.StateOpen
		if i == len(plan)-1 {
			wantState = pos.StatePaid
		}
		s.stats.update(func(sum *Summary) {
			sum.Payments++
			sum.Settled += pr.Payment.Amount
			sum.Change += pr.Payment.Change
		})
		if pr.State != wantState || pr.Payment.Amount != p.settle || pr.Payment.Change != p.change || (wantState == pos.StatePaid) != (pr.Receipt != "") {
			s.mismatch(c, "payment %d of %s: state %s settled %d change %d receipt %q, want %s %d %d", i+1, o.ID, pr.State, pr.Payment.Amount, pr.Payment.Change, pr.Receipt, wantState, p.settle, p.change)
			return
		}
	}
	s.stats.update(func(sum *Summary) {
		sum.Receipts++
		if len(plan) > 1 {
			sum.SplitPayments++
		}
	})
	if n%5 == 0 {
		c := call{device: t.name, token: t.token, edge: v.edge, method: http.MethodGet, path: "/v1/receipts/" + o.ID}
		var doc struct {
			Payment struct {
				Receipt struct {
					Order string `json:"order"`
				} `json:"receipt"`
			} `json:"payment"`
		}
		if s.expect(ctx, c, http.StatusOK, &doc) {
			s.stats.update(func(sum *Summary) { sum.ReceiptsFetched++ })
		}
	}
	state := pos.StatePaid
	move := func(to pos.State) bool {
		var fr posapi.FulfilmentResponse
		c := pc(http.MethodPost, orderPath+"/fulfilment", string(to), posapi.FulfilmentRequest{State: to})
		if !s.expect(ctx, c, http.StatusOK, &fr) {
			return false
		}
		if fr.State != to {
			s.mismatch(c, "order %s moved to %s, want %s", o.ID, fr.State, to)
			return false
		}
		state = to
		return true
	}
	switch n % 3 {
	case 0:
		if !move(pos.StateReady) || !move(pos.StateFulfilled) {
			return
		}
	case 2:
		if !move(pos.StateFulfilled) {
			return
		}
	}
	if state == pos.StateFulfilled {
		s.stats.update(func(sum *Summary) { sum.Fulfilled++ })
	}
	var refund int64
	method := pos.MethodCard
	switch {
	case n%7 == 3:
		refund = o.Totals.Total
	case n%11 == 5:
		refund, method = max(o.Totals.Total/3, 1), pos.MethodCash
	default:
		return
	}
	var rr posapi.RefundResponse
	c = pc(http.MethodPost, orderPath+"/refunds", "refund", posapi.RefundRequest{Amount: refund, Method: method, Reason: "customer changed their mind"})
	if !s.expect(ctx, c, http.StatusCreated, &rr) {
		return
	}
	s.stats.update(func(sum *Summary) {
		sum.Refunds++
		sum.Refunded += rr.Refund.Amount
	})
	if rr.Refund.Amount != refund || rr.Order != o.ID {
		s.mismatch(c, "refund of %s: %d on %s, want %d", o.ID, rr.Refund.Amount, rr.Order, refund)
	}
}

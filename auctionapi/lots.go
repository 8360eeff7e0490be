package auctionapi

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"canopy/api"
	"canopy/auction"
	"canopy/ledger"
)

// bidBody is what a bid.placed entry carries: the bid, and what the home
// edge saw when it accepted it (the close before the bid and the lot's
// terms), so the response and the stream follow from the entry alone.
type bidBody struct {
	auction.Bid
	Judged judged `json:"judged"`
}

type judged struct {
	ClosesAt    int64 `json:"closes_at"` // Unix ms, before this bid
	Increment   int64 `json:"increment"`
	SoftCloseMs int64 `json:"soft_close_ms,omitempty"`
	ExtendMs    int64 `json:"extend_ms,omitempty"`
	// Home is the lot's home edge, on an intent (recorded elsewhere).
	Home string `json:"home,omitempty"`
}

// closedBody is what a lot.closed entry carries: the close and the result
// as the home edge saw it.
type closedBody struct {
	auction.Closed
	Sold   bool   `json:"sold"`
	Winner string `json:"winner,omitempty"`
	Price  int64  `json:"price,omitempty"`
}

// BidResponse answers an accepted bid.
type BidResponse struct {
	Accepted   bool   `json:"accepted"`
	Reason     string `json:"reason,omitempty"`
	Lot        string `json:"lot"`
	Bid        string `json:"bid"`
	Paddle     string `json:"paddle"`
	Amount     int64  `json:"amount"`
	High       int64  `json:"high"`
	Minimum    int64  `json:"minimum"`
	ClosesAt   string `json:"closes_at"`
	ClosesAtMs int64  `json:"closes_at_ms"`
	Extended   bool   `json:"extended"`
}

// CloseResponse answers a close: the winner and price, or sold false.
type CloseResponse struct {
	Lot    string  `json:"lot"`
	Closed bool    `json:"closed"`
	Sold   bool    `json:"sold"`
	Winner *string `json:"winner"`
	Price  *int64  `json:"price"`
}

func (h *handler) prepareOpen(r *http.Request, req *LotRequest) (api.Mutation, error) {
	spec, err := validateLot(req, h.deps.Clock.Now())
	if err != nil {
		return api.Mutation{}, err
	}
	if spec.id == "" {
		if spec.id, err = h.newID("lot"); err != nil {
			return api.Mutation{}, err
		}
	} else if _, err := h.row(r.Context(), spec.id); err == nil {
		p := api.Conflict("a lot with id %q is already open on this node; choose another id or leave it out", spec.id)
		p.Extensions = map[string]any{"lot": spec.id}
		return api.Mutation{}, p
	} else if p, ok := err.(*api.Problem); !ok || p.Status != http.StatusNotFound {
		return api.Mutation{}, err
	}
	lot := auction.Lot{
		ID: spec.id, Title: spec.title, Currency: h.deps.Event.Currency,
		StartPrice: spec.start, Increment: spec.increment, ClosesAt: spec.closesAt,
		SoftCloseMs: spec.softCloseMs, ExtendMs: spec.extendMs,
		Home: h.deps.Node.String(), Device: api.DeviceFrom(r.Context()).Name,
	}
	return api.Mutation{Kind: auction.KindOpened, Key: auction.LotKey(lot.ID), Body: lot}, nil
}

func (h *handler) renderOpen(e *ledger.Entry) (int, any, error) {
	var l auction.Lot
	if err := json.Unmarshal(e.Body, &l); err != nil {
		return 0, nil, fmt.Errorf("lot entry %d: %w", e.Seq, err)
	}
	row := auction.Row{ID: l.ID, Lot: &l, ClosesAt: l.ClosesAt, Opened: &auction.Fact{Entry: e.Ref(), HLC: e.HLC}}
	// Opened here and now: not closed unless it closes at once.
	return http.StatusCreated, h.view(&row, e.HLC.Wall), nil
}

func (h *handler) prepareBid(r *http.Request, req *BidRequest) (api.Mutation, error) {
	paddle, err := ValidateBid(req, api.DeviceFrom(r.Context()))
	if err != nil {
		return api.Mutation{}, err
	}
	id := r.PathValue("id")
	st, err := h.judgeRow(r.Context(), id)
	if err != nil {
		return api.Mutation{}, err
	}
	row := &st.row
	now := h.nowMs()
	if ok, reason := row.Judge(*req.Amount, now); !ok {
		return api.Mutation{}, h.refusal(row, reason, *req.Amount, now)
	}
	bid := auction.Bid{Lot: id, ID: req.id, Paddle: paddle, Amount: *req.Amount, Device: api.DeviceFrom(r.Context()).Name}
	if from, ok := r.Context().Value(forwardedKey{}).(ledger.NodeID); ok {
		// Forwarded: keep the forwarding node's bid ID, if it sent one.
		if fid, ok := r.Context().Value(forwardedBidKey{}).(string); ok {
			bid.ID, bid.Via = fid, from.String()
		}
	}
	if bid.ID == "" {
		if bid.ID, err = h.newID("bid"); err != nil {
			return api.Mutation{}, err
		}
	}
	b := bidBody{
		Bid: bid,
		Judged: judged{ClosesAt: row.ClosesAt, Increment: row.Lot.Increment,
			SoftCloseMs: row.Lot.SoftCloseMs, ExtendMs: row.Lot.ExtendMs},
	}
	if row.Lot.Home != h.deps.Node.String() {
		// divertBid could not reach the lot's home edge: an intent, judged
		// by what this node knows of the lot and ranked when logs merge.
		b.Intent, b.Judged.Home = true, row.Lot.Home
	}
	return api.Mutation{Kind: auction.KindBid, Key: auction.LotKey(id), Body: b}, nil
}

// refusal is the problem for a bid Judge refused; nothing is appended.
func (h *handler) refusal(row *auction.Row, reason string, amount, now int64) error {
	ext := map[string]any{"reason": reason, "lot": row.ID, "amount": amount}
	var p *api.Problem
	switch reason {
	case auction.ReasonBelowIncrement:
		p = api.NewProblem(api.TypeBidBelowIncrement, "the bid of %d does not beat the high bid of %d by the increment of %d; the minimum is %d",
			amount, row.High.Amount, row.Lot.Increment, row.Minimum())
		ext["minimum"], ext["high"] = row.Minimum(), row.High.Amount
	case auction.ReasonBelowStart:
		p = api.NewProblem(api.TypeBidBelowStart, "the bid of %d is below the starting price of %d", amount, row.Lot.StartPrice)
		ext["minimum"] = row.Minimum()
	case auction.ReasonClosed:
		p = api.NewProblem(api.TypeLotClosed, "lot %q is closed (%s); no more bids", row.ID, h.closedHow(row, now))
		ext["closes_at"] = h.formatMs(row.ClosesAt)
	default:
		return unknownLot(row.ID)
	}
	p.Extensions = ext
	return p
}

func (h *handler) closedHow(row *auction.Row, now int64) string {
	if row.Closed != nil {
		return "closed by the auctioneer"
	}
	return fmt.Sprintf("it closed at %s; the node's clock reads %s", h.formatMs(row.ClosesAt), h.formatMs(now))
}

// bidOutcome follows a bid entry's body and time: whether the replay
// accepts it (a bid stamped at or after the close it was judged against is
// refused by the reducer) and the close after it.
func bidOutcome(b *bidBody, wall int64) (accepted bool, closesAt int64, extended bool) {
	if wall >= b.Judged.ClosesAt {
		return false, b.Judged.ClosesAt, false
	}
	closesAt = b.Judged.ClosesAt
	if !b.Intent && b.Judged.SoftCloseMs > 0 && wall >= closesAt-b.Judged.SoftCloseMs {
		closesAt = max(closesAt, wall+b.Judged.ExtendMs)
	}
	return true, closesAt, closesAt != b.Judged.ClosesAt
}

func (h *handler) renderBid(e *ledger.Entry) (int, any, error) {
	var b bidBody
	if err := json.Unmarshal(e.Body, &b); err != nil {
		return 0, nil, fmt.Errorf("bid entry %d: %w", e.Seq, err)
	}
	if b.Intent {
		return http.StatusAccepted, IntentResponse{Status: StatusPending, Lot: b.Lot, Bid: b.ID,
			Paddle: b.Paddle, Amount: b.Amount, Home: b.Judged.Home}, nil
	}
	accepted, closesAt, extended := bidOutcome(&b, e.HLC.Wall)
	resp := BidResponse{
		Accepted: accepted, Lot: b.Lot, Bid: b.ID, Paddle: b.Paddle, Amount: b.Amount,
		High: b.Amount, Minimum: b.Amount + b.Judged.Increment,
		ClosesAt: h.formatMs(closesAt), ClosesAtMs: closesAt, Extended: extended,
	}
	if !accepted {
		// The clock reached the close between judging and signing: the
		// entry stands in the history as refused, and so does the answer.
		resp.Reason, resp.High, resp.Minimum = auction.ReasonClosed, 0, 0
		return http.StatusConflict, resp, nil
	}
	// The first render runs under the lot lock right after the append.
	h.judged.advance(b.Lot, e.Node, h.deps.Node, e.Seq, func(st *judgeState) {
		st.row.ClosesAt = closesAt
		st.row.High = &auction.BidFact{Fact: auction.Fact{Entry: e.Ref(), HLC: e.HLC}, Bid: b.Bid, Accepted: true}
	})
	h.broker.publish(b.Lot, h.bidMessage(e.Ref(), e.HLC, &b.Bid, b.Judged.Increment, b.Judged.ClosesAt, closesAt, h.deps.Clock.Now()))
	return http.StatusCreated, resp, nil
}

func (h *handler) prepareClose(r *http.Request, _ *CloseRequest) (api.Mutation, error) {
	id := r.PathValue("id")
	row, err := h.row(r.Context(), id)
	if err != nil {
		return api.Mutation{}, err
	}
	if row.Closed != nil {
		p := api.NewProblem(api.TypeLotClosed, "lot %q was already closed by the auctioneer", id)
		p.Extensions = map[string]any{"reason": auction.ReasonClosed, "lot": id, "closed": row.Closed.Entry}
		return api.Mutation{}, p
	}
	body := closedBody{Closed: auction.Closed{Lot: id, Device: api.DeviceFrom(r.Context()).Name}}
	if row.High != nil {
		body.Sold, body.Winner, body.Price = true, row.High.Paddle, row.High.Amount
	}
	return api.Mutation{Kind: auction.KindClosed, Key: auction.LotKey(id), Body: body}, nil
}

func (h *handler) renderClose(e *ledger.Entry) (int, any, error) {
	var b closedBody
	if err := json.Unmarshal(e.Body, &b); err != nil {
		return 0, nil, fmt.Errorf("close entry %d: %w", e.Seq, err)
	}
	resp := CloseResponse{Lot: b.Lot, Closed: true, Sold: b.Sold}
	if b.Sold {
		resp.Winner, resp.Price = &b.Winner, &b.Price
	}
	ref := e.Ref()
	h.judged.advance(b.Lot, e.Node, h.deps.Node, e.Seq, func(st *judgeState) {
		st.row.Closed = &auction.Fact{Entry: ref, HLC: e.HLC}
	})
	h.broker.publish(b.Lot, closedMessage(ref.Seq, ClosedEvent{Lot: b.Lot, By: closedByAuctioneer, Sold: resp.Sold, Winner: resp.Winner, Price: resp.Price, Entry: &ref}))
	return http.StatusOK, resp, nil
}

// LotView is a lot as GET /v1/lots/{id} shows it.
type LotView struct {
	ID         string       `json:"id"`
	Lot        *auction.Lot `json:"lot"`
	Opened     ledger.Ref   `json:"opened"`
	High       *BidView     `json:"high"`
	Minimum    int64        `json:"minimum"`
	ClosesAt   string       `json:"closes_at"`
	ClosesAtMs int64        `json:"closes_at_ms"`
	Closed     bool         `json:"closed"`
	ClosedBy   string       `json:"closed_by,omitempty"` // "auctioneer" or "time"
	Bids       []BidView    `json:"bids"`
	IntentWon  bool         `json:"intent_won"`
}

// BidView is one bid of a lot's history.
type BidView struct {
	ID       string     `json:"id"`
	Paddle   string     `json:"paddle"`
	Amount   int64      `json:"amount"`
	Accepted bool       `json:"accepted"`
	Reason   string     `json:"reason,omitempty"`
	Intent   bool       `json:"intent,omitempty"`
	At       string     `json:"at"`
	HLC      ledger.HLC `json:"hlc"`
	Entry    ledger.Ref `json:"entry"`
}

const (
	closedByAuctioneer = "auctioneer"
	closedByTime       = "time"
)

func (h *handler) view(row *auction.Row, now int64) LotView {
	v := LotView{
		ID: row.ID, Lot: row.Lot, Minimum: row.Minimum(),
		ClosesAt: h.formatMs(row.ClosesAt), ClosesAtMs: row.ClosesAt,
		Closed: row.IsClosed(now), Bids: make([]BidView, 0, len(row.Bids)), IntentWon: row.IntentWon,
	}
	if row.Opened != nil {
		v.Opened = row.Opened.Entry
	}
	switch {
	case row.Closed != nil:
		v.ClosedBy = closedByAuctioneer
	case v.Closed:
		v.ClosedBy = closedByTime
	}
	for i := range row.Bids {
		v.Bids = append(v.Bids, h.bidView(&row.Bids[i]))
	}
	if row.High != nil {
		hv := h.bidView(row.High)
		v.High = &hv
	}
	return v
}

func (h *handler) bidView(b *auction.BidFact) BidView {
	return BidView{ID: b.ID, Paddle: b.Paddle, Amount: b.Amount, Accepted: b.Accepted, Reason: b.Reason,
		Intent: b.Intent, At: h.formatMs(b.HLC.Wall), HLC: b.HLC, Entry: b.Entry}
}

// formatMs writes Unix ms as RFC 3339 in the event's time zone.
func (h *handler) formatMs(ms int64) string {
	return time.UnixMilli(ms).In(h.loc).Format("2006-01-02T15:04:05.000Z07:00")
}

func (h *handler) get(w http.ResponseWriter, r *http.Request) error {
	row, err := h.row(r.Context(), r.PathValue("id"))
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, h.view(row, h.nowMs()))
}

// LotList is the answer of GET /v1/lots.
type LotList struct {
	Lots []LotView `json:"lots"`
}

func (h *handler) list(w http.ResponseWriter, r *http.Request) error {
	rows, err := h.deps.Views.ViewRows(r.Context(), h.deps.Event.Slug, auction.View)
	if err != nil {
		return fmt.Errorf("auctionapi: list lots: %w", err)
	}
	now := h.nowMs()
	out := LotList{Lots: make([]LotView, 0, len(rows))}
	for _, vr := range rows {
		var row auction.Row
		if err := json.Unmarshal(vr.Value, &row); err != nil {
			return fmt.Errorf("auctionapi: lot %q row: %w", vr.Key, err)
		}
		if row.Lot == nil {
			continue // bids for a lot this node has not seen opened
		}
		out.Lots = append(out.Lots, h.view(&row, now))
	}
	return api.WriteJSON(w, http.StatusOK, out)
}

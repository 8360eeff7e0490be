package auctionapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"

	"canopy/api"
	"canopy/auction"
	"canopy/ledger"
	"canopy/replica"
	"canopy/store"
)

// ForwardedBid is the body of POST /v1/sync/bids: a bid an edge received
// for a lot whose home is the edge it calls. The home edge verifies the
// bidder's token again and judges the bid exactly like one made there.
type ForwardedBid struct {
	Lot    string `json:"lot"`
	Amount int64  `json:"amount"`
	Paddle string `json:"paddle,omitempty"`
	// Token is the device token the bid came with.
	Token string `json:"token"`
	// IdempotencyKey is the key the bid came with; the home edge keeps it
	// under a name of the forwarding node (see ForwardedKey).
	IdempotencyKey string `json:"idempotency_key"`
	// Bid is the bid ID the forwarding edge chose. The home edge records
	// the bid under it (with the forwarding node as auction.Bid.Via), so
	// that if the answer does not arrive in time and the forwarding edge
	// records an intent under the same ID, the bid counts once.
	Bid string `json:"bid,omitempty"`
}

// IntentResponse answers a bid recorded as an intent (202): the home edge
// could not be reached, so the bid counts once the logs merge, by price and
// time, if it came before the close.
type IntentResponse struct {
	Status string `json:"status"` // "pending"
	Lot    string `json:"lot"`
	Bid    string `json:"bid"`
	Paddle string `json:"paddle"`
	Amount int64  `json:"amount"`
	Home   string `json:"home"` // the node id of the lot's home edge
}

// StatusPending is IntentResponse.Status.
const StatusPending = "pending"

// maxForwardBody caps a forwarded bid and the home edge's answer.
const maxForwardBody = 64 << 10

// forwardedKey marks, in a request's context, a bid forwarded by another
// node (its id), so it is never forwarded again.
type forwardedKey struct{}

// forwardedBidKey carries, in a request's context, the bid ID the
// forwarding node chose.
type forwardedBidKey struct{}

// ForwardedKey is the Idempotency-Key the home edge keeps a forwarded bid
// under: "fwd:<node>:<key>", or with the key's SHA-256 in hex when that
// would be longer than an Idempotency-Key may be. A retry through the same
// edge finds the first answer; the same key at two edges stays two keys.
func ForwardedKey(from ledger.NodeID, key string) string {
	k := "fwd:" + from.String() + ":" + key
	if len(k) > api.MaxIdempotencyKeyLen {
		sum := sha256.Sum256([]byte(key))
		k = "fwd:" + from.String() + ":sha256:" + hex.EncodeToString(sum[:])
	}
	return k
}

// divertBid passes a bid for a lot whose home is another edge to that edge
// and answers with what it says. It returns false (Prepare then records an
// intent) when the home edge cannot be reached within the deadline.
func (h *handler) divertBid(w http.ResponseWriter, r *http.Request, req *BidRequest) (bool, error) {
	id := r.PathValue("id")
	row, err := h.row(r.Context(), id)
	if err != nil {
		return false, err
	}
	home := row.Lot.Home
	if home == h.deps.Node.String() {
		return false, nil
	}
	if from, ok := r.Context().Value(forwardedKey{}).(ledger.NodeID); ok {
		p := api.Conflict("lot %q lives on node %s, not on this node; node %s forwarded the bid to the wrong edge", id, home, from)
		p.Extensions = map[string]any{"lot": id, "home": home}
		return false, p
	}
	if _, err := ValidateBid(req, api.DeviceFrom(r.Context())); err != nil {
		return false, err
	}
	homeID, err := ledger.ParseNodeID(home)
	if err != nil || h.deps.HomeURL == nil {
		return false, nil
	}
	base, ok := h.deps.HomeURL(homeID)
	if !ok {
		h.deps.Logger.Info("auction: home edge of lot unknown; recording an intent", "lot", id, "home", home)
		return false, nil
	}
	if req.id, err = h.newID("bid"); err != nil {
		return false, err
	}
	status, hdr, body, err := h.forward(r.Context(), base, ForwardedBid{
		Lot: id, Amount: *req.Amount, Paddle: req.Paddle,
		Token:          bearer(r),
		IdempotencyKey: r.Header.Get("Idempotency-Key"),
		Bid:            req.id,
	})
	if err != nil {
		// The forward may have reached the home edge even so, and its
		// entry of the bid may already have come back by sync.
		if ok, err := h.answerJudged(w, r.Context(), id, req.id); ok || err != nil {
			return ok, err
		}
		h.deps.Logger.Info("auction: home edge unreachable; recording an intent", "lot", id, "home", home, "err", err)
		return false, nil
	}
	for _, name := range []string{"Content-Type", "Idempotent-Replayed", "Retry-After", "WWW-Authenticate"} {
		if v := hdr.Get(name); v != "" {
			w.Header().Set(name, v)
		}
	}
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(body)
	return true, nil
}

// answerJudged answers a bid whose forward failed from the home edge's
// entry of it, if that entry (the bid ID this node chose, with this node as
// Via) has already reached this node by sync: the bid was judged there and
// needs no intent. It reports whether it answered.
func (h *handler) answerJudged(w http.ResponseWriter, ctx context.Context, lot, bidID string) (bool, error) {
	row, err := h.row(ctx, lot)
	if err != nil {
		return false, nil // an intent is recorded (or refused) as usual
	}
	self := h.deps.Node.String()
	for i := range row.Bids {
		b := &row.Bids[i]
		if b.Intent || b.ID != bidID || b.Via != self {
			continue
		}
		resp := struct {
			BidResponse
			Entry ledger.Ref `json:"entry"`
		}{BidResponse{Accepted: b.Accepted, Reason: b.Reason, Lot: lot, Bid: b.ID, Paddle: b.Paddle, Amount: b.Amount,
			Minimum: row.Minimum(), ClosesAt: h.formatMs(row.ClosesAt), ClosesAtMs: row.ClosesAt}, b.Entry}
		status := http.StatusCreated
		if row.High != nil {
			resp.High = row.High.Amount
		}
		if !b.Accepted {
			status = http.StatusConflict
		}
		w.Header().Set("Cache-Control", "no-store")
		return true, api.WriteJSON(w, status, resp)
	}
	return false, nil
}

// errUnreachable wraps what made a forward count as not reaching the home
// edge.
var errUnreachable = errors.New("home edge not reachable")

// forward sends a bid to the home edge at base within the deadline and
// returns its answer. An error means the bid was not judged there (as far
// as this node can tell): no answer in time, or an answer that is not about
// the bid (a failing node, a node that does not know this one).
func (h *handler) forward(ctx context.Context, base string, fb ForwardedBid) (int, http.Header, []byte, error) {
	body, err := json.Marshal(fb)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("auctionapi: encode forwarded bid: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, h.deps.ForwardTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, strings.TrimRight(base, "/")+"/v1/sync/bids", bytes.NewReader(body))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	req.Header.Set("Content-Type", "application/json")
	replica.Sign(req, h.deps.Key, h.deps.Enrolment, body)
	resp, err := h.deps.HTTP.Do(req)
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%w: %v", errUnreachable, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxForwardBody))
	if err != nil {
		return 0, nil, nil, fmt.Errorf("%w: read answer: %v", errUnreachable, err)
	}
	if resp.StatusCode >= 500 {
		return 0, nil, nil, fmt.Errorf("%w: %s: %.200s", errUnreachable, resp.Status, b)
	}
	if resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusNotFound {
		var p struct {
			Type string `json:"type"`
		}
		_ = json.Unmarshal(b, &p)
		if p.Type == api.TypeNodeUnauthenticated || p.Type == api.TypeRouteNotFound {
			return 0, nil, nil, fmt.Errorf("%w: %s: %.200s", errUnreachable, resp.Status, b)
		}
	}
	return resp.StatusCode, resp.Header, b, nil
}

// bearer returns the request's bearer token.
func bearer(r *http.Request) string {
	scheme, tok, _ := strings.Cut(strings.TrimSpace(r.Header.Get("Authorization")), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return ""
	}
	return strings.TrimSpace(tok)
}

// syncBids serves POST /v1/sync/bids: a node forwards a bid for a lot that
// lives here. The node is authenticated like a sync call; the bid then runs
// through this node's own bid route with the bidder's token, so it is
// judged, appended, answered and streamed exactly like a bid made here.
func (h *handler) syncBids(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return api.NewProblem(api.TypeBodyUnreadable, "read forwarded bid: %v", err)
	}
	enr, err := replica.Authenticate(h.deps.Event, h.deps.Clock.Now(), r, body)
	if err != nil {
		return api.NewProblem(api.TypeNodeUnauthenticated, "%v", err)
	}
	var fb ForwardedBid
	dec := json.NewDecoder(bytes.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&fb); err != nil {
		return api.NewProblem(api.TypeMalformedJSON, "forwarded bid: %v", err)
	}
	var v api.Validation
	if err := checkID(fb.Lot); err != nil {
		v.Field("/lot", "%s", err.Error())
	}
	if fb.Token == "" {
		v.Field("/token", "is required: the device token the bid came with")
	}
	if fb.Bid != "" {
		if err := checkID(fb.Bid); err != nil {
			v.Field("/bid", "%s", err.Error())
		}
	}
	if err := api.ValidateIdempotencyKey(fb.IdempotencyKey); err != nil {
		v.Field("/idempotency_key", "%s", err.Error())
	}
	if err := v.Err(); err != nil {
		return err
	}
	inner, err := json.Marshal(BidRequest{Amount: &fb.Amount, Paddle: fb.Paddle})
	if err != nil {
		return fmt.Errorf("auctionapi: encode bid: %w", err)
	}
	ctx := context.WithValue(r.Context(), forwardedKey{}, enr.Node)
	if fb.Bid != "" {
		ctx = context.WithValue(ctx, forwardedBidKey{}, fb.Bid)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "/v1/lots/"+url.PathEscape(fb.Lot)+"/bids", bytes.NewReader(inner))
	if err != nil {
		return fmt.Errorf("auctionapi: forwarded bid request: %w", err)
	}
	req.RemoteAddr, req.Host = r.RemoteAddr, r.Host
	req.Header.Set("Authorization", "Bearer "+fb.Token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", ForwardedKey(enr.Node, fb.IdempotencyKey))
	h.server.ServeHTTP(w, req)
	return nil
}

// Ingested drops what the routes cached about lots that entries from other
// nodes (by sync) touched, so the next bid is judged with them. Pass it as
// replica.Node.OnIngest.
func (a *Auctions) Ingested(stored []store.Stored) {
	for _, s := range stored {
		switch s.Entry.Kind {
		case auction.KindOpened, auction.KindBid, auction.KindClosed:
			if id, ok := strings.CutPrefix(s.Entry.Key, "lot:"); ok {
				a.h.judged.forget(id)
			}
		}
	}
}

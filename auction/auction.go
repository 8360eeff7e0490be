// Package auction is the live-auction domain: lots, bids (accepted by the
// lot's home edge, or recorded as intents by an edge that could not reach
// it) and closes, and the deterministic reducer that replays them with
// price-time priority, minimum increments and soft close.
package auction

import (
	"bytes"
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"canopy/ledger"
	"canopy/store"
)

// Entry kinds; every one has the key "lot:<id>".
const (
	KindOpened = "lot.opened/v1"
	KindBid    = "bid.placed/v1"
	KindClosed = "lot.closed/v1"
)

// LotKey returns the entry key of a lot.
func LotKey(id string) string { return "lot:" + id }

// Lot is the body of a lot.opened entry. Times are Unix milliseconds.
type Lot struct {
	ID         string `json:"id"`
	Title      string `json:"title"`
	Currency   string `json:"currency"`
	StartPrice int64  `json:"start_price"`
	Increment  int64  `json:"increment"`
	ClosesAt   int64  `json:"closes_at"`
	// SoftCloseMs: a bid in the last SoftCloseMs before the close extends
	// it to the bid's time + ExtendMs. Zero: no soft close.
	SoftCloseMs int64  `json:"soft_close_ms,omitempty"`
	ExtendMs    int64  `json:"extend_ms,omitempty"`
	Home        string `json:"home"` // node id of the edge that runs the lot
	Device      string `json:"device"`
}

// Bid is the body of a bid.placed entry.
type Bid struct {
	Lot    string `json:"lot"`
	ID     string `json:"id"`
	Paddle string `json:"paddle"` // the bidder: a bidder token's device name, or a floor paddle
	Amount int64  `json:"amount"`
	// Intent marks a bid an edge recorded without reaching the home edge.
	Intent bool `json:"intent,omitempty"`
	// Via is, on a bid the home edge accepted from another edge's forward,
	// the node id of that edge. If the forward timed out there after all,
	// that edge also recorded the bid as an intent with the same ID; the
	// replay counts the bid once (see ReasonJudgedAtHome).
	Via    string `json:"via,omitempty"`
	Device string `json:"device"`
}

// Closed is the body of a lot.closed entry.
type Closed struct {
	Lot    string `json:"lot"`
	Device string `json:"device"`
}

// Fact is an entry's place in the (hlc, node, seq) order.
type Fact struct {
	Entry ledger.Ref `json:"entry"`
	HLC   ledger.HLC `json:"hlc"`
}

func (f Fact) less(o Fact) bool {
	if c := f.HLC.Compare(o.HLC); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(f.Entry.Node[:], o.Entry.Node[:]); c != 0 {
		return c < 0
	}
	return f.Entry.Seq < o.Entry.Seq
}

// BidFact is a bid with its place and what the replay made of it.
type BidFact struct {
	Fact
	Bid
	Accepted bool   `json:"accepted"`
	Reason   string `json:"reason,omitempty"` // why it was refused
}

// Reasons a bid is refused.
const (
	ReasonBelowIncrement = "below_increment"
	ReasonBelowStart     = "below_start_price"
	ReasonClosed         = "lot_closed"
	ReasonUnknownLot     = "unknown_lot"
	// ReasonJudgedAtHome: an intent whose forward reached the home edge
	// after all — the home edge's entry for the same bid (same ID, paddle
	// and amount, Via the intent's author) is the one that counts.
	ReasonJudgedAtHome = "judged_at_home"
)

// Row is the lots view's row.
type Row struct {
	ID     string `json:"id"`
	Lot    *Lot   `json:"lot,omitempty"`
	Opened *Fact  `json:"opened,omitempty"`
	// ClosesAt is the close after soft-close extensions (Unix ms).
	ClosesAt int64 `json:"closes_at"`
	// Closed is the first lot.closed fact, if any; a lot also counts as
	// closed once a bid's time passes ClosesAt.
	Closed *Fact `json:"closed,omitempty"`
	// High is the winning bid so far (or at close): price, then time.
	High *BidFact  `json:"high,omitempty"`
	Bids []BidFact `json:"bids,omitempty"`
	// IntentWon is set when an intent (a bid recorded away from the home
	// edge) holds the high bid: a report item.
	IntentWon bool `json:"intent_won,omitempty"`
}

// Minimum returns the lowest amount the next bid may offer.
func (r *Row) Minimum() int64 {
	if r.Lot == nil {
		return 0
	}
	if r.High == nil {
		return r.Lot.StartPrice
	}
	return r.High.Amount + r.Lot.Increment
}

// IsClosed reports whether the lot is closed at time nowMs.
func (r *Row) IsClosed(nowMs int64) bool {
	return r.Closed != nil || (r.Lot != nil && nowMs >= r.ClosesAt)
}

// Judge says whether a bid of amount at time nowMs would be accepted now,
// and if not why. Intents never extend the close.
func (r *Row) Judge(amount, nowMs int64) (ok bool, reason string) {
	switch {
	case r.Lot == nil:
		return false, ReasonUnknownLot
	case r.IsClosed(nowMs):
		return false, ReasonClosed
	case r.High == nil && amount < r.Lot.StartPrice:
		return false, ReasonBelowStart
	case r.High != nil && amount < r.High.Amount+r.Lot.Increment:
		return false, ReasonBelowIncrement
	}
	return true, ""
}

// View is the name of the lots view; the row key is the lot id.
const View = "auction.lots"

// Reducer folds lot entries into rows.
type Reducer struct{}

// View implements views.Reducer.
func (Reducer) View() string { return View }

// Rows implements views.Reducer.
func (Reducer) Rows(s store.Stored) []string {
	switch s.Entry.Kind {
	case KindOpened, KindBid, KindClosed:
		if id, ok := strings.CutPrefix(s.Entry.Key, "lot:"); ok && id != "" {
			return []string{id}
		}
	}
	return nil
}

// Fold implements views.Reducer: facts are kept sorted and replayed.
func (Reducer) Fold(cur []byte, key string, s store.Stored) []byte {
	r := Row{ID: key}
	if cur != nil && json.Unmarshal(cur, &r) != nil {
		r = Row{ID: key}
	}
	f := Fact{Entry: ledger.Ref{Node: s.Entry.Node, Seq: s.Entry.Seq, Hash: s.Hash}, HLC: s.Entry.HLC}
	switch s.Entry.Kind {
	case KindOpened:
		var l Lot
		if json.Unmarshal(s.Entry.Body, &l) != nil {
			return cur
		}
		if r.Opened != nil && (r.Opened.Entry == f.Entry || r.Opened.less(f)) {
			return cur // the first opening wins
		}
		r.Lot, r.Opened = &l, &f
	case KindBid:
		var b Bid
		if json.Unmarshal(s.Entry.Body, &b) != nil {
			return cur
		}
		for _, x := range r.Bids {
			if x.Entry == f.Entry {
				return cur
			}
		}
		r.Bids = append(r.Bids, BidFact{Fact: f, Bid: b})
	case KindClosed:
		if r.Closed != nil && (r.Closed.Entry == f.Entry || r.Closed.less(f)) {
			return cur
		}
		r.Closed = &f
	default:
		return cur
	}
	r.replay()
	b, err := json.Marshal(r)
	if err != nil {
		panic(fmt.Sprintf("auction: marshal view row: %v", err))
	}
	return b
}

// replay judges every bid in (hlc, node, seq) order: a bid counts if it
// came before the close (as extended by accepted, non-intent bids in the
// soft-close window), meets the start price or beats the high bid by the
// increment. Equal amounts: the earlier bid wins, since a later equal bid
// does not beat it.
func (r *Row) replay() {
	sort.Slice(r.Bids, func(i, j int) bool { return r.Bids[i].less(r.Bids[j].Fact) })
	r.High, r.IntentWon = nil, false
	if r.Lot == nil {
		for i := range r.Bids {
			r.Bids[i].Accepted, r.Bids[i].Reason = false, ReasonUnknownLot
		}
		return
	}
	r.ClosesAt = r.Lot.ClosesAt
	judged := judgedAtHome(r.Bids)
	for i := range r.Bids {
		b := &r.Bids[i]
		t := b.HLC.Wall
		closed := t >= r.ClosesAt || (r.Closed != nil && !b.less(*r.Closed))
		switch {
		case b.Intent && judged[forwardOf(b.Entry.Node.String(), &b.Bid)]:
			b.Accepted, b.Reason = false, ReasonJudgedAtHome
		case closed:
			b.Accepted, b.Reason = false, ReasonClosed
		case r.High == nil && b.Amount < r.Lot.StartPrice:
			b.Accepted, b.Reason = false, ReasonBelowStart
		case r.High != nil && b.Amount < r.High.Amount+r.Lot.Increment:
			b.Accepted, b.Reason = false, ReasonBelowIncrement
		default:
			b.Accepted, b.Reason = true, ""
			high := *b
			r.High = &high
			if !b.Intent && r.Lot.SoftCloseMs > 0 && t >= r.ClosesAt-r.Lot.SoftCloseMs {
				r.ClosesAt = max(r.ClosesAt, t+r.Lot.ExtendMs)
			}
		}
	}
	r.IntentWon = r.High != nil && r.High.Intent
}

// forward identifies one forwarded bid: the forwarding node, the bid ID it
// chose, and what was bid.
type forward struct {
	via, id, paddle string
	amount          int64
}

func forwardOf(via string, b *Bid) forward {
	return forward{via: via, id: b.ID, paddle: b.Paddle, amount: b.Amount}
}

// judgedAtHome returns the forwarded bids the home edge recorded (bids with
// Via set), so that the forwarding edge's intent for the same bid is not
// counted twice. It depends only on the set of bids, not their order.
func judgedAtHome(bids []BidFact) map[forward]bool {
	var m map[forward]bool
	for i := range bids {
		if b := &bids[i]; !b.Intent && b.Via != "" {
			if m == nil {
				m = map[forward]bool{}
			}
			m[forwardOf(b.Via, &b.Bid)] = true
		}
	}
	return m
}

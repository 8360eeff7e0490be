package simulate

import (
	"maps"
	"slices"
	"sync"
	"time"

	"canopy/checkin"
)

// Summary is what the devices saw so far. Amounts are minor units of
// Currency.
type Summary struct {
	Seconds  float64 `json:"seconds"`
	Seed     uint64  `json:"seed"`
	Currency string  `json:"currency"`

	// Orders created, and orders per second over the last few seconds.
	Orders       int64   `json:"orders"`
	OrdersPerSec float64 `json:"orders_per_s"`
	// Receipts counts orders that reached paid (a receipt was issued);
	// ReceiptsFetched the receipt documents fetched and checked.
	Receipts        int64 `json:"receipts"`
	ReceiptsFetched int64 `json:"receipts_fetched"`
	Payments        int64 `json:"payments"`
	SplitPayments   int64 `json:"split_payments"`
	Change          int64 `json:"change"` // cash change handed back
	Fulfilled       int64 `json:"fulfilled"`
	Refunds         int64 `json:"refunds"`
	// Settled is what payments settled, Refunded what was refunded, and
	// Revenue = Settled - Refunded.
	Settled  int64 `json:"settled"`
	Refunded int64 `json:"refunded"`
	Revenue  int64 `json:"revenue"`

	Scans Scans `json:"scans"`
	// Occupancy is the edge's GET /v1/occupancy, read about once a second.
	Occupancy checkin.Occupancy `json:"occupancy"`

	Lots    []Lot    `json:"lots"`
	Bids    Bids     `json:"bids"`
	Watcher Watcher  `json:"watcher"`
	Refused Refusals `json:"refused"`

	// Injected lists the conflicts InjectConflicts wrote.
	Injected []Injected `json:"injected,omitempty"`

	// Entries counts the entries the devices' accepted writes appended
	// (set-up included).
	Entries int64 `json:"entries"`
	// Errors counts unexpected answers and failed requests; FirstErrors
	// holds the first occurrence of each kind.
	Errors      int64     `json:"errors"`
	FirstErrors []Failure `json:"first_errors,omitempty"`
}

// Scans counts the doors' scans.
type Scans struct {
	Accepted int64            `json:"accepted"`
	In       int64            `json:"in"`
	Out      int64            `json:"out"`
	Rejected map[string]int64 `json:"rejected"` // by reason
}

// Bids counts the bidders' bids.
type Bids struct {
	Accepted   int64 `json:"accepted"`
	Extensions int64 `json:"extensions"` // accepted bids that extended a soft close
	Closed     int64 `json:"closed"`     // lots the auctioneer closed
}

// Refusals counts expected refusals by problem kind, e.g.
// "bid-below-increment" or "lot-closed": answers the devices provoked or
// raced into, not errors.
type Refusals map[string]int64

// Lot is one lot the auctioneer opened.
type Lot struct {
	Slot       int    `json:"slot"` // 0 or 1: the two lots running side by side
	ID         string `json:"id"`
	Title      string `json:"title"`
	High       int64  `json:"high"` // 0: no bid yet
	Paddle     string `json:"paddle,omitempty"`
	ClosesAtMs int64  `json:"closes_at_ms"`
	Bids       int64  `json:"bids"` // accepted
	Extensions int64  `json:"extensions"`
	Closed     bool   `json:"closed"`
	Sold       bool   `json:"sold"`
}

// Watcher counts what the bid stream's watcher received.
type Watcher struct {
	Streams  int64 `json:"streams"`
	Bids     int64 `json:"bids"`
	Extended int64 `json:"extended"`
	Closed   int64 `json:"closed"`
}

// stats is the run's counters, behind one mutex (devices update them a few
// hundred times a second at most).
type stats struct {
	mu        sync.Mutex
	sum       Summary
	start     time.Time
	end       time.Time
	recent    []time.Time // order creations in the last rateWindow
	seenKinds map[string]bool
	lotIndex  map[string]int
}

const rateWindow = 5 * time.Second

func (st *stats) init(currency string) {
	st.sum.Currency = currency
	st.sum.Scans.Rejected = map[string]int64{}
	st.sum.Refused = Refusals{}
	st.sum.Occupancy.Doors = map[string]int{}
	st.seenKinds = map[string]bool{}
	st.lotIndex = map[string]int{}
}

func (st *stats) update(f func(*Summary)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	f(&st.sum)
}

func (st *stats) begin(t time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.start = t
}

func (st *stats) finish(t time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.end = t
}

func (st *stats) entry(replayed bool) {
	if replayed {
		return
	}
	st.update(func(s *Summary) { s.Entries++ })
}

func (st *stats) order(t time.Time) {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sum.Orders++
	st.recent = append(st.recent, t)
	st.prune(t)
}

func (st *stats) prune(now time.Time) {
	i := 0
	for i < len(st.recent) && now.Sub(st.recent[i]) > rateWindow {
		i++
	}
	st.recent = st.recent[i:]
}

func (st *stats) refused(kind string) { st.update(func(s *Summary) { s.Refused[kind]++ }) }

// fail counts an error and reports whether it is the first of its kind.
func (st *stats) fail(f Failure) bool {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.sum.Errors++
	k := f.Call + " " + f.Type
	if st.seenKinds[k] {
		return false
	}
	st.seenKinds[k] = true
	if len(st.sum.FirstErrors) < 20 {
		st.sum.FirstErrors = append(st.sum.FirstErrors, f)
	}
	return true
}

// lot updates (or adds) a lot by id.
func (st *stats) lot(id string, f func(*Lot)) {
	st.mu.Lock()
	defer st.mu.Unlock()
	i, ok := st.lotIndex[id]
	if !ok {
		i = len(st.sum.Lots)
		st.lotIndex[id] = i
		st.sum.Lots = append(st.sum.Lots, Lot{ID: id})
	}
	f(&st.sum.Lots[i])
}

// Summary returns a copy of what the devices saw so far.
func (s *Sim) Summary() Summary {
	st := &s.stats
	st.mu.Lock()
	defer st.mu.Unlock()
	out := st.sum
	out.Seed = s.seed
	now := time.Now()
	if !st.end.IsZero() {
		now = st.end
	}
	if !st.start.IsZero() {
		out.Seconds = now.Sub(st.start).Seconds()
	}
	st.prune(now)
	if w := min(rateWindow, now.Sub(st.start)); w > 0 && !st.start.IsZero() {
		out.OrdersPerSec = float64(len(st.recent)) / w.Seconds()
	}
	out.Revenue = out.Settled - out.Refunded
	out.Scans.Rejected = maps.Clone(st.sum.Scans.Rejected)
	out.Refused = maps.Clone(st.sum.Refused)
	out.Occupancy.Doors = maps.Clone(st.sum.Occupancy.Doors)
	out.Lots = slices.Clone(st.sum.Lots)
	out.FirstErrors = slices.Clone(st.sum.FirstErrors)
	out.Injected = slices.Clone(st.sum.Injected)
	return out
}

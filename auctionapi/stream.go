package auctionapi

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"canopy/api"
	"canopy/auction"
	"canopy/ledger"
)

// SSE event names.
const (
	EventSnapshot = "snapshot"
	EventBid      = "bid"
	EventExtended = "extended"
	EventClosed   = "closed"
)

// retryMs is the reconnection delay the stream asks clients for.
const retryMs = 2000

// BidEvent is the data of a "bid" event: an accepted bid.
type BidEvent struct {
	Lot        string     `json:"lot"`
	Bid        string     `json:"bid"`
	Paddle     string     `json:"paddle"`
	Amount     int64      `json:"amount"`
	Minimum    int64      `json:"minimum"`
	ClosesAt   string     `json:"closes_at"`
	ClosesAtMs int64      `json:"closes_at_ms"`
	HLC        ledger.HLC `json:"hlc"`
	Entry      ledger.Ref `json:"entry"`
	// PublishedAt is the node's time when the bid was made durable and
	// sent to watchers (nanosecond precision); absent on replayed events.
	PublishedAt string `json:"published_at,omitempty"`
}

// ExtendedEvent is the data of an "extended" event: a bid in the
// soft-close window moved the close.
type ExtendedEvent struct {
	Lot        string     `json:"lot"`
	ClosesAt   string     `json:"closes_at"`
	ClosesAtMs int64      `json:"closes_at_ms"`
	PreviousMs int64      `json:"previous_closes_at_ms"`
	Entry      ledger.Ref `json:"entry"` // the bid that extended it
}

// ClosedEvent is the data of a "closed" event: by the auctioneer (Entry
// names the lot.closed entry) or by time (the clock passed the close).
type ClosedEvent struct {
	Lot    string      `json:"lot"`
	By     string      `json:"by"`
	Sold   bool        `json:"sold"`
	Winner *string     `json:"winner"`
	Price  *int64      `json:"price"`
	Entry  *ledger.Ref `json:"entry,omitempty"`
}

// sseEvent is one encoded event.
type sseEvent struct {
	name string
	data []byte
}

// message is what one entry of a lot produces for its watchers.
type message struct {
	seq        uint64 // the entry's seq: the events' id
	closesAtMs int64  // the close after the entry; 0: unchanged
	closed     bool
	events     []sseEvent
}

func encodeEvent(name string, v any) sseEvent {
	b, err := json.Marshal(v)
	if err != nil {
		panic(fmt.Sprintf("auctionapi: encode %s event: %v", name, err)) // plain structs always encode
	}
	return sseEvent{name: name, data: b}
}

func (h *handler) bidMessage(ref ledger.Ref, hlc ledger.HLC, b *auction.Bid, increment, before, after int64, published time.Time) message {
	ev := BidEvent{Lot: b.Lot, Bid: b.ID, Paddle: b.Paddle, Amount: b.Amount, Minimum: b.Amount + increment,
		ClosesAt: h.formatMs(after), ClosesAtMs: after, HLC: hlc, Entry: ref}
	if !published.IsZero() {
		ev.PublishedAt = published.Format(time.RFC3339Nano)
	}
	m := message{seq: ref.Seq, closesAtMs: after, events: []sseEvent{encodeEvent(EventBid, ev)}}
	if after != before {
		m.events = append(m.events, encodeEvent(EventExtended, ExtendedEvent{Lot: b.Lot, ClosesAt: h.formatMs(after),
			ClosesAtMs: after, PreviousMs: before, Entry: ref}))
	}
	return m
}

func closedMessage(seq uint64, ev ClosedEvent) message {
	return message{seq: seq, closed: true, events: []sseEvent{encodeEvent(EventClosed, ev)}}
}

// broker fans a lot's messages out to its watchers. Publishing never
// blocks: a watcher whose buffer is full is dropped (its stream ends and
// the client resumes with Last-Event-ID).
type broker struct {
	buffer int
	mu     sync.Mutex
	subs   map[string]map[*subscriber]struct{}
}

type subscriber struct {
	ch      chan message
	dropped chan struct{} // closed when the broker drops the watcher
}

func newBroker(buffer int) *broker {
	return &broker{buffer: buffer, subs: map[string]map[*subscriber]struct{}{}}
}

func (b *broker) subscribe(lot string) *subscriber {
	s := &subscriber{ch: make(chan message, b.buffer), dropped: make(chan struct{})}
	b.mu.Lock()
	if b.subs[lot] == nil {
		b.subs[lot] = map[*subscriber]struct{}{}
	}
	b.subs[lot][s] = struct{}{}
	b.mu.Unlock()
	return s
}

func (b *broker) unsubscribe(lot string, s *subscriber) {
	b.mu.Lock()
	if m := b.subs[lot]; m != nil {
		delete(m, s)
		if len(m) == 0 {
			delete(b.subs, lot)
		}
	}
	b.mu.Unlock()
}

func (b *broker) publish(lot string, m message) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for s := range b.subs[lot] {
		select {
		case s.ch <- m:
		default:
			delete(b.subs[lot], s)
			close(s.dropped)
		}
	}
	if len(b.subs[lot]) == 0 {
		delete(b.subs, lot)
	}
}

// replay rebuilds, from a lot's row, the messages of this node's entries
// after seq: accepted bids (with the extensions they caused) and the
// auctioneer's close.
func (h *handler) replay(row *auction.Row, after uint64) []message {
	var out []message
	closesAt := row.Lot.ClosesAt
	closedDone := false
	emitClosed := func() {
		closedDone = true
		if row.Closed.Entry.Node != h.deps.Node || row.Closed.Entry.Seq <= after {
			return
		}
		ref := row.Closed.Entry
		out = append(out, closedMessage(ref.Seq, h.closedEvent(row, closedByAuctioneer, &ref)))
	}
	for i := range row.Bids {
		b := &row.Bids[i]
		if row.Closed != nil && !closedDone && !factLess(b.Fact, *row.Closed) {
			emitClosed()
		}
		if !b.Accepted {
			continue
		}
		before := closesAt
		if !b.Intent && row.Lot.SoftCloseMs > 0 && b.HLC.Wall >= closesAt-row.Lot.SoftCloseMs {
			closesAt = max(closesAt, b.HLC.Wall+row.Lot.ExtendMs)
		}
		if b.Entry.Node == h.deps.Node && b.Entry.Seq > after {
			out = append(out, h.bidMessage(b.Entry, b.HLC, &b.Bid, row.Lot.Increment, before, closesAt, time.Time{}))
		}
	}
	if row.Closed != nil && !closedDone {
		emitClosed()
	}
	return out
}

func factLess(a, b auction.Fact) bool {
	if c := a.HLC.Compare(b.HLC); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(a.Entry.Node[:], b.Entry.Node[:]); c != 0 {
		return c < 0
	}
	return a.Entry.Seq < b.Entry.Seq
}

// closedEvent describes the row's result.
func (h *handler) closedEvent(row *auction.Row, by string, ref *ledger.Ref) ClosedEvent {
	ev := ClosedEvent{Lot: row.ID, By: by, Entry: ref}
	if row.High != nil {
		w, p := row.High.Paddle, row.High.Amount
		ev.Sold, ev.Winner, ev.Price = true, &w, &p
	}
	return ev
}

// lastSeq is the highest seq of this node's entries about the lot.
func (h *handler) lastSeq(row *auction.Row) uint64 {
	var last uint64
	see := func(f *auction.Fact) {
		if f != nil && f.Entry.Node == h.deps.Node && f.Entry.Seq > last {
			last = f.Entry.Seq
		}
	}
	see(row.Opened)
	see(row.Closed)
	for i := range row.Bids {
		see(&row.Bids[i].Fact)
	}
	return last
}

// parseLastEventID reads the Last-Event-ID header: absent, or an entry seq.
func parseLastEventID(r *http.Request) (seq uint64, resume bool, err error) {
	v := strings.TrimSpace(r.Header.Get("Last-Event-ID"))
	if v == "" {
		return 0, false, nil
	}
	seq, err = strconv.ParseUint(v, 10, 64)
	if err != nil {
		p := api.NewProblem(api.TypeInvalidParameter, "the Last-Event-ID header must be the id of an event of this stream (an entry seq), got %q", v)
		p.Errors = []api.FieldError{{Parameter: "Last-Event-ID", Detail: "must be a non-negative integer"}}
		return 0, false, p
	}
	return seq, true, nil
}

// events serves GET /v1/lots/{id}/events.
func (h *handler) events(w http.ResponseWriter, r *http.Request) error {
	id := r.PathValue("id")
	after, resume, err := parseLastEventID(r)
	if err != nil {
		return err
	}
	// Subscribe before reading the row, so nothing falls between them.
	sub := h.broker.subscribe(id)
	defer h.broker.unsubscribe(id, sub)
	row, err := h.row(r.Context(), id)
	if err != nil {
		return err
	}
	now := h.nowMs()
	closed := row.IsClosed(now)
	closesAt := row.ClosesAt
	last := h.lastSeq(row)
	var first []message
	if resume {
		first = h.replay(row, after)
		if len(first) == 0 && closed {
			// The client has everything; 204 tells an EventSource to stop.
			w.WriteHeader(http.StatusNoContent)
			return nil
		}
	} else {
		first = []message{{seq: last, events: []sseEvent{encodeEvent(EventSnapshot, h.view(row, now))}}}
	}

	hdr := w.Header()
	hdr.Set("Content-Type", "text/event-stream; charset=utf-8")
	hdr.Set("Cache-Control", "no-store")
	hdr.Set("X-Accel-Buffering", "no")
	hdr.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	sw := &sseWriter{w: w, rc: http.NewResponseController(w), timeout: h.deps.WriteTimeout}
	sw.buf.WriteString("retry: " + strconv.Itoa(retryMs) + "\n\n")
	sent := after
	sawClose := false
	for _, m := range first {
		sw.add(m)
		sent = max(sent, m.seq)
		sawClose = sawClose || m.closed
	}
	if closed && !sawClose && row.Closed == nil && resume {
		sw.add(message{seq: sent, events: []sseEvent{encodeEvent(EventClosed, h.closedEvent(row, closedByTime, nil))}})
	}
	if err := sw.flush(); err != nil || closed {
		return nil
	}
	sent = max(sent, last)

	heartbeat := time.NewTicker(h.deps.Heartbeat)
	defer heartbeat.Stop()
	closeTimer := time.NewTimer(h.untilMs(closesAt))
	defer closeTimer.Stop()
	for {
		select {
		case <-r.Context().Done():
			return nil
		case <-h.deps.Stopping:
			return nil
		case <-sub.dropped:
			return nil // too slow: the client resumes with Last-Event-ID
		case m := <-sub.ch:
			if m.seq <= sent {
				continue // already in the snapshot or the replay
			}
			sent = m.seq
			sw.add(m)
			if err := sw.flush(); err != nil || m.closed {
				return nil
			}
			if m.closesAtMs != 0 && m.closesAtMs != closesAt {
				closesAt = m.closesAtMs
				closeTimer.Reset(h.untilMs(closesAt))
			}
		case <-heartbeat.C:
			sw.buf.WriteString(": heartbeat\n\n")
			if err := sw.flush(); err != nil {
				return nil
			}
		case <-closeTimer.C:
			if h.nowMs() < closesAt {
				closeTimer.Reset(h.untilMs(closesAt))
				continue
			}
			// The clock passed the close: read the row for the result.
			row, err := h.row(r.Context(), id)
			if err != nil || row.ClosesAt > closesAt {
				// A bid extended the close; its message is on its way.
				closeTimer.Reset(time.Millisecond)
				if err != nil {
					return nil
				}
				continue
			}
			by := closedByTime
			var ref *ledger.Ref
			if row.Closed != nil {
				by, ref = closedByAuctioneer, &row.Closed.Entry
			}
			sw.add(message{seq: sent, events: []sseEvent{encodeEvent(EventClosed, h.closedEvent(row, by, ref))}})
			_ = sw.flush()
			return nil
		}
	}
}

// untilMs is how long until the node's clock reads ms.
func (h *handler) untilMs(ms int64) time.Duration {
	return max(time.Duration(ms-h.nowMs())*time.Millisecond, 0)
}

// sseWriter buffers events and writes them with a deadline, so a client
// that stops reading cannot hold the handler forever.
type sseWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	buf     bytes.Buffer
}

// add encodes a message's events per the WHATWG event-stream format; each
// carries the entry seq as its id.
func (s *sseWriter) add(m message) {
	for _, ev := range m.events {
		s.buf.WriteString("id: ")
		s.buf.WriteString(strconv.FormatUint(m.seq, 10))
		s.buf.WriteString("\nevent: ")
		s.buf.WriteString(ev.name)
		s.buf.WriteString("\ndata: ")
		s.buf.Write(ev.data) // JSON from encoding/json holds no newline
		s.buf.WriteString("\n\n")
	}
}

func (s *sseWriter) flush() error {
	// The deadline is about the network, so it reads the real clock.
	if err := s.rc.SetWriteDeadline(time.Now().Add(s.timeout)); err != nil && !errors.Is(err, http.ErrNotSupported) {
		return err
	}
	_, err := s.w.Write(s.buf.Bytes())
	s.buf.Reset()
	if err != nil {
		return err
	}
	return s.rc.Flush()
}

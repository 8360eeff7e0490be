package simulate

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"canopy/auctionapi"
)

// lotTitles are the lots each slot offers in turn.
var lotTitles = [2][]string{
	{"Vintage festival poster", "Signed vinyl record", "Hand-painted skateboard deck", "Retro arcade cabinet"},
	{"Hand-thrown stoneware bowl", "Neon sign 'Open late'", "Letterpress print set", "Carved walnut spoon"},
}

// lotSlot is one of the two lots running side by side: the one open now,
// as the auctioneer and the bidders last saw it.
type lotSlot struct {
	mu sync.Mutex
	lotState
}

type lotState struct {
	id               string
	open             bool
	start, increment int64
	high, minimum    int64
	paddle           string
	closesAtMs       int64
}

func (l *lotSlot) get() lotState {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lotState
}

// seen folds what an answer said about the lot: a higher bid, or a later
// close, than what the slot holds.
func (l *lotSlot) seen(id string, high int64, paddle string, minimum, closesAtMs int64) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.id != id {
		return
	}
	if high > l.high {
		l.high, l.paddle, l.minimum = high, paddle, minimum
	}
	l.closesAtMs = max(l.closesAtMs, closesAtMs)
}

// playAuctioneer opens a lot in its slot, follows it until it closes by
// time, closes it (recording the winner) and opens the next, until ctx
// ends.
func (s *Sim) playAuctioneer(ctx context.Context, slot int) {
	ls := s.lots[slot]
	name := fmt.Sprintf("auctioneer-%d", slot+1)
	for round := 1; !done(ctx); round++ {
		start, inc := int64(1000+500*slot), int64(100)
		dur := max(int64(s.lotLength/time.Second), 1)
		soft := int64(s.softClose / time.Second)
		ext := soft
		title := lotTitles[slot][(round-1)%len(lotTitles[slot])]
		c := call{device: name, token: s.auctioneer, method: http.MethodPost, path: "/v1/lots", idem: s.idem(name, round, "open"),
			body: auctionapi.LotRequest{Title: title, StartPrice: &start, Increment: &inc, DurationS: &dur, SoftCloseS: &soft, ExtendS: &ext}}
		var lv auctionapi.LotView
		if !s.expect(ctx, c, http.StatusCreated, &lv) {
			if !sleep(ctx, 2*time.Second) {
				return
			}
			continue
		}
		if lv.Lot == nil || lv.Lot.StartPrice != start || lv.Closed || lv.Minimum != start {
			s.mismatch(c, "lot %s opened as %+v", lv.ID, lv)
		}
		ls.mu.Lock()
		ls.lotState = lotState{id: lv.ID, open: true, start: start, increment: inc, minimum: start, closesAtMs: lv.ClosesAtMs}
		ls.mu.Unlock()
		s.stats.lot(lv.ID, func(l *Lot) { l.Slot, l.Title, l.ClosesAtMs = slot, title, lv.ClosesAtMs })

		if !s.follow(ctx, name, ls, lv.ID) {
			return
		}
		var cr auctionapi.CloseResponse
		c = call{device: name, token: s.auctioneer, method: http.MethodPost, path: "/v1/lots/" + lv.ID + "/close", idem: s.idem(name, round, "close")}
		if !s.expect(ctx, c, http.StatusOK, &cr) {
			continue
		}
		st := ls.get()
		switch {
		case !cr.Closed || cr.Sold != (st.high > 0):
			s.mismatch(c, "lot %s: closed %v sold %v, after a high bid of %d", lv.ID, cr.Closed, cr.Sold, st.high)
		case cr.Sold && (cr.Price == nil || cr.Winner == nil || *cr.Price != st.high || *cr.Winner != st.paddle):
			s.mismatch(c, "lot %s sold for %v to %v, the high bid was %d by %s", lv.ID, cr.Price, cr.Winner, st.high, st.paddle)
		}
		s.stats.update(func(sum *Summary) { sum.Bids.Closed++ })
		s.stats.lot(lv.ID, func(l *Lot) { l.Closed, l.Sold = true, cr.Sold })
		if !sleep(ctx, 3*time.Second) {
			return
		}
	}
}

// follow reads the lot twice a second until it has closed by time; it
// reports false if ctx ended first.
func (s *Sim) follow(ctx context.Context, name string, ls *lotSlot, id string) bool {
	tick := time.NewTicker(500 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return false
		case <-tick.C:
		}
		var v auctionapi.LotView
		c := call{device: name, token: s.auctioneer, method: http.MethodGet, path: "/v1/lots/" + id}
		if !s.expect(ctx, c, http.StatusOK, &v) {
			continue
		}
		high, paddle := int64(0), ""
		if v.High != nil {
			high, paddle = v.High.Amount, v.High.Paddle
		}
		ls.seen(id, high, paddle, v.Minimum, v.ClosesAtMs)
		ls.mu.Lock()
		if v.Closed && ls.id == id {
			ls.open = false
			ls.closesAtMs = v.ClosesAtMs
		}
		ls.mu.Unlock()
		s.stats.lot(id, func(l *Lot) { l.High, l.Paddle, l.ClosesAtMs = high, paddle, v.ClosesAtMs })
		if v.Closed {
			return true
		}
	}
}

// Expected refusals of a bid.
var bidRefusals = map[string]bool{"bid-below-increment": true, "bid-below-start-price": true, "lot-closed": true}

// playBidder bids on its slot's open lot now and then, up to a budget per
// lot, sometimes too low on purpose, until ctx ends.
func (s *Sim) playBidder(ctx context.Context, pi int, dev uint64) {
	p := s.paddles[pi]
	ls := s.lots[p.slot]
	rng := s.rng(dev)
	tick := time.NewTicker(800*time.Millisecond + time.Duration(rng.IntN(700))*time.Millisecond)
	defer tick.Stop()
	budgets := map[string]int64{}
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		st := ls.get()
		if !st.open || st.paddle == p.name || rng.IntN(10) < 3 {
			continue
		}
		budget, ok := budgets[st.id]
		if !ok {
			budget = st.start + 1500 + rng.Int64N(4000)
			budgets[st.id] = budget
		}
		lowball := st.high > 0 && rng.IntN(8) == 0
		amount := st.minimum + st.increment*rng.Int64N(2)
		if lowball {
			amount = st.high + st.increment/2
		} else if amount > budget {
			continue
		}
		c := call{device: p.name, token: p.token, method: http.MethodPost, path: "/v1/lots/" + st.id + "/bids",
			idem: s.idem(p.name, n, "bid"), body: auctionapi.BidRequest{Amount: &amount}}
		a, ok := s.do(ctx, c)
		if !ok {
			continue
		}
		switch {
		case a.status == http.StatusCreated:
			s.stats.entry(a.replayed)
			var br auctionapi.BidResponse
			if err := json.Unmarshal(a.body, &br); err != nil || !br.Accepted || br.Amount != amount || br.Paddle != p.name {
				s.unexpected(c, &a, "want an accepted bid")
				continue
			}
			if lowball {
				s.mismatch(c, "a bid of %d on lot %s was accepted; the high bid was already %d with increment %d", amount, st.id, st.high, st.increment)
			}
			ls.seen(st.id, br.High, p.name, br.Minimum, br.ClosesAtMs)
			s.stats.update(func(sum *Summary) {
				sum.Bids.Accepted++
				if br.Extended {
					sum.Bids.Extensions++
				}
			})
			s.stats.lot(st.id, func(l *Lot) {
				l.Bids++
				if br.Extended {
					l.Extensions++
				}
				if br.High > l.High {
					l.High, l.Paddle = br.High, p.name
				}
				l.ClosesAtMs = max(l.ClosesAtMs, br.ClosesAtMs)
			})
		case a.status == http.StatusConflict && a.problem == nil:
			// The close arrived between judging and signing: the refused
			// bid is in the log, and so is its answer.
			s.stats.entry(a.replayed)
			s.stats.refused("lot-closed")
		case a.problem != nil && bidRefusals[a.kind()]:
			s.stats.refused(a.kind())
		default:
			s.unexpected(c, &a, "want an accepted or refused bid")
		}
	}
}

// watch follows the bid stream of its slot's lots, one lot after another,
// until ctx ends, checking that the bids it sees only ever rise.
func (s *Sim) watch(ctx context.Context, slot int) {
	ls := s.lots[slot]
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	watched := ""
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if id := ls.get().id; id != "" && id != watched {
			watched = id
			s.stream(ctx, id)
		}
	}
}

// stream reads one lot's events until it closes, resuming with
// Last-Event-ID if the stream breaks.
func (s *Sim) stream(ctx context.Context, id string) {
	const name = "screen"
	c := call{device: name, token: s.auctioneer, method: http.MethodGet, path: "/v1/lots/" + id + "/events"}
	lastID, high := "", int64(0)
	for attempt := 0; attempt < 5 && !done(ctx); attempt++ {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, s.urls[c.edge]+c.path, nil)
		if err != nil {
			s.fail(Failure{Device: name, Call: c.name(), Type: "request", Detail: err.Error()})
			return
		}
		req.Header.Set("Authorization", "Bearer "+s.auctioneer)
		req.Header.Set("Accept", "text/event-stream")
		if lastID != "" {
			req.Header.Set("Last-Event-ID", lastID)
		}
		resp, err := s.client.Do(req)
		if err != nil {
			if !done(ctx) {
				s.fail(Failure{Device: name, Call: c.name(), Type: "transport", Detail: err.Error()})
			}
			return
		}
		s.stats.update(func(sum *Summary) { sum.Watcher.Streams++ })
		if resp.StatusCode == http.StatusNoContent {
			resp.Body.Close()
			return
		}
		if resp.StatusCode != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/event-stream") {
			b, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
			resp.Body.Close()
			s.unexpected(c, &answer{status: resp.StatusCode, body: b}, "want an event stream")
			return
		}
		closed := s.readEvents(c, resp.Body, &lastID, &high)
		resp.Body.Close()
		if closed {
			return
		}
	}
	if !done(ctx) {
		s.fail(Failure{Device: name, Call: c.name(), Type: "stream-broken", Detail: fmt.Sprintf("lot %s: the stream ended 5 times before the lot closed", id)})
	}
}

// readEvents reads server-sent events until the stream ends; it reports
// whether a "closed" event arrived.
func (s *Sim) readEvents(c call, body io.Reader, lastID *string, high *int64) bool {
	sc := bufio.NewScanner(body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var event, data string
	for sc.Scan() {
		line := sc.Text()
		switch {
		case line == "":
			if event == "" && data == "" {
				continue
			}
			switch event {
			case auctionapi.EventSnapshot:
				var v auctionapi.LotView
				if err := json.Unmarshal([]byte(data), &v); err != nil {
					s.mismatch(c, "snapshot event: %v", err)
				} else if v.High != nil {
					*high = max(*high, v.High.Amount)
				}
			case auctionapi.EventBid:
				var b auctionapi.BidEvent
				if err := json.Unmarshal([]byte(data), &b); err != nil {
					s.mismatch(c, "bid event: %v", err)
					break
				}
				if b.Amount <= *high {
					s.mismatch(c, "bid event of %d after a bid of %d: accepted bids must rise", b.Amount, *high)
				}
				*high = max(*high, b.Amount)
				s.stats.update(func(sum *Summary) { sum.Watcher.Bids++ })
			case auctionapi.EventExtended:
				s.stats.update(func(sum *Summary) { sum.Watcher.Extended++ })
			case auctionapi.EventClosed:
				s.stats.update(func(sum *Summary) { sum.Watcher.Closed++ })
				return true
			default:
				s.mismatch(c, "unknown event %q", event)
			}
			event, data = "", ""
		case strings.HasPrefix(line, ":"):
		case strings.HasPrefix(line, "id:"):
			*lastID = strings.TrimSpace(strings.TrimPrefix(line, "id:"))
		case strings.HasPrefix(line, "event:"):
			event = strings.TrimSpace(strings.TrimPrefix(line, "event:"))
		case strings.HasPrefix(line, "data:"):
			data += strings.TrimPrefix(strings.TrimPrefix(line, "data:"), " ")
		}
	}
	return false
}

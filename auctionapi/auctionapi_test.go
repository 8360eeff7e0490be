package auctionapi_test

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"canopy/api"
	"canopy/auctionapi"
	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
)

type fixture struct {
	t          *testing.T
	e          *edge.Edge
	ev         *testutil.Event
	auctioneer string
	keys       atomic.Int64
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	ev := testutil.NewEvent(t, "auction-night")
	cfg := ev.EdgeConfig(t, "edge-1", "")
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return &fixture{t: t, e: e, ev: ev, auctioneer: ev.ValidToken(t, auth.RoleAuctioneer)}
}

func (f *fixture) bidder(name string) string {
	return f.ev.Token(f.t, auth.RoleBidder, name, time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func (r reply) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.body, v); err != nil {
		t.Fatalf("decode %s: %v", r.body, err)
	}
}

// do sends a request; a POST gets a fresh Idempotency-Key.
func (f *fixture) do(method, path, token, body string) reply {
	f.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, f.e.URL()+path, rd)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if method == http.MethodPost {
		req.Header.Set("Idempotency-Key", fmt.Sprintf("k-%d", f.keys.Add(1)))
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, b}
}

type problem struct {
	Type    string `json:"type"`
	Status  int    `json:"status"`
	Detail  string `json:"detail"`
	Reason  string `json:"reason"`
	Minimum int64  `json:"minimum"`
	Errors  []struct {
		Pointer string `json:"pointer"`
	} `json:"errors"`
}

func wantProblem(t *testing.T, r reply, status int, typ string) problem {
	t.Helper()
	if r.status != status || r.header.Get("Content-Type") != api.ContentTypeProblem {
		t.Fatalf("status %d (%s), want %d problem %s: %s", r.status, r.header.Get("Content-Type"), status, typ, r.body)
	}
	var p problem
	r.decode(t, &p)
	if p.Type != typ || p.Detail == "" {
		t.Fatalf("problem %s, want type %s", r.body, typ)
	}
	return p
}

func (f *fixture) open(body string) auctionapi.LotView {
	f.t.Helper()
	r := f.do("POST", "/v1/lots", f.auctioneer, body)
	if r.status != 201 {
		f.t.Fatalf("open lot: %d %s", r.status, r.body)
	}
	var v auctionapi.LotView
	r.decode(f.t, &v)
	return v
}

func (f *fixture) lot(id string) auctionapi.LotView {
	f.t.Helper()
	r := f.do("GET", "/v1/lots/"+id, f.auctioneer, "")
	if r.status != 200 {
		f.t.Fatalf("get lot: %d %s", r.status, r.body)
	}
	var v auctionapi.LotView
	r.decode(f.t, &v)
	return v
}

func (f *fixture) bid(id, token string, amount int64, paddle string) reply {
	f.t.Helper()
	body := fmt.Sprintf(`{"amount":%d}`, amount)
	if paddle != "" {
		body = fmt.Sprintf(`{"amount":%d,"paddle":%q}`, amount, paddle)
	}
	return f.do("POST", "/v1/lots/"+id+"/bids", token, body)
}

func (f *fixture) mustBid(id, token string, amount int64, paddle string) auctionapi.BidResponse {
	f.t.Helper()
	r := f.bid(id, token, amount, paddle)
	if r.status != 201 {
		f.t.Fatalf("bid %d: %d %s", amount, r.status, r.body)
	}
	var b auctionapi.BidResponse
	r.decode(f.t, &b)
	if !b.Accepted || b.Amount != amount {
		f.t.Fatalf("bid %d answered %s", amount, r.body)
	}
	return b
}

func TestLotLifeAndPriceTimeWinner(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.bidder("alice"), f.bidder("bob")
	lot := f.open(`{"id":"lot-1","title":"Vintage lamp","start_price":100,"increment":10,"duration_s":600}`)
	if lot.ID != "lot-1" || lot.Lot.Home != f.e.Journal.Node().String() || lot.Minimum != 100 || lot.Closed || lot.High != nil {
		t.Fatalf("opened %+v", lot)
	}
	if lot.Lot.Currency != "EUR" || lot.ClosesAtMs != lot.Lot.ClosesAt {
		t.Fatalf("opened %+v", lot.Lot)
	}
	gen := f.open(`{"title":"Generated id","start_price":5,"increment":1,"closes_at":"` + time.Now().Add(time.Hour).Format(time.RFC3339) + `"}`)
	if !strings.HasPrefix(gen.ID, "lot-") || gen.ID == "lot-1" {
		t.Fatalf("generated id %q", gen.ID)
	}

	f.mustBid("lot-1", alice, 100, "")
	b := f.mustBid("lot-1", bob, 110, "")
	if b.Minimum != 120 || b.High != 110 || b.Paddle != "bob" {
		t.Fatalf("bid answer %+v", b)
	}
	// An equal later bid does not beat the earlier one.
	p := wantProblem(t, f.bid("lot-1", alice, 110, ""), 422, api.TypeBidBelowIncrement)
	if p.Reason != "below_increment" || p.Minimum != 120 {
		t.Fatalf("refusal %+v", p)
	}
	f.mustBid("lot-1", f.auctioneer, 150, "floor-7")
	f.mustBid("lot-1", alice, 160, "")

	row := f.lot("lot-1")
	if row.High == nil || row.High.Paddle != "alice" || row.High.Amount != 160 || row.Minimum != 170 || len(row.Bids) != 4 {
		t.Fatalf("row %+v", row)
	}
	for i, want := range []int64{100, 110, 150, 160} {
		if row.Bids[i].Amount != want || !row.Bids[i].Accepted {
			t.Fatalf("bid %d: %+v", i, row.Bids[i])
		}
	}
	var list auctionapi.LotList
	f.do("GET", "/v1/lots", alice, "").decode(t, &list)
	if len(list.Lots) != 2 {
		t.Fatalf("list %+v", list)
	}

	r := f.do("POST", "/v1/lots/lot-1/close", f.auctioneer, "")
	if r.status != 200 {
		t.Fatalf("close: %d %s", r.status, r.body)
	}
	var c auctionapi.CloseResponse
	r.decode(t, &c)
	if !c.Sold || c.Winner == nil || *c.Winner != "alice" || *c.Price != 160 {
		t.Fatalf("close %s", r.body)
	}
	before := f.e.Journal.Durable()
	wantProblem(t, f.do("POST", "/v1/lots/lot-1/close", f.auctioneer, ""), 409, api.TypeLotClosed)
	wantProblem(t, f.bid("lot-1", bob, 500, ""), 409, api.TypeLotClosed)
	if after := f.e.Journal.Durable(); after != before {
		t.Fatalf("refusals appended entries: %d → %d", before, after)
	}
	if row := f.lot("lot-1"); !row.Closed || row.ClosedBy != "auctioneer" || len(row.Bids) != 4 {
		t.Fatalf("closed row %+v", row)
	}
	// A lot with no bids closes unsold.
	r = f.do("POST", "/v1/lots/"+gen.ID+"/close", f.auctioneer, "")
	r.decode(t, &c)
	if r.status != 200 || c.Sold || c.Winner != nil || c.Price != nil {
		t.Fatalf("unsold close %d %s", r.status, r.body)
	}
	// Roles: a bidder may not open or close.
	wantProblem(t, f.do("POST", "/v1/lots", alice, `{"title":"x","start_price":1,"increment":1,"duration_s":9}`), 403, api.TypeForbiddenRole)
}

func TestRefusalsAppendNothing(t *testing.T) {
	f := newFixture(t)
	alice := f.bidder("alice")
	f.open(`{"id":"l","title":"Clock","start_price":100,"increment":25,"duration_s":600}`)
	f.open(`{"id":"soon","title":"Soon gone","start_price":1,"increment":1,"duration_s":1}`)
	before := f.e.Journal.Durable()
	p := wantProblem(t, f.bid("l", alice, 99, ""), 422, api.TypeBidBelowStart)
	if p.Reason != "below_start_price" || p.Minimum != 100 {
		t.Fatalf("below start %+v", p)
	}
	p = wantProblem(t, f.bid("nope", alice, 100, ""), 404, api.TypeNotFound)
	if p.Reason != "unknown_lot" {
		t.Fatalf("unknown lot %+v", p)
	}
	wantProblem(t, f.do("GET", "/v1/lots/nope", alice, ""), 404, api.TypeNotFound)
	wantProblem(t, f.do("POST", "/v1/lots/nope/close", f.auctioneer, ""), 404, api.TypeNotFound)
	// A bidder bids as itself; an auctioneer must name the paddle.
	p = wantProblem(t, f.bid("l", alice, 100, "bob"), 422, api.TypeValidationFailed)
	if len(p.Errors) != 1 || p.Errors[0].Pointer != "/paddle" {
		t.Fatalf("paddle %+v", p)
	}
	wantProblem(t, f.bid("l", f.auctioneer, 100, ""), 422, api.TypeValidationFailed)
	wantProblem(t, f.do("POST", "/v1/lots/l/bids", alice, `{"amount":10.5}`), 400, api.TypeWrongFieldType)
	if after := f.e.Journal.Durable(); after != before {
		t.Fatalf("refusals appended entries: %d → %d", before, after)
	}
	f.mustBid("l", alice, 100, "")
	before = f.e.Journal.Durable()
	p = wantProblem(t, f.bid("l", alice, 124, ""), 422, api.TypeBidBelowIncrement)
	if p.Minimum != 125 {
		t.Fatalf("below increment %+v", p)
	}
	// Wait (polling) until the edge's clock passes the short lot's close.
	deadline := time.Now().Add(10 * time.Second)
	for !f.lot("soon").Closed {
		if time.Now().After(deadline) {
			t.Fatal("the lot never closed by time")
		}
		runtime.Gosched()
	}
	p = wantProblem(t, f.bid("soon", alice, 5, ""), 409, api.TypeLotClosed)
	if p.Reason != "lot_closed" {
		t.Fatalf("closed %+v", p)
	}
	if row := f.lot("soon"); row.ClosedBy != "time" || len(row.Bids) != 0 {
		t.Fatalf("time-closed row %+v", row)
	}
	if after := f.e.Journal.Durable(); after != before {
		t.Fatalf("refusals appended entries: %d → %d", before, after)
	}
}

func TestOpenValidation(t *testing.T) {
	f := newFixture(t)
	past := time.Now().Add(-time.Minute).Format(time.RFC3339)
	cases := []struct {
		body     string
		pointers []string
	}{
		{`{"start_price":1,"increment":1,"duration_s":5}`, []string{"/title"}},
		{`{"title":"a","increment":1,"duration_s":5}`, []string{"/start_price"}},
		{`{"title":"a","start_price":0,"increment":0,"duration_s":5}`, []string{"/start_price", "/increment"}},
		{`{"title":"a","start_price":1,"increment":1}`, []string{"/closes_at"}},
		{`{"title":"a","start_price":1,"increment":1,"duration_s":5,"closes_at":"` + past + `"}`, []string{"/closes_at"}},
		{`{"title":"a","start_price":1,"increment":1,"closes_at":"` + past + `"}`, []string{"/closes_at"}},
		{`{"title":"a","start_price":1,"increment":1,"closes_at":"2030-01-01T10:00:00"}`, []string{"/closes_at"}},
		{`{"title":"a","start_price":1,"increment":1,"duration_s":0}`, []string{"/duration_s"}},
		{`{"title":"a","start_price":1,"increment":1,"duration_s":5,"extend_s":3}`, []string{"/extend_s"}},
		{`{"title":"a","start_price":1,"increment":1,"duration_s":5,"soft_close_s":-1}`, []string{"/soft_close_s"}},
		{`{"id":"bad id","title":"a","start_price":1,"increment":1,"duration_s":5}`, []string{"/id"}},
	}
	before := f.e.Journal.Durable()
	for _, c := range cases {
		p := wantProblem(t, f.do("POST", "/v1/lots", f.auctioneer, c.body), 422, api.TypeValidationFailed)
		var got []string
		for _, e := range p.Errors {
			got = append(got, e.Pointer)
		}
		if strings.Join(got, ",") != strings.Join(c.pointers, ",") {
			t.Errorf("%s: errors at %v, want %v", c.body, got, c.pointers)
		}
	}
	f.open(`{"id":"dup","title":"a","start_price":1,"increment":1,"duration_s":5}`)
	wantProblem(t, f.do("POST", "/v1/lots", f.auctioneer, `{"id":"dup","title":"b","start_price":1,"increment":1,"duration_s":5}`), 409, api.TypeConflict)
	if after := f.e.Journal.Durable(); after != before+1 {
		t.Fatalf("appended %d entries, want 1", after-before)
	}
}

func TestSoftCloseExtendsExactly(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.bidder("alice"), f.bidder("bob")
	// The whole lot is inside its soft-close window: a bid in the last 200 s
	// moves the close to the bid's time + 150 s.
	f.open(`{"id":"soft","title":"Painting","start_price":10,"increment":5,"duration_s":100,"soft_close_s":200,"extend_s":150}`)
	// Outside the window: no bid extends.
	far := f.open(`{"id":"far","title":"Chair","start_price":10,"increment":5,"duration_s":3000,"soft_close_s":10}`)
	watch := f.stream("soft", bob, "")
	if ev := watch.next(t); ev.name != auctionapi.EventSnapshot {
		t.Fatalf("first event %+v", ev)
	}
	prev := f.lot("soft").ClosesAtMs
	extensions := 0
	for i, tok := range []string{alice, bob, alice, bob} {
		b := f.mustBid("soft", tok, int64(10+5*i), "")
		row := f.lot("soft")
		bidAt := row.Bids[i].HLC.Wall
		want := prev
		if bidAt >= prev-200_000 {
			want = max(prev, bidAt+150_000)
		}
		if b.ClosesAtMs != want || row.ClosesAtMs != want || b.Extended != (want != prev) {
			t.Fatalf("bid %d at %d: closes %d (row %d, extended %v), want %d", i, bidAt, b.ClosesAtMs, row.ClosesAtMs, b.Extended, want)
		}
		if ev := watch.next(t); ev.name != auctionapi.EventBid {
			t.Fatalf("bid %d: event %+v", i, ev)
		}
		if b.Extended {
			extensions++
			ev := watch.next(t)
			var x auctionapi.ExtendedEvent
			if err := json.Unmarshal([]byte(ev.data), &x); err != nil || ev.name != auctionapi.EventExtended || x.ClosesAtMs != want || x.PreviousMs != prev {
				t.Fatalf("bid %d: extension event %+v", i, ev)
			}
		}
		prev = want
	}
	if extensions == 0 {
		t.Fatal("no bid extended the close")
	}
	b := f.mustBid("far", alice, 10, "")
	if b.Extended || b.ClosesAtMs != far.ClosesAtMs || f.lot("far").ClosesAtMs != far.ClosesAtMs {
		t.Fatalf("a bid outside the window moved the close: %+v", b)
	}
}

func TestConcurrentEqualBidsOneWins(t *testing.T) {
	f := newFixture(t)
	f.open(`{"id":"race","title":"Vase","start_price":100,"increment":10,"duration_s":600}`)
	tokens := make([]string, 20)
	for i := range tokens {
		tokens[i] = f.bidder(fmt.Sprintf("p%02d", i))
	}
	var wg sync.WaitGroup
	replies := make([]reply, len(tokens))
	start := make(chan struct{})
	for i := range tokens {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			replies[i] = f.bid("race", tokens[i], 200, "")
		}()
	}
	close(start)
	wg.Wait()
	var winner string
	for i, r := range replies {
		switch r.status {
		case 201:
			if winner != "" {
				t.Fatalf("two accepted: %s and p%02d", winner, i)
			}
			winner = fmt.Sprintf("p%02d", i)
		case 422:
			wantProblem(t, r, 422, api.TypeBidBelowIncrement)
		default:
			t.Fatalf("reply %d: %d %s", i, r.status, r.body)
		}
	}
	row := f.lot("race")
	if winner == "" || len(row.Bids) != 1 || row.High.Paddle != winner {
		t.Fatalf("winner %q, row %+v", winner, row)
	}
}

// sseEvent is one event as a client parses it (WHATWG rules, subset).
type sseEvent struct {
	id, name, data string
}

type sseClient struct {
	res    *http.Response
	events chan sseEvent
	done   chan error
}

func (f *fixture) stream(lot, token, lastID string) *sseClient {
	f.t.Helper()
	req, err := http.NewRequest("GET", f.e.URL()+"/v1/lots/"+lot+"/events", nil)
	if err != nil {
		f.t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	if lastID != "" {
		req.Header.Set("Last-Event-ID", lastID)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		f.t.Fatal(err)
	}
	c := &sseClient{res: res, events: make(chan sseEvent, 1000), done: make(chan error, 1)}
	f.t.Cleanup(func() { res.Body.Close() })
	if res.StatusCode != 200 {
		return c
	}
	if ct := res.Header.Get("Content-Type"); !strings.HasPrefix(ct, "text/event-stream") {
		f.t.Fatalf("Content-Type %q", ct)
	}
	go func() {
		sc := bufio.NewScanner(res.Body)
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		var ev sseEvent
		var data []string
		for sc.Scan() {
			line := sc.Text()
			if line == "" {
				if data != nil {
					ev.data = strings.Join(data, "\n")
					c.events <- ev
				}
				ev.name, data = "", nil
				continue
			}
			if strings.HasPrefix(line, ":") {
				continue
			}
			field, value, _ := strings.Cut(line, ":")
			value = strings.TrimPrefix(value, " ")
			switch field {
			case "id":
				ev.id = value // persists to later events, per the spec
			case "event":
				ev.name = value
			case "data":
				data = append(data, value)
			}
		}
		c.done <- sc.Err()
		close(c.events)
	}()
	return c
}

func (c *sseClient) next(t *testing.T) sseEvent {
	t.Helper()
	select {
	case ev, ok := <-c.events:
		if !ok {
			t.Fatal("stream ended")
		}
		return ev
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}
	return sseEvent{}
}

func TestEventStreamInOrderAndResume(t *testing.T) {
	f := newFixture(t)
	alice, bob := f.bidder("alice"), f.bidder("bob")
	f.open(`{"id":"live","title":"Guitar","start_price":100,"increment":10,"duration_s":600}`)
	c := f.stream("live", bob, "")
	snap := c.next(t)
	if snap.name != auctionapi.EventSnapshot {
		t.Fatalf("first event %+v", snap)
	}
	var sv auctionapi.LotView
	if err := json.Unmarshal([]byte(snap.data), &sv); err != nil || sv.ID != "live" || sv.Minimum != 100 {
		t.Fatalf("snapshot %s: %v", snap.data, err)
	}
	type seen struct {
		seq    uint64
		amount int64
	}
	var got []seen
	amounts := []int64{100, 110, 130, 140, 150, 170}
	var lastID string
	readBid := func(c *sseClient, want int64) {
		t.Helper()
		ev := c.next(t)
		if ev.name != auctionapi.EventBid {
			t.Fatalf("event %+v, want bid %d", ev, want)
		}
		var b auctionapi.BidEvent
		if err := json.Unmarshal([]byte(ev.data), &b); err != nil {
			t.Fatal(err)
		}
		seq, err := strconv.ParseUint(ev.id, 10, 64)
		if err != nil || seq != b.Entry.Seq || b.Amount != want {
			t.Fatalf("bid event id %q data %s, want amount %d", ev.id, ev.data, want)
		}
		if len(got) > 0 && seq <= got[len(got)-1].seq {
			t.Fatalf("ids not increasing: %d after %d", seq, got[len(got)-1].seq)
		}
		got = append(got, seen{seq, b.Amount})
		lastID = ev.id
	}
	for i, a := range amounts[:3] {
		tok := alice
		if i%2 == 1 {
			tok = bob
		}
		f.mustBid("live", tok, a, "")
		wantProblem(t, f.bid("live", alice, a, ""), 422, api.TypeBidBelowIncrement) // never streamed
	}
	for _, a := range amounts[:3] {
		readBid(c, a)
	}
	c.res.Body.Close()
	// Bids while the client is away; it resumes from its last id.
	for _, a := range amounts[3:] {
		f.mustBid("live", alice, a, "")
	}
	c2 := f.stream("live", bob, lastID)
	if c2.res.StatusCode != 200 {
		t.Fatalf("resume: %d", c2.res.StatusCode)
	}
	for _, a := range amounts[3:5] {
		readBid(c2, a)
	}
	// The replayed event and the live ones join without gap or duplicate.
	f.mustBid("live", bob, 200, "")
	readBid(c2, amounts[5])
	readBid(c2, 200)
	r := f.do("POST", "/v1/lots/live/close", f.auctioneer, "")
	if r.status != 200 {
		t.Fatalf("close %d %s", r.status, r.body)
	}
	ev := c2.next(t)
	var ce auctionapi.ClosedEvent
	if err := json.Unmarshal([]byte(ev.data), &ce); err != nil || ev.name != auctionapi.EventClosed || ce.By != "auctioneer" || *ce.Winner != "bob" || *ce.Price != 200 {
		t.Fatalf("closed event %+v", ev)
	}
	select {
	case _, ok := <-c2.events:
		if ok {
			t.Fatal("an event after closed")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the stream did not end after closed")
	}
	// Nothing missed on a closed lot: 204, and an EventSource stops.
	if c3 := f.stream("live", bob, ev.id); c3.res.StatusCode != 204 {
		t.Fatalf("resume after close: %d", c3.res.StatusCode)
	}
	// Resuming from the start replays every bid, then the close.
	c4 := f.stream("live", bob, "0")
	got = nil
	for _, a := range append(append([]int64{}, amounts...), 200) {
		readBid(c4, a)
	}
	if ev := c4.next(t); ev.name != auctionapi.EventClosed {
		t.Fatalf("replay ends with %+v", ev)
	}
	wantProblem(t, f.do("GET", "/v1/lots/nope/events", bob, ""), 404, api.TypeNotFound)
}

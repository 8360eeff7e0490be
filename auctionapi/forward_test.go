package auctionapi_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"canopy/api"
	"canopy/auctionapi"
	"canopy/auth"
	"canopy/config"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/ledger"
	"canopy/replica"
)

func openEdge(t *testing.T, cfg config.Config) *edge.Edge {
	t.Helper()
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(10 * time.Millisecond) // polling a condition
	}
}

func (f *fixture) lotOK(id string) (auctionapi.LotView, bool) {
	f.t.Helper()
	r := f.do("GET", "/v1/lots/"+id, f.auctioneer, "")
	var v auctionapi.LotView
	if r.status != 200 || json.Unmarshal(r.body, &v) != nil {
		return v, false
	}
	return v, true
}

// TestBidForwardedToHomeOrRecordedAsIntent: a bid at edge B for a lot that
// lives on edge A is judged by A at once (and streams to A's watchers); with
// A down it is an intent (202 pending); once A is back, both edges rank the
// intent by price and time and report that it won.
func TestBidForwardedToHomeOrRecordedAsIntent(t *testing.T) {
	ev := testutil.NewEvent(t, "auction-two-edges")
	cfgA := ev.EdgeConfig(t, "edge-a", "")
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	cfgA.Node.Listen, cfgB.Node.Listen = testutil.FreeAddr(t), testutil.FreeAddr(t)
	cfgA.Sync.Peers = []string{"http://" + cfgB.Node.Listen}
	cfgB.Sync.Peers = []string{"http://" + cfgA.Node.Listen}
	a, err := edge.Open(context.Background(), cfgA, nil)
	if err != nil {
		t.Fatal(err)
	}
	aClosed := false // Close may run once
	t.Cleanup(func() {
		if !aClosed {
			a.Close(context.Background())
		}
	})
	b := openEdge(t, cfgB)
	auctioneer := ev.ValidToken(t, auth.RoleAuctioneer)
	fa := &fixture{t: t, e: a, ev: ev, auctioneer: auctioneer}
	fb := &fixture{t: t, e: b, ev: ev, auctioneer: auctioneer}
	fb.keys.Store(1_000_000) // the idempotency keys of the two edges must not meet
	alice, bob := fa.bidder("alice"), fa.bidder("bob")
	nodeA := a.Enrolment.Node

	eventually(t, 10*time.Second, "B learns A's node id", func() bool {
		_, ok := b.Sync.PeerURL(nodeA)
		return ok
	})
	lot := fa.open(`{"id":"vase","title":"Blue vase","start_price":1000,"increment":100,"duration_s":3600}`)
	if lot.Lot.Home != nodeA.String() {
		t.Fatalf("lot home %q, want %s", lot.Lot.Home, nodeA)
	}
	eventually(t, 10*time.Second, "the lot reaches B", func() bool { _, ok := fb.lotOK("vase"); return ok })

	watch := fa.stream("vase", auctioneer, "")
	if ev := watch.next(t); ev.name != auctionapi.EventSnapshot {
		t.Fatalf("first event %q, want snapshot", ev.name)
	}

	// Forwarded: A judges and appends; the answer names A's entry.
	r := fb.bid("vase", alice, 1000, "")
	if r.status != 201 {
		t.Fatalf("forwarded bid: %d %s", r.status, r.body)
	}
	var resp struct {
		auctionapi.BidResponse
		Entry ledger.Ref `json:"entry"`
	}
	r.decode(t, &resp)
	if !resp.Accepted || resp.Entry.Node != nodeA {
		t.Fatalf("forwarded bid answered %s, want accepted in A's log", r.body)
	}
	if high := fa.lot("vase").High; high == nil || high.Amount != 1000 || high.Paddle != "alice" {
		t.Fatalf("A's high %+v right after the forward, want alice 1000", high)
	}
	ev1 := watch.next(t)
	var be auctionapi.BidEvent
	if err := json.Unmarshal([]byte(ev1.data), &be); err != nil || ev1.name != auctionapi.EventBid || be.Amount != 1000 || be.Entry != resp.Entry {
		t.Fatalf("A's stream: %s %s, want the forwarded bid", ev1.name, ev1.data)
	}
	// A's refusal passes through B unchanged.
	wantProblem(t, fb.bid("vase", bob, 1050, ""), http.StatusUnprocessableEntity, api.TypeBidBelowIncrement)

	// A down: the bid at B is an intent, answered 202 pending. (Shutdown
	// waits for open requests, so the watcher leaves first.)
	watch.res.Body.Close()
	aClosed = true
	if err := a.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	r = fb.bid("vase", bob, 1500, "")
	if r.status != http.StatusAccepted {
		t.Fatalf("bid with the home edge down: %d %s, want 202", r.status, r.body)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Fatalf("intent took %s", took)
	}
	var ir auctionapi.IntentResponse
	r.decode(t, &ir)
	if ir.Status != "pending" || ir.Home != nodeA.String() || ir.Amount != 1500 {
		t.Fatalf("intent answered %s", r.body)
	}
	// B still judges what it knows: below the increment is refused.
	wantProblem(t, fb.bid("vase", bob, 1050, ""), http.StatusUnprocessableEntity, api.TypeBidBelowIncrement)

	// A back: both rows show the intent ranked by price-time, and that it won.
	a2 := openEdge(t, cfgA)
	fa.e = a2
	for name, f := range map[string]*fixture{"A": fa, "B": fb} {
		eventually(t, 20*time.Second, name+" ranks the intent", func() bool {
			v, ok := f.lotOK("vase")
			return ok && len(v.Bids) == 2 && v.High != nil && v.High.Amount == 1500 && v.High.Intent && v.IntentWon
		})
	}
	// A judges its next bid against the intent it received by sync.
	wantProblem(t, fa.bid("vase", alice, 1550, ""), http.StatusUnprocessableEntity, api.TypeBidBelowIncrement)
	fa.mustBid("vase", alice, 1600, "")
	if v := fa.lot("vase"); v.IntentWon || v.High.Amount != 1600 {
		t.Fatalf("after a higher accepted bid: high %+v, intent_won %v", v.High, v.IntentWon)
	}
}

// TestForwardedBidsNeedANode: POST /v1/sync/bids refuses a caller that is
// not an enrolled node, and a forwarded bid for a lot that does not live on
// the called edge.
func TestForwardedBidsNeedANode(t *testing.T) {
	f := newFixture(t)
	body := `{"lot":"x","amount":100,"token":"t","idempotency_key":"k"}`
	req, _ := http.NewRequest("POST", f.e.URL()+"/v1/sync/bids", strings.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusUnauthorized {
		t.Fatalf("unsigned forward: %d, want 401", res.StatusCode)
	}

	// A signed forward with a bad body names the field.
	other := f.ev.EdgeConfig(t, "edge-2", "")
	key, enrolment, err := auth.LoadNode(other.Node.Key)
	if err != nil {
		t.Fatal(err)
	}
	bad := []byte(`{"lot":"no spaces allowed","amount":100,"token":"","idempotency_key":"k"}`)
	req, _ = http.NewRequest("POST", f.e.URL()+"/v1/sync/bids", strings.NewReader(string(bad)))
	req.Header.Set("Content-Type", "application/json")
	replica.Sign(req, key, enrolment, bad)
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var p problem
	json.NewDecoder(res.Body).Decode(&p)
	res.Body.Close()
	if res.StatusCode != http.StatusUnprocessableEntity || len(p.Errors) != 2 {
		t.Fatalf("bad forward: %d %+v, want 422 naming /lot and /token", res.StatusCode, p)
	}
}

// answerLosingProxy passes everything to target, except that while lose is
// set, a forwarded bid reaches target (and is judged there) but its answer
// never reaches the caller — the proxy holds the request until the caller
// gives up — and the entries target streams to the caller wait too, so the
// caller cannot learn the outcome by sync before it gives up. With
// dropWhen set instead, streams pass and the answer is dropped (the
// connection closed) once dropWhen holds.
type answerLosingProxy struct {
	target string
	rp     *httputil.ReverseProxy
	lost   atomic.Int32

	mu       sync.Mutex
	gate     chan struct{} // non-nil while answers are lost; closed to let streams go on
	dropWhen func() bool
}

func newAnswerLosingProxy(t *testing.T, target string) *answerLosingProxy {
	u, err := url.Parse(target)
	if err != nil {
		t.Fatal(err)
	}
	p := &answerLosingProxy{target: target, rp: httputil.NewSingleHostReverseProxy(u)}
	p.rp.FlushInterval = -1 // sync streams pass through as they come
	return p
}

func (p *answerLosingProxy) lose() {
	p.mu.Lock()
	p.gate = make(chan struct{})
	p.mu.Unlock()
}

func (p *answerLosingProxy) restore() {
	p.mu.Lock()
	close(p.gate)
	p.gate = nil
	p.mu.Unlock()
}

func (p *answerLosingProxy) closed() chan struct{} {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.gate
}

func (p *answerLosingProxy) drop(when func() bool) {
	p.mu.Lock()
	p.dropWhen = when
	p.mu.Unlock()
}

func (p *answerLosingProxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	losing, dropWhen := p.gate != nil || p.dropWhen != nil, p.dropWhen
	p.mu.Unlock()
	if r.URL.Path != "/v1/sync/bids" || !losing {
		p.rp.ServeHTTP(gatedWriter{w, p, r.Context()}, r)
		return
	}
	body, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, err.Error(), http.StatusBadGateway)
		return
	}
	req, _ := http.NewRequestWithContext(context.WithoutCancel(r.Context()), r.Method, p.target+r.URL.Path, bytes.NewReader(body))
	req.Header = r.Header.Clone()
	res, err := http.DefaultClient.Do(req)
	if err == nil {
		io.Copy(io.Discard, res.Body)
		res.Body.Close()
	}
	p.lost.Add(1)
	if dropWhen == nil {
		<-r.Context().Done() // the answer is lost: the caller times out
		return
	}
	for deadline := time.Now().Add(10 * time.Second); !dropWhen() && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond) // polling a condition
	}
	panic(http.ErrAbortHandler) // the connection breaks: no answer
}

// gatedWriter holds every write while the proxy loses answers.
type gatedWriter struct {
	http.ResponseWriter
	p   *answerLosingProxy
	ctx context.Context
}

func (g gatedWriter) Write(b []byte) (int, error) {
	if gate := g.p.closed(); gate != nil {
		select {
		case <-gate:
		case <-g.ctx.Done():
			return 0, g.ctx.Err()
		}
	}
	return g.ResponseWriter.Write(b)
}

func (g gatedWriter) Unwrap() http.ResponseWriter { return g.ResponseWriter }

// lotBehindProxy starts edge A and edge B, B reaching A only through an
// answerLosingProxy (A's entries come to B by B's pull through it), and
// opens a lot on A (body lotJSON) that has reached B. bForward bounds B's
// bid forwards (0: the default).
func lotBehindProxy(t *testing.T, slug, lotJSON string, bForward time.Duration) (fa, fb *fixture, proxy *answerLosingProxy, a *edge.Edge) {
	t.Helper()
	ev := testutil.NewEvent(t, slug)
	cfgA := ev.EdgeConfig(t, "edge-a", "")
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	cfgA.Node.Listen, cfgB.Node.Listen = testutil.FreeAddr(t), testutil.FreeAddr(t)
	proxy = newAnswerLosingProxy(t, "http://"+cfgA.Node.Listen)
	front := httptest.NewServer(proxy)
	t.Cleanup(front.Close)
	cfgB.Sync.Peers = []string{front.URL}
	cfgB.Sync.BidForwardTimeout.Duration = bForward
	a = openEdge(t, cfgA)
	b := openEdge(t, cfgB)
	auctioneer := ev.ValidToken(t, auth.RoleAuctioneer)
	fa = &fixture{t: t, e: a, ev: ev, auctioneer: auctioneer}
	fb = &fixture{t: t, e: b, ev: ev, auctioneer: auctioneer}
	fb.keys.Store(1_000_000)
	eventually(t, 10*time.Second, "B learns A's node id", func() bool {
		_, ok := b.Sync.PeerURL(a.Enrolment.Node)
		return ok
	})
	lot := fa.open(lotJSON)
	eventually(t, 10*time.Second, "the lot reaches B", func() bool { _, ok := fb.lotOK(lot.ID); return ok })
	return fa, fb, proxy, a
}

// TestForwardedBidAnsweredTooLateCountsOnce: the home edge accepts a
// forwarded bid but its answer does not reach the forwarding edge in time,
// so that edge records an intent for the same bid (202 pending). Once the
// logs meet, both edges count the bid once — the home edge's entry — and
// do not report an intent as the winner.
func TestForwardedBidAnsweredTooLateCountsOnce(t *testing.T) {
	fa, fb, proxy, a := lotBehindProxy(t, "auction-late-answer",
		`{"id":"clock","title":"Wall clock","start_price":500,"increment":50,"duration_s":3600}`, 0)
	carol := fa.bidder("carol")

	proxy.lose()
	r := fb.bid("clock", carol, 700, "")
	if r.status != http.StatusAccepted {
		t.Fatalf("bid whose answer was lost: %d %s, want 202 pending", r.status, r.body)
	}
	var ir auctionapi.IntentResponse
	r.decode(t, &ir)
	if proxy.lost.Load() != 1 {
		t.Fatalf("%d forwards reached A, want 1", proxy.lost.Load())
	}
	proxy.restore()

	for name, f := range map[string]*fixture{"A": fa, "B": fb} {
		eventually(t, 20*time.Second, name+" holds both entries of the bid", func() bool {
			v, ok := f.lotOK("clock")
			return ok && len(v.Bids) == 2
		})
		v := f.lot("clock")
		if v.IntentWon || v.High == nil || v.High.Intent || v.High.ID != ir.Bid || v.High.Amount != 700 || v.High.Entry.Node != a.Enrolment.Node {
			t.Fatalf("%s: high %+v, intent_won %v; want A's entry of bid %s", name, v.High, v.IntentWon, ir.Bid)
		}
		for _, bv := range v.Bids {
			if bv.Intent && (bv.Accepted || bv.Reason != "judged_at_home" || bv.ID != ir.Bid) {
				t.Fatalf("%s: the intent %+v, want refused as judged_at_home", name, bv)
			}
		}
		// The next bid is judged against 700 once, not against a second copy.
		wantProblem(t, f.bid("clock", carol, 720, ""), http.StatusUnprocessableEntity, api.TypeBidBelowIncrement)
	}
}

// TestForwardedBidAnsweredFromSync: the home edge accepts a forwarded bid,
// its entry reaches the forwarding edge by sync, and then the forward's
// connection breaks. The forwarding edge answers the bidder from that
// entry — accepted, 201 — and records no intent.
func TestForwardedBidAnsweredFromSync(t *testing.T) {
	// B's forward deadline is long enough for the entry to come back by
	// sync before the forward fails.
	fa, fb, proxy, a := lotBehindProxy(t, "auction-answer-from-sync",
		`{"id":"lamp","title":"Brass lamp","start_price":300,"increment":20,"duration_s":3600}`, 20*time.Second)
	dana := fa.bidder("dana")

	proxy.drop(func() bool {
		v, ok := fb.lotOK("lamp")
		return ok && len(v.Bids) == 1
	})
	r := fb.bid("lamp", dana, 400, "")
	if r.status != http.StatusCreated {
		t.Fatalf("bid answered %d %s, want 201 from the synced entry", r.status, r.body)
	}
	var resp struct {
		auctionapi.BidResponse
		Entry ledger.Ref `json:"entry"`
	}
	r.decode(t, &resp)
	if !resp.Accepted || resp.Amount != 400 || resp.High != 400 || resp.Minimum != 420 || resp.Entry.Node != a.Enrolment.Node {
		t.Fatalf("answer %s, want A's accepted entry of the bid", r.body)
	}
	if proxy.lost.Load() != 1 {
		t.Fatalf("%d forwards reached A, want 1", proxy.lost.Load())
	}
	if v := fb.lot("lamp"); len(v.Bids) != 1 || v.Bids[0].Intent {
		t.Fatalf("B's lot %+v: want only A's entry, no intent", v.Bids)
	}
}

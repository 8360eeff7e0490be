package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"canopy/auth"
)

// BidsOptions configures RunBids.
type BidsOptions struct {
	Dir      string
	Duration time.Duration // how long the load generator bids (default 5 s)
	Rate     int           // bids started per second, open loop (default 500)
	Watchers int           // SSE watchers of the lot (default 50)
	Paddles  int           // bidder tokens the load generator rotates (default 8)
}

// BidsResult is the load generator's line: latency of every bid, accepted
// or refused, and how many were each.
type BidsResult struct {
	Result
	Accepted int64 `json:"accepted"`
	Refused  int64 `json:"refused"`
}

// WatchersResult is the watchers' line: the delay from a bid being made
// durable and published to a watcher parsing its event.
type WatchersResult struct {
	Bench    string  `json:"bench"`
	Watchers int     `json:"watchers"`
	Events   int64   `json:"events"` // bid events received, all watchers
	Missed   int64   `json:"missed"` // accepted bids some watcher never saw
	P50Ms    float64 `json:"p50_ms"`
	P99Ms    float64 `json:"p99_ms"`
	MaxMs    float64 `json:"max_ms"`
}

// Target of the bids benchmark.
const bidsTargetP99Ms = 5.0

// RunBids starts an edge, opens one lot, connects the SSE watchers, runs
// the bidding load generator in a separate process ("bench bids-load")
// through the real HTTP API, and writes the generator's line, the
// watchers' line and a ratio line against the target to w.
func RunBids(ctx context.Context, w io.Writer, o BidsOptions) error {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Rate <= 0 {
		o.Rate = 500
	}
	if o.Watchers < 0 {
		o.Watchers = 0
	}
	if o.Paddles <= 0 {
		o.Paddles = 8
	}
	dir, err := os.MkdirTemp(o.Dir, "canopy-bench-bids-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := StartEdge(ctx, dir, "bench-bids")
	if err != nil {
		return err
	}
	defer e.Close(context.Background())
	auctioneer, err := e.Token(auth.RoleAuctioneer, "bench-auctioneer", "")
	if err != nil {
		return err
	}
	var paddles []string
	for i := range o.Paddles {
		tok, err := e.Token(auth.RoleBidder, fmt.Sprintf("paddle-%02d", i+1), "")
		if err != nil {
			return err
		}
		paddles = append(paddles, tok)
	}
	u := e.URL()
	c := Client(4)
	const lotID, increment = "bench-lot", 10
	if err := CallJSON(ctx, c, "POST", u+"/v1/lots", auctioneer, "bench-open", map[string]any{
		"id": lotID, "title": "Benchmark lot", "start_price": 100, "increment": increment,
		"duration_s": int64(o.Duration/time.Second) + 600,
	}, 201, nil); err != nil {
		return fmt.Errorf("open lot: %w", err)
	}

	wctx, stopWatchers := context.WithCancel(ctx)
	defer stopWatchers()
	watchers := make([]*watcher, o.Watchers)
	for i := range watchers {
		watchers[i] = &watcher{ready: make(chan error, 1)}
		go watchers[i].run(wctx, u+"/v1/lots/"+lotID+"/events", auctioneer)
	}
	for _, wt := range watchers {
		select {
		case err := <-wt.ready:
			if err != nil {
				return fmt.Errorf("watcher: %w", err)
			}
		case <-time.After(10 * time.Second):
			return errors.New("a watcher did not connect within 10 s")
		}
	}

	lines, err := runBidsChild(ctx, "bench", "bids-load", "--url", u, "--lot", lotID,
		"--tokens", strings.Join(paddles, ","), "--rate", strconv.Itoa(o.Rate),
		"--duration", o.Duration.String(), "--increment", strconv.Itoa(increment))
	if err != nil {
		return err
	}
	if len(lines) != 1 {
		return fmt.Errorf("load generator printed %d lines, want 1", len(lines))
	}
	load := lines[0]
	// Every watcher must see every accepted bid; wait for them (bounded).
	deadline := time.Now().Add(10 * time.Second)
	for _, wt := range watchers {
		for wt.count.Load() < load.Accepted && time.Now().Before(deadline) && !wt.gone.Load() {
			time.Sleep(5 * time.Millisecond) // polling the watchers' progress
		}
	}
	stopWatchers()
	wr := WatchersResult{Bench: "bids-watchers", Watchers: o.Watchers}
	var lat []time.Duration
	for _, wt := range watchers {
		wt.mu.Lock()
		lat = append(lat, wt.lag...)
		wt.mu.Unlock()
		n := wt.count.Load()
		wr.Events += n
		wr.Missed += max(load.Accepted-n, 0)
	}
	s := summarize("bids-watchers", lat, 1)
	wr.P50Ms, wr.P99Ms = s.P50Ms, s.P99Ms
	if len(lat) > 0 {
		wr.MaxMs = round(float64(lat[len(lat)-1]) / float64(time.Millisecond))
	}
	enc := json.NewEncoder(w)
	if err := enc.Encode(load); err != nil {
		return err
	}
	if err := enc.Encode(wr); err != nil {
		return err
	}
	return enc.Encode(Ratio{Bench: "bids", What: fmt.Sprintf("p99_ms at %d bids/s with %d watchers", o.Rate, o.Watchers),
		Value: load.P99Ms, Target: fmt.Sprintf("<= %.0f", bidsTargetP99Ms), Met: load.P99Ms <= bidsTargetP99Ms && load.Errors == 0})
}

// watcher is one SSE client of the lot.
type watcher struct {
	ready chan error
	count atomic.Int64 // bid events received
	gone  atomic.Bool  // the stream ended
	mu    sync.Mutex
	lag   []time.Duration
}

func (wt *watcher) run(ctx context.Context, url, token string) {
	defer wt.gone.Store(true)
	req, err := http.NewRequestWithContext(ctx, "GET", url, nil)
	if err != nil {
		wt.ready <- err
		return
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "text/event-stream")
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		wt.ready <- err
		return
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(res.Body)
		wt.ready <- fmt.Errorf("events: %d %s", res.StatusCode, bytes.TrimSpace(b))
		return
	}
	sc := bufio.NewScanner(res.Body)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var name string
	var ev struct {
		PublishedAt time.Time `json:"published_at"`
	}
	for sc.Scan() {
		line := sc.Bytes()
		switch {
		case len(line) == 0:
			name = ""
		case bytes.HasPrefix(line, []byte("event: ")):
			name = string(line[len("event: "):])
		case bytes.HasPrefix(line, []byte("data: ")):
			switch name {
			case "snapshot":
				wt.ready <- nil
			case "bid":
				now := time.Now()
				if json.Unmarshal(line[len("data: "):], &ev) == nil && !ev.PublishedAt.IsZero() {
					wt.mu.Lock()
					wt.lag = append(wt.lag, now.Sub(ev.PublishedAt))
					wt.mu.Unlock()
				}
				wt.count.Add(1)
			}
		}
	}
}

// runBidsChild runs the load generator process and parses its lines.
func runBidsChild(ctx context.Context, args ...string) ([]BidsResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("load generator: %w", err)
	}
	var rs []BidsResult
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var r BidsResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("load generator printed %q: %w", line, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// BidsLoad is the load generator's side: at an open-loop rate, bid on the
// lot with the paddles in turn, each bid the known high plus the increment
// (the minimum), and print one BidsResult line. A refusal (another bid got
// there first) is counted, not an error; anything else is an error.
func BidsLoad(ctx context.Context, w io.Writer, url, lot string, tokens []string, increment int64, o LoadOptions) error {
	if len(tokens) == 0 {
		return errors.New("bench bids-load: no bidder tokens")
	}
	c := Client(max(o.Concurrency, 256))
	run := time.Now().UnixNano()
	var high atomic.Int64 // the highest amount known to be accepted
	high.Store(100 - increment)
	raise := func(v int64) {
		for {
			cur := high.Load()
			if v <= cur || high.CompareAndSwap(cur, v) {
				return
			}
		}
	}
	var accepted, refused atomic.Int64
	op := func(ctx context.Context, _, n int) error {
		amount := high.Load() + increment
		body := fmt.Sprintf(`{"amount":%d}`, amount)
		req, err := http.NewRequestWithContext(ctx, "POST", url+"/v1/lots/"+lot+"/bids", strings.NewReader(body))
		if err != nil {
			return err
		}
		req.Header.Set("Authorization", "Bearer "+tokens[n%len(tokens)])
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Idempotency-Key", fmt.Sprintf("bid-%d-%d", run, n))
		res, err := c.Do(req)
		if err != nil {
			return err
		}
		defer res.Body.Close()
		b, err := io.ReadAll(res.Body)
		if err != nil {
			return err
		}
		var ans struct {
			Amount  int64  `json:"amount"`
			High    int64  `json:"high"`
			Type    string `json:"type"`
			Minimum int64  `json:"minimum"`
		}
		_ = json.Unmarshal(b, &ans)
		switch res.StatusCode {
		case http.StatusCreated:
			accepted.Add(1)
			raise(ans.Amount)
		case http.StatusUnprocessableEntity:
			if !strings.HasSuffix(ans.Type, ":bid-below-increment") {
				return fmt.Errorf("bid %d: %d %s", amount, res.StatusCode, bytes.TrimSpace(b))
			}
			refused.Add(1)
			raise(ans.High)
		default:
			return fmt.Errorf("bid %d: %d %s", amount, res.StatusCode, bytes.TrimSpace(b))
		}
		return nil
	}
	r := Drive(ctx, "bids", o, op)
	return json.NewEncoder(w).Encode(BidsResult{Result: r, Accepted: accepted.Load(), Refused: refused.Load()})
}

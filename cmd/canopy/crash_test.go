package main_test

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
)

// acked is one request whose response was received before the crash:
// replaying it with its Idempotency-Key must give the same bytes.
type acked struct {
	method, path, key, body string
	status                  int
	response                []byte
}

// TestHTTPCrashSafety: 16 tills create and pay orders, 4 doors scan
// tickets in and out and 4 bidders bid on a lot, against the real binary,
// which is killed with SIGKILL while requests are in flight and restarted,
// 20 times. Every response received is still true afterwards (the same
// request replays byte for byte), and the log and its views verify.
func TestHTTPCrashSafety(t *testing.T) {
	f := newFixture(t)
	till := strings.TrimSpace(mustCanopy(t, "token", "issue", "--event", f.ev, "--role", "pos", "--device", "till-1", "--ttl", "1h").stdout)
	auctioneer := strings.TrimSpace(mustCanopy(t, "token", "issue", "--event", f.ev, "--role", "auctioneer", "--device", "gavel", "--ttl", "1h").stdout)
	var bidders []string
	for i := 0; i < 4; i++ {
		bidders = append(bidders, strings.TrimSpace(mustCanopy(t, "token", "issue", "--event", f.ev, "--role", "bidder", "--device", fmt.Sprintf("paddle-%d", i), "--ttl", "1h").stdout))
	}
	var tickets []string
	for _, line := range strings.Split(strings.TrimSpace(mustCanopy(t, "ticket", "issue", "--event", f.ev, "--count", "40", "--reentry").stdout), "\n")[1:] {
		cols := strings.Split(line, ",")
		tickets = append(tickets, cols[len(cols)-1])
	}
	p := f.startEdge(t)
	if r := do(t, "PUT", p.url+"/v1/vendors/v1", f.org, `{"name":"Stall One","active":true}`); r.status != 200 {
		t.Fatalf("vendor: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", p.url+"/v1/catalog/tea", f.org, `{"vendor":"v1","name":"Tea","price":350,"tax_rate":700,"tax_inclusive":true,"track_stock":true,"active":true}`); r.status != 200 {
		t.Fatalf("catalog: %d %s", r.status, r.body)
	}

	if r := do(t, "POST", p.url+"/v1/lots", auctioneer, `{"id":"lot-1","title":"Quilt","start_price":1000,"increment":10,"duration_s":3600}`, "Idempotency-Key", "lot-1"); r.status != 201 {
		t.Fatalf("lot: %d %s", r.status, r.body)
	}
	var mu sync.Mutex
	var log []acked
	const rounds, tills = 20, 16
	for round := 0; round < rounds; round++ {
		if round > 0 {
			p = f.startEdge(t)
		}
		killAt := int64(20 + (round*37)%60)
		var n atomic.Int64
		stop := make(chan struct{})
		var once sync.Once
		var wg sync.WaitGroup
		for w := 0; w < tills; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					key := fmt.Sprintf("r%d-w%d-i%d", round, w, i)
					body := fmt.Sprintf(`{"lines":[{"sku":"tea","qty":%d}]}`, 1+i%3)
					r, err := doErr("POST", p.url+"/v1/orders", till, body, "Idempotency-Key", key+"-o")
					if err != nil || r.status != 201 {
						if err == nil {
							t.Errorf("create order: %d %s", r.status, r.body)
						}
						return // the edge died under us
					}
					var o struct {
						Order struct {
							ID     string `json:"id"`
							Totals struct {
								Total int64 `json:"total"`
							} `json:"totals"`
						} `json:"order"`
					}
					if err := json.Unmarshal(r.body, &o); err != nil {
						t.Error(err)
						return
					}
					mu.Lock()
					log = append(log, acked{"POST", "/v1/orders", key + "-o", body, r.status, r.body})
					mu.Unlock()
					payPath := "/v1/orders/" + o.Order.ID + "/payments"
					payBody := fmt.Sprintf(`{"method":"card","amount":%d,"reference":"ref-%s"}`, o.Order.Totals.Total, key)
					r, err = doErr("POST", p.url+payPath, till, payBody, "Idempotency-Key", key+"-p")
					if err != nil {
						return
					}
					if r.status != 201 {
						t.Errorf("pay: %d %s", r.status, r.body)
						return
					}
					mu.Lock()
					log = append(log, acked{"POST", payPath, key + "-p", payBody, r.status, r.body})
					mu.Unlock()
					if n.Add(1) == killAt {
						once.Do(func() {
							p.cmd.Process.Kill() // SIGKILL while the other tills are mid-request
							close(stop)
						})
					}
				}
			}(w)
		}
		for d := 0; d < 4; d++ { // doors: each ticket in, out, in, …
			wg.Add(1)
			go func(d int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					dir := "in"
					if (i/10)%2 == 1 {
						dir = "out"
					}
					key := fmt.Sprintf("r%d-d%d-i%d", round, d, i)
					body := fmt.Sprintf(`{"ticket":%q,"door":"door-%d","direction":%q}`, tickets[d*10+i%10], d, dir)
					r, err := doErr("POST", p.url+"/v1/checkins", f.door, body, "Idempotency-Key", key)
					if err != nil {
						return
					}
					if r.status != 200 {
						t.Errorf("scan: %d %s", r.status, r.body)
						return
					}
					mu.Lock()
					log = append(log, acked{"POST", "/v1/checkins", key, body, r.status, r.body})
					mu.Unlock()
				}
			}(d)
		}
		for b := 0; b < 4; b++ { // bidders racing for the lot
			wg.Add(1)
			go func(b int) {
				defer wg.Done()
				for i := 0; ; i++ {
					select {
					case <-stop:
						return
					default:
					}
					r, err := doErr("GET", p.url+"/v1/lots/lot-1", bidders[b], "")
					if err != nil {
						return
					}
					var lot struct {
						Minimum int64 `json:"minimum"`
					}
					json.Unmarshal(r.body, &lot)
					key := fmt.Sprintf("r%d-b%d-i%d", round, b, i)
					body := fmt.Sprintf(`{"amount":%d}`, lot.Minimum)
					r, err = doErr("POST", p.url+"/v1/lots/lot-1/bids", bidders[b], body, "Idempotency-Key", key)
					if err != nil {
						return
					}
					if r.status == 201 { // outbid races answer 422 and are not remembered
						mu.Lock()
						log = append(log, acked{"POST", "/v1/lots/lot-1/bids", key, body, r.status, r.body})
						mu.Unlock()
					}
				}
			}(b)
		}
		wg.Wait()
		<-p.exited
		if t.Failed() {
			t.Fatalf("round %d failed\nstderr: %s", round, p.stderr)
		}
	}

	// Restart once more: every acknowledged response replays unchanged.
	p = f.startEdge(t)
	tokenFor := map[string]string{"/v1/checkins": f.door, "/v1/lots/lot-1/bids": bidders[0]}
	kinds := map[string]int{}
	for _, a := range log {
		tok := till
		if t, ok := tokenFor[a.path]; ok {
			tok = t
		}
		kinds[a.path]++
		r := do(t, a.method, p.url+a.path, tok, a.body, "Idempotency-Key", a.key)
		if r.status != a.status || !bytes.Equal(r.body, a.response) {
			t.Fatalf("%s %s (key %s) answered before the crash:\n%s\nnow %d:\n%s", a.method, a.path, a.key, a.response, r.status, r.body)
		}
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("%s %s (key %s): not a replay after restart", a.method, a.path, a.key)
		}
	}
	p.stop(t)
	if r := canopy(t, "verify", "log", f.data, "--event", f.ev); r.code != 0 {
		t.Fatalf("verify log after %d crashes: exit %d\n%s%s", rounds, r.code, r.stdout, r.stderr)
	}
	if kinds["/v1/checkins"] == 0 || kinds["/v1/lots/lot-1/bids"] == 0 {
		t.Fatalf("the drill acknowledged no scans or no bids: %v", kinds)
	}
	t.Logf("%d rounds, %d acknowledged responses replayed unchanged (%d scans, %d bids)", rounds, len(log), kinds["/v1/checkins"], kinds["/v1/lots/lot-1/bids"])
}

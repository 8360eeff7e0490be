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

// TestHTTPCrashSafety: 16 tills create and pay orders against the real
// binary, which is killed with SIGKILL while requests are in flight and
// restarted, 20 times. Every response received is still true afterwards
// (the same request replays byte for byte), and the log and its views
// verify.
func TestHTTPCrashSafety(t *testing.T) {
	f := newFixture(t)
	till := strings.TrimSpace(mustCanopy(t, "token", "issue", "--event", f.ev, "--role", "pos", "--device", "till-1", "--ttl", "1h").stdout)
	p := f.startEdge(t)
	if r := do(t, "PUT", p.url+"/v1/vendors/v1", f.org, `{"name":"Stall One","active":true}`); r.status != 200 {
		t.Fatalf("vendor: %d %s", r.status, r.body)
	}
	if r := do(t, "PUT", p.url+"/v1/catalog/tea", f.org, `{"vendor":"v1","name":"Tea","price":350,"tax_rate":700,"tax_inclusive":true,"track_stock":true,"active":true}`); r.status != 200 {
		t.Fatalf("catalog: %d %s", r.status, r.body)
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
		wg.Wait()
		<-p.exited
		if t.Failed() {
			t.Fatalf("round %d failed\nstderr: %s", round, p.stderr)
		}
	}

	// Restart once more: every acknowledged response replays unchanged.
	p = f.startEdge(t)
	for _, a := range log {
		r := do(t, a.method, p.url+a.path, till, a.body, "Idempotency-Key", a.key)
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
	t.Logf("%d rounds, %d acknowledged responses replayed unchanged", rounds, len(log))
}

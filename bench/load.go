package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// LoadOptions says how a load generator drives one operation.
type LoadOptions struct {
	Concurrency int           // closed loop: this many workers, each one request after another
	Rate        int           // open loop (if > 0): start this many operations per second
	Duration    time.Duration // how long to drive
}

// Op is one operation of a load (e.g. create an order and pay it). It
// returns an error for any answer the load does not expect.
type Op func(ctx context.Context, worker, n int) error

// Drive runs op under o and summarizes latency. In open loop each
// operation's latency is measured from when it was due, so a stall shows up
// in the tail instead of being hidden (no coordinated omission).
func Drive(ctx context.Context, name string, o LoadOptions, op Op) Result {
	var mu sync.Mutex
	var lat []time.Duration
	var errs atomic.Int64
	var firstErr atomic.Value
	record := func(d time.Duration, err error) {
		if err != nil {
			if errs.Add(1) == 1 {
				firstErr.Store(err.Error())
			}
			return
		}
		mu.Lock()
		lat = append(lat, d)
		mu.Unlock()
	}
	start := time.Now()
	deadline := start.Add(o.Duration)
	var wg sync.WaitGroup
	if o.Rate > 0 {
		interval := time.Second / time.Duration(o.Rate)
		sem := make(chan struct{}, max(o.Concurrency, 256))
		for i := 0; ; i++ {
			due := start.Add(time.Duration(i) * interval)
			if !due.Before(deadline) || ctx.Err() != nil {
				break
			}
			if d := time.Until(due); d > 0 {
				time.Sleep(d) // pacing an open-loop load, not synchronization
			}
			sem <- struct{}{}
			wg.Add(1)
			go func(i int, due time.Time) {
				defer wg.Done()
				defer func() { <-sem }()
				err := op(ctx, i%max(o.Concurrency, 1), i)
				record(time.Since(due), err)
			}(i, due)
		}
	} else {
		for w := 0; w < o.Concurrency; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for n := 0; time.Now().Before(deadline) && ctx.Err() == nil; n++ {
					t0 := time.Now()
					err := op(ctx, w, n)
					record(time.Since(t0), err)
				}
			}(w)
		}
	}
	wg.Wait()
	r := summarize(name, lat, time.Since(start).Seconds())
	r.Concurrency = o.Concurrency
	r.Rate = o.Rate
	r.Errors = errs.Load()
	if v, ok := firstErr.Load().(string); ok {
		r.FirstError = v
	}
	return r
}

// Client is a keep-alive HTTP client for a load generator.
func Client(conns int) *http.Client {
	return &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			MaxIdleConns:        conns,
			MaxIdleConnsPerHost: conns,
			IdleConnTimeout:     90 * time.Second,
		},
	}
}

// CallJSON sends a JSON request with a bearer token and an Idempotency-Key
// (for POST) and decodes a JSON answer into out. Any status other than
// want is an error carrying the problem's text.
func CallJSON(ctx context.Context, c *http.Client, method, url, token, idem string, body any, want int, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, url, rd)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+token)
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if idem != "" {
		req.Header.Set("Idempotency-Key", idem)
	}
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return err
	}
	if resp.StatusCode != want {
		return fmt.Errorf("%s %s: %d: %s", method, url, resp.StatusCode, strings.TrimSpace(string(b)))
	}
	if out != nil {
		return json.Unmarshal(b, out)
	}
	return nil
}

// RunChild runs this binary again with args (a load generator in its own
// process, so it does not share the server's CPU scheduler or heap) and
// returns the JSON result lines it printed.
func RunChild(ctx context.Context, args ...string) ([]Result, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("load generator %v: %w", args, err)
	}
	var rs []Result
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if line == "" {
			continue
		}
		var r Result
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("load generator printed %q: %w", line, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

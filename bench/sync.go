package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
)

// SyncOptions configures RunSync.
type SyncOptions struct {
	Dir     string
	Entries []int // backlogs to measure
}

// countingTransport counts the bytes of response bodies (what the
// receiving node pulls off the wire).
type countingTransport struct {
	next http.RoundTripper
	n    atomic.Int64
}

func (c *countingTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	resp, err := c.next.RoundTrip(r)
	if err != nil {
		return resp, err
	}
	resp.Body = &countingBody{ReadCloser: resp.Body, n: &c.n}
	return resp, nil
}

type countingBody struct {
	io.ReadCloser
	n *atomic.Int64
}

func (b *countingBody) Read(p []byte) (int, error) {
	n, err := b.ReadCloser.Read(p)
	b.n.Add(int64(n))
	return n, err
}

// RunSync measures catch-up: an edge holding a backlog of signed entries is
// met by a fresh edge that pulls them all; it reports entries/s, the time
// from connection to equal vectors, and bytes on the wire per entry
// relative to the entries' own encoded size.
func RunSync(ctx context.Context, w io.Writer, o SyncOptions) error {
	enc := json.NewEncoder(w)
	for _, n := range o.Entries {
		r, err := syncOnce(ctx, o.Dir, n)
		if err != nil {
			return err
		}
		enc.Encode(r)
	}
	return nil
}

// SyncResult is one catch-up measurement.
type SyncResult struct {
	Bench           string  `json:"bench"`
	Entries         int     `json:"entries"`
	Seconds         float64 `json:"seconds"`
	PerSecond       float64 `json:"per_second"`
	WireBytes       int64   `json:"wire_bytes"`
	EncodedBytes    int64   `json:"encoded_bytes"`
	WireOverEncoded float64 `json:"wire_over_encoded"`
}

func syncOnce(ctx context.Context, root string, n int) (SyncResult, error) {
	dir, err := os.MkdirTemp(root, "canopy-bench-sync-")
	if err != nil {
		return SyncResult{}, err
	}
	defer os.RemoveAll(dir)
	a, err := StartEdge(ctx, filepath.Join(dir, "a"), "bench-sync")
	if err != nil {
		return SyncResult{}, err
	}
	defer a.Close(context.Background())
	var encoded int64
	body := []byte(`{"note":"` + pad(150) + `"}`)
	for i := 0; i < n; {
		// Append in parallel waves so the backlog builds quickly.
		wave := min(256, n-i)
		errs := make(chan error, wave)
		for k := 0; k < wave; k++ {
			go func(k int) {
				e, err := a.Journal.Append(ctx, "bench.note/v1", fmt.Sprintf("n%d", i+k), body)
				if err == nil {
					atomic.AddInt64(&encoded, int64(len(e.Encode())))
				}
				errs <- err
			}(k)
		}
		for k := 0; k < wave; k++ {
			if err := <-errs; err != nil {
				return SyncResult{}, err
			}
		}
		i += wave
	}
	// The second edge of the same event, a peer of the first.
	bDir := filepath.Join(dir, "b")
	nk, enr, err := auth.EnrollNode(a.EventKey, a.Event, "bench-b", auth.NodeEdge, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	if err != nil {
		return SyncResult{}, err
	}
	if err := auth.WriteNode(filepath.Join(bDir, "node"), nk, enr); err != nil {
		return SyncResult{}, err
	}
	cfg := config.Default()
	cfg.Node.Dir = filepath.Join(bDir, "data")
	cfg.Node.Event = filepath.Join(dir, "a", "event")
	cfg.Node.Key = filepath.Join(bDir, "node")
	cfg.Node.Listen = "127.0.0.1:0"
	b, err := edge.Open(ctx, cfg, nil)
	if err != nil {
		return SyncResult{}, err
	}
	defer b.Close(context.Background())
	want, err := a.Store.Vector(ctx, a.Event.Slug)
	if err != nil {
		return SyncResult{}, err
	}
	counter := &countingTransport{next: &http.Transport{ResponseHeaderTimeout: 10 * time.Second}}
	start := time.Now()
	b.AddPeer([]string{a.URL()}, &http.Client{Transport: counter})
	node := a.Journal.Node()
	for {
		got, err := b.Store.Vector(ctx, a.Event.Slug)
		if err != nil {
			return SyncResult{}, err
		}
		if got[node] >= want[node] {
			break
		}
		if time.Since(start) > 5*time.Minute {
			return SyncResult{}, fmt.Errorf("catch-up of %d entries did not finish in 5 minutes (at %d)", n, got[node])
		}
		time.Sleep(2 * time.Millisecond) // polling for completion
	}
	secs := time.Since(start).Seconds()
	r := SyncResult{Bench: "sync.catch_up", Entries: n, Seconds: round(secs), PerSecond: round(float64(n) / secs),
		WireBytes: counter.n.Load(), EncodedBytes: encoded}
	if encoded > 0 {
		r.WireOverEncoded = round(float64(r.WireBytes) / float64(encoded))
	}
	return r, nil
}

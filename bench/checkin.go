package bench

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"canopy/auth"
)

// CheckinOptions configures RunCheckin.
type CheckinOptions struct {
	Dir         string        // where the edge's temporary directory is made
	Duration    time.Duration // how long each run lasts; 0: 5 s
	Rate        int           // open-loop scans per second; 0: 1000
	Tickets     int           // tickets per run; 0: 1000
	Concurrency int           // closed-loop workers; 0: 16
}

// CheckinResult is one line of a check-in run: the latency summary plus how
// the edge answered. Errors (always printed) counts answers other than 200
// and transport failures; Rejected counts scans answered "not accepted".
type CheckinResult struct {
	Result
	Errors   int64 `json:"errors"`
	Accepted int64 `json:"accepted"`
	Rejected int64 `json:"rejected"`
}

// RunCheckin starts an edge in a temporary directory, issues tickets, and
// runs a load generator in a separate process (this binary again, "bench
// checkin-load") that scans them through the real HTTP API: an open-loop
// run at o.Rate scans/s, then a closed-loop run at o.Concurrency workers.
// Each ticket alternates in and out, so nearly every scan is accepted. It
// writes the generator's JSON lines and a target line to w.
func RunCheckin(ctx context.Context, w io.Writer, o CheckinOptions) error {
	if o.Duration <= 0 {
		o.Duration = 5 * time.Second
	}
	if o.Rate <= 0 {
		o.Rate = 1000
	}
	if o.Tickets <= 0 {
		o.Tickets = 1000
	}
	if o.Concurrency <= 0 {
		o.Concurrency = 16
	}
	dir, err := os.MkdirTemp(o.Dir, "canopy-bench-checkin-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	e, err := StartEdge(ctx, dir, "bench-doors")
	if err != nil {
		return err
	}
	defer e.Close(context.Background())
	scanner, err := e.Token(auth.RoleDoor, "bench-scanner", "")
	if err != nil {
		return err
	}
	enc := json.NewEncoder(w)
	run := func(name string, args ...string) (*CheckinResult, error) {
		file := filepath.Join(dir, name+".tickets")
		if err := writeTickets(e, file, o.Tickets); err != nil {
			return nil, err
		}
		lines, err := runCheckinChild(ctx, append([]string{"bench", "checkin-load", "--url", e.URL(), "--token", scanner,
			"--tickets", file, "--duration", o.Duration.String()}, args...)...)
		if err != nil {
			return nil, err
		}
		for _, r := range lines {
			if err := enc.Encode(r); err != nil {
				return nil, err
			}
		}
		if len(lines) != 1 {
			return nil, fmt.Errorf("load generator printed %d result lines, want 1", len(lines))
		}
		return &lines[0], nil
	}
	open, err := run("open", "--rate", strconv.Itoa(o.Rate), "--concurrency", "256")
	if err != nil {
		return err
	}
	if _, err := run("closed", "--concurrency", strconv.Itoa(o.Concurrency)); err != nil {
		return err
	}
	met := open.P99Ms <= 5 && open.Errors == 0
	return enc.Encode(Ratio{Bench: "checkin.target", What: fmt.Sprintf("p99 ms at %d scans/s (open loop, no errors)", o.Rate), Value: open.P99Ms, Target: "<= 5", Met: met})
}

// writeTickets issues n tickets (any door, re-entry allowed) into file, one
// token a line.
func writeTickets(e *Edge, file string, n int) error {
	f, err := os.Create(file)
	if err != nil {
		return err
	}
	bw := bufio.NewWriter(f)
	now := time.Now()
	for i := 0; i < n; i++ {
		tok, err := auth.IssueTicket(e.EventKey, auth.Ticket{
			ID: auth.NewTicketID(), Event: e.Event.Slug, Type: "GA", Reentry: true,
			ValidFrom: now.Add(-time.Hour), ValidUntil: now.Add(24 * time.Hour),
		})
		if err != nil {
			f.Close()
			return fmt.Errorf("issue ticket: %w", err)
		}
		bw.WriteString(tok)
		bw.WriteByte('\n')
	}
	if err := bw.Flush(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}

// runCheckinChild runs this binary again with args (the load generator in
// its own process) and decodes the result lines it printed.
func runCheckinChild(ctx context.Context, args ...string) ([]CheckinResult, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, exe, args...)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("load generator %s %v: %w", exe, args[:2], err)
	}
	var rs []CheckinResult
	for line := range strings.Lines(string(out)) {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var r CheckinResult
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			return nil, fmt.Errorf("load generator printed %q: %w", line, err)
		}
		rs = append(rs, r)
	}
	return rs, nil
}

// ReadTickets reads a file of ticket tokens, one a line.
func ReadTickets(file string) ([]string, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	var out []string
	for line := range strings.Lines(string(b)) {
		if t := strings.TrimSpace(line); t != "" {
			out = append(out, t)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("%s holds no tickets", file)
	}
	return out, nil
}

// CheckinLoad is the load generator's side: it scans tickets at url with a
// door token under o and prints one CheckinResult line. In open loop scan
// n uses ticket n mod len(tickets), "in" on even passes over the list and
// "out" on odd ones; in closed loop each worker owns every
// Concurrency-th ticket and alternates its tickets the same way, so no
// ticket is scanned by two workers.
func CheckinLoad(ctx context.Context, w io.Writer, url, token string, tickets []string, o LoadOptions) error {
	if len(tickets) == 0 {
		return fmt.Errorf("no tickets to scan")
	}
	c := Client(max(o.Concurrency, 16))
	run := time.Now().UnixNano()
	var accepted, rejected atomic.Int64
	conc := max(o.Concurrency, 1)
	op := func(ctx context.Context, worker, n int) error {
		var idx, pass int
		if o.Rate > 0 {
			idx, pass = n%len(tickets), n/len(tickets)
		} else {
			own := max((len(tickets)-worker+conc-1)/conc, 1)
			idx, pass = worker+conc*(n%own), n/own
			if idx >= len(tickets) {
				idx = worker % len(tickets)
			}
		}
		dir := "in"
		if pass%2 == 1 {
			dir = "out"
		}
		var ans struct {
			Accepted bool   `json:"accepted"`
			Reason   string `json:"reason"`
		}
		key := fmt.Sprintf("scan-%d-%d-%d", run, worker, n)
		if err := CallJSON(ctx, c, "POST", url+"/v1/checkins", token, key,
			map[string]string{"ticket": tickets[idx], "door": "main", "direction": dir}, 200, &ans); err != nil {
			return err
		}
		if ans.Accepted {
			accepted.Add(1)
		} else {
			rejected.Add(1)
		}
		return nil
	}
	name := "checkin.scan_closed_loop"
	if o.Rate > 0 {
		name = "checkin.scan_open_loop"
	}
	r := Drive(ctx, name, o, op)
	return json.NewEncoder(w).Encode(CheckinResult{Result: r, Errors: r.Errors, Accepted: accepted.Load(), Rejected: rejected.Load()})
}

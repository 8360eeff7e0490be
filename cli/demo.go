package cli

import (
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
	"canopy/simulate"
)

func init() {
	register(command{
		name:    "demo",
		summary: "run a whole demo event on this machine: an edge on embedded defaults and simulated tills, doors and bidders, with a live summary",
		run:     runDemo,
	})
}

// demoSlug is the demo event's slug.
const demoSlug = "demo-night-market"

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", "[flags]")
	dir := fs.String("dir", "canopy-demo", "directory for the demo event, node and data (reused if present)")
	listen := fs.String("listen", "127.0.0.1:8080", "device API address (a free port is used if this one is taken)")
	logLevel := fs.String("log-level", "warn", "log level of the edge (debug, info, warn, error)")
	devices := fs.Bool("devices", true, "run simulated tills, doors, bidders and an auctioneer against the edge (false: the edge alone)")
	rate := fs.Float64("rate", simulate.DefaultRate, "target orders per second across the simulated tills")
	duration := fs.Duration("duration", 0, "stop by itself after this long (0: run until Ctrl-C)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *rate <= 0 || *rate > 10000 {
		return usageErrorf("--rate must be above 0 and at most 10000 orders/s, got %v", *rate)
	}
	if *duration < 0 {
		return usageErrorf("--duration must not be negative, got %v", *duration)
	}
	d, err := prepareDemo(*dir)
	if err != nil {
		return err
	}
	cfg := config.Default()
	cfg.Node.Dir = filepath.Join(d.dir, "data")
	cfg.Node.Event = filepath.Join(d.dir, "event")
	cfg.Node.Key = filepath.Join(d.dir, "node")
	cfg.Node.Listen = *listen
	cfg.Node.LogLevel = *logLevel
	if ln, err := net.Listen("tcp", *listen); err != nil {
		cfg.Node.Listen = "127.0.0.1:0"
	} else {
		ln.Close()
	}
	ed, err := edge.Open(ctx, cfg, newLogger(e, *logLevel))
	if err != nil {
		return err
	}
	u := ed.URL()
	w := e.stdout
	fmt.Fprintf(w, "Canopy demo: event %q, edge node %s\n\n", ed.Event.Name, ed.Enrolment.Node)
	fmt.Fprintf(w, "  device API   %s\n", u)
	fmt.Fprintf(w, "  health       %s/healthz   %s/readyz\n", u, u)
	fmt.Fprintf(w, "  metrics      %s/metrics\n", u)
	fmt.Fprintf(w, "  OpenAPI      %s/v1/openapi.yaml\n\n", u)
	fmt.Fprintf(w, "Organizer token (also in %s):\n  %s\n\n", d.tokenPath, d.token)
	fmt.Fprintf(w, "Try it:\n")
	fmt.Fprintf(w, "  export TOKEN=$(cat %s)\n", d.tokenPath)
	fmt.Fprintf(w, "  curl -s -X POST %s/v1/log/notes -H \"Authorization: Bearer $TOKEN\" -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' -d '{\"text\":\"doors open\"}'\n", u)
	fmt.Fprintf(w, "  curl -s %s/v1/log/entries -H \"Authorization: Bearer $TOKEN\"\n", u)
	fmt.Fprintf(w, "  curl -s %s/v1/log/checkpoint -H \"Authorization: Bearer $TOKEN\"\n", u)
	if *devices {
		fmt.Fprintf(w, "  curl -s %s/v1/reports/sales -H \"Authorization: Bearer %s\"\n", u, d.token)
		fmt.Fprintf(w, "  curl -s %s/v1/occupancy -H \"Authorization: Bearer $TOKEN\"\n", u)
		fmt.Fprintf(w, "  curl -s %s/v1/lots -H \"Authorization: Bearer $TOKEN\"\n\n", u)
		fmt.Fprintf(w, "Simulated devices: 6 tills of 3 vendors, 2 doors, 6 bidders on 2 lots, an auctioneer and a bid screen,\n")
		fmt.Fprintf(w, "all through the device API above with their own tokens (--devices=false runs the edge alone).\n")
	} else {
		fmt.Fprintln(w)
	}
	if *duration > 0 {
		fmt.Fprintf(w, "Press Ctrl-C to stop (it stops by itself after %s).\n", *duration)
	} else {
		fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	if *duration > 0 {
		runCtx, stopRun = context.WithTimeout(ctx, *duration)
		defer stopRun()
	}
	var runErr error
	if *devices {
		runErr = runDemoDevices(runCtx, w, d, ed, *rate)
	} else {
		<-runCtx.Done()
	}
	sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	err = ed.Close(sctx)
	fmt.Fprintf(w, "\nStopped. The demo's event, keys and data are in %s (run 'canopy demo --dir %s' again to continue).\n", d.dir, d.dir)
	return errors.Join(runErr, err)
}

// runDemoDevices plays the simulated devices against the edge until ctx
// ends, drawing the live summary, then prints the final summary line.
func runDemoDevices(ctx context.Context, w io.Writer, d *demoFiles, ed *edge.Edge, rate float64) error {
	scr := newDemoScreen(w, ed.URL(), d.tokenPath)
	sim, err := simulate.New(simulate.Config{URL: ed.URL(), Event: ed.Event, Key: d.key, Rate: rate, OnError: scr.failure})
	if err != nil {
		return err
	}
	ran := make(chan error, 1)
	go func() { ran <- sim.Run(ctx) }()
	tick := time.NewTicker(scr.every)
	defer tick.Stop()
	for {
		select {
		case err := <-ran:
			sum := sim.Summary()
			scr.draw(sum, time.Now())
			b, jerr := json.Marshal(sum)
			if jerr != nil {
				return jerr
			}
			fmt.Fprintf(w, "demo summary: %s\n", b)
			if err != nil {
				return err
			}
			if sum.Errors > 0 {
				return fmt.Errorf("demo: %d unexpected answers from the edge (the first of each kind is printed above)", sum.Errors)
			}
			return nil
		case now := <-tick.C:
			scr.draw(sim.Summary(), now)
		}
	}
}

type demoFiles struct {
	dir, tokenPath, token string
	key                   ed25519.PrivateKey // the event key, for the simulated devices' tokens
}

// prepareDemo creates the demo event, an edge enrolment and an organizer
// token in dir, or reuses what is there.
func prepareDemo(dir string) (*demoFiles, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("demo directory: %w", err)
	}
	evDir := filepath.Join(abs, "event")
	ev, err := auth.LoadEvent(evDir)
	if errors.Is(err, os.ErrNotExist) {
		now := time.Now().UTC().Truncate(time.Hour)
		ev, err = auth.InitEvent(evDir, auth.Event{
			Slug:     demoSlug,
			Name:     "Demo Night Market",
			TimeZone: "Europe/Berlin",
			StartsAt: now,
			EndsAt:   now.Add(7 * 24 * time.Hour),
			Currency: "EUR",
		})
	}
	if err != nil {
		return nil, fmt.Errorf("demo event: %w", err)
	}
	key, err := auth.LoadEventKey(evDir)
	if err != nil {
		return nil, fmt.Errorf("demo event key: %w", err)
	}
	nodeDir := filepath.Join(abs, "node")
	if _, _, err := auth.LoadNode(nodeDir); err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("demo node: %w", err)
		}
		nk, enr, err := auth.EnrollNode(key, ev, "demo-edge", auth.NodeEdge, ev.StartsAt.Add(-time.Hour), ev.EndsAt.Add(24*time.Hour))
		if err != nil {
			return nil, fmt.Errorf("demo node: %w", err)
		}
		if err := auth.WriteNode(nodeDir, nk, enr); err != nil {
			return nil, fmt.Errorf("demo node: %w", err)
		}
	}
	tok, err := auth.IssueDevice(key, auth.Device{
		Event:     ev.Slug,
		Role:      auth.RoleOrganizer,
		Name:      "demo-organizer",
		NotBefore: time.Now().Add(-time.Minute),
		Expires:   time.Now().Add(24 * time.Hour),
	})
	if err != nil {
		return nil, fmt.Errorf("demo token: %w", err)
	}
	tokenPath := filepath.Join(abs, "organizer.token")
	if err := os.WriteFile(tokenPath, []byte(tok+"\n"), 0o600); err != nil {
		return nil, err
	}
	return &demoFiles{dir: abs, tokenPath: tokenPath, token: tok, key: key}, nil
}

// demoScreen draws the live summary: redrawn in place about once a second
// on a terminal (plain ANSI escapes), or one line every few seconds when
// the output is a file or a pipe.
type demoScreen struct {
	w              io.Writer
	tty            bool
	every          time.Duration
	url, tokenPath string
	mu             sync.Mutex // serializes writes (failures come from device goroutines)
	drawn          int        // lines of the last live block (tty)
	failures       []string   // first occurrences, shown in the live block (tty)
	currencyDigits int
}

func newDemoScreen(w io.Writer, url, tokenPath string) *demoScreen {
	s := &demoScreen{w: w, every: 5 * time.Second, url: url, tokenPath: tokenPath, currencyDigits: 2}
	if f, ok := w.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			s.tty, s.every = true, time.Second
		}
	}
	return s
}

// failure shows the first occurrence of an error.
func (s *demoScreen) failure(f simulate.Failure) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tty {
		if len(s.failures) < 5 {
			s.failures = append(s.failures, f.String())
		}
		return
	}
	fmt.Fprintf(s.w, "demo error: %s\n", f)
}

func (s *demoScreen) draw(sum simulate.Summary, now time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tty {
		parts := s.lines(sum, now, "; ")
		for i, p := range parts {
			parts[i] = strings.Join(strings.Fields(p), " ")
		}
		fmt.Fprintf(s.w, "demo %s: %s\n", time.Duration(sum.Seconds*float64(time.Second)).Round(time.Second), strings.Join(parts, " | "))
		return
	}
	var b strings.Builder
	if s.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", s.drawn)
	}
	lines := s.lines(sum, now, "\n          ")
	lines = append([]string{fmt.Sprintf("\n\x1b[1m── live, %s ──\x1b[0m", time.Duration(sum.Seconds*float64(time.Second)).Round(time.Second))}, lines...)
	lines = append(lines, fmt.Sprintf("try       curl -s %s/v1/reports/sales -H \"Authorization: Bearer $(cat %s)\"", s.url, s.tokenPath))
	for _, f := range s.failures {
		lines = append(lines, "  first   "+f)
	}
	text := strings.Join(lines, "\n") + "\n"
	b.WriteString(text)
	s.drawn = strings.Count(text, "\n")
	io.WriteString(s.w, b.String())
}

// lines renders the summary; sep joins the parts of the lots line.
func (s *demoScreen) lines(sum simulate.Summary, now time.Time, sep string) []string {
	money := func(minor int64) string { return formatMoney(minor, sum.Currency, s.currencyDigits) }
	sales := fmt.Sprintf("sales     %.1f orders/s, orders %d, receipts %d, split payments %d, refunds %d, revenue %s",
		sum.OrdersPerSec, sum.Orders, sum.Receipts, sum.SplitPayments, sum.Refunds, money(sum.Revenue))
	var doors []string
	for _, d := range slices.Sorted(maps.Keys(sum.Occupancy.Doors)) {
		doors = append(doors, fmt.Sprintf("%s %d", d, sum.Occupancy.Doors[d]))
	}
	var rejected []string
	for _, r := range slices.Sorted(maps.Keys(sum.Scans.Rejected)) {
		rejected = append(rejected, fmt.Sprintf("%s %d", r, sum.Scans.Rejected[r]))
	}
	if len(rejected) == 0 {
		rejected = []string{"none"}
	}
	door := fmt.Sprintf("doors     inside %d (%s), scans accepted %d, rejected: %s",
		sum.Occupancy.Inside, strings.Join(doors, ", "), sum.Scans.Accepted, strings.Join(rejected, ", "))
	latest := map[int]simulate.Lot{}
	for _, l := range sum.Lots {
		latest[l.Slot] = l
	}
	var lots []string
	for _, slot := range slices.Sorted(maps.Keys(latest)) {
		l := latest[slot]
		high := "no bid yet"
		if l.High > 0 {
			high = fmt.Sprintf("%s by %s", money(l.High), l.Paddle)
		}
		left := time.Duration(l.ClosesAtMs-now.UnixMilli()) * time.Millisecond
		var when string
		switch {
		case l.Closed && l.Sold:
			when = "sold"
		case l.Closed:
			when = "closed unsold"
		case left > 0:
			when = "closes in " + left.Round(time.Second).String()
		default:
			when = "closing"
		}
		lots = append(lots, fmt.Sprintf("%q %s, %s", l.Title, high, when))
	}
	if len(lots) == 0 {
		lots = []string{"opening"}
	}
	lot := fmt.Sprintf("lots      bids %d, soft-close extensions %d, lots closed %d%s%s", sum.Bids.Accepted, sum.Bids.Extensions, sum.Bids.Closed, sep, strings.Join(lots, sep))
	errs := fmt.Sprintf("errors    %d", sum.Errors)
	return []string{sales, door, lot, errs}
}

// formatMoney writes minor units as "EUR 12.34".
func formatMoney(minor int64, currency string, digits int) string {
	sign := ""
	if minor < 0 {
		sign, minor = "-", -minor
	}
	unit := int64(1)
	for range digits {
		unit *= 10
	}
	if digits == 0 {
		return fmt.Sprintf("%s %s%d", currency, sign, minor)
	}
	return fmt.Sprintf("%s %s%d.%0*d", currency, sign, minor/unit, digits, minor%unit)
}

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
	"canopy/hub"
	"canopy/reconcile"
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

// Demo topology limits and the link-cut schedule.
const (
	maxDemoEdges = 5
	// The links between the edges and the hub are first cut this long
	// after the devices start, then every demoCutEvery, for demoCutFor.
	demoFirstCut = 10 * time.Second
	demoCutEvery = 20 * time.Second
	demoCutFor   = 8 * time.Second
	// demoSettle bounds how long the nodes get to converge at the end.
	demoSettle = 30 * time.Second
)

func runDemo(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "demo", "[flags]")
	dir := fs.String("dir", "canopy-demo", "directory for the demo event, nodes and data (reused if present)")
	listen := fs.String("listen", "127.0.0.1:8080", "device API address of the first edge (a free port is used if this one is taken)")
	logLevel := fs.String("log-level", "warn", "log level of the edges and the hub (debug, info, warn, error)")
	devices := fs.Bool("devices", true, "run simulated tills, doors, bidders and an auctioneer against the edges (false: the nodes alone)")
	rate := fs.Float64("rate", simulate.DefaultRate, "target orders per second across the simulated tills")
	duration := fs.Duration("duration", 0, "stop by itself after this long (0: run until Ctrl-C)")
	nEdges := fs.Int("edges", 2, fmt.Sprintf("edges to run (1: one edge alone; 2 to %d: a hub in this process and the edges syncing through it)", maxDemoEdges))
	cuts := fs.Bool("cuts", true, fmt.Sprintf("with 2 or more edges, cut the links to the hub every %s for %s", demoCutEvery, demoCutFor))
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *rate <= 0 || *rate > 10000 {
		return usageErrorf("--rate must be above 0 and at most 10000 orders/s, got %v", *rate)
	}
	if *duration < 0 {
		return usageErrorf("--duration must not be negative, got %v", *duration)
	}
	if *nEdges < 1 || *nEdges > maxDemoEdges {
		return usageErrorf("--edges must be from 1 to %d, got %d", maxDemoEdges, *nEdges)
	}
	d, err := prepareDemo(*dir, *nEdges)
	if err != nil {
		return err
	}
	logger := newLogger(e, *logLevel)
	var (
		h      *hub.Hub
		links  []*simulate.Link
		edges  []*edge.Edge
		closed bool
	)
	// closeAll stops the edges, then their links, then the hub.
	closeAll := func() error {
		if closed {
			return nil
		}
		closed = true
		sctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		var errs []error
		for _, ed := range edges {
			errs = append(errs, ed.Close(sctx))
		}
		for _, l := range links {
			errs = append(errs, l.Close())
		}
		if h != nil {
			errs = append(errs, h.Close(sctx))
		}
		return errors.Join(errs...)
	}
	defer closeAll()
	if *nEdges > 1 {
		h, err = hub.Open(ctx, hub.Config{Dir: d.hubDir, Listen: "127.0.0.1:0", Logger: logger})
		if err != nil {
			return err
		}
	}
	for i := range *nEdges {
		cfg := config.Default()
		cfg.Node.Dir = d.edgeData(i)
		cfg.Node.Event = filepath.Join(d.dir, "event")
		cfg.Node.Key = d.edgeNode(i)
		cfg.Node.LogLevel = *logLevel
		cfg.Node.Listen = "127.0.0.1:0"
		if i == 0 {
			cfg.Node.Listen = *listen
			if ln, err := net.Listen("tcp", *listen); err != nil {
				cfg.Node.Listen = "127.0.0.1:0"
			} else {
				ln.Close()
			}
		}
		if h != nil {
			l, err := simulate.NewLink(h.Addr().String())
			if err != nil {
				return err
			}
			links = append(links, l)
			cfg.Sync.Hubs = []string{l.URL() + "/v1/events/" + demoSlug}
		}
		ed, err := edge.Open(ctx, cfg, logger)
		if err != nil {
			return err
		}
		edges = append(edges, ed)
	}
	ed := edges[0]
	u := ed.URL()
	w := e.stdout
	fmt.Fprintf(w, "Canopy demo: event %q, edge node %s\n\n", ed.Event.Name, ed.Enrolment.Node)
	fmt.Fprintf(w, "  device API   %s\n", u)
	for i, o := range edges[1:] {
		fmt.Fprintf(w, "  edge %s API   %s   (node %s)\n", demoEdgeName(i+1), o.URL(), o.Enrolment.Node)
	}
	if h != nil {
		fmt.Fprintf(w, "  hub          %s   (node %s; each edge syncs with it through a link the demo can cut)\n", h.EventURL(demoSlug), h.Lookup(demoSlug).Enrolment.Node)
	}
	fmt.Fprintf(w, "  health       %s/healthz   %s/readyz\n", u, u)
	fmt.Fprintf(w, "  metrics      %s/metrics\n", u)
	fmt.Fprintf(w, "  OpenAPI      %s/v1/openapi.yaml\n\n", u)
	fmt.Fprintf(w, "Organizer token (also in %s):\n  %s\n\n", d.tokenPath, d.token)
	fmt.Fprintf(w, "Try it:\n")
	fmt.Fprintf(w, "  export TOKEN=$(cat %s)\n", d.tokenPath)
	fmt.Fprintf(w, "  curl -s -X POST %s/v1/log/notes -H \"Authorization: Bearer $TOKEN\" -H 'Idempotency-Key: demo-1' -H 'Content-Type: application/json' -d '{\"text\":\"doors open\"}'\n", u)
	fmt.Fprintf(w, "  curl -s %s/v1/log/entries -H \"Authorization: Bearer $TOKEN\"\n", u)
	fmt.Fprintf(w, "  curl -s %s/v1/log/checkpoint -H \"Authorization: Bearer $TOKEN\"\n", u)
	if h != nil {
		fmt.Fprintf(w, "  curl -s %s%s -H \"Authorization: Bearer $TOKEN\"\n", u, reconcile.Path)
	}
	if *devices {
		fmt.Fprintf(w, "  curl -s %s/v1/reports/sales -H \"Authorization: Bearer %s\"\n", u, d.token)
		fmt.Fprintf(w, "  curl -s %s/v1/occupancy -H \"Authorization: Bearer $TOKEN\"\n", u)
		fmt.Fprintf(w, "  curl -s %s/v1/lots -H \"Authorization: Bearer $TOKEN\"\n\n", u)
		fmt.Fprintf(w, "Simulated devices: 6 tills of 3 vendors, 2 doors, 6 bidders on 2 lots, an auctioneer and a bid screen,\n")
		fmt.Fprintf(w, "all through the device API above with their own tokens (--devices=false runs the nodes alone).\n")
		if len(edges) > 1 {
			fmt.Fprintf(w, "They are spread over the edges: the first vendor, door north and the auction on edge A, the rest round the others.\n")
		}
	} else {
		fmt.Fprintln(w)
	}
	if h != nil && *cuts {
		fmt.Fprintf(w, "The links to the hub are cut every %s for %s (first after %s); the edges keep working offline,\n", demoCutEvery, demoCutFor, demoFirstCut)
		if *devices {
			fmt.Fprintf(w, "and during each cut a ticket is admitted on two edges and one Idempotency-Key used on two: the report lists them.\n")
		}
	}
	if *duration > 0 {
		fmt.Fprintf(w, "Press Ctrl-C to stop (it stops by itself after %s).\n", *duration)
	} else {
		fmt.Fprintf(w, "Press Ctrl-C to stop.\n")
	}
	var sy *demoSync
	if h != nil {
		sy = newDemoSync(h, edges, links, d.token)
		// Start from nodes that agree (a previous run may have stopped
		// during a cut), so the devices' baseline is the event's.
		wctx, cancel := context.WithTimeout(ctx, demoSettle)
		err := sy.waitConverged(wctx)
		cancel()
		if err != nil && ctx.Err() == nil {
			fmt.Fprintf(w, "demo: the nodes did not agree at the start (%v); going on\n", err)
		}
	}
	runCtx, stopRun := context.WithCancel(ctx)
	defer stopRun()
	if *duration > 0 {
		runCtx, stopRun = context.WithTimeout(ctx, *duration)
		defer stopRun()
	}
	runErr := runDemoLive(runCtx, w, d, edges, sy, *devices, *rate, *cuts)
	err = closeAll()
	fmt.Fprintf(w, "\nStopped. The demo's event, keys and data are in %s (run 'canopy demo --dir %s' again to continue).\n", d.dir, d.dir)
	return errors.Join(runErr, err)
}

// demoSummary is the final summary line: what the devices saw and, with
// several edges, how the nodes converged.
type demoSummary struct {
	*simulate.Summary                  // nil without devices
	Sync              *demoSyncSummary `json:"sync,omitempty"`
}

// runDemoLive plays the simulated devices (if devices) against the edges
// and cuts the links (if sy and cuts) until ctx ends, drawing the live
// summary; then it lets the nodes converge and prints the final summary
// line.
func runDemoLive(ctx context.Context, w io.Writer, d *demoFiles, edges []*edge.Edge, sy *demoSync, devices bool, rate float64, cuts bool) error {
	scr := newDemoScreen(w, edges[0].URL(), d.tokenPath)
	var sim *simulate.Sim
	if devices {
		cfg := simulate.Config{Event: edges[0].Event, Key: d.key, Rate: rate, OnError: scr.failure, Settle: demoSettle}
		if len(edges) == 1 {
			cfg.URL = edges[0].URL()
		}
		for _, ed := range edges[1:] {
			if len(cfg.Edges) == 0 {
				cfg.Edges = []string{edges[0].URL()}
			}
			cfg.Edges = append(cfg.Edges, ed.URL())
		}
		var err error
		if sim, err = simulate.New(cfg); err != nil {
			return err
		}
	}
	var bg sync.WaitGroup
	defer bg.Wait()
	trackCtx, stopTrack := context.WithCancel(context.Background())
	defer stopTrack()
	cutDone := make(chan struct{})
	cutCtx, stopCuts := context.WithCancel(ctx) // also ends when the devices stop early
	defer stopCuts()
	if sy != nil {
		bg.Add(1)
		go func() { defer bg.Done(); sy.track(trackCtx) }()
	}
	if sy != nil && cuts {
		go func() { defer close(cutDone); sy.cutLoop(cutCtx, sim, scr) }()
	} else {
		close(cutDone)
	}
	ran := make(chan error, 1)
	if sim != nil {
		go func() { ran <- sim.Run(ctx) }()
	} else {
		go func() { <-ctx.Done(); ran <- nil }()
	}
	start := time.Now()
	draw := func(now time.Time) {
		var lines []string
		elapsed := now.Sub(start)
		if sim != nil {
			sum := sim.Summary()
			elapsed = time.Duration(sum.Seconds * float64(time.Second))
			lines = scr.lines(sum, now)
		}
		if sy != nil {
			lines = append(lines, sy.lines(now)...)
		}
		if len(lines) > 0 {
			scr.draw(lines, elapsed)
		}
	}
	tick := time.NewTicker(scr.every)
	defer tick.Stop()
	var runErr error
wait:
	for {
		select {
		case runErr = <-ran:
			break wait
		case now := <-tick.C:
			draw(now)
		}
	}
	stopCuts()
	<-cutDone // the links are up again
	var out demoSummary
	var errs []error
	if runErr != nil {
		errs = append(errs, runErr)
	}
	if sy != nil {
		sctx, cancel := context.WithTimeout(context.Background(), demoSettle)
		s, err := sy.final(sctx)
		cancel()
		out.Sync = s
		if err != nil {
			errs = append(errs, err)
		}
	}
	draw(time.Now())
	if sim == nil && sy == nil {
		return errors.Join(errs...)
	}
	if sim != nil {
		sum := sim.Summary()
		out.Summary = &sum
	}
	b, err := json.Marshal(out)
	if err != nil {
		return err
	}
	fmt.Fprintf(w, "demo summary: %s\n", b)
	if sim != nil && out.Errors > 0 {
		errs = append(errs, fmt.Errorf("demo: %d unexpected answers from the edges (the first of each kind is printed above)", out.Errors))
	}
	return errors.Join(errs...)
}

type demoFiles struct {
	dir, tokenPath, token string
	key                   ed25519.PrivateKey // the event key, for the simulated devices' tokens
	hubDir                string             // the hub's data directory (several edges)
}

// demoEdgeName is the letter of edge i: A, B, C…
func demoEdgeName(i int) string { return string(rune('A' + i)) }

// edgeData is edge i's data directory: data for the first edge (as in a
// one-edge demo), data-b, data-c… for the others.
func (d *demoFiles) edgeData(i int) string { return filepath.Join(d.dir, demoEdgeDir("data", i)) }

// edgeNode is edge i's node directory (node, node-b, …).
func (d *demoFiles) edgeNode(i int) string { return filepath.Join(d.dir, demoEdgeDir("node", i)) }

func demoEdgeDir(base string, i int) string {
	if i == 0 {
		return base
	}
	return base + "-" + strings.ToLower(demoEdgeName(i))
}

// prepareDemo creates in dir the demo event, the enrolments of edges
// edges, with more than one a hub (its node enrolled with role hub and the
// event installed in its data directory), and an organizer token; or reuses
// what is there.
func prepareDemo(dir string, edges int) (*demoFiles, error) {
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
	d := &demoFiles{dir: abs, key: key, hubDir: filepath.Join(abs, "hub")}
	enrol := func(nodeDir, name, role string) error {
		_, _, err := auth.LoadNode(nodeDir)
		switch {
		case err == nil:
			return nil // enrolled by an earlier run
		case !errors.Is(err, os.ErrNotExist):
			return fmt.Errorf("demo node %s: %w", name, err)
		}
		nk, enr, err := auth.EnrollNode(key, ev, name, role, ev.StartsAt.Add(-time.Hour), ev.EndsAt.Add(24*time.Hour))
		if err != nil {
			return fmt.Errorf("demo node %s: %w", name, err)
		}
		if err := auth.WriteNode(nodeDir, nk, enr); err != nil {
			return fmt.Errorf("demo node %s: %w", name, err)
		}
		return nil
	}
	for i := range edges {
		name := "demo-edge"
		if i > 0 {
			name += "-" + strings.ToLower(demoEdgeName(i))
		}
		if err := enrol(d.edgeNode(i), name, auth.NodeEdge); err != nil {
			return nil, err
		}
	}
	if edges > 1 {
		hubNode := filepath.Join(abs, "hub-node")
		if err := enrol(hubNode, "demo-hub", auth.NodeHub); err != nil {
			return nil, err
		}
		if _, err := os.Stat(filepath.Join(d.hubDir, hub.EventsDir, ev.Slug)); errors.Is(err, os.ErrNotExist) {
			if _, err := hub.AddEvent(d.hubDir, evDir, hubNode, time.Now()); err != nil {
				return nil, fmt.Errorf("demo hub: %w", err)
			}
		} else if err != nil {
			return nil, fmt.Errorf("demo hub: %w", err)
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
	d.token, d.tokenPath = tok, filepath.Join(abs, "organizer.token")
	if err := os.WriteFile(d.tokenPath, []byte(tok+"\n"), 0o600); err != nil {
		return nil, err
	}
	return d, nil
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

// note shows a message of the demo's own (not a device's).
func (s *demoScreen) note(msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tty {
		if len(s.failures) < 5 {
			s.failures = append(s.failures, msg)
		}
		return
	}
	fmt.Fprintln(s.w, msg)
}

// draw shows lines, elapsed into the run.
func (s *demoScreen) draw(lines []string, elapsed time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.tty {
		parts := slices.Clone(lines)
		for i, p := range parts {
			parts[i] = strings.Join(strings.Fields(p), " ")
		}
		fmt.Fprintf(s.w, "demo %s: %s\n", elapsed.Round(time.Second), strings.Join(parts, " | "))
		return
	}
	var b strings.Builder
	if s.drawn > 0 {
		fmt.Fprintf(&b, "\x1b[%dA\r\x1b[J", s.drawn)
	}
	lines = append([]string{fmt.Sprintf("\n\x1b[1m── live, %s ──\x1b[0m", elapsed.Round(time.Second))}, lines...)
	lines = append(lines, fmt.Sprintf("try       curl -s %s/v1/reports/sales -H \"Authorization: Bearer $(cat %s)\"", s.url, s.tokenPath))
	for _, f := range s.failures {
		lines = append(lines, "  first   "+f)
	}
	text := strings.Join(lines, "\n") + "\n"
	b.WriteString(text)
	s.drawn = strings.Count(text, "\n")
	io.WriteString(s.w, b.String())
}

// lines renders the devices' summary.
func (s *demoScreen) lines(sum simulate.Summary, now time.Time) []string {
	sep := "; "
	if s.tty {
		sep = "\n          "
	}
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

package cli

import (
	"context"
	"fmt"
	"time"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench checkin",
		summary: "measure ticket scans through the real HTTP API, open and closed loop (JSON lines)",
		run:     runBenchCheckin,
	})
	register(command{
		name:    "bench checkin-load",
		summary: "the load generator process of 'bench checkin'",
		run:     runBenchCheckinLoad,
		hidden:  true,
	})
}

func runBenchCheckin(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench checkin", "[flags]")
	dir := fs.String("dir", ".", "directory on the disk to measure (a temporary directory is made inside)")
	dur := fs.Duration("duration", 5*time.Second, "how long each run lasts")
	rate := fs.Int("rate", 1000, "open-loop scans per second")
	tickets := fs.Int("tickets", 1000, "tickets issued per run")
	conc := fs.Int("concurrency", 16, "closed-loop workers")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	switch {
	case *dur <= 0:
		return usageErrorf("--duration must be positive")
	case *rate < 1 || *rate > 100000:
		return usageErrorf("--rate: want 1..100000 scans/s, got %d", *rate)
	case *tickets < 1 || *tickets > 1000000:
		return usageErrorf("--tickets: want 1..1000000, got %d", *tickets)
	case *conc < 1 || *conc > 4096:
		return usageErrorf("--concurrency: want 1..4096, got %d", *conc)
	}
	if err := bench.RunCheckin(ctx, e.stdout, bench.CheckinOptions{Dir: *dir, Duration: *dur, Rate: *rate, Tickets: *tickets, Concurrency: *conc}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func runBenchCheckinLoad(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench checkin-load", "--url URL --token T --tickets FILE [flags]")
	url := fs.String("url", "", "the edge's device API")
	token := fs.String("token", "", "a door token")
	file := fs.String("tickets", "", "file of ticket tokens, one a line")
	dur := fs.Duration("duration", 5*time.Second, "how long to drive")
	conc := fs.Int("concurrency", 16, "workers (closed loop), or in-flight cap (open loop)")
	rate := fs.Int("rate", 0, "open loop: scans started per second (0: closed loop)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *url == "" || *token == "" || *file == "" || *conc < 1 || *dur <= 0 || *rate < 0 {
		return usageErrorf("--url, --token, --tickets, a positive --concurrency and --duration are required")
	}
	tickets, err := bench.ReadTickets(*file)
	if err != nil {
		return err
	}
	return bench.CheckinLoad(ctx, e.stdout, *url, *token, tickets, bench.LoadOptions{Concurrency: *conc, Rate: *rate, Duration: *dur})
}

package cli

import (
	"context"
	"fmt"
	"strings"
	"time"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench bids",
		summary: "measure bids on one lot with SSE watchers through the real HTTP API (JSON lines)",
		run:     runBenchBids,
	})
	register(command{
		name:    "bench bids-load",
		summary: "(internal) the load generator process of 'bench bids'",
		run:     runBenchBidsLoad,
	})
}

func runBenchBids(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench bids", "[flags]")
	dir := fs.String("dir", ".", "directory on the disk to measure (a temporary directory is made inside)")
	dur := fs.Duration("duration", 5*time.Second, "how long the load generator bids")
	rate := fs.Int("rate", 500, "bids started per second (open loop)")
	watchers := fs.Int("watchers", 50, "SSE watchers of the lot")
	paddles := fs.Int("paddles", 8, "bidder tokens the load generator rotates")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the edge to this file")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *dur <= 0 || *rate < 1 || *watchers < 0 || *watchers > 10000 || *paddles < 1 || *paddles > 1000 {
		return usageErrorf("--duration and --rate must be positive, --watchers in 0..10000, --paddles in 1..1000")
	}
	stop, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	if err := bench.RunBids(ctx, e.stdout, bench.BidsOptions{Dir: *dir, Duration: *dur, Rate: *rate, Watchers: *watchers, Paddles: *paddles}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func runBenchBidsLoad(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench bids-load", "--url URL --lot ID --tokens T1,T2 [flags]")
	url := fs.String("url", "", "the edge's device API")
	lot := fs.String("lot", "", "the lot to bid on")
	tokens := fs.String("tokens", "", "comma-separated bidder tokens (one per paddle)")
	increment := fs.Int64("increment", 10, "the lot's increment")
	dur := fs.Duration("duration", 5*time.Second, "how long to bid")
	rate := fs.Int("rate", 500, "bids started per second")
	conc := fs.Int("concurrency", 256, "cap on bids in flight")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *url == "" || *lot == "" || *tokens == "" || *increment < 1 || *dur <= 0 || *rate < 1 || *conc < 1 {
		return usageErrorf("--url, --lot, --tokens, and a positive --increment, --duration, --rate and --concurrency are required")
	}
	return bench.BidsLoad(ctx, e.stdout, *url, *lot, strings.Split(*tokens, ","), *increment,
		bench.LoadOptions{Concurrency: *conc, Rate: *rate, Duration: *dur})
}

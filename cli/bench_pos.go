package cli

import (
	"context"
	"fmt"
	"time"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench pos",
		summary: "measure paid orders (create + pay) through the real HTTP API (JSON lines)",
		run:     runBenchPOS,
	})
	register(command{
		name:    "bench pos-load",
		summary: "(internal) the load generator process of 'bench pos'",
		run:     runBenchPOSLoad,
	})
}

func runBenchPOS(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench pos", "[flags]")
	dir := fs.String("dir", ".", "directory on the disk to measure (a temporary directory is made inside)")
	dur := fs.Duration("duration", 5*time.Second, "how long each run lasts")
	conc := fs.String("concurrency", "1,16,64,256", "comma-separated closed-loop concurrencies")
	rate := fs.Int("rate", 1000, "an open-loop run at this many paid orders/s (0: none)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the edge to this file")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	stop, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	cs, err := parseCounts(*conc)
	if err != nil {
		return err
	}
	if *dur <= 0 || *rate < 0 {
		return usageErrorf("--duration must be positive and --rate not negative")
	}
	if err := bench.RunPOS(ctx, e.stdout, bench.POSOptions{Dir: *dir, Duration: *dur, Concurrency: cs, Rate: *rate}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

func runBenchPOSLoad(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench pos-load", "--url URL --token T [flags]")
	url := fs.String("url", "", "the edge's device API")
	token := fs.String("token", "", "a pos token")
	dur := fs.Duration("duration", 5*time.Second, "how long to drive")
	conc := fs.Int("concurrency", 16, "workers (closed loop), or in-flight cap (open loop)")
	rate := fs.Int("rate", 0, "open loop: paid orders started per second")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *url == "" || *token == "" || *conc < 1 || *dur <= 0 || *rate < 0 {
		return usageErrorf("--url, --token, a positive --concurrency and --duration are required")
	}
	return bench.POSLoad(ctx, e.stdout, *url, *token, bench.LoadOptions{Concurrency: *conc, Rate: *rate, Duration: *dur})
}

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
		name:    "bench cache-failover",
		summary: "measure edge cache uplink failover: primary dies → first good response via the secondary (JSON lines, p50/p99)",
		run:     runBenchCacheFailover,
	})
}

func runBenchCacheFailover(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench cache-failover", "[flags]")
	dir := fs.String("dir", ".", "directory for the cache's temporary store")
	trials := fs.Int("trials", 50, "trials per mode")
	modes := fs.String("modes", "refuse,hang", "how the primary uplink dies: refuse (connections closed and refused), hang (accepted, never answered)")
	probe := fs.Duration("probe-interval", 100*time.Millisecond, "the cache's uplink probe interval")
	header := fs.Duration("response-header-timeout", 5*time.Second, "the cache's per-attempt response header timeout (the [cache] default)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *trials < 1 || *trials > 100_000 {
		return usageErrorf("--trials: want 1..100000")
	}
	if *probe < 10*time.Millisecond || *header <= 0 {
		return usageErrorf("--probe-interval must be at least 10ms and --response-header-timeout positive")
	}
	var ms []string
	for _, m := range strings.Split(*modes, ",") {
		m = strings.TrimSpace(m)
		if m != "refuse" && m != "hang" {
			return usageErrorf("--modes: %q is not refuse or hang", m)
		}
		ms = append(ms, m)
	}
	if err := bench.RunCacheFailover(ctx, e.stdout, bench.CacheFailoverOptions{
		Dir: *dir, Trials: *trials, Modes: ms, ProbeInterval: *probe, ResponseHeaderTimeout: *header,
	}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

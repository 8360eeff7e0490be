package cli

import (
	"context"
	"fmt"
	"os"
	"strings"
	"time"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench cache",
		summary: "compare the edge cache with nginx proxy_cache on one origin under wrk: hits (1 KiB, 16 KiB) and misses, without and with TLS (JSON lines, medians, ratio)",
		run:     runBenchCache,
	})
}

func runBenchCache(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench cache", "[flags]")
	dir := fs.String("dir", os.TempDir(), "directory for the caches' stores (a temporary directory is made inside and removed)")
	rounds := fs.Int("rounds", 3, "rounds, each Canopy then nginx per workload")
	duration := fs.Duration("duration", 10*time.Second, "length of each wrk run")
	conns := fs.Int("connections", 64, "wrk connections")
	threads := fs.Int("threads", 2, "wrk threads")
	inProcess := fs.Bool("in-process", false, "run Canopy's cache in this process instead of as a child `canopy cache serve`")
	withTLS := fs.String("tls", "both", "runs without and with TLS: both, off (plain HTTP only) or only (TLS only)")
	workloads := fs.String("workloads", "", "comma-separated workloads to run: hit-1k, hit-16k, miss-1k (default all)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of Canopy's cache to this file (runs it in this process, as --in-process)")
	nginx := fs.String("nginx", "nginx", "nginx binary")
	wrk := fs.String("wrk", "wrk", "wrk binary")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *rounds < 1 || *rounds > 100 {
		return usageErrorf("--rounds %d is not in 1..100", *rounds)
	}
	if *duration < time.Second || *duration > time.Hour {
		return usageErrorf("--duration %v is not in 1s..1h", *duration)
	}
	if *conns < 1 || *conns > 10000 || *threads < 1 || *threads > *conns {
		return usageErrorf("want 1 <= --threads (%d) <= --connections (%d) <= 10000", *threads, *conns)
	}
	o := bench.CacheOptions{Dir: *dir, Rounds: *rounds, Duration: *duration, Connections: *conns, Threads: *threads, Nginx: *nginx, Wrk: *wrk}
	switch *withTLS {
	case "both":
		o.Plain, o.TLS = true, true
	case "off":
		o.Plain = true
	case "only":
		o.TLS = true
	default:
		return usageErrorf("--tls %q: want both, off or only", *withTLS)
	}
	if *workloads != "" {
		o.Workloads = strings.Split(*workloads, ",")
	}
	stop, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	if !*inProcess && *cpuprofile == "" {
		self, err := os.Executable()
		if err != nil {
			return fmt.Errorf("bench cache: %w", err)
		}
		o.CanopyCmd = []string{self}
	}
	if err := bench.RunCache(ctx, e.stdout, o); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

package cli

import (
	"context"
	"fmt"
	"os"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench ledger",
		summary: "measure durable signed appends against SQLite and fsync baselines (JSON lines)",
		run:     runBenchLedger,
	})
}

func runBenchLedger(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench ledger", "[flags]")
	dir := fs.String("dir", ".", "directory on the disk to measure (a temporary directory is made inside)")
	dur := fs.Duration("duration", 3*time.Second, "how long each measurement runs")
	conc := fs.String("concurrency", "1,16,64,256", "comma-separated appender counts")
	body := fs.Int("body", 200, "bytes of JSON body per entry")
	hot := fs.Bool("hot-keys", false, "one entity per appender instead of a new time-ordered entity per append")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile of the whole run to this file")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	var cs []int
	for _, s := range strings.Split(*conc, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 4096 {
			return usageErrorf("--concurrency: %q is not a count in 1..4096", s)
		}
		cs = append(cs, n)
	}
	if *dur <= 0 {
		return usageErrorf("--duration must be positive")
	}
	if *body < 1 || *body > 512<<10 {
		return usageErrorf("--body: want 1..%d bytes", 512<<10)
	}
	if *cpuprofile != "" {
		f, err := os.Create(*cpuprofile)
		if err != nil {
			return err
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer pprof.StopCPUProfile()
	}
	if err := bench.RunLedger(ctx, e.stdout, bench.LedgerOptions{Dir: *dir, Duration: *dur, Concurrency: cs, BodySize: *body, HotKeys: *hot}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

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
	cs, err := parseCounts(*conc)
	if err != nil {
		return err
	}
	if *dur <= 0 {
		return usageErrorf("--duration must be positive")
	}
	if *body < 1 || *body > 512<<10 {
		return usageErrorf("--body: want 1..%d bytes", 512<<10)
	}
	stop, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	if err := bench.RunLedger(ctx, e.stdout, bench.LedgerOptions{Dir: *dir, Duration: *dur, Concurrency: cs, BodySize: *body, HotKeys: *hot}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

// parseCounts parses a comma-separated list of concurrencies.
func parseCounts(list string) ([]int, error) {
	var cs []int
	for _, s := range strings.Split(list, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(s))
		if err != nil || n < 1 || n > 10_000_000 {
			return nil, usageErrorf("%q is not a count in 1..10000000", s)
		}
		cs = append(cs, n)
	}
	return cs, nil
}

// startCPUProfile starts a CPU profile into path (none if path is empty)
// and returns the function that stops it.
func startCPUProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	return func() { pprof.StopCPUProfile(); f.Close() }, nil
}

// intFlag is a counting flag's name, value and largest allowed value.
type intFlag struct {
	name   string
	v, max int
}

// checkCounts returns a usage error for the first flag outside 1..max.
func checkCounts(flags ...intFlag) error {
	for _, f := range flags {
		if f.v < 1 || f.v > f.max {
			return usageErrorf("--%s %d is not in 1..%d", f.name, f.v, f.max)
		}
	}
	return nil
}

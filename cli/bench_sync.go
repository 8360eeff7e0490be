package cli

import (
	"context"
	"fmt"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench sync",
		summary: "measure catch-up: a fresh edge pulls a backlog from another (JSON lines)",
		run:     runBenchSync,
	})
}

func runBenchSync(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench sync", "[flags]")
	dir := fs.String("dir", ".", "directory on the disk to measure (a temporary directory is made inside)")
	entries := fs.String("entries", "1,1000,100000", "comma-separated backlogs to catch up")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	ns, err := parseCounts(*entries)
	if err != nil {
		return err
	}
	stop, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	if err := bench.RunSync(ctx, e.stdout, bench.SyncOptions{Dir: *dir, Entries: ns}); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

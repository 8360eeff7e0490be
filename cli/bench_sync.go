package cli

import (
	"context"
	"fmt"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench sync",
		summary: "compare catch-up with NATS JetStream (leaf node sourced by a hub) and time convergence after a heal (JSON lines)",
		run:     runBenchSync,
	})
}

func runBenchSync(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench sync", "[flags]")
	dir := fs.String("dir", ".", "directory on the disk to measure (temporary directories are made inside and removed)")
	entries := fs.Int("entries", 100_000, "catch-up backlog: entries (and NATS messages of the same size)")
	restart := fs.Int("restart-entries", 1000, "entries written while the receiver is down, for catch-up after a restart")
	heal := fs.String("heal", "1,1000,100000", "comma-separated backlogs for Canopy's convergence after a heal")
	rounds := fs.Int("rounds", 3, "rounds, each Canopy then NATS")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := checkCounts(intFlag{"entries", *entries, 10_000_000}, intFlag{"restart-entries", *restart, 10_000_000}, intFlag{"rounds", *rounds, 100}); err != nil {
		return err
	}
	hs, err := parseCounts(*heal)
	if err != nil {
		return err
	}
	stop, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	o := bench.SyncOptions{Dir: *dir, Entries: *entries, Restart: *restart, Heal: hs, Rounds: *rounds}
	if err := bench.RunSync(ctx, e.stdout, o); err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

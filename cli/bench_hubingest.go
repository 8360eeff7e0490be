package cli

import (
	"context"
	"errors"
	"fmt"
	"os"

	"canopy/bench"
)

func init() {
	register(command{
		name:    "bench hub-ingest",
		summary: "measure a hub's ingest with many edges syncing at once, on PostgreSQL and on SQLite side by side (JSON lines)",
		run:     runBenchHubIngest,
	})
}

func runBenchHubIngest(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "bench hub-ingest", "[flags]")
	dir := fs.String("dir", ".", "directory for the edges' and the SQLite hub's stores (temporary directories are made inside and removed)")
	db := fs.String("db", "", "PostgreSQL server URL on which the bench may create and drop databases (default $CANOPY_TEST_POSTGRES)")
	edges := fs.Int("edges", 10, "edges syncing with the hub at once")
	entries := fs.Int("entries", 10_000, "entries each edge holds before it syncs")
	rounds := fs.Int("rounds", 3, "rounds, each one run on PostgreSQL and one on SQLite")
	pull := fs.Bool("pull", false, "let the edges also pull each other's entries from the hub (verified on the same cores as the hub)")
	cpuprofile := fs.String("cpuprofile", "", "write a CPU profile to this file")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if err := checkCounts(intFlag{"edges", *edges, 100}, intFlag{"entries", *entries, 10_000_000}, intFlag{"rounds", *rounds, 100}); err != nil {
		return err
	}
	if *db == "" {
		*db = os.Getenv("CANOPY_TEST_POSTGRES")
	}
	if *db == "" {
		return usageErrorf("%v", bench.ErrNoPostgres)
	}
	stop, err := startCPUProfile(*cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	o := bench.HubIngestOptions{Dir: *dir, Postgres: *db, Edges: *edges, Entries: *entries, Rounds: *rounds, Pull: *pull}
	if err := bench.RunHubIngest(ctx, e.stdout, o); err != nil {
		if errors.Is(err, bench.ErrNoPostgres) {
			return usageErrorf("%v", err)
		}
		return fmt.Errorf("bench: %w", err)
	}
	return nil
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"testing"

	"canopy/internal/testutil"
)

// TestRunHubIngestSmoke runs the hub ingest bench at a tiny size (3 edges,
// 50 entries each, one round) and checks that both stores ingested every
// entry of every edge, and that the run, median and ratio lines agree.
func TestRunHubIngestSmoke(t *testing.T) {
	pg := testutil.PostgresDSN(t)
	dir := t.TempDir()
	var out bytes.Buffer
	const edges, entries = 3, 50
	o := HubIngestOptions{Dir: dir, Postgres: pg, Edges: edges, Entries: entries, Rounds: 1}
	if err := RunHubIngest(context.Background(), &out, o); err != nil {
		t.Fatal(err)
	}
	runs := map[string]HubIngestResult{}
	medians := map[string]HubIngestResult{}
	var ratio *HubIngestRatio
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		if m["stat"] == "ratio postgres/sqlite" {
			ratio = &HubIngestRatio{}
			if err := json.Unmarshal(sc.Bytes(), ratio); err != nil {
				t.Fatal(err)
			}
			continue
		}
		var r HubIngestResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		if r.Stat == "median" {
			medians[r.Store] = r
		} else {
			runs[r.Store] = r
		}
	}
	// Each edge's log: its enrolment entry and its backlog.
	const want = edges * (entries + 1)
	for _, st := range []string{"postgres", "sqlite"} {
		r, ok := runs[st]
		if !ok {
			t.Fatalf("no %s run in:\n%s", st, out.String())
		}
		if r.Edges != edges || r.Entries != want || r.Seconds <= 0 || r.PerSecond <= 0 || r.Round != 1 {
			t.Errorf("%s run: %+v, want %d edges and %d entries in a positive time", st, r, edges, want)
		}
		if m := medians[st]; m.Entries != want || m.PerSecond != r.PerSecond {
			t.Errorf("%s median %+v does not match its only run %+v", st, m, r)
		}
	}
	if ratio == nil || ratio.PerSecond <= 0 {
		t.Fatalf("no ratio line in:\n%s", out.String())
	}
	left, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != 0 {
		t.Errorf("the bench left %d files in its directory", len(left))
	}
}

// TestRunHubIngestNeedsPostgres: without a server the bench says how to
// start one.
func TestRunHubIngestNeedsPostgres(t *testing.T) {
	err := RunHubIngest(context.Background(), &bytes.Buffer{}, HubIngestOptions{Dir: t.TempDir(), Edges: 1, Entries: 1, Rounds: 1})
	if !errors.Is(err, ErrNoPostgres) {
		t.Fatalf("got %v, want ErrNoPostgres", err)
	}
}

package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"runtime/pprof"
	"slices"
	"strconv"
	"testing"
)

// TestRunSyncSmoke runs the sync comparison at a tiny size, one round, and
// checks that every run, median and ratio line appears, that the NATS hub
// and the Canopy receiver really received the entries, and that the
// temporary directories are gone.
func TestRunSyncSmoke(t *testing.T) {
	dir := t.TempDir()
	var out bytes.Buffer
	o := SyncOptions{Dir: dir, Entries: 200, Restart: 20, Heal: []int{1, 10}, Rounds: 1}
	if err := RunSync(context.Background(), &out, o); err != nil {
		t.Fatal(err)
	}
	runs := map[string]SyncResult{}
	stats := map[string]map[string]any{}
	sc := bufio.NewScanner(&out)
	for sc.Scan() {
		var m map[string]any
		if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
			t.Fatalf("not a JSON line: %q: %v", sc.Text(), err)
		}
		key := m["bench"].(string) + " " + str(m["system"])
		if s := str(m["stat"]); s != "" {
			stats[key+" "+s] = m
			continue
		}
		var r SyncResult
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatal(err)
		}
		runs[key] = r
	}
	for _, k := range []string{"sync.catch_up canopy", "sync.catch_up nats"} {
		r, ok := runs[k]
		if !ok {
			t.Fatalf("no %s line in:\n%s", k, out.String())
		}
		// Canopy's batches are compressed, so its wire bytes may be fewer
		// than the entries' own size; NATS sends every payload whole.
		if r.Entries != 200 || r.Seconds <= 0 || r.PerSecond <= 0 || r.WireBytes <= 0 || r.EncodedBytes < 200*100 ||
			(k == "sync.catch_up nats" && r.WireBytes < r.EncodedBytes) {
			t.Errorf("%s: implausible %+v", k, r)
		}
	}
	for _, k := range []string{"sync.restart canopy", "sync.restart nats"} {
		r, ok := runs[k]
		if !ok || r.Entries != 20 || r.Backlog != 220 || r.Seconds <= 0 {
			t.Errorf("%s: %+v (present %v)", k, r, ok)
		}
	}
	for _, k := range []string{"sync.heal.1 canopy", "sync.heal.10 canopy"} {
		if r, ok := runs[k]; !ok || r.Seconds <= 0 || r.Note != noteHeal {
			t.Errorf("%s: %+v (present %v)", k, r, ok)
		}
	}
	for _, k := range []string{"sync.catch_up canopy median", "sync.catch_up nats median", "sync.restart canopy median",
		"sync.restart nats median", "sync.heal.1 canopy median", "sync.catch_up  ratio canopy/nats", "sync.restart  ratio canopy/nats"} {
		m, ok := stats[k]
		if !ok {
			t.Fatalf("no %q line in:\n%s", k, out.String())
		}
		if s, _ := m["seconds"].(float64); s <= 0 {
			t.Errorf("%q: seconds %v", k, m["seconds"])
		}
	}
	if es, err := os.ReadDir(dir); err != nil || len(es) != 0 {
		t.Errorf("temporary directories left behind: %v %v", es, err)
	}
}

func str(v any) string {
	s, _ := v.(string)
	return s
}

// BenchmarkCanopyCatchUp times Canopy's catch-up alone: a fresh edge
// syncing CANOPY_CATCHUP_ENTRIES entries (default 100,000) from an edge
// holding them, written once. With CANOPY_CATCHUP_PROFILE set, it writes a
// CPU profile of the catch-ups (not of the writing) there.
func BenchmarkCanopyCatchUp(b *testing.B) {
	n := 100_000
	if v := os.Getenv("CANOPY_CATCHUP_ENTRIES"); v != "" {
		var err error
		if n, err = strconv.Atoi(v); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	dir := b.TempDir()
	a, backlog, err := startSender(ctx, dir, n)
	if err != nil {
		b.Fatal(err)
	}
	defer a.Close(ctx)
	if path := os.Getenv("CANOPY_CATCHUP_PROFILE"); path != "" {
		f, err := os.Create(path)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	var rates []float64
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		cfg, err := receiverConfig(a, dir, fmt.Sprintf("b%d", i))
		if err != nil {
			b.Fatal(err)
		}
		r, e, err := canopyCatchUp(ctx, a, cfg, backlog)
		if err != nil {
			b.Fatal(err)
		}
		rates = append(rates, r.PerSecond)
		b.ReportMetric(r.WireOverEncoded, "wire/encoded")
		if err := e.Close(ctx); err != nil {
			b.Fatal(err)
		}
	}
	slices.Sort(rates)
	b.ReportMetric(rates[len(rates)/2], "median_entries/s")
}

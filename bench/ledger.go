// Package bench measures Canopy's durable paths against the baselines a user
// would compare them with, on the same disk in the same run, and prints one
// JSON object per line.
package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"database/sql"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	_ "modernc.org/sqlite" // the baseline: plain SQLite, one row per transaction

	"canopy/journal"
	"canopy/store/sqlite"
)

// LedgerOptions configures RunLedger.
type LedgerOptions struct {
	Dir         string        // where the stores and files are created (same disk for every run)
	Duration    time.Duration // how long each measurement runs
	Concurrency []int         // appender counts to measure
	BodySize    int           // bytes of JSON body per entry
	// HotKeys makes every appender write about its own one entity (one key
	// per appender) instead of a new entity per append with a time-ordered
	// id, as a sale creates a new order. Many hot keys scatter the store's
	// key index and cost more per commit.
	HotKeys bool
}

// Result is one line of output.
type Result struct {
	Bench       string  `json:"bench"`
	Concurrency int     `json:"concurrency,omitempty"`
	Ops         int64   `json:"ops"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"per_second"`
	P50Ms       float64 `json:"p50_ms"`
	P99Ms       float64 `json:"p99_ms"`
	MeanBatch   float64 `json:"mean_batch,omitempty"`
	Rate        int     `json:"rate,omitempty"`
	Errors      int64   `json:"errors,omitempty"`
	FirstError  string  `json:"first_error,omitempty"`
}

// Ratio is a comparison line between two results.
type Ratio struct {
	Bench  string  `json:"bench"`
	What   string  `json:"what"`
	Value  float64 `json:"value"`
	Target string  `json:"target"`
	Met    bool    `json:"met"`
}

// RunLedger measures durable signed appends at each concurrency and the two
// baselines (a single-row SQLite insert with full fsync, and one 4 KiB
// write+fsync), writing JSON lines to w.
func RunLedger(ctx context.Context, w io.Writer, o LedgerOptions) error {
	if o.Duration <= 0 {
		o.Duration = 3 * time.Second
	}
	if len(o.Concurrency) == 0 {
		o.Concurrency = []int{1, 16, 64, 256}
	}
	if o.BodySize <= 0 {
		o.BodySize = 200
	}
	enc := json.NewEncoder(w)
	dir, err := os.MkdirTemp(o.Dir, "canopy-bench-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)

	fsync, err := fsyncBaseline(ctx, dir, o.Duration)
	if err != nil {
		return fmt.Errorf("fsync baseline: %w", err)
	}
	enc.Encode(fsync)
	row, err := sqliteBaseline(ctx, dir, o.Duration)
	if err != nil {
		return fmt.Errorf("sqlite baseline: %w", err)
	}
	enc.Encode(row)

	var byC = map[int]Result{}
	for _, c := range o.Concurrency {
		r, err := appendBench(ctx, filepath.Join(dir, fmt.Sprintf("ledger-%d.db", c)), c, o.Duration, o.BodySize, o.HotKeys)
		if err != nil {
			return fmt.Errorf("appends at concurrency %d: %w", c, err)
		}
		byC[c] = r
		enc.Encode(r)
	}
	if r, ok := byC[1]; ok && fsync.P99Ms > 0 {
		v := r.P99Ms / fsync.P99Ms
		enc.Encode(Ratio{Bench: "ledger.ratio", What: "p99 append at concurrency 1 / p99 4KiB write+fsync", Value: round(v), Target: "<= 3", Met: v <= 3})
	}
	best := 0.0
	for c, r := range byC {
		if c >= 64 && r.PerSecond > best {
			best = r.PerSecond
		}
	}
	if best > 0 {
		enc.Encode(Ratio{Bench: "ledger.ratio", What: "best appends/s at concurrency >= 64", Value: round(best), Target: ">= 50000", Met: best >= 50000})
		if row.PerSecond > 0 {
			enc.Encode(Ratio{Bench: "ledger.ratio", What: "appends/s at concurrency >= 64 / single-row SQLite inserts/s", Value: round(best / row.PerSecond), Target: "> 1", Met: best > row.PerSecond})
		}
	}
	return nil
}

func appendBench(ctx context.Context, path string, c int, d time.Duration, bodySize int, hotKeys bool) (Result, error) {
	st, err := sqlite.Open(ctx, path)
	if err != nil {
		return Result{}, err
	}
	defer st.Close()
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	j, err := journal.Open(ctx, journal.Config{Event: "bench", Key: key, Store: st})
	if err != nil {
		return Result{}, err
	}
	defer j.Close(context.Background())
	body := []byte(fmt.Sprintf(`{"note":%q}`, pad(bodySize)))
	lat := make([][]time.Duration, c)
	var ops, ids atomic.Int64
	var firstErr error
	var errOnce sync.Once
	deadline := time.Now().Add(d)
	start := time.Now()
	var wg sync.WaitGroup
	for i := 0; i < c; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for time.Now().Before(deadline) && ctx.Err() == nil {
				t0 := time.Now()
				key := fmt.Sprintf("order-%012d", ids.Add(1))
				if hotKeys {
					key = fmt.Sprintf("till-%d", i)
				}
				if _, err := j.Append(ctx, "bench.append/v1", key, body); err != nil {
					errOnce.Do(func() { firstErr = err })
					return
				}
				lat[i] = append(lat[i], time.Since(t0))
				ops.Add(1)
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()
	if firstErr != nil {
		return Result{}, firstErr
	}
	var all []time.Duration
	for _, l := range lat {
		all = append(all, l...)
	}
	s := j.Stats()
	r := summarize("ledger.append", all, elapsed)
	r.Concurrency = c
	if hotKeys {
		r.Bench = "ledger.append_hot_keys"
	}
	if s.Commits > 0 {
		r.MeanBatch = round(float64(s.Entries) / float64(s.Commits))
	}
	return r, nil
}

func pad(n int) string {
	b := make([]byte, n)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return string(b)
}

// fsyncBaseline writes 4 KiB and fsyncs it, over and over: the floor for
// one durable acknowledgement on this disk.
func fsyncBaseline(ctx context.Context, dir string, d time.Duration) (Result, error) {
	f, err := os.OpenFile(filepath.Join(dir, "fsync.dat"), os.O_CREATE|os.O_RDWR, 0o600)
	if err != nil {
		return Result{}, err
	}
	defer f.Close()
	buf := make([]byte, 4096)
	var lat []time.Duration
	start := time.Now()
	var off int64
	for time.Since(start) < d && ctx.Err() == nil {
		t0 := time.Now()
		if _, err := f.WriteAt(buf, off); err != nil {
			return Result{}, err
		}
		if err := f.Sync(); err != nil {
			return Result{}, err
		}
		lat = append(lat, time.Since(t0))
		off = (off + 4096) % (64 << 20)
	}
	return summarize("baseline.write4k_fsync", lat, time.Since(start).Seconds()), nil
}

// sqliteBaseline inserts one row per transaction into SQLite in WAL mode
// with synchronous=FULL: what a store without group commit would get.
func sqliteBaseline(ctx context.Context, dir string, d time.Duration) (Result, error) {
	db, err := sql.Open("sqlite", "file:"+filepath.Join(dir, "baseline.db")+"?_pragma=journal_mode(WAL)&_pragma=synchronous(FULL)")
	if err != nil {
		return Result{}, err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	if _, err := db.ExecContext(ctx, `CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)`); err != nil {
		return Result{}, err
	}
	body := []byte(pad(300))
	var lat []time.Duration
	start := time.Now()
	for time.Since(start) < d && ctx.Err() == nil {
		t0 := time.Now()
		if _, err := db.ExecContext(ctx, `INSERT INTO t (body) VALUES (?)`, body); err != nil {
			return Result{}, err
		}
		lat = append(lat, time.Since(t0))
	}
	return summarize("baseline.sqlite_row_fsync", lat, time.Since(start).Seconds()), nil
}

func summarize(name string, lat []time.Duration, seconds float64) Result {
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	r := Result{Bench: name, Ops: int64(len(lat)), Seconds: round(seconds)}
	if seconds > 0 {
		r.PerSecond = round(float64(len(lat)) / seconds)
	}
	if len(lat) > 0 {
		r.P50Ms = ms(lat[len(lat)*50/100])
		r.P99Ms = ms(lat[min(len(lat)-1, len(lat)*99/100)])
	}
	return r
}

func ms(d time.Duration) float64 { return round(float64(d) / float64(time.Millisecond)) }

func round(v float64) float64 { return float64(int64(v*1000+0.5)) / 1000 }

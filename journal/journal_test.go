package journal_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/sumdb/note"

	"canopy/journal"
	"canopy/ledger"
	"canopy/store"
	"canopy/store/sqlite"
	"canopy/views"
)

var testKey = ed25519.NewKeyFromSeed([]byte("canopy journal test node key 32b"))

func openStore(t *testing.T, path string) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), path)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func openJournal(t *testing.T, cfg journal.Config) *journal.Journal {
	t.Helper()
	if cfg.Event == "" {
		cfg.Event = "test-event"
	}
	if cfg.Key == nil {
		cfg.Key = testKey
	}
	j, err := journal.Open(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close(context.Background()) })
	return j
}

// verifyAll checks the node's whole log and its views.
func verifyAll(t *testing.T, st store.Store, event string) []store.Stored {
	t.Helper()
	ctx := context.Background()
	node := ledger.NodeIDOf(testKey.Public().(ed25519.PublicKey))
	stored, err := st.Entries(ctx, event, node, 1, ^uint64(0), 0)
	if err != nil {
		t.Fatal(err)
	}
	entries := make([]*ledger.Entry, len(stored))
	for i, s := range stored {
		entries[i] = s.Entry
	}
	cps, err := st.Checkpoints(ctx, event, node)
	if err != nil {
		t.Fatal(err)
	}
	var notes [][]byte
	for _, c := range cps {
		notes = append(notes, c.Note)
	}
	if err := ledger.VerifyLog(event, testKey.Public().(ed25519.PublicKey), entries, notes); err != nil {
		t.Fatalf("log does not verify: %v", err)
	}
	if err := views.Default().Verify(ctx, st, event); err != nil {
		t.Fatal(err)
	}
	return stored
}

func TestGroupCommitSharesTransactions(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	j := openJournal(t, journal.Config{Store: st})
	const workers, each = 64, 40
	var wg sync.WaitGroup
	seqs := make(chan uint64, workers*each)
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func(w int) {
			defer wg.Done()
			for i := 0; i < each; i++ {
				body := fmt.Sprintf(`{"idempotency_key":"k-%d-%d","request_hash":"r"}`, w, i)
				e, err := j.Append(context.Background(), "test.thing/v1", fmt.Sprintf("thing-%d", w), []byte(body))
				if err != nil {
					t.Error(err)
					return
				}
				seqs <- e.Seq
			}
		}(w)
	}
	wg.Wait()
	close(seqs)
	seen := map[uint64]bool{}
	for s := range seqs {
		if seen[s] {
			t.Fatalf("seq %d acknowledged twice", s)
		}
		seen[s] = true
	}
	if len(seen) != workers*each {
		t.Fatalf("got %d acknowledgements, want %d", len(seen), workers*each)
	}
	stats := j.Stats()
	mean := float64(stats.Entries) / float64(stats.Commits)
	t.Logf("%d entries in %d commits (mean batch %.1f)", stats.Entries, stats.Commits, mean)
	if mean < 2 {
		t.Fatalf("mean commit batch %.2f: concurrent appends are not sharing commits", mean)
	}
	if _, err := j.SignCheckpoint(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := verifyAll(t, st, "test-event"); len(got) != workers*each {
		t.Fatalf("store holds %d entries", len(got))
	}
}

// failingStore injects write failures under the journal.
type failingStore struct {
	store.Store
	fail atomic.Bool
}

func (f *failingStore) Commit(ctx context.Context, b *store.Batch) error {
	if f.fail.Load() && len(b.Entries) > 0 {
		return fmt.Errorf("%w: injected: no space left on device", store.ErrUnavailable)
	}
	return f.Store.Commit(ctx, b)
}

func TestFailedCommitLosesNothingAndRecovers(t *testing.T) {
	st := &failingStore{Store: openStore(t, filepath.Join(t.TempDir(), "db"))}
	j := openJournal(t, journal.Config{Store: st})
	ctx := context.Background()
	for i := 0; i < 10; i++ {
		if _, err := j.Append(ctx, "test.thing/v1", "a", []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	st.fail.Store(true)
	var wg sync.WaitGroup
	var failed atomic.Int64
	for i := 0; i < 32; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			_, err := j.Append(ctx, "test.thing/v1", "b", []byte(fmt.Sprintf(`{"n":%d}`, i)))
			if err == nil {
				t.Error("append succeeded while the disk fails")
				return
			}
			if !errors.Is(err, store.ErrUnavailable) {
				t.Errorf("append error %v does not wrap store.ErrUnavailable", err)
			}
			failed.Add(1)
		}(i)
	}
	wg.Wait()
	if failed.Load() != 32 {
		t.Fatalf("%d appends failed, want 32", failed.Load())
	}
	st.fail.Store(false)
	var last *ledger.Entry
	for i := 0; i < 10; i++ {
		e, err := j.Append(ctx, "test.thing/v1", "c", []byte(fmt.Sprintf(`{"n":%d}`, i)))
		if err != nil {
			t.Fatalf("append after the disk recovered: %v", err)
		}
		last = e
	}
	if last.Seq != 20 {
		t.Fatalf("seq after recovery = %d, want 20 (failed appends must not leave gaps)", last.Seq)
	}
	verifyAll(t, st, "test-event")
}

func TestRestartContinuesChainWithClockBehind(t *testing.T) {
	path := filepath.Join(t.TempDir(), "db")
	ctx := context.Background()
	st := openStore(t, path)
	j, err := journal.Open(ctx, journal.Config{Event: "test-event", Key: testKey, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	first, err := j.Append(ctx, "test.thing/v1", "a", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := j.Close(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := j.Append(ctx, "test.thing/v1", "a", []byte(`{}`)); !errors.Is(err, journal.ErrClosed) {
		t.Fatalf("append after close: %v", err)
	}
	// The node restarts with its clock an hour behind.
	j2 := openJournal(t, journal.Config{Store: st, Clock: ledger.SystemClock{Offset: -time.Hour}})
	second, err := j2.Append(ctx, "test.thing/v1", "a", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	if second.Seq != 2 || second.Prev != first.Hash() {
		t.Fatalf("chain broken across restart: seq %d prev %s, want 2 and %s", second.Seq, second.Prev, first.Hash())
	}
	if second.HLC.Compare(first.HLC) <= 0 {
		t.Fatalf("HLC went backwards across restart: %s then %s", first.HLC, second.HLC)
	}
}

func TestCheckpointVerifiesWithIndependentCode(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	j := openJournal(t, journal.Config{Store: st, CheckpointEvery: time.Hour})
	ctx := context.Background()
	for i := 0; i < 5; i++ {
		if _, err := j.Append(ctx, "test.thing/v1", "a", []byte(`{}`)); err != nil {
			t.Fatal(err)
		}
	}
	cp, err := j.SignCheckpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 5 {
		t.Fatalf("checkpoint size %d, want 5", cp.Size)
	}
	pub := testKey.Public().(ed25519.PublicKey)
	vkey, err := note.NewEd25519VerifierKey(ledger.Origin("test-event", j.Node()), pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(cp.Note, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open: %v", err)
	}
	want := fmt.Sprintf("%s\n5\n", ledger.Origin("test-event", j.Node()))
	if len(n.Text) < len(want) || n.Text[:len(want)] != want {
		t.Fatalf("checkpoint text %q does not start with %q", n.Text, want)
	}
	again, err := j.SignCheckpoint(ctx)
	if err != nil || again.Size != 5 {
		t.Fatalf("no new entries: want the same checkpoint, got %d, %v", again.Size, err)
	}
}

func TestCheckpointsSignedWhileThereAreNewEntries(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	j := openJournal(t, journal.Config{Store: st, CheckpointEvery: 10 * time.Millisecond})
	ctx := context.Background()
	e, err := j.Append(ctx, "test.thing/v1", "a", []byte(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		if cp, ok := j.Checkpoint(); ok && cp.Size >= e.Seq {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no checkpoint covered the new entry within 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestAppendRejectsBadEntries(t *testing.T) {
	st := openStore(t, filepath.Join(t.TempDir(), "db"))
	j := openJournal(t, journal.Config{Store: st})
	ctx := context.Background()
	for _, tc := range []struct{ kind, key string }{{"", "k"}, {string(make([]byte, 300)), "k"}, {"k", string(make([]byte, 300))}} {
		if _, err := j.Append(ctx, tc.kind, tc.key, []byte(`{}`)); !errors.Is(err, ledger.ErrMalformed) {
			t.Errorf("Append(kind len %d, key len %d) = %v, want ErrMalformed", len(tc.kind), len(tc.key), err)
		}
	}
}

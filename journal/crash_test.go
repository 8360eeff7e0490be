package journal_test

import (
	"bufio"
	"context"
	"crypto/ed25519"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"canopy/journal"
	"canopy/ledger"
	"canopy/store"
	"canopy/store/sqlite"
	"canopy/views"
)

const crashEvent = "crash-drill"

// crashKey is fixed so every incarnation of the child writes one node's log.
var crashKey = ed25519.NewKeyFromSeed([]byte("canopy crash drill node key seed"))

// TestMain lets the test binary act as the crashing child process.
func TestMain(m *testing.M) {
	if dir := os.Getenv("CANOPY_CRASH_CHILD"); dir != "" {
		os.Exit(crashChild(dir))
	}
	os.Exit(m.Run())
}

// crashChild appends forever from 16 goroutines and prints "ack SEQ HASH"
// for every append the journal acknowledged as durable. The parent kills it
// with SIGKILL at a moment of its choosing.
func crashChild(dir string) int {
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "canopy.db"))
	if err != nil {
		fmt.Fprintln(os.Stderr, "open:", err)
		return 1
	}
	j, err := journal.Open(ctx, journal.Config{Event: crashEvent, Key: crashKey, Store: st, CheckpointEvery: 20 * time.Millisecond})
	if err != nil {
		fmt.Fprintln(os.Stderr, "journal:", err)
		return 1
	}
	out := bufio.NewWriter(os.Stdout)
	var mu sync.Mutex
	fmt.Fprintln(out, "ready")
	out.Flush()
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; ; i++ {
				key := fmt.Sprintf("%d-%d-%d", os.Getpid(), g, i)
				body := fmt.Sprintf(`{"idempotency_key":%q,"request_hash":"h%d","n":%d}`, key, i, i)
				e, err := j.Append(ctx, "drill.append/v1", key, []byte(body))
				if err != nil {
					fmt.Fprintln(os.Stderr, "append:", err)
					os.Exit(1)
				}
				mu.Lock()
				fmt.Fprintf(out, "ack %d %s\n", e.Seq, e.Hash())
				out.Flush()
				mu.Unlock()
			}
		}(g)
	}
	wg.Wait()
	return 0
}

func TestCrashSafetyKill9(t *testing.T) {
	dir := t.TempDir()
	acked := map[uint64]string{}
	const rounds = 20
	for round := 0; round < rounds; round++ {
		cmd := exec.Command(os.Args[0], "-test.run=^$")
		cmd.Env = append(os.Environ(), "CANOPY_CRASH_CHILD="+dir)
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		var stderr strings.Builder
		cmd.Stderr = &stderr
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		sc := bufio.NewScanner(stdout)
		// Kill after a varying number of acknowledgements, while the other
		// goroutines' appends are in flight.
		killAt := 50 + (round*137)%400
		n := 0
		for sc.Scan() {
			line := sc.Text()
			if line == "ready" {
				continue
			}
			f := strings.Fields(line)
			if len(f) != 3 || f[0] != "ack" {
				t.Fatalf("round %d: child said %q", round, line)
			}
			seq, err := strconv.ParseUint(f[1], 10, 64)
			if err != nil {
				t.Fatal(err)
			}
			if prev, ok := acked[seq]; ok && prev != f[2] {
				t.Fatalf("round %d: seq %d acknowledged twice with different hashes", round, seq)
			}
			acked[seq] = f[2]
			n++
			if n == killAt {
				if err := cmd.Process.Kill(); err != nil {
					t.Fatal(err)
				}
				break
			}
		}
		_ = cmd.Wait()
		if n < killAt {
			t.Fatalf("round %d: child stopped after %d acks: %s", round, n, stderr.String())
		}
		checkCrashDir(t, dir, acked)
	}
	t.Logf("%d rounds, %d acknowledged appends, all present", rounds, len(acked))
}

// checkCrashDir reopens the store the child left behind and checks every
// acknowledged append is there, the log verifies and views rebuild equal.
func checkCrashDir(t *testing.T, dir string, acked map[uint64]string) {
	t.Helper()
	ctx := context.Background()
	st, err := sqlite.Open(ctx, filepath.Join(dir, "canopy.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	if err := st.Check(ctx); err != nil {
		t.Fatalf("integrity: %v", err)
	}
	node := ledger.NodeIDOf(crashKey.Public().(ed25519.PublicKey))
	stored, err := st.Entries(ctx, crashEvent, node, 1, ^uint64(0), 0)
	if err != nil {
		t.Fatal(err)
	}
	for seq, h := range acked {
		if seq > uint64(len(stored)) {
			t.Fatalf("acknowledged seq %d lost: store holds %d entries", seq, len(stored))
		}
		if got := stored[seq-1].Hash.String(); got != h {
			t.Fatalf("acknowledged seq %d: stored hash %s, acknowledged %s", seq, got, h)
		}
	}
	entries := make([]*ledger.Entry, len(stored))
	for i, s := range stored {
		entries[i] = s.Entry
	}
	cps, err := st.Checkpoints(ctx, crashEvent, node)
	if err != nil {
		t.Fatal(err)
	}
	notes := make([][]byte, len(cps))
	for i, c := range cps {
		notes[i] = c.Note
	}
	if err := ledger.VerifyLog(crashEvent, crashKey.Public().(ed25519.PublicKey), entries, notes); err != nil {
		t.Fatalf("log does not verify after kill -9: %v", err)
	}
	if err := views.Default().Verify(ctx, st, crashEvent); err != nil {
		t.Fatalf("views after kill -9: %v", err)
	}
	var _ store.Store = st
}

package sqlite_test

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"canopy/store/sqlite"
)

const killEnv = "CANOPY_SQLITE_KILL_CHILD_DB"

// TestKillChild is the child half of TestKill9: it commits batches forever,
// printing the head after each acknowledged commit. It does nothing unless
// TestKill9 started it.
func TestKillChild(t *testing.T) {
	path := os.Getenv(killEnv)
	if path == "" {
		t.Skip("child process of TestKill9")
	}
	s, err := sqlite.Open(context.Background(), path)
	if err != nil {
		fmt.Println("error", err)
		os.Exit(2)
	}
	c := newChain(9)
	for range 100_000 {
		b := c.batch(t, 8, 100)
		if err := s.Commit(context.Background(), b); err != nil {
			fmt.Println("error", err)
			os.Exit(2)
		}
		fmt.Printf("acked %d\n", c.seq)
	}
	os.Exit(3) // never reached in a normal run: the parent kills us first
}

// TestKill9 kills a process with SIGKILL while it commits and checks that
// every commit it acknowledged is in the database, which is sound.
func TestKill9(t *testing.T) {
	path := filepath.Join(t.TempDir(), "canopy.db")
	cmd := exec.Command(os.Args[0], "-test.run=^TestKillChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), killEnv+"="+path)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	var acked uint64
	lines := bufio.NewScanner(out)
	for acks := 0; acks < 40 && lines.Scan(); {
		line := lines.Text()
		if v, ok := strings.CutPrefix(line, "acked "); ok {
			if acked, err = strconv.ParseUint(v, 10, 64); err != nil {
				t.Fatalf("child said %q", line)
			}
			acks++
		} else if strings.HasPrefix(line, "error") {
			t.Fatalf("child: %s", line)
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()
	if acked == 0 {
		t.Fatal("the child acknowledged nothing")
	}

	s := openAt(t, path)
	ctx := context.Background()
	if err := s.Check(ctx); err != nil {
		t.Fatalf("after kill -9: %v", err)
	}
	c := newChain(9)
	head, _, err := s.Head(ctx, "ev", c.node())
	if err != nil {
		t.Fatal(err)
	}
	if head < acked {
		t.Fatalf("after kill -9 the head is %d, but the child acknowledged %d", head, acked)
	}
	got, err := s.Entries(ctx, "ev", c.node(), 1, head, 0)
	if err != nil {
		t.Fatal(err)
	}
	for len(got) > 0 {
		want := c.batch(t, 8, 100).Entries
		for i := range want {
			if len(got) == 0 || got[0].Hash != want[i].Hash {
				t.Fatalf("after kill -9, entry %d is not the one the child committed", want[i].Entry.Seq)
			}
			got = got[1:]
		}
	}
	t.Logf("child acknowledged %d entries; %d are stored", acked, head)
}

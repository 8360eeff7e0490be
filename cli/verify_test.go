package cli_test

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	_ "modernc.org/sqlite" // the "sqlite" driver, to alter a store

	"canopy/api"
	"canopy/auth"
	"canopy/config"
	"canopy/edge"
	"canopy/ledger"
)

// verifiedLog is a stopped edge's data directory and what it holds.
type verifiedLog struct {
	ev, data, nodeDir string
	node              ledger.NodeID
	entries           int
}

// newVerifiedLog runs a real edge (edge.Open) on a fresh event, appends
// notes with a checkpoint signed in between, and closes it, which signs the
// final checkpoint.
func newVerifiedLog(t *testing.T, notes int) verifiedLog {
	t.Helper()
	ctx := context.Background()
	l := verifiedLog{ev: newCeremonyEvent(t), data: filepath.Join(t.TempDir(), "data")}
	l.nodeDir = filepath.Join(l.data, "node")
	ceremonyRun(t, "node", "enroll", "--event", l.ev, "--name", "edge-verify", "--role", "edge", "--out", l.nodeDir).mustSucceed(t)
	cfg := config.Default()
	cfg.Node.Dir = l.data
	cfg.Node.Event = l.ev
	cfg.Node.Key = l.nodeDir
	cfg.Node.Listen = "127.0.0.1:0"
	ed, err := edge.Open(ctx, cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			ed.Close(context.Background())
		}
	})
	l.node = ed.Enrolment.Node
	for i := range notes {
		body := fmt.Appendf(nil, `{"text":"note %d","device":"test","role":"organizer"}`, i)
		if _, err := ed.Journal.Append(ctx, api.NoteKind, "note", body); err != nil {
			t.Fatal(err)
		}
		if i == notes/2 {
			if _, err := ed.Journal.SignCheckpoint(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	closed = true
	if err := ed.Close(ctx); err != nil {
		t.Fatal(err)
	}
	l.entries = notes + 1 // the enrolment is seq 1
	return l
}

// openStore opens the store of a stopped edge for direct SQL.
func openStore(t *testing.T, data string) *sql.DB {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(data, edge.StoreFile))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

// lastCheckpoint returns the number (1-based, in signing order) and the
// note of the latest stored checkpoint.
func lastCheckpoint(t *testing.T, db *sql.DB) (num int, size int64, note []byte) {
	t.Helper()
	if err := db.QueryRow(`SELECT count(*), max(size) FROM checkpoints`).Scan(&num, &size); err != nil {
		t.Fatal(err)
	}
	if num < 2 {
		t.Fatalf("%d checkpoints stored, want at least 2 (one mid-way, one at close)", num)
	}
	if err := db.QueryRow(`SELECT note FROM checkpoints WHERE size = ?`, size).Scan(&note); err != nil {
		t.Fatal(err)
	}
	return num, size, note
}

func replaceCheckpoint(t *testing.T, db *sql.DB, size int64, note []byte) {
	t.Helper()
	res, err := db.Exec(`UPDATE checkpoints SET note = ? WHERE size = ?`, note, size)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("updated %d checkpoints, want 1", n)
	}
}

func TestVerifyLogOK(t *testing.T) {
	l := newVerifiedLog(t, 10)
	db := openStore(t, l.data)
	num, size, _ := lastCheckpoint(t, db)
	db.Close()
	// Flags may come before or after DIR.
	for _, args := range [][]string{
		{"verify", "log", l.data, "--event", l.ev},
		{"verify", "log", "--event", filepath.Join(l.ev, auth.EventFile), filepath.Join(l.data, edge.StoreFile)},
	} {
		r := ceremonyRun(t, args...).mustSucceed(t)
		want := fmt.Sprintf("OK   node %s (edge-verify): %d entries, %d checkpoints, latest checkpoint size %d root ", l.node, l.entries, num, size)
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("verify log %q printed %q, want %q", args, r.stdout, want)
		}
		if int(size) != l.entries {
			t.Fatalf("the final checkpoint covers %d entries, want all %d", size, l.entries)
		}
	}
}

func TestVerifyLogAlteredCheckpoint(t *testing.T) {
	l := newVerifiedLog(t, 6)
	db := openStore(t, l.data)
	num, size, note := lastCheckpoint(t, db)

	// Altered text: the note's signature no longer verifies.
	lines := bytes.SplitN(note, []byte("\n"), 4) // origin, size, root, rest
	if len(lines) < 4 {
		t.Fatalf("checkpoint note %q has fewer lines than a checkpoint", note)
	}
	altered := bytes.Clone(note)
	i := len(lines[0]) + 1 + len(lines[1]) + 1 // first byte of the root line
	altered[i] ^= 0x01
	replaceCheckpoint(t, db, size, altered)
	r := ceremonyRun(t, "verify", "log", l.data, "--event", l.ev)
	if r.code != 1 {
		t.Fatalf("verify log with an altered checkpoint: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if want := fmt.Sprintf("checkpoint #%d: ", num); !strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, want) {
		t.Fatalf("verify log stdout %q does not FAIL naming %q", r.stdout, want)
	}
	if strings.Contains(r.stdout, "OK   node") || !strings.Contains(r.stderr, "verification failed") {
		t.Fatalf("verify log with an altered checkpoint: stdout %q stderr %q", r.stdout, r.stderr)
	}

	// A checkpoint properly signed by the node, over a root that is not the
	// log's: the root check catches it.
	key, _, err := auth.LoadNode(l.nodeDir)
	if err != nil {
		t.Fatal(err)
	}
	ev, err := auth.LoadEvent(l.ev)
	if err != nil {
		t.Fatal(err)
	}
	forged, err := ledger.SignCheckpoint(key, ev.Slug, uint64(size), ledger.Hash{0x42})
	if err != nil {
		t.Fatal(err)
	}
	replaceCheckpoint(t, db, size, forged)
	r = ceremonyRun(t, "verify", "log", l.data, "--event", l.ev)
	want := fmt.Sprintf("checkpoint #%d (size %d): ", num, size)
	if r.code != 1 || !strings.Contains(r.stdout, want) || !strings.Contains(r.stdout, "does not match entries") {
		t.Fatalf("verify log with a forged root: exit %d, want 1 and %q … does not match entries\nstdout: %s\nstderr: %s", r.code, want, r.stdout, r.stderr)
	}
}

func TestVerifyLogBadInput(t *testing.T) {
	l := newVerifiedLog(t, 1)
	missing := filepath.Join(t.TempDir(), "no-such-dir")
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		mention string
	}{
		{"no event", []string{"verify", "log", l.data}, 2, "--event is required"},
		{"no target", []string{"verify", "log", "--event", l.ev}, 2, "want one DIR or URL"},
		{"two targets", []string{"verify", "log", l.data, l.data, "--event", l.ev}, 2, "unexpected argument"},
		{"missing dir", []string{"verify", "log", missing, "--event", l.ev}, 1, "no store at " + filepath.Join(missing, "")},
		{"missing event", []string{"verify", "log", l.data, "--event", filepath.Join(t.TempDir(), "nope")}, 1, "nope"},
		{"URL without token", []string{"verify", "log", "http://127.0.0.1:1", "--event", l.ev}, 2, "token"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CANOPY_TOKEN", "")
			r := ceremonyRun(t, tc.args...)
			if r.code != tc.code || !strings.Contains(r.stderr, tc.mention) {
				t.Fatalf("exit %d, want %d mentioning %q\nstdout: %s\nstderr: %s", r.code, tc.code, tc.mention, r.stdout, r.stderr)
			}
		})
	}

	// A data directory holding an empty file: refused, and left untouched
	// (the verifier opens the store read-only).
	other := t.TempDir()
	empty := filepath.Join(other, edge.StoreFile)
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	r := ceremonyRun(t, "verify", "log", other, "--event", l.ev)
	if r.code != 1 || !strings.Contains(r.stderr, "not a canopy store") {
		t.Fatalf("verify log of an empty file: exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	if st, err := os.Stat(empty); err != nil || st.Size() != 0 {
		t.Fatalf("verify log wrote to the store it checks: %v, size %d", err, st.Size())
	}
}

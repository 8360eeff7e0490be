package cli_test

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/cli"
)

// ceremonyResult is what one run of the command line produced.
type ceremonyResult struct {
	code           int
	stdout, stderr string
}

// ceremonyRun runs the canopy command line in-process.
func ceremonyRun(t *testing.T, args ...string) ceremonyResult {
	t.Helper()
	var out, errOut bytes.Buffer
	code := cli.Run(context.Background(), args, &out, &errOut)
	return ceremonyResult{code, out.String(), errOut.String()}
}

// mustSucceed fails the test unless r exited 0.
func (r ceremonyResult) mustSucceed(t *testing.T) ceremonyResult {
	t.Helper()
	if r.code != 0 {
		t.Fatalf("exit %d\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	return r
}

// mustFail fails the test unless r exited non-zero with mention in stderr.
func (r ceremonyResult) mustFail(t *testing.T, mention string) {
	t.Helper()
	if r.code == 0 {
		t.Fatalf("exit 0, want failure\nstdout: %s", r.stdout)
	}
	if !strings.Contains(r.stderr, mention) {
		t.Fatalf("stderr %q does not mention %q", r.stderr, mention)
	}
}

// Event times relative to now, so the tokens issued "now" are valid.
var (
	ceremonyStart = time.Now().Add(2 * time.Hour).Truncate(time.Second)
	ceremonyEnd   = ceremonyStart.Add(8 * time.Hour)
)

// newCeremonyEvent runs event init in a temp dir and returns the event dir.
func newCeremonyEvent(t *testing.T) string {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "ev")
	ceremonyRun(t, "event", "init", "--dir", dir, "--slug", "night-market", "--name", "Night Market",
		"--tz", "Europe/Berlin", "--starts", ceremonyStart.Format(time.RFC3339),
		"--ends", ceremonyEnd.Format(time.RFC3339), "--currency", "EUR").mustSucceed(t)
	return dir
}

func fileMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func TestEventInit(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ev")
	r := ceremonyRun(t, "event", "init", "--dir", dir, "--slug", "night-market", "--name", "Night Market",
		"--tz", "Europe/Berlin", "--starts", "2026-06-12T18:00:00+02:00", "--ends", "2026-06-13T00:00:00+02:00",
		"--currency", "CHF").mustSucceed(t)
	for _, want := range []string{filepath.Join(dir, "event.json"), filepath.Join(dir, "event.key"),
		filepath.Join(dir, "organizer.agekey"), "BACK UP", "OFFLINE", "unreadable", "k4.public.", "age1"} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("output does not mention %q:\n%s", want, r.stdout)
		}
	}
	for name, want := range map[string]os.FileMode{"event.json": 0o644, "event.key": 0o600, "organizer.agekey": 0o600} {
		if got := fileMode(t, filepath.Join(dir, name)); got != want {
			t.Errorf("%s mode %o, want %o", name, got, want)
		}
	}
	ev, err := auth.LoadEvent(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Slug != "night-market" || ev.Name != "Night Market" || ev.TimeZone != "Europe/Berlin" || ev.Currency != "CHF" ||
		ev.StartsAt.Format(time.RFC3339) != "2026-06-12T18:00:00+02:00" || !ev.EndsAt.Equal(ev.StartsAt.Add(6*time.Hour)) {
		t.Fatalf("event.json = %+v", ev)
	}
	key, err := auth.LoadEventKey(dir)
	if err != nil || !ev.PublicKey().Equal(key.Public()) {
		t.Fatalf("event.key does not match event.json: %v", err)
	}
}

func TestEventInitDefaults(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ev")
	ceremonyRun(t, "event", "init", "--dir", dir, "--slug", "pop-up").mustSucceed(t)
	ev, err := auth.LoadEvent(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ev.Name != "pop-up" || ev.TimeZone != "UTC" || ev.Currency != "EUR" || !ev.EndsAt.After(ev.StartsAt) {
		t.Fatalf("defaults: %+v", ev)
	}
}

func TestEventInitRejectsBadInput(t *testing.T) {
	existing := newCeremonyEvent(t)
	before, err := os.ReadFile(filepath.Join(existing, "event.key"))
	if err != nil {
		t.Fatal(err)
	}
	fresh := func() string { return filepath.Join(t.TempDir(), "ev") }
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"no slug", []string{"--dir", fresh()}, "--slug is required"},
		{"no dir", []string{"--slug", "x"}, "--dir is required"},
		{"bad slug", []string{"--dir", fresh(), "--slug", "Night Market"}, "slug"},
		{"unknown tz", []string{"--dir", fresh(), "--slug", "x", "--tz", "Mars/Olympus"}, "time zone"},
		{"bad start", []string{"--dir", fresh(), "--slug", "x", "--starts", "tomorrow"}, "--starts"},
		{"start without offset", []string{"--dir", fresh(), "--slug", "x", "--starts", "2026-06-12T18:00:00"}, "--starts"},
		{"end before start", []string{"--dir", fresh(), "--slug", "x", "--starts", "2026-06-12T18:00:00Z", "--ends", "2026-06-12T17:00:00Z"}, "not after"},
		{"bad currency", []string{"--dir", fresh(), "--slug", "x", "--currency", "euro"}, "currency"},
		{"existing event", []string{"--dir", existing, "--slug", "x"}, "already exists"},
		{"unknown flag", []string{"--dir", fresh(), "--slug", "x", "--colour", "red"}, "colour"},
		{"stray argument", []string{"--dir", fresh(), "--slug", "x", "extra"}, "extra"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ceremonyRun(t, append([]string{"event", "init"}, c.args...)...).mustFail(t, c.mention)
		})
	}
	after, _ := os.ReadFile(filepath.Join(existing, "event.key"))
	if !bytes.Equal(before, after) {
		t.Fatal("the existing event's key was overwritten")
	}
}

func TestCeremonyHelp(t *testing.T) {
	for _, cmd := range [][]string{{"event", "init"}, {"node", "enroll"}, {"token", "issue"}, {"ticket", "issue"}} {
		r := ceremonyRun(t, append(cmd, "--help")...)
		if r.code != 0 {
			t.Errorf("%s --help: exit %d", strings.Join(cmd, " "), r.code)
		}
		if !strings.Contains(r.stderr, "Usage: canopy "+strings.Join(cmd, " ")) || !strings.Contains(r.stderr, "-event") && cmd[0] != "event" {
			t.Errorf("%s --help printed:\n%s", strings.Join(cmd, " "), r.stderr)
		}
	}
}

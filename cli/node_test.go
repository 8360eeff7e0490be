package cli_test

import (
	"crypto/ed25519"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/ledger"
)

func TestNodeEnroll(t *testing.T) {
	evDir := newCeremonyEvent(t)
	ev, err := auth.LoadEvent(evDir)
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(t.TempDir(), "edge-north")
	r := ceremonyRun(t, "node", "enroll", "--event", evDir, "--name", "edge-north", "--role", "edge", "--out", out).mustSucceed(t)

	if got := fileMode(t, filepath.Join(out, "node.key")); got != 0o600 {
		t.Errorf("node.key mode %o, want 600", got)
	}
	key, tok, err := auth.LoadNode(out)
	if err != nil {
		t.Fatal(err)
	}
	id := ledger.NodeIDOf(key.Public().(ed25519.PublicKey))
	if strings.TrimSpace(r.stdout) != id.String() {
		t.Fatalf("stdout %q, want the node id %s", r.stdout, id)
	}
	enr, err := auth.VerifyEnrolment(ev, tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if enr.Node != id || enr.Name != "edge-north" || enr.Role != "edge" {
		t.Fatalf("enrolment %+v", enr)
	}
	// By default the enrolment outlives the event by a week.
	if !enr.Expires.Equal(ev.EndsAt.Add(7 * 24 * time.Hour)) {
		t.Errorf("expires %s, want a week after %s", enr.Expires, ev.EndsAt)
	}

	// --ttl and --valid-until set the end.
	hub := filepath.Join(t.TempDir(), "hub")
	ceremonyRun(t, "node", "enroll", "--event", evDir, "--name", "hub-1", "--role", "hub", "--ttl", "30d", "--out", hub).mustSucceed(t)
	_, tok, err = auth.LoadNode(hub)
	if err != nil {
		t.Fatal(err)
	}
	enr, err = auth.VerifyEnrolment(ev, tok, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Until(enr.Expires); d < 29*24*time.Hour || d > 31*24*time.Hour {
		t.Errorf("--ttl 30d: expires in %s", d)
	}
	until := ceremonyEnd.Add(time.Hour)
	edge2 := filepath.Join(t.TempDir(), "edge2")
	ceremonyRun(t, "node", "enroll", "--event", filepath.Join(evDir, "event.json"), "--name", "edge-2", "--role", "edge",
		"--valid-until", until.Format(time.RFC3339), "--out", edge2).mustSucceed(t)
	_, tok, _ = auth.LoadNode(edge2)
	if enr, err = auth.VerifyEnrolment(ev, tok, time.Now()); err != nil || !enr.Expires.Equal(until) {
		t.Fatalf("--valid-until: %+v, %v", enr, err)
	}

	// An existing node is never overwritten.
	ceremonyRun(t, "node", "enroll", "--event", evDir, "--name", "edge-north", "--role", "edge", "--out", out).mustFail(t, "exists")
}

func TestNodeEnrollRejectsBadInput(t *testing.T) {
	evDir := newCeremonyEvent(t)
	out := func() string { return filepath.Join(t.TempDir(), "node") }
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"no event", []string{"--name", "a", "--role", "edge", "--out", out()}, "--event is required"},
		{"missing event", []string{"--event", filepath.Join(t.TempDir(), "nope"), "--name", "a", "--role", "edge", "--out", out()}, "--event"},
		{"no name", []string{"--event", evDir, "--role", "edge", "--out", out()}, "--name is required"},
		{"no role", []string{"--event", evDir, "--name", "a", "--out", out()}, "--role is required"},
		{"bad role", []string{"--event", evDir, "--name", "a", "--role", "pos", "--out", out()}, "not a node role"},
		{"no out", []string{"--event", evDir, "--name", "a", "--role", "edge"}, "--out is required"},
		{"bad ttl", []string{"--event", evDir, "--name", "a", "--role", "edge", "--ttl", "forever", "--out", out()}, "--ttl"},
		{"negative ttl", []string{"--event", evDir, "--name", "a", "--role", "edge", "--ttl", "-1h", "--out", out()}, "positive"},
		{"bad time", []string{"--event", evDir, "--name", "a", "--role", "edge", "--valid-until", "2026-13-01", "--out", out()}, "--valid-until"},
		{"past", []string{"--event", evDir, "--name", "a", "--role", "edge", "--valid-until", "2001-01-01T00:00:00Z", "--out", out()}, "already past"},
		{"both", []string{"--event", evDir, "--name", "a", "--role", "edge", "--ttl", "1h", "--valid-until", "2099-01-01T00:00:00Z", "--out", out()}, "not both"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ceremonyRun(t, append([]string{"node", "enroll"}, c.args...)...).mustFail(t, c.mention)
		})
	}
}

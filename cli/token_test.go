package cli_test

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/ledger"
)

func TestTokenIssue(t *testing.T) {
	evDir := newCeremonyEvent(t)
	ev, err := auth.LoadEvent(evDir)
	if err != nil {
		t.Fatal(err)
	}
	for _, role := range auth.Roles {
		r := ceremonyRun(t, "token", "issue", "--event", evDir, "--role", string(role), "--device", "till-3",
			"--vendor", "bao-stall", "--ttl", "12h").mustSucceed(t)
		tok := strings.TrimSuffix(r.stdout, "\n")
		if strings.ContainsAny(tok, " \n") || !strings.HasPrefix(tok, "v4.public.") {
			t.Fatalf("stdout is not just the token: %q", r.stdout)
		}
		v := auth.NewVerifier(ev, ledger.SystemClock{})
		d, err := v.VerifyDevice(tok)
		if err != nil {
			t.Fatal(err)
		}
		if d.Role != role || d.Name != "till-3" || d.Vendor != "bao-stall" || d.Event != "night-market" {
			t.Fatalf("token carries %+v", d)
		}
		if left := time.Until(d.Expires); left < 11*time.Hour || left > 12*time.Hour+time.Minute {
			t.Fatalf("--ttl 12h: expires in %s", left)
		}
		// It expires when the ttl is over.
		late := auth.NewVerifier(ev, ledger.SystemClock{Offset: 13 * time.Hour})
		if _, err := late.VerifyDevice(tok); !errors.Is(err, auth.ErrExpired) {
			t.Fatalf("13h later: err = %v, want ErrExpired", err)
		}
	}
}

func TestTokenIssueRejectsBadInput(t *testing.T) {
	evDir := newCeremonyEvent(t)
	keyless := t.TempDir()
	data, err := os.ReadFile(filepath.Join(evDir, "event.json"))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(keyless, "event.json"), data, 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"no event", []string{"--role", "pos", "--device", "a", "--ttl", "1h"}, "--event is required"},
		{"no role", []string{"--event", evDir, "--device", "a", "--ttl", "1h"}, "--role is required"},
		{"bad role", []string{"--event", evDir, "--role", "janitor", "--device", "a", "--ttl", "1h"}, "not a role"},
		{"no device", []string{"--event", evDir, "--role", "pos", "--ttl", "1h"}, "--device is required"},
		{"no ttl", []string{"--event", evDir, "--role", "pos", "--device", "a"}, "--ttl is required"},
		{"bad ttl", []string{"--event", evDir, "--role", "pos", "--device", "a", "--ttl", "soon"}, "--ttl"},
		{"zero ttl", []string{"--event", evDir, "--role", "pos", "--device", "a", "--ttl", "0s"}, "positive"},
		{"bad vendor", []string{"--event", evDir, "--role", "pos", "--device", "a", "--vendor", "a b", "--ttl", "1h"}, "vendor"},
		{"no event key", []string{"--event", keyless, "--role", "pos", "--device", "a", "--ttl", "1h"}, "event.key"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ceremonyRun(t, append([]string{"token", "issue"}, c.args...)...)
			r.mustFail(t, c.mention)
			if r.stdout != "" {
				t.Fatalf("printed %q on stdout despite failing", r.stdout)
			}
		})
	}
}

package cli_test

import (
	"encoding/csv"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"canopy/auth"
)

// ceremonyClock is a fixed ledger.Clock.
type ceremonyClock time.Time

func (c ceremonyClock) Now() time.Time { return time.Time(c) }

func readTicketCSV(t *testing.T, data string) [][]string {
	t.Helper()
	rows, err := csv.NewReader(strings.NewReader(data)).ReadAll()
	if err != nil {
		t.Fatalf("output is not CSV: %v\n%s", err, data)
	}
	if len(rows) == 0 || strings.Join(rows[0], ",") != "id,type,doors,reentry,valid_from,valid_until,token" {
		t.Fatalf("bad header in\n%s", data)
	}
	return rows[1:]
}

func TestTicketIssueToStdout(t *testing.T) {
	evDir := newCeremonyEvent(t)
	ev, err := auth.LoadEvent(evDir)
	if err != nil {
		t.Fatal(err)
	}
	r := ceremonyRun(t, "ticket", "issue", "--event", evDir, "--count", "5", "--type", "vip",
		"--doors", "main,side", "--reentry").mustSucceed(t)
	rows := readTicketCSV(t, r.stdout)
	if len(rows) != 5 {
		t.Fatalf("%d tickets, want 5", len(rows))
	}
	v := auth.NewVerifier(ev, ceremonyClock(ceremonyStart.Add(time.Hour)))
	ids := map[string]bool{}
	for _, row := range rows {
		tk, err := v.VerifyTicket(row[6])
		if err != nil {
			t.Fatalf("ticket %s: %v", row[0], err)
		}
		if len(row[6]) > auth.MaxTicketLen {
			t.Errorf("token of %d characters", len(row[6]))
		}
		if tk.ID != row[0] || tk.Type != "vip" || row[1] != "vip" || !slices.Equal(tk.Doors, []string{"main", "side"}) ||
			row[2] != "main,side" || !tk.Reentry || row[3] != "true" {
			t.Fatalf("row %v carries %+v", row, tk)
		}
		// Defaults: valid for the event's duration.
		if !tk.ValidFrom.Equal(ev.StartsAt) || !tk.ValidUntil.Equal(ev.EndsAt) || row[4] != tk.ValidFrom.Format(time.RFC3339) {
			t.Fatalf("validity %s..%s (row %s..%s), want the event's %s..%s", tk.ValidFrom, tk.ValidUntil, row[4], row[5], ev.StartsAt, ev.EndsAt)
		}
		if ids[tk.ID] {
			t.Fatalf("duplicate ticket id %s", tk.ID)
		}
		ids[tk.ID] = true
	}
}

func TestTicketIssueToFile(t *testing.T) {
	evDir := newCeremonyEvent(t)
	ev, err := auth.LoadEvent(evDir)
	if err != nil {
		t.Fatal(err)
	}
	from := ceremonyStart.Add(-time.Hour)
	until := ceremonyStart.Add(3 * time.Hour)
	out := filepath.Join(t.TempDir(), "tickets.csv")
	r := ceremonyRun(t, "ticket", "issue", "--event", evDir, "--count", "3", "--valid-from", from.Format(time.RFC3339),
		"--valid-until", until.Format(time.RFC3339), "--out", out).mustSucceed(t)
	if r.stdout != "" {
		t.Fatalf("wrote %q to stdout with --out", r.stdout)
	}
	if got := fileMode(t, out); got != 0o600 {
		t.Errorf("tickets file mode %o, want 600", got)
	}
	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	rows := readTicketCSV(t, string(data))
	if len(rows) != 3 {
		t.Fatalf("%d tickets, want 3", len(rows))
	}
	for _, row := range rows {
		if row[1] != "general" || row[2] != "" || row[3] != "false" {
			t.Fatalf("defaults: row %v", row)
		}
		in := auth.NewVerifier(ev, ceremonyClock(from.Add(time.Minute)))
		if _, err := in.VerifyTicket(row[6]); err != nil {
			t.Fatal(err)
		}
		after := auth.NewVerifier(ev, ceremonyClock(until.Add(time.Second)))
		if _, err := after.VerifyTicket(row[6]); !errors.Is(err, auth.ErrExpired) {
			t.Fatalf("after --valid-until: err = %v, want ErrExpired", err)
		}
		before := auth.NewVerifier(ev, ceremonyClock(from.Add(-time.Second)))
		if _, err := before.VerifyTicket(row[6]); !errors.Is(err, auth.ErrNotYetValid) {
			t.Fatalf("before --valid-from: err = %v, want ErrNotYetValid", err)
		}
	}
	// The file is never overwritten.
	ceremonyRun(t, "ticket", "issue", "--event", evDir, "--count", "1", "--out", out).mustFail(t, "already exists")
	again, _ := os.ReadFile(out)
	if string(again) != string(data) {
		t.Fatal("tickets file was overwritten")
	}
}

func TestTicketIssueRejectsBadInput(t *testing.T) {
	evDir := newCeremonyEvent(t)
	var many []string
	for i := range 30 {
		many = append(many, fmt.Sprintf("door-%02d", i))
	}
	cases := []struct {
		name    string
		args    []string
		mention string
	}{
		{"no event", []string{"--count", "1"}, "--event is required"},
		{"no count", []string{"--event", evDir}, "--count is required"},
		{"zero count", []string{"--event", evDir, "--count", "0"}, "--count"},
		{"bad count", []string{"--event", evDir, "--count", "ten"}, "--count"},
		{"bad time", []string{"--event", evDir, "--count", "1", "--valid-from", "noon"}, "--valid-from"},
		{"inverted window", []string{"--event", evDir, "--count", "1", "--valid-until", ceremonyStart.Add(-time.Hour).Format(time.RFC3339)}, "not after"},
		{"empty door", []string{"--event", evDir, "--count", "1", "--doors", "main,,side"}, "empty door"},
		{"bad door", []string{"--event", evDir, "--count", "1", "--doors", "main gate"}, "door"},
		{"too many doors", []string{"--event", evDir, "--count", "1", "--doors", strings.Join(many, ",")}, "280"},
		{"bad type", []string{"--event", evDir, "--count", "1", "--type", "v i p"}, "type"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := ceremonyRun(t, append([]string{"ticket", "issue"}, c.args...)...)
			r.mustFail(t, c.mention)
			if r.stdout != "" {
				t.Fatalf("printed %q on stdout despite failing", r.stdout)
			}
		})
	}
}

package auth

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
)

func testTicket(ev *Event) Ticket {
	return Ticket{
		ID:         NewTicketID(),
		Event:      ev.Slug,
		Type:       "general",
		Doors:      []string{"main", "side"},
		Reentry:    true,
		ValidFrom:  testStart.Add(-time.Hour),
		ValidUntil: testEnd,
	}
}

func TestTicketRoundTrip(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	v := NewVerifier(ev, &testClock{now: testStart})
	for _, tk := range []Ticket{
		testTicket(ev),
		{ID: "T-1", Event: ev.Slug, Type: "vip", ValidFrom: testStart, ValidUntil: testEnd},
	} {
		tok, err := IssueTicket(key, tk)
		if err != nil {
			t.Fatal(err)
		}
		if len(tok) > MaxTicketLen {
			t.Fatalf("token is %d characters", len(tok))
		}
		got, err := v.VerifyTicket(tok)
		if err != nil {
			t.Fatal(err)
		}
		if got.ID != tk.ID || got.Event != tk.Event || got.Type != tk.Type || !slices.Equal(got.Doors, tk.Doors) ||
			got.Reentry != tk.Reentry || !got.ValidFrom.Equal(tk.ValidFrom) || !got.ValidUntil.Equal(tk.ValidUntil) {
			t.Fatalf("VerifyTicket = %+v, want %+v", got, tk)
		}
		if got.ValidFrom.Location().String() != "Europe/Berlin" {
			t.Errorf("times in %s, want the event's zone", got.ValidFrom.Location())
		}
		if len(got.Doors) > 0 {
			got.Doors[0] = "changed" // must not reach the verifier's cache
			again, err := v.VerifyTicket(tok)
			if err != nil || again.Doors[0] != tk.Doors[0] {
				t.Fatalf("cache was changed through a returned ticket: %+v, %v", again, err)
			}
		}
	}
}

func TestTicketSizeLimit(t *testing.T) {
	ev, key, _ := newTestEvent(t)

	// A realistic ticket: 16-character id, a type, three doors, re-entry.
	tk := testTicket(ev)
	tk.Type = "weekend-pass"
	tk.Doors = []string{"main", "north", "backstage"}
	tok, err := IssueTicket(key, tk)
	if err != nil {
		t.Fatalf("realistic ticket refused: %v", err)
	}
	if len(tok) > MaxTicketLen {
		t.Fatalf("token is %d characters", len(tok))
	}

	// Many doors push it over the limit, with a clear error.
	tk.Doors = nil
	for i := range 20 {
		tk.Doors = append(tk.Doors, fmt.Sprintf("door-%02d", i))
	}
	tok, err = IssueTicket(key, tk)
	if !errors.Is(err, ErrTicketTooLong) {
		t.Fatalf("20 doors: IssueTicket = %d chars, %v; want ErrTicketTooLong", len(tok), err)
	}
	if !strings.Contains(err.Error(), "280") || !strings.Contains(err.Error(), "doors") {
		t.Errorf("error does not explain the limit: %v", err)
	}

	// Find where the limit bites: every accepted ticket fits.
	for n := 1; n <= 20; n++ {
		tk.Doors = tk.Doors[:0]
		for i := range n {
			tk.Doors = append(tk.Doors, fmt.Sprintf("door-%02d", i))
		}
		tok, err := IssueTicket(key, tk)
		if err != nil {
			if !errors.Is(err, ErrTicketTooLong) {
				t.Fatalf("%d doors: %v", n, err)
			}
			continue
		}
		if len(tok) > MaxTicketLen {
			t.Fatalf("%d doors: accepted a %d-character token", n, len(tok))
		}
	}
}

func TestIssueTicketValidates(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	cases := []struct {
		name   string
		change func(*Ticket)
		want   error
	}{
		{"no id", func(tk *Ticket) { tk.ID = "" }, ErrInvalidArguments},
		{"id with comma", func(tk *Ticket) { tk.ID = "a,b" }, ErrInvalidArguments},
		{"no type", func(tk *Ticket) { tk.Type = "" }, ErrInvalidArguments},
		{"empty door", func(tk *Ticket) { tk.Doors = []string{""} }, ErrInvalidArguments},
		{"door with space", func(tk *Ticket) { tk.Doors = []string{"main gate"} }, ErrInvalidArguments},
		{"bad slug", func(tk *Ticket) { tk.Event = "" }, ErrInvalidEvent},
		{"no window", func(tk *Ticket) { tk.ValidUntil = time.Time{} }, ErrInvalidArguments},
		{"inverted window", func(tk *Ticket) { tk.ValidUntil = tk.ValidFrom }, ErrInvalidArguments},
		{"sub-second window", func(tk *Ticket) {
			tk.ValidFrom = testStart.Add(100 * time.Millisecond)
			tk.ValidUntil = testStart.Add(900 * time.Millisecond)
		}, ErrInvalidArguments},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			tk := testTicket(ev)
			c.change(&tk)
			if tok, err := IssueTicket(key, tk); !errors.Is(err, c.want) {
				t.Fatalf("IssueTicket = %q, %v; want %v", tok, err, c.want)
			}
		})
	}
}

func TestTicketRejections(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	v := NewVerifier(ev, &testClock{now: testStart})
	issue := func(tk Ticket) string {
		t.Helper()
		tok, err := IssueTicket(key, tk)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	good := issue(testTicket(ev))
	expired := testTicket(ev)
	expired.ValidFrom, expired.ValidUntil = testStart.Add(-3*time.Hour), testStart.Add(-time.Second)
	early := testTicket(ev)
	early.ValidFrom = testStart.Add(time.Second)
	other := testTicket(ev)
	other.Event = "other-market"
	forged, err := IssueTicket(otherKey(t), testTicket(ev))
	if err != nil {
		t.Fatal(err)
	}
	device, err := IssueDevice(key, testDevice(ev))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"expired", issue(expired), ErrExpired},
		{"not yet valid", issue(early), ErrNotYetValid},
		{"wrong event", issue(other), ErrWrongEvent},
		{"signed by another key", forged, ErrBadSignature},
		{"flipped claim character", flip(good, len("v4.public.")+12), ErrBadSignature},
		{"flipped signature character", flip(good, len(good)-10), ErrBadSignature},
		{"device token as ticket", device, ErrWrongPurpose},
		{"garbage", "hello", ErrMalformed},
		{"huge", "v4.public." + strings.Repeat("A", 5000), ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if tk, err := v.VerifyTicket(c.token); !errors.Is(err, c.want) {
				t.Fatalf("VerifyTicket = %+v, %v; want %v", tk, err, c.want)
			}
		})
	}
	if _, err := v.VerifyTicket(good); err != nil {
		t.Fatal(err)
	}
}

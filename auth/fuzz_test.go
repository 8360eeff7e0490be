package auth

import (
	"errors"
	"testing"
	"time"
)

// refusals is the vocabulary every refused token must be explained with.
var refusals = []error{ErrMalformed, ErrBadSignature, ErrExpired, ErrNotYetValid, ErrWrongEvent, ErrWrongPurpose, ErrUnknownRole}

func checkRefusal(t *testing.T, err error) {
	t.Helper()
	for _, r := range refusals {
		if errors.Is(err, r) {
			return
		}
	}
	t.Fatalf("refusal outside the error vocabulary: %v", err)
}

// fuzzVerifier returns a verifier and valid tokens of every kind as seeds.
func fuzzVerifier(f *testing.F) (*Verifier, []string) {
	ev, key, _ := newTestEvent(f)
	device, err := IssueDevice(key, testDevice(ev))
	if err != nil {
		f.Fatal(err)
	}
	ticket, err := IssueTicket(key, testTicket(ev))
	if err != nil {
		f.Fatal(err)
	}
	_, enrolment, err := EnrollNode(key, ev, "edge-1", NodeEdge, testStart, testEnd)
	if err != nil {
		f.Fatal(err)
	}
	return NewVerifier(ev, &testClock{now: testStart}), []string{device, ticket, enrolment}
}

func FuzzVerifyDevice(f *testing.F) {
	v, seeds := fuzzVerifier(f)
	for _, s := range append(seeds, "", "v4.public.", "v4.public..", "v4.public.e30", seeds[0]+".x") {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		d, err := v.VerifyDevice(token)
		if err != nil {
			if d != nil {
				t.Fatal("device returned with an error")
			}
			checkRefusal(t, err)
			return
		}
		if d.Event != v.ev.Slug || !ValidRole(d.Role) || d.TokenID == "" || d.Expires.Before(d.NotBefore) {
			t.Fatalf("accepted an inconsistent device: %+v", d)
		}
		if now := v.clock.Now(); now.Before(d.NotBefore) || now.After(d.Expires) {
			t.Fatalf("accepted a device outside its window: %+v", d)
		}
	})
}

func FuzzVerifyTicket(f *testing.F) {
	v, seeds := fuzzVerifier(f)
	for _, s := range append(seeds, "", "v4.public.", "v4.public.e30", seeds[1][:len(seeds[1])-1]) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, token string) {
		tk, err := v.VerifyTicket(token)
		if err != nil {
			if tk != nil {
				t.Fatal("ticket returned with an error")
			}
			checkRefusal(t, err)
			return
		}
		if tk.Event != v.ev.Slug || tk.ID == "" || tk.Type == "" {
			t.Fatalf("accepted an inconsistent ticket: %+v", tk)
		}
		if now := v.clock.Now(); now.Before(tk.ValidFrom) || now.After(tk.ValidUntil.Add(time.Nanosecond)) {
			t.Fatalf("accepted a ticket outside its window: %+v", tk)
		}
	})
}

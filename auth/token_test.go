package auth

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"
)

func testDevice(ev *Event) Device {
	return Device{
		Event:     ev.Slug,
		Role:      RolePOS,
		Name:      "till-3",
		Vendor:    "bao-stall",
		NotBefore: testStart.Add(-time.Hour),
		Expires:   testEnd.Add(time.Hour),
	}
}

func TestDeviceTokenRoundTrip(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	d := testDevice(ev)
	tok, err := IssueDevice(key, d)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(tok, "v4.public.") {
		t.Fatalf("token %q is not v4.public", tok)
	}
	v := NewVerifier(ev, &testClock{now: testStart})
	got, err := v.VerifyDevice(tok)
	if err != nil {
		t.Fatal(err)
	}
	if got.Event != ev.Slug || got.Role != RolePOS || got.Name != "till-3" || got.Vendor != "bao-stall" ||
		!got.NotBefore.Equal(d.NotBefore) || !got.Expires.Equal(d.Expires) || !got.IssuedAt.Equal(d.NotBefore) {
		t.Fatalf("VerifyDevice = %+v, want the fields of %+v", got, d)
	}
	if len(got.TokenID) != 26 {
		t.Fatalf("token id %q, want a generated 26-character id", got.TokenID)
	}

	// Two tokens for the same device differ in their jti.
	tok2, err := IssueDevice(key, d)
	if err != nil {
		t.Fatal(err)
	}
	got2, err := v.VerifyDevice(tok2)
	if err != nil {
		t.Fatal(err)
	}
	if got2.TokenID == got.TokenID {
		t.Fatal("two tokens share a jti")
	}
}

func TestIssueDeviceValidates(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	cases := []struct {
		name   string
		change func(*Device)
		want   error
	}{
		{"unknown role", func(d *Device) { d.Role = "janitor" }, ErrUnknownRole},
		{"empty role", func(d *Device) { d.Role = "" }, ErrUnknownRole},
		{"no name", func(d *Device) { d.Name = "" }, ErrInvalidArguments},
		{"bad vendor", func(d *Device) { d.Vendor = "bao stall" }, ErrInvalidArguments},
		{"bad slug", func(d *Device) { d.Event = "Night" }, ErrInvalidEvent},
		{"no expiry", func(d *Device) { d.Expires = time.Time{} }, ErrInvalidArguments},
		{"inverted window", func(d *Device) { d.Expires = d.NotBefore.Add(-time.Second) }, ErrInvalidArguments},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d := testDevice(ev)
			c.change(&d)
			if tok, err := IssueDevice(key, d); !errors.Is(err, c.want) {
				t.Fatalf("IssueDevice = %q, %v; want %v", tok, err, c.want)
			}
		})
	}
	if _, err := IssueDevice(key[:10], testDevice(ev)); !errors.Is(err, ErrInvalidArguments) {
		t.Fatalf("short key: err = %v", err)
	}
}

// TestDeviceTokenRejections covers every refusal with its specific error.
func TestDeviceTokenRejections(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	clock := &testClock{now: testStart}
	v := NewVerifier(ev, clock)
	good, err := IssueDevice(key, testDevice(ev))
	if err != nil {
		t.Fatal(err)
	}
	issue := func(d Device) string {
		t.Helper()
		tok, err := IssueDevice(key, d)
		if err != nil {
			t.Fatal(err)
		}
		return tok
	}
	expired := testDevice(ev)
	expired.NotBefore, expired.Expires = testStart.Add(-2*time.Hour), testStart.Add(-time.Second)
	early := testDevice(ev)
	early.NotBefore, early.Expires = testStart.Add(time.Second), testEnd
	otherEvent := testDevice(ev)
	otherEvent.Event = "other-market"
	forged, err := IssueDevice(otherKey(t), testDevice(ev))
	if err != nil {
		t.Fatal(err)
	}
	// A role outside the vocabulary can only come from a token IssueDevice
	// refuses to make, so sign the claims directly.
	unknownRole, err := signClaims(key, deviceClaims{
		Device: "x", Event: ev.Slug, Expires: testEnd.UTC().Format(time.RFC3339),
		IssuedAt: testStart.UTC().Format(time.RFC3339), TokenID: "abc", NotBefore: testStart.UTC().Format(time.RFC3339),
		Purpose: purposeDevice, Role: "janitor",
	})
	if err != nil {
		t.Fatal(err)
	}
	ticket, err := IssueTicket(key, testTicket(ev))
	if err != nil {
		t.Fatal(err)
	}
	_, enrolment, err := EnrollNode(key, ev, "edge-1", NodeEdge, testStart, testEnd)
	if err != nil {
		t.Fatal(err)
	}
	mid := len("v4.public.") + 20 // inside the signed claims
	sig := len(good) - 20         // inside the signature

	cases := []struct {
		name  string
		token string
		want  error
	}{
		{"expired", issue(expired), ErrExpired},
		{"not yet valid", issue(early), ErrNotYetValid},
		{"wrong event", issue(otherEvent), ErrWrongEvent},
		{"unknown role", unknownRole, ErrUnknownRole},
		{"signed by another key", forged, ErrBadSignature},
		{"flipped claim character", flip(good, mid), ErrBadSignature},
		{"flipped signature character", flip(good, sig), ErrBadSignature},
		{"ticket as device token", ticket, ErrWrongPurpose},
		{"enrolment as device token", enrolment, ErrWrongPurpose},
		{"empty", "", ErrMalformed},
		{"v4.local", strings.Replace(good, "v4.public.", "v4.local.", 1), ErrMalformed},
		{"v2.public", strings.Replace(good, "v4.public.", "v2.public.", 1), ErrMalformed},
		{"truncated", good[:len("v4.public.")+40], ErrMalformed},
		{"bad base64", good[:30] + "*" + good[31:], ErrMalformed},
		{"extra part", good + ".e30.e30", ErrMalformed},
		{"footer added", good + ".e30", ErrMalformed},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, err := v.VerifyDevice(c.token)
			if !errors.Is(err, c.want) {
				t.Fatalf("VerifyDevice = %+v, %v; want %v", d, err, c.want)
			}
			if d != nil {
				t.Fatal("returned a device with an error")
			}
		})
	}
	// The good token still verifies: the cases above were refused for
	// their own reason, not because verification is broken.
	if _, err := v.VerifyDevice(good); err != nil {
		t.Fatal(err)
	}
}

// TestVerifierChecksExpiryOnEveryCall verifies that caching the claims does
// not cache the verdict: time moves, and the same token expires.
func TestVerifierChecksExpiryOnEveryCall(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	clock := &testClock{now: testStart}
	v := NewVerifier(ev, clock)
	d := testDevice(ev)
	dtok, err := IssueDevice(key, d)
	if err != nil {
		t.Fatal(err)
	}
	ttok, err := IssueTicket(key, testTicket(ev))
	if err != nil {
		t.Fatal(err)
	}
	for range 3 {
		if _, err := v.VerifyDevice(dtok); err != nil {
			t.Fatal(err)
		}
		if _, err := v.VerifyTicket(ttok); err != nil {
			t.Fatal(err)
		}
	}
	if v.devices.len() != 1 || v.tickets.len() != 1 {
		t.Fatalf("cache holds %d devices, %d tickets; want 1 each", v.devices.len(), v.tickets.len())
	}
	clock.Set(d.Expires.Add(time.Second))
	if _, err := v.VerifyDevice(dtok); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached device token after expiry: err = %v, want ErrExpired", err)
	}
	if _, err := v.VerifyTicket(ttok); !errors.Is(err, ErrExpired) {
		t.Fatalf("cached ticket after expiry: err = %v, want ErrExpired", err)
	}
	clock.Set(d.NotBefore.Add(-time.Second))
	if _, err := v.VerifyDevice(dtok); !errors.Is(err, ErrNotYetValid) {
		t.Fatalf("cached device token before nbf: err = %v, want ErrNotYetValid", err)
	}
	// Exactly at the boundaries the token is valid.
	for _, at := range []time.Time{d.NotBefore, d.Expires} {
		clock.Set(at)
		if _, err := v.VerifyDevice(dtok); err != nil {
			t.Fatalf("at %s: %v", at, err)
		}
	}
}

func TestBoundedCacheEvictsOldest(t *testing.T) {
	c := newBoundedCache[int](3)
	for i := range 5 {
		c.put(fmt.Sprint(i), i)
	}
	if c.len() != 3 {
		t.Fatalf("len = %d, want 3", c.len())
	}
	for i := range 5 {
		_, ok := c.get(fmt.Sprint(i))
		if want := i >= 2; ok != want {
			t.Errorf("entry %d present = %v, want %v", i, ok, want)
		}
	}
	c.put("4", 40) // updating does not evict
	if v, _ := c.get("4"); v != 40 || c.len() != 3 {
		t.Fatalf("update: got %d, len %d", v, c.len())
	}
}

func TestVerifierConcurrentUse(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	v := NewVerifier(ev, &testClock{now: testStart})
	var toks []string
	for range 8 {
		tok, err := IssueDevice(key, testDevice(ev))
		if err != nil {
			t.Fatal(err)
		}
		toks = append(toks, tok)
	}
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for g := range 8 {
		wg.Go(func() {
			for i := range 50 {
				if _, err := v.VerifyDevice(toks[(g+i)%len(toks)]); err != nil {
					errs <- err
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
}

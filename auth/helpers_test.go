package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"path/filepath"
	"sync"
	"testing"
	"time"
)

// testClock is a settable ledger.Clock.
type testClock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *testClock) Set(t time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = t
}

var (
	testStart = time.Date(2026, 6, 12, 18, 0, 0, 0, time.FixedZone("CEST", 2*3600))
	testEnd   = testStart.Add(6 * time.Hour)
)

func testDescription() Event {
	return Event{
		Slug:     "night-market",
		Name:     "Night Market, Summer 2026",
		TimeZone: "Europe/Berlin",
		StartsAt: testStart,
		EndsAt:   testEnd,
		Currency: "EUR",
	}
}

// newTestEvent creates an event in a temp dir and returns it with its key.
func newTestEvent(t testing.TB) (*Event, ed25519.PrivateKey, string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "event")
	ev, err := InitEvent(dir, testDescription())
	if err != nil {
		t.Fatalf("InitEvent: %v", err)
	}
	key, err := LoadEventKey(dir)
	if err != nil {
		t.Fatalf("LoadEventKey: %v", err)
	}
	return ev, key, dir
}

func otherKey(t testing.TB) ed25519.PrivateKey {
	t.Helper()
	_, k, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// flip changes the character at i to another valid base64url character.
func flip(tok string, i int) string {
	b := []byte(tok)
	if b[i] == 'A' {
		b[i] = 'B'
	} else {
		b[i] = 'A'
	}
	return string(b)
}

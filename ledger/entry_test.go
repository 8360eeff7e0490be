package ledger

import (
	"errors"
	"testing"
)

func TestEntryRoundTripAndOrder(t *testing.T) {
	entries := makeLog(t, seedKey(1), testEvent, 4)
	for _, e := range entries {
		d, err := Decode(e.Encode())
		if err != nil {
			t.Fatal(err)
		}
		if d.Hash() != e.Hash() || d.Verify(pubOf(seedKey(1))) != nil {
			t.Fatalf("seq %d does not round-trip", e.Seq)
		}
	}
	// makeLog puts three entries in one millisecond: (hlc, node, seq) order.
	if !Less(entries[0], entries[1]) || Less(entries[1], entries[0]) || !Less(entries[2], entries[3]) {
		t.Fatal("Less does not follow the HLC")
	}
	same := *entries[0]
	same.Seq = 2
	if !Less(entries[0], &same) {
		t.Fatal("Less does not break HLC ties by seq")
	}
}

func TestEntryBadInput(t *testing.T) {
	key := seedKey(1)
	e := &Entry{Event: testEvent, Seq: 1, Kind: "k/v1", HLC: HLC{Wall: 1}}
	if err := e.Sign(key[:20]); err == nil {
		t.Fatal("Sign with a short key succeeded")
	}
	if err := e.Sign(key); err != nil {
		t.Fatal(err)
	}
	if err := e.Verify(pubOf(key)[:31]); !errors.Is(err, ErrWrongAuthor) {
		t.Fatalf("Verify with a short key = %v", err)
	}
	if err := e.Verify(pubOf(seedKey(2))); !errors.Is(err, ErrWrongAuthor) {
		t.Fatalf("Verify with another key = %v", err)
	}
	neg := &Entry{Event: testEvent, Seq: 1, Kind: "k/v1", HLC: HLC{Wall: -1}}
	if err := neg.Sign(key); !errors.Is(err, ErrMalformed) {
		t.Fatalf("Sign with a negative HLC = %v", err)
	}
	b := e.Encode()
	b[len(magic)-1] = 2
	if _, err := Decode(b); !errors.Is(err, ErrUnknownVersion) {
		t.Fatalf("Decode of version 2 = %v", err)
	}
}

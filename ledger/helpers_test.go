package ledger

import (
	"crypto/ed25519"
	"fmt"
	"testing"
)

const testEvent = "night-market-2026"

// seedKey returns the Ed25519 key whose seed is the 32 bytes first, first+1, ….
func seedKey(first byte) ed25519.PrivateKey {
	seed := make([]byte, ed25519.SeedSize)
	for i := range seed {
		seed[i] = first + byte(i)
	}
	return ed25519.NewKeyFromSeed(seed)
}

func pubOf(key ed25519.PrivateKey) ed25519.PublicKey { return key.Public().(ed25519.PublicKey) }

// makeLog signs n chained entries by key in event.
func makeLog(tb testing.TB, key ed25519.PrivateKey, event string, n int) []*Entry {
	tb.Helper()
	var out []*Entry
	var prev Hash
	for i := range n {
		e := &Entry{
			Event: event,
			Seq:   uint64(i + 1),
			Prev:  prev,
			HLC:   HLC{Wall: 1767261600000 + int64(i/3), Logical: uint32(i % 3)},
			Kind:  "order.created/v1",
			Key:   fmt.Sprintf("order-%04d", i),
			Body:  fmt.Appendf(nil, `{"n":%d}`, i),
		}
		if err := e.Sign(key); err != nil {
			tb.Fatal(err)
		}
		prev = e.Hash()
		out = append(out, e)
	}
	return out
}

func hashesOf(entries []*Entry) []Hash {
	out := make([]Hash, len(entries))
	for i, e := range entries {
		out[i] = e.Hash()
	}
	return out
}

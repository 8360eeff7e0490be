package storetest

import (
	"bytes"
	"crypto/ed25519"
	"fmt"
	"testing"

	"canopy/ledger"
	"canopy/store"
)

// author is a signing node with a deterministic key and one hash chain per
// event.
type author struct {
	key  ed25519.PrivateKey
	pub  ed25519.PublicKey
	id   ledger.NodeID
	tips map[string]tip
}

type tip struct {
	seq  uint64
	hash ledger.Hash
}

// newAuthor returns the author whose Ed25519 seed is 32 bytes of seed.
func newAuthor(seed byte) *author {
	key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	pub := key.Public().(ed25519.PublicKey)
	return &author{key: key, pub: pub, id: ledger.NodeIDOf(pub), tips: map[string]tip{}}
}

// next signs the author's next entry in event and advances its chain.
func (a *author) next(t testing.TB, event, key string, hlc ledger.HLC) store.Stored {
	t.Helper()
	tp := a.tips[event]
	s := a.make(t, event, tp.seq+1, tp.hash, hlc, key, fmt.Sprintf(`{"seq":%d}`, tp.seq+1))
	a.tips[event] = tip{seq: s.Entry.Seq, hash: s.Hash}
	return s
}

// run signs the author's next n entries in event, all about key, with
// consecutive HLCs starting at wall.
func (a *author) run(t testing.TB, event, key string, wall int64, n int) []store.Stored {
	t.Helper()
	out := make([]store.Stored, n)
	for i := range out {
		out[i] = a.next(t, event, key, ledger.HLC{Wall: wall + int64(i)})
	}
	return out
}

// make signs an entry at an explicit position without touching the chain.
func (a *author) make(t testing.TB, event string, seq uint64, prev ledger.Hash, hlc ledger.HLC, key, body string) store.Stored {
	t.Helper()
	e := &ledger.Entry{
		Event: event,
		Seq:   seq,
		Prev:  prev,
		HLC:   hlc,
		Kind:  "test.fact/v1",
		Key:   key,
		Body:  []byte(body),
	}
	if err := e.Sign(a.key); err != nil {
		t.Fatalf("sign entry %s/%d: %v", event, seq, err)
	}
	return store.Stored{Entry: e, Hash: e.Hash()}
}

// fork signs a different entry at the same position as s (same seq and prev,
// another body).
func (a *author) fork(t testing.TB, s store.Stored) store.Stored {
	t.Helper()
	e := s.Entry
	return a.make(t, e.Event, e.Seq, e.Prev, e.HLC, e.Key, `{"fork":true}`)
}

// checkSame fails unless got holds exactly want, in order, byte for byte.
func checkSame(t testing.TB, what string, got, want []store.Stored) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%s: got %d entries, want %d\ngot:  %s\nwant: %s", what, len(got), len(want), refs(got), refs(want))
	}
	for i := range got {
		if got[i].Entry == nil {
			t.Fatalf("%s: entry %d is nil", what, i)
		}
		if got[i].Hash != want[i].Hash {
			t.Fatalf("%s: entry %d is %s, want %s\ngot:  %s\nwant: %s", what, i, ref(got[i]), ref(want[i]), refs(got), refs(want))
		}
		if !bytes.Equal(got[i].Entry.Encode(), want[i].Entry.Encode()) {
			t.Fatalf("%s: entry %d (%s) does not round-trip byte for byte", what, i, ref(want[i]))
		}
		if h := got[i].Entry.Hash(); h != got[i].Hash {
			t.Fatalf("%s: entry %d: returned hash %s, entry hashes to %s", what, i, got[i].Hash, h)
		}
	}
}

func ref(s store.Stored) string {
	if s.Entry == nil {
		return "<nil>"
	}
	return fmt.Sprintf("%s:%d@%d.%d", s.Entry.Node.String()[:6], s.Entry.Seq, s.Entry.HLC.Wall, s.Entry.HLC.Logical)
}

func refs(ss []store.Stored) string {
	var b bytes.Buffer
	for i, s := range ss {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(ref(s))
	}
	return b.String()
}

// concat joins entry slices into a new slice.
func concat(parts ...[]store.Stored) []store.Stored {
	var out []store.Stored
	for _, p := range parts {
		out = append(out, p...)
	}
	return out
}

// hashOf returns a deterministic test hash.
func hashOf(s string) ledger.Hash {
	var h ledger.Hash
	copy(h[:], s)
	for i := len(s); i < len(h); i++ {
		h[i] = byte(i)
	}
	return h
}

package views_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"canopy/ledger"
	"canopy/store"
	"canopy/views"
)

// entries signs n entries per node for three nodes, some reusing
// idempotency keys across nodes (as two edges in a partition would).
func entries(t *rapid.T) []store.Stored {
	var out []store.Stored
	for n := 0; n < 3; n++ {
		key := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{byte(n + 1)}, 32))
		var prev ledger.Hash
		count := rapid.IntRange(0, 6).Draw(t, fmt.Sprintf("count%d", n))
		for i := 1; i <= count; i++ {
			idem := rapid.SampledFrom([]string{"a", "b", "c", "d"}).Draw(t, "idem")
			e := &ledger.Entry{
				Event: "ev", Seq: uint64(i), Prev: prev,
				HLC:  ledger.HLC{Wall: int64(rapid.IntRange(1000, 1010).Draw(t, "wall")), Logical: uint32(i)},
				Kind: "test.thing/v1", Key: "k",
				Body: []byte(fmt.Sprintf(`{"idempotency_key":%q,"request_hash":"h%d%d"}`, idem, n, i)),
			}
			if err := e.Sign(key); err != nil {
				t.Fatal(err)
			}
			prev = e.Hash()
			out = append(out, store.Stored{Entry: e, Hash: prev})
		}
	}
	return out
}

func fold(set *views.Set, es []store.Stored) []store.ViewRow {
	rows := map[string][]byte{}
	read := func(_ context.Context, view, key string) ([]byte, error) {
		if v, ok := rows[view+"/"+key]; ok {
			return v, nil
		}
		return nil, store.ErrNotFound
	}
	for _, e := range es {
		out, err := set.Apply(context.Background(), views.ReadEach(read), []store.Stored{e})
		if err != nil {
			panic(err)
		}
		for _, r := range out {
			rows[r.View+"/"+r.Key] = r.Value
		}
	}
	var all []store.ViewRow
	for k, v := range rows {
		all = append(all, store.ViewRow{View: "idempotency", Key: k, Value: v})
	}
	return all
}

// TestIdempotencyOrderIndependent: any permutation and duplication of the
// same entries gives byte-identical rows, and the winner is the earliest by
// (hlc, node, seq).
func TestIdempotencyOrderIndependent(t *testing.T) {
	set := views.Default()
	rapid.Check(t, func(t *rapid.T) {
		es := entries(t)
		want := fold(set, es)
		perm := rapid.Permutation(es).Draw(t, "perm")
		if len(perm) > 0 {
			dups := rapid.IntRange(0, 3).Draw(t, "dups")
			for i := 0; i < dups; i++ {
				perm = append(perm, perm[rapid.IntRange(0, len(perm)-1).Draw(t, "dup")])
			}
		}
		got := fold(set, perm)
		if err := views.Diff(sorted(want), sorted(got)); err != nil {
			t.Fatalf("order changed the views: %v", err)
		}
	})
}

func sorted(rows []store.ViewRow) []store.ViewRow {
	out := append([]store.ViewRow(nil), rows...)
	for i := range out {
		for j := i + 1; j < len(out); j++ {
			if out[j].Key < out[i].Key {
				out[i], out[j] = out[j], out[i]
			}
		}
	}
	return out
}

func TestDiffNamesTheRow(t *testing.T) {
	a := []store.ViewRow{{View: "v", Key: "1", Value: []byte("x")}}
	b := []store.ViewRow{{View: "v", Key: "1", Value: []byte("y")}}
	if err := views.Diff(a, b); err == nil || !bytes.Contains([]byte(err.Error()), []byte("v/1 differs")) {
		t.Fatalf("Diff: %v", err)
	}
	if err := views.Diff(a, nil); err == nil {
		t.Fatal("Diff missed a stored row that is not derived")
	}
	if err := views.Diff(nil, a); err == nil {
		t.Fatal("Diff missed a derived row that is not stored")
	}
	if err := views.Diff(a, a); err != nil {
		t.Fatal(err)
	}
}

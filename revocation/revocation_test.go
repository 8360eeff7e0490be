package revocation_test

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"canopy/auth"
	"canopy/ledger"
	"canopy/revocation"
	"canopy/store"
)

func entry(t interface{ Fatal(...any) }, key ed25519.PrivateKey, seq uint64, wall int64, b revocation.Body) store.Stored {
	body, _ := json.Marshal(b)
	e := &ledger.Entry{Event: "ev", Node: ledger.NodeIDOf(key.Public().(ed25519.PublicKey)), Seq: seq,
		HLC: ledger.HLC{Wall: wall}, Kind: revocation.Kind, Key: revocation.Key(b.What, b.ID), Body: body}
	if err := e.Sign(key); err != nil {
		t.Fatal(err)
	}
	return store.Stored{Entry: e, Hash: e.Hash()}
}

func fold(entries []store.Stored) map[string]string {
	rows := map[string][]byte{}
	var r revocation.Reducer
	for _, s := range entries {
		for _, k := range r.Rows(s) {
			rows[k] = r.Fold(rows[k], k, s)
		}
	}
	out := map[string]string{}
	for k, v := range rows {
		out[k] = string(v)
	}
	return out
}

func TestReducerEarliestWinsInAnyOrder(t *testing.T) {
	_, k1, _ := ed25519.GenerateKey(rand.Reader)
	_, k2, _ := ed25519.GenerateKey(rand.Reader)
	rapid.Check(t, func(rt *rapid.T) {
		n := rapid.IntRange(1, 12).Draw(rt, "n")
		var es []store.Stored
		for i := 0; i < n; i++ {
			key := k1
			if rapid.Bool().Draw(rt, "author") {
				key = k2
			}
			b := revocation.Body{
				What:   rapid.SampledFrom(revocation.Whats[:2]).Draw(rt, "what"),
				ID:     rapid.SampledFrom([]string{"a", "b"}).Draw(rt, "id"),
				Reason: fmt.Sprintf("r%d", i),
				Device: "d",
			}
			es = append(es, entry(rt, key, uint64(i+1), rapid.Int64Range(1, 4).Draw(rt, "wall"), b))
		}
		want := fold(es)
		perm := rapid.Permutation(es).Draw(rt, "perm")
		perm = append(perm, perm[:rapid.IntRange(0, len(perm)).Draw(rt, "dups")]...) // duplicates too
		if got := fold(perm); fmt.Sprint(got) != fmt.Sprint(want) {
			rt.Fatalf("order changed the rows:\n%v\n%v", got, want)
		}
		// Each row holds the earliest fact by (hlc, node, seq).
		for k, v := range want {
			var row revocation.Row
			json.Unmarshal([]byte(v), &row)
			for _, s := range es {
				var b revocation.Body
				json.Unmarshal(s.Entry.Body, &b)
				if revocation.RowKey(b.What, b.ID) == k && ledger.Less(s.Entry, &ledger.Entry{HLC: row.HLC, Node: row.Entry.Node, Seq: row.Entry.Seq}) {
					rt.Fatalf("row %s holds %v but %v is earlier", k, row.Entry, s.Entry.Ref())
				}
			}
		}
	})
}

func TestReducerIgnoresBadEntries(t *testing.T) {
	_, k, _ := ed25519.GenerateKey(rand.Reader)
	good := entry(t, k, 1, 1, revocation.Body{What: "ticket", ID: "t1", Device: "d"})
	mismatched := entry(t, k, 2, 1, revocation.Body{What: "ticket", ID: "t2", Device: "d"})
	mismatched.Entry.Key = revocation.Key("ticket", "t3")
	badWhat := entry(t, k, 3, 1, revocation.Body{What: "vendor", ID: "v", Device: "d"})
	rows := fold([]store.Stored{good, mismatched, badWhat})
	if len(rows) != 1 || rows["ticket:t1"] == "" {
		t.Fatalf("rows %v", rows)
	}
}

func TestValidate(t *testing.T) {
	for _, c := range []struct {
		what, id, reason string
		ok               bool
	}{
		{"ticket", "t1", "", true},
		{"token", "abc_DEF-1", "lost", true},
		{"node", "00112233445566778899aabbccddeeff", "stolen", true},
		{"node", "zz", "", false},
		{"vendor", "x", "", false},
		{"", "x", "", false},
		{"ticket", "", "", false},
		{"ticket", "a b", "", false},
		{"ticket", string(make([]byte, 129)), "", false},
		{"ticket", "t", string([]byte{0xff}), false},
	} {
		err := revocation.Validate(c.what, c.id, c.reason)
		if (err == nil) != c.ok || (err != nil && !errors.Is(err, revocation.ErrInvalid)) {
			t.Errorf("Validate(%q, %q, %q) = %v", c.what, c.id, c.reason, err)
		}
	}
}

type rows map[string][]byte

func (r rows) View(_ context.Context, event, view, key string) ([]byte, error) {
	if v, ok := r[view+"/"+key]; ok {
		return v, nil
	}
	return nil, store.ErrNotFound
}

type devices map[string]*auth.Device

func (d devices) VerifyDevice(tok string) (*auth.Device, error) {
	if dev, ok := d[tok]; ok {
		return dev, nil
	}
	return nil, auth.ErrBadSignature
}

func TestGuard(t *testing.T) {
	row, _ := json.Marshal(revocation.Row{What: "token", ID: "jti-1", Device: "org"})
	g := revocation.NewGuard(devices{"a": {TokenID: "jti-1", Name: "lost"}, "b": {TokenID: "jti-2"}}, rows{"revocations/token:jti-1": row}, "ev")
	if _, err := g.VerifyDevice("a"); !errors.Is(err, auth.ErrRevoked) {
		t.Fatalf("revoked token: %v", err)
	}
	if d, err := g.VerifyDevice("b"); err != nil || d.TokenID != "jti-2" {
		t.Fatalf("valid token: %v %v", d, err)
	}
	if _, err := g.VerifyDevice("c"); !errors.Is(err, auth.ErrBadSignature) {
		t.Fatalf("refused token: %v", err)
	}
}

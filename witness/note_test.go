package witness_test

import (
	"crypto/ed25519"
	"errors"
	"strings"
	"testing"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"canopy/ledger"
	"canopy/witness"
)

func keyPair(t *testing.T) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	return pub, key
}

func TestNameRoundTrip(t *testing.T) {
	pub, _ := keyPair(t)
	node := ledger.NodeIDOf(pub)
	name := witness.Name("fair", node)
	if name != "canopy/fair/"+node.String()+"/witness" {
		t.Fatalf("name %q", name)
	}
	if got, ok := witness.NodeOfName("fair", name); !ok || got != node {
		t.Fatalf("NodeOfName(%q) = %s, %v", name, got, ok)
	}
	for _, bad := range []string{"canopy/other/" + node.String() + "/witness", "canopy/fair/" + node.String(), "canopy/fair/xyz/witness", ""} {
		if _, ok := witness.NodeOfName("fair", bad); ok {
			t.Errorf("NodeOfName(%q) accepted", bad)
		}
	}
}

// TestCosignVerifiesIndependently: a cosignature made by Cosign verifies
// with a verifier built by transparency-dev/formats from x/mod's Ed25519
// verifier key of the witness name, and the author's signature still does.
func TestCosignVerifiesIndependently(t *testing.T) {
	apub, akey := keyPair(t)
	hpub, hkey := keyPair(t)
	msg, err := ledger.SignCheckpoint(akey, "fair", 3, ledger.Hash{1})
	if err != nil {
		t.Fatal(err)
	}
	co, err := witness.Cosign(msg, "fair", hkey)
	if err != nil {
		t.Fatal(err)
	}
	std, err := note.NewEd25519VerifierKey(witness.Name("fair", ledger.NodeIDOf(hpub)), hpub)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := fnote.VKeyToCosignatureV1(std)
	if err != nil {
		t.Fatal(err)
	}
	if vkey != witness.VerifierKey("fair", hpub) {
		t.Fatalf("verifier key %q, formats says %q", witness.VerifierKey("fair", hpub), vkey)
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := note.Open(co, note.VerifierList(v)); err != nil {
		t.Fatalf("cosignature does not verify: %v\n%s", err, co)
	}
	if _, err := ledger.OpenCheckpoint(co, "fair", apub); err != nil {
		t.Fatalf("author signature after cosigning: %v", err)
	}
	if err := witness.VerifyCosignature(co, vkey); err != nil {
		t.Fatal(err)
	}
	if err := witness.VerifyCosignature(msg, vkey); err == nil {
		t.Fatal("a note without the cosignature verified")
	}
	cs, err := witness.Cosignatures(co, "fair")
	if err != nil || len(cs) != 1 || cs[0].Node != ledger.NodeIDOf(hpub) || cs[0].Time.IsZero() {
		t.Fatalf("cosignatures %+v, %v", cs, err)
	}
	// A tampered checkpoint text fails.
	bad := []byte(strings.Replace(string(co), "\n3\n", "\n4\n", 1))
	if err := witness.VerifyCosignature(bad, vkey); err == nil {
		t.Fatal("a cosignature verified over changed text")
	}
}

// TestMerge: signatures of two notes of one checkpoint are united, each
// key once, the author's first; unknown ones are dropped; different texts
// and malformed notes are refused.
func TestMerge(t *testing.T) {
	apub, akey := keyPair(t)
	h1pub, h1 := keyPair(t)
	h2pub, h2 := keyPair(t)
	_, stranger := keyPair(t)
	msg, _ := ledger.SignCheckpoint(akey, "fair", 3, ledger.Hash{1})
	c1, _ := witness.Cosign(msg, "fair", h1)
	c2, _ := witness.Cosign(msg, "fair", h2)
	cs, _ := witness.Cosign(msg, "fair", stranger)
	hubs := map[ledger.NodeID]ed25519.PublicKey{ledger.NodeIDOf(h1pub): h1pub, ledger.NodeIDOf(h2pub): h2pub}
	vs, err := witness.Verifiers("fair", apub, func(n ledger.NodeID) (ed25519.PublicKey, bool) {
		k, ok := hubs[n]
		return k, ok
	})
	if err != nil {
		t.Fatal(err)
	}
	m, err := witness.Merge(vs, c1, c2, cs, c1)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(m, vs)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Sigs) != 3 || len(n.UnverifiedSigs) != 0 || n.Sigs[0].Name != ledger.Origin("fair", ledger.NodeIDOf(apub)) {
		t.Fatalf("merged note has %d verified and %d unknown signatures:\n%s", len(n.Sigs), len(n.UnverifiedSigs), m)
	}
	again, err := witness.Merge(vs, m, c2)
	if err != nil || string(again) != string(m) {
		t.Fatalf("merging what is there changed the note: %v", err)
	}
	other, _ := ledger.SignCheckpoint(akey, "fair", 4, ledger.Hash{1})
	if _, err := witness.Merge(vs, msg, other); err == nil {
		t.Fatal("notes of different checkpoints merged")
	}
	for _, bad := range [][]byte{[]byte("no blank line"), []byte("a\nb\n\n— x\n"), []byte("a\n\n")} {
		if _, err := witness.Merge(vs, bad); !errors.Is(err, witness.ErrMalformedNote) {
			t.Errorf("Merge(%q) = %v, want ErrMalformedNote", bad, err)
		}
	}
}

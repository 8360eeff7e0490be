package ledger

import (
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/note"
)

func TestOrigin(t *testing.T) {
	key := seedKey(1)
	id := NodeIDOf(pubOf(key))
	if got, want := Origin(testEvent, id), "canopy/night-market-2026/"+id.String(); got != want {
		t.Fatalf("Origin = %q, want %q", got, want)
	}
}

// Our key hash matches the one x/mod computes for the verifier key.
func TestNoteKeyHashMatchesXMod(t *testing.T) {
	for first := byte(0); first < 5; first++ {
		key := seedKey(first)
		name := Origin(testEvent, NodeIDOf(pubOf(key)))
		vkey, err := note.NewEd25519VerifierKey(name, pubOf(key))
		if err != nil {
			t.Fatal(err)
		}
		parts := strings.Split(vkey, "+")
		want, err := strconv.ParseUint(parts[1], 16, 32)
		if err != nil {
			t.Fatal(err)
		}
		if got := noteKeyHash(name, pubOf(key)); got != uint32(want) {
			t.Fatalf("key hash %08x, x/mod says %s", got, parts[1])
		}
	}
}

// A checkpoint we sign opens with x/mod's own verifier, and its body is
// the C2SP text with the root the entries give.
func TestSignCheckpointVerifiesWithXMod(t *testing.T) {
	key := seedKey(1)
	entries := makeLog(t, key, testEvent, 11)
	root := RootOf(hashesOf(entries))
	msg, err := SignCheckpoint(key, testEvent, 11, root)
	if err != nil {
		t.Fatal(err)
	}
	origin := Origin(testEvent, NodeIDOf(pubOf(key)))
	vkey, err := note.NewEd25519VerifierKey(origin, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		t.Fatalf("note.Open: %v\n%s", err, msg)
	}
	want := fmt.Sprintf("%s\n11\n%s\n", origin, base64.StdEncoding.EncodeToString(root[:]))
	if n.Text != want {
		t.Fatalf("text %q, want %q", n.Text, want)
	}
	if len(n.Sigs) != 1 || n.Sigs[0].Name != origin {
		t.Fatalf("signatures %+v", n.Sigs)
	}
	cp, err := OpenCheckpoint(msg, testEvent, pubOf(key))
	if err != nil {
		t.Fatal(err)
	}
	if cp != (Checkpoint{Origin: origin, Size: 11, Root: root}) {
		t.Fatalf("OpenCheckpoint = %+v", cp)
	}
}

// A note signed by x/mod's own signer (from a key string) opens with
// OpenCheckpoint: the two signers are interchangeable.
func TestOpenCheckpointSignedByXMod(t *testing.T) {
	key := seedKey(7)
	origin := Origin(testEvent, NodeIDOf(pubOf(key)))
	vkey, _ := note.NewEd25519VerifierKey(origin, pubOf(key))
	_, rest, _ := strings.Cut(vkey, "+")
	hash, _, _ := strings.Cut(rest, "+")
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%s+%s", origin, hash,
		base64.StdEncoding.EncodeToString(append([]byte{1}, key.Seed()...)))
	s, err := note.NewSigner(skey)
	if err != nil {
		t.Fatal(err)
	}
	cp := Checkpoint{Origin: origin, Size: 3, Root: RootOf(syntheticHashes(3))}
	msg, err := note.Sign(&note.Note{Text: cp.Body()}, s)
	if err != nil {
		t.Fatal(err)
	}
	got, err := OpenCheckpoint(msg, testEvent, pubOf(key))
	if err != nil || got != cp {
		t.Fatalf("OpenCheckpoint = %+v, %v", got, err)
	}
	ours, err := SignCheckpoint(key, testEvent, cp.Size, cp.Root)
	if err != nil || string(ours) != string(msg) {
		t.Fatalf("our note differs from x/mod's:\n%s\n%s", ours, msg)
	}
}

func TestOpenCheckpointRejects(t *testing.T) {
	key, other := seedKey(1), seedKey(2)
	root := RootOf(syntheticHashes(2))
	msg, err := SignCheckpoint(key, testEvent, 2, root)
	if err != nil {
		t.Fatal(err)
	}
	otherMsg, _ := SignCheckpoint(other, testEvent, 2, root)

	// A note by another key under our origin name.
	origin := Origin(testEvent, NodeIDOf(pubOf(key)))
	forged, _ := note.Sign(&note.Note{Text: Checkpoint{Origin: origin, Size: 2, Root: root}.Body()},
		&noteSigner{name: origin, hash: noteKeyHash(origin, pubOf(key)), key: other})

	// Our key, but a body naming another origin.
	s, _ := newNoteSigner(origin, key)
	wrongOrigin, _ := note.Sign(&note.Note{Text: Checkpoint{Origin: "canopy/x/y", Size: 2, Root: root}.Body()}, s)

	// Non-canonical base64 in the signature: flip the unused low bits of
	// the last character before the padding. note.Open alone accepts it.
	sigStart := strings.LastIndex(string(msg), " ") + 1
	lax := []byte(string(msg))
	pad := strings.IndexByte(string(lax[sigStart:]), '=')
	lax[sigStart+pad-1] = nextB64(lax[sigStart+pad-1])

	cases := []struct {
		name  string
		msg   []byte
		event string
		pub   ed25519.PublicKey
		want  error
	}{
		{"other node's checkpoint", otherMsg, testEvent, pubOf(key), ErrCheckpointSignature},
		{"wrong event", msg, "other-event", pubOf(key), ErrCheckpointSignature},
		{"forged signature", forged, testEvent, pubOf(key), ErrCheckpointSignature},
		{"wrong origin in body", wrongOrigin, testEvent, pubOf(key), ErrWrongOrigin},
		{"non-canonical signature base64", lax, testEvent, pubOf(key), ErrMalformedCheckpoint},
		{"not a note", []byte("hello\n"), testEvent, pubOf(key), ErrMalformedCheckpoint},
		{"empty", nil, testEvent, pubOf(key), ErrMalformedCheckpoint},
	}
	for _, c := range cases {
		_, err := OpenCheckpoint(c.msg, c.event, c.pub)
		if !errors.Is(err, c.want) {
			t.Errorf("%s: err = %v, want %v", c.name, err, c.want)
		}
	}
	if _, err := note.Open(lax, note.VerifierList(mustVerifier(t, origin, pubOf(key)))); err != nil {
		t.Errorf("x/mod no longer accepts non-canonical base64 (%v): the test premise changed", err)
	}
	if _, err := OpenCheckpoint(msg, testEvent, pubOf(key)[:31]); err == nil {
		t.Error("short public key accepted")
	}
	if _, err := OpenCheckpoint(msg, "bad slug", pubOf(key)); err == nil {
		t.Error("event slug with a space accepted")
	}
}

// nextB64 returns the base64 character whose value differs only in the
// lowest bit.
func nextB64(c byte) byte {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := strings.IndexByte(alphabet, c)
	return alphabet[i^1]
}

func mustVerifier(t *testing.T, name string, pub ed25519.PublicKey) note.Verifier {
	t.Helper()
	vkey, err := note.NewEd25519VerifierKey(name, pub)
	if err != nil {
		t.Fatal(err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

func TestSignCheckpointRejects(t *testing.T) {
	key := seedKey(1)
	for _, ev := range []string{"", "a/b", "a+b", "a b", "a\nb", strings.Repeat("x", MaxEventLen+1)} {
		if _, err := SignCheckpoint(key, ev, 1, Hash{}); err == nil {
			t.Errorf("event %q accepted", ev)
		}
	}
	if _, err := SignCheckpoint(key[:10], testEvent, 1, Hash{}); err == nil {
		t.Error("short key accepted")
	}
	if _, err := SignCheckpoint(key, testEvent, 1<<63, Hash{}); err == nil {
		t.Error("size above MaxInt64 accepted")
	}
}

func TestParseCheckpointBody(t *testing.T) {
	root := RootOf(syntheticHashes(3))
	r64 := base64.StdEncoding.EncodeToString(root[:])
	good := "canopy/ev/0011\n3\n" + r64 + "\n"
	cp, err := ParseCheckpointBody(good)
	if err != nil || cp != (Checkpoint{Origin: "canopy/ev/0011", Size: 3, Root: root}) {
		t.Fatalf("ParseCheckpointBody = %+v, %v", cp, err)
	}
	if cp.Body() != good {
		t.Fatalf("Body() = %q, want %q", cp.Body(), good)
	}
	if _, err := ParseCheckpointBody(good + "ext one\next two\n"); err != nil {
		t.Fatalf("extension lines rejected: %v", err)
	}
	if cp, err := ParseCheckpointBody("o\n0\n" + base64.StdEncoding.EncodeToString(EmptyRoot[:]) + "\n"); err != nil || cp.Size != 0 {
		t.Fatalf("empty tree: %+v, %v", cp, err)
	}
	// Non-canonical final base64 character of the root (low bits set).
	lax := []byte(r64)
	lax[len(lax)-2] = nextB64(lax[len(lax)-2])
	bad := []string{
		"",
		"canopy/ev/0011\n3\n" + r64,             // no final newline
		"canopy/ev/0011\n3\n",                   // no root
		"\n3\n" + r64 + "\n",                    // empty origin
		"o\n03\n" + r64 + "\n",                  // leading zero
		"o\n+3\n" + r64 + "\n",                  // sign
		"o\n-3\n" + r64 + "\n",                  // negative
		"o\n 3\n" + r64 + "\n",                  // space
		"o\n9223372036854775808\n" + r64 + "\n", // above MaxInt64
		"o\n18446744073709551616\n" + r64 + "\n",
		"o\n3\n" + r64[:len(r64)-1] + "\n", // unpadded
		"o\n3\n" + string(lax) + "\n",      // non-canonical
		"o\n3\n" + base64.URLEncoding.EncodeToString(make([]byte, 32)) + "x\n",
		"o\n3\n" + base64.StdEncoding.EncodeToString(root[:31]) + "\n", // 31 bytes
		"o\n3\n" + r64 + "\n\n",   // empty extension
		"o\r\n3\n" + r64 + "\n",   // control character
		"o\xff\n3\n" + r64 + "\n", // not UTF-8
	}
	for _, s := range bad {
		if _, err := ParseCheckpointBody(s); !errors.Is(err, ErrMalformedCheckpoint) {
			t.Errorf("ParseCheckpointBody(%q) = %v, want ErrMalformedCheckpoint", s, err)
		}
	}
}

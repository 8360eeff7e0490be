package witness

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	"golang.org/x/mod/sumdb/note"

	"canopy/ledger"
)

// ErrMalformedNote is wrapped by the errors about a note's framing.
var ErrMalformedNote = errors.New("witness: malformed signed note")

// nameSuffix ends a witness key name: "canopy/<event>/<node-id>/witness".
const nameSuffix = "/witness"

// algCosignatureV1 is the C2SP tlog-cosignature key type of an Ed25519
// cosigner (signatures are an 8-byte timestamp and an Ed25519 signature).
const algCosignatureV1 = 0x04

// Name returns the witness key name of a hub node in an event:
// "canopy/<event-slug>/<node-id hex>/witness", the node's log origin with
// "/witness" appended.
func Name(event string, node ledger.NodeID) string {
	return ledger.Origin(event, node) + nameSuffix
}

// NodeOfName returns the node a witness key name of event names, or false
// if name is not a witness name of event.
func NodeOfName(event, name string) (ledger.NodeID, bool) {
	prefix := "canopy/" + event + "/"
	if !strings.HasPrefix(name, prefix) || !strings.HasSuffix(name, nameSuffix) {
		return ledger.NodeID{}, false
	}
	id, err := ledger.ParseNodeID(strings.TrimSuffix(strings.TrimPrefix(name, prefix), nameSuffix))
	if err != nil {
		return ledger.NodeID{}, false
	}
	return id, true
}

// keyHash is the C2SP signed-note key hash of a cosignature/v1 key: the
// first four bytes, big-endian, of SHA-256(name || "\n" || 0x04 || pub).
func keyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', algCosignatureV1})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

// VerifierKey returns the verifier key of a hub node's witness in an event,
// in the signed-note vkey form "<name>+<key hash hex>+<base64(0x04 || pub)>"
// that github.com/transparency-dev/formats/note reads.
func VerifierKey(event string, pub ed25519.PublicKey) string {
	name := Name(event, ledger.NodeIDOf(pub))
	return fmt.Sprintf("%s+%08x+%s", name, keyHash(name, pub),
		base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, pub...)))
}

// NewVerifier returns the note verifier of a hub node's witness
// cosignatures in an event.
func NewVerifier(event string, pub ed25519.PublicKey) (note.Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("witness: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	v, err := fnote.NewVerifierForCosignatureV1(VerifierKey(event, pub))
	if err != nil {
		return nil, fmt.Errorf("witness: verifier: %w", err)
	}
	return v, nil
}

// newSigner returns the cosignature/v1 signer of a hub node's key.
func newSigner(event string, key ed25519.PrivateKey) (note.Signer, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("witness: signing key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	pub := key.Public().(ed25519.PublicKey)
	name := Name(event, ledger.NodeIDOf(pub))
	skey := fmt.Sprintf("PRIVATE+KEY+%s+%08x+%s", name, keyHash(name, pub),
		base64.StdEncoding.EncodeToString(append([]byte{algCosignatureV1}, key.Seed()...)))
	s, err := fnote.NewSignerForCosignatureV1(skey)
	if err != nil {
		return nil, fmt.Errorf("witness: signer: %w", err)
	}
	return s, nil
}

// AuthorVerifier returns the note verifier of an author's checkpoint
// signatures: its Ed25519 key under its log origin.
func AuthorVerifier(event string, pub ed25519.PublicKey) (note.Verifier, error) {
	if len(pub) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("witness: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	vkey, err := note.NewEd25519VerifierKey(ledger.Origin(event, ledger.NodeIDOf(pub)), pub)
	if err != nil {
		return nil, fmt.Errorf("witness: author verifier: %w", err)
	}
	return note.NewVerifier(vkey)
}

// sigLine is one signature line of a signed note.
type sigLine struct {
	name string
	hash uint32
	line string // "— <name> <base64>\n"
}

// split separates a signed note into its text (ending in a newline) and
// its signature lines.
func split(msg []byte) (string, []sigLine, error) {
	i := bytes.LastIndex(msg, []byte("\n\n"))
	if i < 0 {
		return "", nil, fmt.Errorf("%w: no blank line before the signatures", ErrMalformedNote)
	}
	text, block := string(msg[:i+1]), string(msg[i+2:])
	if block == "" || !strings.HasSuffix(block, "\n") {
		return "", nil, fmt.Errorf("%w: no signature lines", ErrMalformedNote)
	}
	var sigs []sigLine
	for _, l := range strings.SplitAfter(block[:len(block)-1], "\n") {
		if !strings.HasSuffix(l, "\n") {
			l += "\n"
		}
		rest, ok := strings.CutPrefix(l, "— ")
		name, b64, ok2 := strings.Cut(strings.TrimSuffix(rest, "\n"), " ")
		raw, err := base64.StdEncoding.Strict().DecodeString(b64)
		if !ok || !ok2 || name == "" || err != nil || len(raw) < 5 {
			return "", nil, fmt.Errorf("%w: signature line %q", ErrMalformedNote, strings.TrimSuffix(l, "\n"))
		}
		sigs = append(sigs, sigLine{name: name, hash: binary.BigEndian.Uint32(raw), line: l})
	}
	return text, sigs, nil
}

// Cosign adds the cosignature of a hub node's witness (C2SP
// tlog-cosignature, cosignature/v1, timestamped) to a signed checkpoint
// note. It does not check the note; Witness.Cosign does.
func Cosign(msg []byte, event string, key ed25519.PrivateKey) ([]byte, error) {
	text, _, err := split(msg)
	if err != nil {
		return nil, err
	}
	s, err := newSigner(event, key)
	if err != nil {
		return nil, err
	}
	sig, err := s.Sign([]byte(text))
	if err != nil {
		return nil, fmt.Errorf("witness: cosign: %w", err)
	}
	raw := binary.BigEndian.AppendUint32(nil, s.KeyHash())
	raw = append(raw, sig...)
	out := append([]byte(nil), msg...)
	out = append(out, "— "+s.Name()+" "+base64.StdEncoding.EncodeToString(raw)+"\n"...)
	return out, nil
}

// Merge returns one note with the text of notes (which must all be equal)
// and every signature of any of them that vs verifies, each key once (the
// first note's signature wins), in the order met. Signatures vs does not
// know are dropped, so a relay cannot make a note grow with junk. It fails
// if no signature verifies or the texts differ.
func Merge(vs note.Verifiers, notes ...[]byte) ([]byte, error) {
	if len(notes) == 0 {
		return nil, fmt.Errorf("%w: nothing to merge", ErrMalformedNote)
	}
	type key struct {
		name string
		hash uint32
	}
	var text string
	seen := map[key]bool{}
	var lines []string
	for i, msg := range notes {
		t, sigs, err := split(msg)
		if err != nil {
			return nil, err
		}
		if i == 0 {
			text = t
		} else if t != text {
			return nil, fmt.Errorf("%w: the notes to merge have different texts", ErrMalformedNote)
		}
		n, err := note.Open(msg, vs)
		if err != nil {
			return nil, fmt.Errorf("witness: merge: %w", err)
		}
		verified := map[key]bool{}
		for _, s := range n.Sigs {
			verified[key{s.Name, s.Hash}] = true
		}
		for _, s := range sigs {
			k := key{s.name, s.hash}
			if verified[k] && !seen[k] {
				seen[k] = true
				lines = append(lines, s.line)
			}
		}
	}
	return []byte(text + "\n" + strings.Join(lines, "")), nil
}

// Cosignature is a witness cosignature found on a note.
type Cosignature struct {
	Name string        // the witness key name
	Node ledger.NodeID // the hub node it names
	// KeyHash is the signature's key hash, as in the verifier key.
	KeyHash uint32
	// Time is the time the witness says it cosigned.
	Time time.Time
}

// Cosignatures lists the signatures on msg whose names are witness names
// of event, without verifying them (use VerifyCosignature).
func Cosignatures(msg []byte, event string) ([]Cosignature, error) {
	_, sigs, err := split(msg)
	if err != nil {
		return nil, err
	}
	var out []Cosignature
	for _, s := range sigs {
		node, ok := NodeOfName(event, s.name)
		if !ok {
			continue
		}
		c := Cosignature{Name: s.name, Node: node, KeyHash: s.hash}
		_, b64, _ := strings.Cut(strings.TrimSuffix(strings.TrimPrefix(s.line, "— "), "\n"), " ")
		if t, err := fnote.CoSigV1Timestamp(note.Signature{Name: s.name, Hash: s.hash, Base64: b64}); err == nil {
			c.Time = t.UTC()
		}
		out = append(out, c)
	}
	return out, nil
}

// VerifyCosignature checks that msg carries a valid cosignature by the
// witness whose verifier key is vkey (VerifierKey's form).
func VerifyCosignature(msg []byte, vkey string) error {
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		return fmt.Errorf("witness: verifier key %q: %w", vkey, err)
	}
	if _, err := note.Open(msg, note.VerifierList(v)); err != nil {
		return fmt.Errorf("witness: no valid cosignature by %s+%08x: %w", v.Name(), v.KeyHash(), err)
	}
	return nil
}

// Verifiers returns the note verifiers for a checkpoint of an author's log
// in event: the author's key under its origin, and the witness key of every
// hub node hubKey knows (hubKey returns false for a node that is not an
// enrolled hub).
func Verifiers(event string, author ed25519.PublicKey, hubKey func(ledger.NodeID) (ed25519.PublicKey, bool)) (note.Verifiers, error) {
	av, err := AuthorVerifier(event, author)
	if err != nil {
		return nil, err
	}
	return &verifiers{event: event, author: av, hubKey: hubKey}, nil
}

type verifiers struct {
	event  string
	author note.Verifier
	hubKey func(ledger.NodeID) (ed25519.PublicKey, bool)
}

func (v *verifiers) Verifier(name string, hash uint32) (note.Verifier, error) {
	if name == v.author.Name() && hash == v.author.KeyHash() {
		return v.author, nil
	}
	if node, ok := NodeOfName(v.event, name); ok && v.hubKey != nil {
		if pub, ok := v.hubKey(node); ok {
			if w, err := NewVerifier(v.event, pub); err == nil && w.KeyHash() == hash {
				return w, nil
			}
		}
	}
	return nil, &note.UnknownVerifierError{Name: name, KeyHash: hash}
}

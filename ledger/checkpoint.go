package ledger

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/mod/sumdb/note"
)

// Errors about checkpoints. Callers test them with errors.Is.
var (
	ErrMalformedCheckpoint = errors.New("ledger: malformed checkpoint")
	ErrCheckpointSignature = errors.New("ledger: checkpoint signature does not verify")
	ErrWrongOrigin         = errors.New("ledger: checkpoint origin does not match")
)

// Checkpoint is the body of a signed checkpoint: the C2SP tlog-checkpoint
// origin, tree size and root hash of one author's log.
type Checkpoint struct {
	Origin string
	Size   uint64
	Root   Hash
}

// Body returns the checkpoint text in C2SP tlog-checkpoint form, without
// extension lines: "<origin>\n<size>\n<base64 root>\n".
func (c Checkpoint) Body() string {
	return c.Origin + "\n" + strconv.FormatUint(c.Size, 10) + "\n" +
		base64.StdEncoding.EncodeToString(c.Root[:]) + "\n"
}

// Origin returns the checkpoint origin of a node's log in an event,
// "canopy/<event-slug>/<node-id hex>". It is also the signed-note key name.
func Origin(event string, node NodeID) string {
	return "canopy/" + event + "/" + node.String()
}

// checkEventSlug reports whether event can appear in an origin: 1 to
// MaxEventLen bytes of UTF-8 without spaces, control characters, '+' or '/'
// (the note spec forbids spaces and '+' in key names; '/' separates the
// origin's parts).
func checkEventSlug(event string) error {
	switch {
	case len(event) == 0 || len(event) > MaxEventLen:
		return fmt.Errorf("event slug %q: length %d not in 1..%d", event, len(event), MaxEventLen)
	case !utf8.ValidString(event):
		return fmt.Errorf("event slug %q: not UTF-8", event)
	case strings.ContainsAny(event, "+/"):
		return fmt.Errorf("event slug %q: contains '+' or '/'", event)
	case strings.IndexFunc(event, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0:
		return fmt.Errorf("event slug %q: contains a space or control character", event)
	}
	return nil
}

// noteSigner is a note.Signer over an Ed25519 node key.
type noteSigner struct {
	name string
	hash uint32
	key  ed25519.PrivateKey
}

func newNoteSigner(name string, key ed25519.PrivateKey) (*noteSigner, error) {
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("signing key: %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	pub := key.Public().(ed25519.PublicKey)
	return &noteSigner{name: name, hash: noteKeyHash(name, pub), key: key}, nil
}

// noteKeyHash is the signed-note key hash of an Ed25519 key: the first four
// bytes, big-endian, of SHA-256(name || "\n" || 0x01 || pub).
func noteKeyHash(name string, pub ed25519.PublicKey) uint32 {
	h := sha256.New()
	h.Write([]byte(name))
	h.Write([]byte{'\n', 0x01})
	h.Write(pub)
	return binary.BigEndian.Uint32(h.Sum(nil))
}

func (s *noteSigner) Name() string                    { return s.name }
func (s *noteSigner) KeyHash() uint32                 { return s.hash }
func (s *noteSigner) Sign(msg []byte) ([]byte, error) { return ed25519.Sign(s.key, msg), nil }

// Interface guards
var _ note.Signer = (*noteSigner)(nil)

// SignCheckpoint returns the signed note of the checkpoint (size, root) of
// the log of key's node in event, signed by key under the origin's name.
func SignCheckpoint(key ed25519.PrivateKey, event string, size uint64, root Hash) ([]byte, error) {
	if err := checkEventSlug(event); err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	if size > math.MaxInt64 {
		return nil, fmt.Errorf("sign checkpoint: size %d above %d", size, int64(math.MaxInt64))
	}
	if len(key) != ed25519.PrivateKeySize {
		return nil, fmt.Errorf("sign checkpoint: signing key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	origin := Origin(event, NodeIDOf(key.Public().(ed25519.PublicKey)))
	s, err := newNoteSigner(origin, key)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	cp := Checkpoint{Origin: origin, Size: size, Root: root}
	msg, err := note.Sign(&note.Note{Text: cp.Body()}, s)
	if err != nil {
		return nil, fmt.Errorf("sign checkpoint: %w", err)
	}
	return msg, nil
}

// OpenCheckpoint verifies that msg is a checkpoint note signed by pub under
// the origin of pub's node in event, and returns its parsed body. Other
// signatures (witness cosignatures) may be present and are ignored, but
// every signature line must be canonical base64.
func OpenCheckpoint(msg []byte, event string, pub ed25519.PublicKey) (Checkpoint, error) {
	if err := checkEventSlug(event); err != nil {
		return Checkpoint{}, fmt.Errorf("open checkpoint: %w", err)
	}
	if len(pub) != ed25519.PublicKeySize {
		return Checkpoint{}, fmt.Errorf("open checkpoint: public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize)
	}
	origin := Origin(event, NodeIDOf(pub))
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("open checkpoint: %w", err)
	}
	v, err := note.NewVerifier(vkey)
	if err != nil {
		return Checkpoint{}, fmt.Errorf("open checkpoint: %w", err)
	}
	n, err := note.Open(msg, note.VerifierList(v))
	if err != nil {
		var unverified *note.UnverifiedNoteError
		var invalid *note.InvalidSignatureError
		switch {
		case errors.As(err, &unverified):
			return Checkpoint{}, fmt.Errorf("%w: no signature by %s+%08x", ErrCheckpointSignature, origin, v.KeyHash())
		case errors.As(err, &invalid):
			return Checkpoint{}, fmt.Errorf("%w: signature by %s+%08x is invalid", ErrCheckpointSignature, origin, v.KeyHash())
		}
		return Checkpoint{}, fmt.Errorf("%w: signed note: %v", ErrMalformedCheckpoint, err)
	}
	// note.Open decodes signatures with lenient base64, which ignores the
	// unused low bits of the last character; insist on the canonical form
	// so that a note has exactly one encoding.
	for _, list := range [][]note.Signature{n.Sigs, n.UnverifiedSigs} {
		for _, sig := range list {
			if _, err := base64.StdEncoding.Strict().DecodeString(sig.Base64); err != nil {
				return Checkpoint{}, fmt.Errorf("%w: signature by %s is not canonical base64", ErrMalformedCheckpoint, sig.Name)
			}
		}
	}
	cp, err := ParseCheckpointBody(n.Text)
	if err != nil {
		return Checkpoint{}, err
	}
	if cp.Origin != origin {
		return Checkpoint{}, fmt.Errorf("%w: origin is %q, want %q", ErrWrongOrigin, cp.Origin, origin)
	}
	return cp, nil
}

// ParseCheckpointBody parses C2SP tlog-checkpoint text: an origin line, the
// tree size in canonical decimal, the root in canonical standard base64, and
// zero or more non-empty extension lines, each ending in a newline.
// Extension lines are accepted but carry no meaning in Canopy and are not
// returned. The size must fit in an int64.
func ParseCheckpointBody(text string) (Checkpoint, error) {
	if !strings.HasSuffix(text, "\n") {
		return Checkpoint{}, fmt.Errorf("%w: text does not end in a newline", ErrMalformedCheckpoint)
	}
	if !utf8.ValidString(text) {
		return Checkpoint{}, fmt.Errorf("%w: text is not UTF-8", ErrMalformedCheckpoint)
	}
	lines := strings.Split(text[:len(text)-1], "\n")
	if len(lines) < 3 {
		return Checkpoint{}, fmt.Errorf("%w: %d lines, want origin, size and root", ErrMalformedCheckpoint, len(lines))
	}
	for i, l := range lines {
		if l == "" {
			return Checkpoint{}, fmt.Errorf("%w: line %d is empty", ErrMalformedCheckpoint, i+1)
		}
		if strings.IndexFunc(l, unicode.IsControl) >= 0 {
			return Checkpoint{}, fmt.Errorf("%w: line %d has a control character", ErrMalformedCheckpoint, i+1)
		}
	}
	var cp Checkpoint
	cp.Origin = lines[0]
	size, err := strconv.ParseUint(lines[1], 10, 64)
	if err != nil || size > math.MaxInt64 || strconv.FormatUint(size, 10) != lines[1] {
		return Checkpoint{}, fmt.Errorf("%w: size %q is not a canonical decimal in 0..%d", ErrMalformedCheckpoint, lines[1], int64(math.MaxInt64))
	}
	cp.Size = size
	root, err := base64.StdEncoding.Strict().DecodeString(lines[2])
	if err != nil || len(root) != HashSize {
		return Checkpoint{}, fmt.Errorf("%w: root %q is not %d bytes of canonical base64", ErrMalformedCheckpoint, lines[2], HashSize)
	}
	copy(cp.Root[:], root)
	return cp, nil
}

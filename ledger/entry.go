// Package ledger defines Canopy's signed, hash-chained entries, the hybrid
// logical clock that orders them, and the Merkle checkpoints and proofs over
// each node's log. The byte layout is specified in FORMAT.md.
package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
)

// FormatVersion is the major version of the entry framing. A decoder meeting
// another major version refuses the entry with ErrUnknownVersion.
const FormatVersion = 1

// magic opens every framed entry; its last byte is FormatVersion.
var magic = []byte("canopy-entry\x00\x01")

// Limits on field sizes. They bound what a decoder allocates for outside input.
const (
	MaxEventLen = 64
	MaxKindLen  = 64
	MaxKeyLen   = 256
	MaxBodyLen  = 1 << 20
)

// Sizes of fixed-width fields.
const (
	NodeIDSize = 16
	HashSize   = sha256.Size
	SigSize    = ed25519.SignatureSize
)

// Errors returned by Decode and Verify. Callers test them with errors.Is.
var (
	ErrUnknownVersion = errors.New("ledger: unknown entry format version")
	ErrMalformed      = errors.New("ledger: malformed entry")
	ErrBadSignature   = errors.New("ledger: signature does not verify")
	ErrWrongAuthor    = errors.New("ledger: node id does not match the public key")
)

// NodeID names an author: the first 16 bytes of SHA-256 of its Ed25519 public key.
type NodeID [NodeIDSize]byte

// NodeIDOf returns the node id of an Ed25519 public key.
func NodeIDOf(pub ed25519.PublicKey) NodeID {
	sum := sha256.Sum256(pub)
	var id NodeID
	copy(id[:], sum[:NodeIDSize])
	return id
}

// String returns the id in lower-case hex, the form used in JSON, URLs and origins.
func (id NodeID) String() string { return hex.EncodeToString(id[:]) }

// ParseNodeID parses the 32-character hex form of a node id.
func ParseNodeID(s string) (NodeID, error) {
	var id NodeID
	if len(s) != 2*NodeIDSize {
		return id, fmt.Errorf("node id %q: want %d hex characters", s, 2*NodeIDSize)
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return id, fmt.Errorf("node id %q: %w", s, err)
	}
	return id, nil
}

// MarshalText implements encoding.TextMarshaler.
func (id NodeID) MarshalText() ([]byte, error) { return []byte(id.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (id *NodeID) UnmarshalText(b []byte) error {
	v, err := ParseNodeID(string(b))
	if err != nil {
		return err
	}
	*id = v
	return nil
}

// Hash is a SHA-256 digest: an entry hash, a Merkle tree hash.
type Hash [HashSize]byte

// String returns the hash in lower-case hex.
func (h Hash) String() string { return hex.EncodeToString(h[:]) }

// MarshalText implements encoding.TextMarshaler.
func (h Hash) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (h *Hash) UnmarshalText(b []byte) error {
	if len(b) != 2*HashSize {
		return fmt.Errorf("hash %q: want %d hex characters", b, 2*HashSize)
	}
	_, err := hex.Decode(h[:], b)
	return err
}

// Entry is one signed, immutable fact in a node's log.
type Entry struct {
	Event string // event slug
	Node  NodeID // author
	Seq   uint64 // 1, 2, 3… per author, without gaps
	Prev  Hash   // hash of the author's previous entry; zero for Seq 1
	HLC   HLC    // hybrid logical clock timestamp
	Kind  string // fact type with a format version, e.g. "order.created/v1"
	Key   string // the entity the fact is about
	Body  []byte // the exact JSON bytes that were signed
	Sig   []byte // Ed25519 signature over Framing()
}

func validateFields(e *Entry) error {
	switch {
	case len(e.Event) == 0 || len(e.Event) > MaxEventLen:
		return fmt.Errorf("%w: event length %d not in 1..%d", ErrMalformed, len(e.Event), MaxEventLen)
	case e.Seq == 0:
		return fmt.Errorf("%w: seq 0", ErrMalformed)
	case len(e.Kind) == 0 || len(e.Kind) > MaxKindLen:
		return fmt.Errorf("%w: kind length %d not in 1..%d", ErrMalformed, len(e.Kind), MaxKindLen)
	case len(e.Key) > MaxKeyLen:
		return fmt.Errorf("%w: key length %d above %d", ErrMalformed, len(e.Key), MaxKeyLen)
	case len(e.Body) > MaxBodyLen:
		return fmt.Errorf("%w: body length %d above %d", ErrMalformed, len(e.Body), MaxBodyLen)
	case e.HLC.Wall < 0:
		return fmt.Errorf("%w: negative hlc wall time %d", ErrMalformed, e.HLC.Wall)
	case e.Seq == 1 && e.Prev != (Hash{}):
		return fmt.Errorf("%w: seq 1 with a non-zero prev", ErrMalformed)
	}
	return nil
}

// Validate checks the field limits an entry must meet to be signed or
// decoded: a non-empty event and kind, a non-zero seq, sizes within limits.
func (e *Entry) Validate() error { return validateFields(e) }

// Framing returns the canonical bytes the signature covers (FORMAT.md).
func (e *Entry) Framing() []byte {
	n := len(magic) + 2 + len(e.Event) + NodeIDSize + 8 + HashSize + 8 + 4 +
		2 + len(e.Kind) + 2 + len(e.Key) + 4 + len(e.Body)
	b := make([]byte, 0, n+SigSize)
	return e.appendFraming(b)
}

func (e *Entry) appendFraming(b []byte) []byte {
	b = append(b, magic...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Event)))
	b = append(b, e.Event...)
	b = append(b, e.Node[:]...)
	b = binary.BigEndian.AppendUint64(b, e.Seq)
	b = append(b, e.Prev[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(e.HLC.Wall))
	b = binary.BigEndian.AppendUint32(b, e.HLC.Logical)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Kind)))
	b = append(b, e.Kind...)
	b = binary.BigEndian.AppendUint16(b, uint16(len(e.Key)))
	b = append(b, e.Key...)
	b = binary.BigEndian.AppendUint32(b, uint32(len(e.Body)))
	b = append(b, e.Body...)
	return b
}

// Encode returns the entry's wire and storage form: the framing followed by
// the 64-byte signature.
func (e *Entry) Encode() []byte {
	b := e.Framing()
	return append(b, e.Sig...)
}

// Hash returns the entry hash: SHA-256 of Encode().
func (e *Entry) Hash() Hash { return sha256.Sum256(e.Encode()) }

// Sign fills in Node from the key and Sig over the framing. Every other
// field must already be set.
func (e *Entry) Sign(key ed25519.PrivateKey) error {
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("sign entry: signing key has %d bytes, want %d", len(key), ed25519.PrivateKeySize)
	}
	e.Node = NodeIDOf(key.Public().(ed25519.PublicKey))
	if err := validateFields(e); err != nil {
		return err
	}
	e.Sig = ed25519.Sign(key, e.Framing())
	return nil
}

// Verify checks that pub is the author's key and that the signature verifies.
func (e *Entry) Verify(pub ed25519.PublicKey) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("%w: public key has %d bytes, want %d", ErrWrongAuthor, len(pub), ed25519.PublicKeySize)
	}
	if NodeIDOf(pub) != e.Node {
		return fmt.Errorf("%w: entry by %s, key of %s", ErrWrongAuthor, e.Node, NodeIDOf(pub))
	}
	if len(e.Sig) != SigSize || !ed25519.Verify(pub, e.Framing(), e.Sig) {
		return fmt.Errorf("%w: %s seq %d", ErrBadSignature, e.Node, e.Seq)
	}
	return nil
}

// Decode parses the encoded form of one entry. It rejects trailing bytes,
// unknown format versions and fields beyond the limits; it does not verify
// the signature.
func Decode(b []byte) (*Entry, error) {
	if len(b) < len(magic) || !bytes.Equal(b[:len(magic)-1], magic[:len(magic)-1]) {
		return nil, fmt.Errorf("%w: bad magic", ErrMalformed)
	}
	if v := b[len(magic)-1]; v != FormatVersion {
		return nil, fmt.Errorf("%w: entry format %d, this node reads %d", ErrUnknownVersion, v, FormatVersion)
	}
	r := reader{b: b[len(magic):]}
	e := &Entry{}
	e.Event = string(r.bytes16())
	copy(e.Node[:], r.fixed(NodeIDSize))
	e.Seq = r.u64()
	copy(e.Prev[:], r.fixed(HashSize))
	e.HLC.Wall = int64(r.u64())
	e.HLC.Logical = r.u32()
	e.Kind = string(r.bytes16())
	e.Key = string(r.bytes16())
	n := r.u32()
	if n > MaxBodyLen {
		return nil, fmt.Errorf("%w: body length %d above %d", ErrMalformed, n, MaxBodyLen)
	}
	e.Body = append([]byte(nil), r.fixed(int(n))...)
	e.Sig = append([]byte(nil), r.fixed(SigSize)...)
	if r.err != nil {
		return nil, r.err
	}
	if len(r.b) != 0 {
		return nil, fmt.Errorf("%w: %d trailing bytes", ErrMalformed, len(r.b))
	}
	if err := validateFields(e); err != nil {
		return nil, err
	}
	return e, nil
}

type reader struct {
	b   []byte
	err error
}

func (r *reader) fixed(n int) []byte {
	if r.err != nil {
		return nil
	}
	if n > len(r.b) {
		r.err = fmt.Errorf("%w: truncated (need %d bytes, have %d)", ErrMalformed, n, len(r.b))
		return nil
	}
	v := r.b[:n]
	r.b = r.b[n:]
	return v
}

func (r *reader) u16() uint16 {
	v := r.fixed(2)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint16(v)
}

func (r *reader) u32() uint32 {
	v := r.fixed(4)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint32(v)
}

func (r *reader) u64() uint64 {
	v := r.fixed(8)
	if v == nil {
		return 0
	}
	return binary.BigEndian.Uint64(v)
}

func (r *reader) bytes16() []byte { return r.fixed(int(r.u16())) }

// Ref names an entry: its author, sequence number and hash. Every API
// mutation answers with the Ref of the entry it created.
type Ref struct {
	Node NodeID `json:"node"`
	Seq  uint64 `json:"seq"`
	Hash Hash   `json:"hash"`
}

// Ref returns the entry's reference.
func (e *Entry) Ref() Ref { return Ref{Node: e.Node, Seq: e.Seq, Hash: e.Hash()} }

// Less orders entries by (hlc, node, seq), the order reducers fold them in.
func Less(a, b *Entry) bool {
	if c := a.HLC.Compare(b.HLC); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(a.Node[:], b.Node[:]); c != 0 {
		return c < 0
	}
	return a.Seq < b.Seq
}

// Package receipt makes the signed receipt of a paid order into a document
// anyone can verify offline — the completing payment entry, its author's key
// and enrolment, and an inclusion proof to a signed checkpoint — and renders
// it for people (an 80 mm till printout, a small web page). Verify checks
// such a document against the event's public description.
package receipt

import (
	"bytes"
	_ "embed"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"canopy/ledger"
	"canopy/pos"
	"canopy/witness"
)

// MediaType is the media type of a receipt document.
const MediaType = "application/vnd.canopy.receipt+json"

// Format is the document's format version. A verifier refuses other ones.
const Format = "canopy.receipt/v1"

// MaxDocumentSize bounds a document a decoder accepts: an entry body is at
// most ledger.MaxBodyLen, and the document carries it twice (decoded and in
// the base64 of the encoded entry).
const MaxDocumentSize = 4 << 20

// maxProofHashes bounds an inclusion proof: a tree of at most 2^63 leaves
// needs at most 63 hashes.
const maxProofHashes = 63

// Schema is the JSON Schema (2020-12) of a receipt document.
//
//go:embed schema.json
var Schema []byte

// ErrNotFound is returned by Build when the order does not exist or is not
// paid (it has no receipt).
var ErrNotFound = errors.New("receipt: no paid order")

// Document is a receipt document, the JSON served as MediaType. Every field
// is either signed (the encoded entry, the enrolment token, the checkpoint
// note) or must equal what the signed parts say; Decode accepts only the
// canonical encoding, so a document has one form besides whitespace.
type Document struct {
	Format string `json:"format"`
	Event  string `json:"event"` // event slug
	Order  string `json:"order"` // order id
	// Entry is the payment.recorded entry that brought the order to paid;
	// its body carries the receipt (pos.ReceiptBody).
	Entry Entry `json:"entry"`
	// NodeKey is the author's Ed25519 public key in PASERK k4.public form.
	NodeKey string `json:"node_key"`
	// Enrolment is the author's enrolment token (PASETO v4.public signed by
	// the event key), as carried by the first entry of its log.
	Enrolment string `json:"enrolment"`
	// Checkpoint is a signed checkpoint note (C2SP tlog-checkpoint) of the
	// author's log that covers the entry, and Proof the RFC 6962 inclusion
	// proof of the entry in it. Both are absent, and PendingCheckpoint is
	// true, when no checkpoint covered the entry yet.
	Checkpoint        string                 `json:"checkpoint,omitempty"`
	Proof             *ledger.InclusionProof `json:"inclusion_proof,omitempty"`
	PendingCheckpoint bool                   `json:"pending_checkpoint"`
}

// Entry is the receipt entry: its encoded bytes (what is hashed and signed,
// ledger/FORMAT.md), their hash, and the decoded fields for readers. A
// verifier decodes Encoded and requires every other field to match it.
type Entry struct {
	Encoded []byte          `json:"encoded"`
	Hash    ledger.Hash     `json:"hash"`
	Event   string          `json:"event"`
	Node    ledger.NodeID   `json:"node"`
	Seq     uint64          `json:"seq"`
	Prev    ledger.Hash     `json:"prev"`
	HLC     ledger.HLC      `json:"hlc"`
	Kind    string          `json:"kind"`
	Key     string          `json:"key"`
	Body    json.RawMessage `json:"body"`
	Sig     []byte          `json:"sig"`
}

// entryOf returns the document form of an entry whose body is JSON.
func entryOf(e *ledger.Entry) (Entry, error) {
	if !json.Valid(e.Body) {
		return Entry{}, fmt.Errorf("entry %s/%d: body is not JSON", e.Node, e.Seq)
	}
	return Entry{
		Encoded: e.Encode(), Hash: e.Hash(), Event: e.Event, Node: e.Node, Seq: e.Seq,
		Prev: e.Prev, HLC: e.HLC, Kind: e.Kind, Key: e.Key, Body: json.RawMessage(e.Body), Sig: e.Sig,
	}, nil
}

// Receipt is a receipt document with what it says, decoded.
type Receipt struct {
	Document Document
	Entry    *ledger.Entry
	Payment  pos.PaymentBody // Payment.Receipt is not nil
	// Checkpoint is the parsed checkpoint, nil when pending.
	Checkpoint *ledger.Checkpoint
	// Cosignatures are the witness cosignatures (C2SP tlog-cosignature)
	// found on the checkpoint; Verify sets Verified on those it checked
	// with a key given in Options.WitnessKeys.
	Cosignatures []Cosignature
}

// Cosignature is a witness cosignature on a receipt's checkpoint.
type Cosignature struct {
	witness.Cosignature
	Verified bool
}

// Encode returns the canonical encoding of the document: indented JSON
// without HTML escaping, ending in a newline.
func (d *Document) Encode() ([]byte, error) {
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(d); err != nil {
		return nil, fmt.Errorf("encode receipt document: %w", err)
	}
	return buf.Bytes(), nil
}

// DecodeError reports a document that cannot be read at all.
type DecodeError struct{ Detail string }

func (e *DecodeError) Error() string { return "document: " + e.Detail }

func decodeErrorf(format string, args ...any) error {
	return &DecodeError{Detail: fmt.Sprintf(format, args...)}
}

// Decode parses a receipt document. It checks the form only — the format
// version, required members, no unknown members, and that the document is
// its own canonical encoding up to insignificant whitespace (so that no two
// different texts decode to the same content) — not the signatures; use
// Verify for that.
func Decode(b []byte) (*Document, error) {
	if len(b) > MaxDocumentSize {
		return nil, decodeErrorf("%d bytes, more than %d", len(b), MaxDocumentSize)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var d Document
	if err := dec.Decode(&d); err != nil {
		return nil, decodeErrorf("not a receipt document: %v", err)
	}
	if _, err := dec.Token(); !errors.Is(err, io.EOF) {
		return nil, decodeErrorf("data after the JSON object")
	}
	if d.Format != Format {
		return nil, decodeErrorf("format %q, this canopy reads %q", d.Format, Format)
	}
	switch {
	case d.Event == "":
		return nil, decodeErrorf("member \"event\" is missing or empty")
	case d.Order == "":
		return nil, decodeErrorf("member \"order\" is missing or empty")
	case len(d.Entry.Encoded) == 0:
		return nil, decodeErrorf("member \"entry.encoded\" is missing or empty")
	case len(d.Entry.Body) == 0:
		return nil, decodeErrorf("member \"entry.body\" is missing")
	case d.NodeKey == "":
		return nil, decodeErrorf("member \"node_key\" is missing or empty")
	case d.Enrolment == "":
		return nil, decodeErrorf("member \"enrolment\" is missing or empty")
	case d.PendingCheckpoint && (d.Proof != nil || d.Checkpoint != ""):
		return nil, decodeErrorf("pending_checkpoint is true but a checkpoint or proof is present")
	case !d.PendingCheckpoint && (d.Proof == nil || d.Checkpoint == ""):
		return nil, decodeErrorf("pending_checkpoint is false but the checkpoint or the inclusion proof is missing")
	case d.Proof != nil && d.Proof.Hashes == nil:
		return nil, decodeErrorf("member \"inclusion_proof.hashes\" is missing")
	case d.Proof != nil && len(d.Proof.Hashes) > maxProofHashes:
		return nil, decodeErrorf("inclusion proof has %d hashes, at most %d", len(d.Proof.Hashes), maxProofHashes)
	}
	if err := checkCanonical(b, &d); err != nil {
		return nil, err
	}
	// The raw body keeps the document's whitespace; hold it compact.
	var body bytes.Buffer
	if err := json.Compact(&body, d.Entry.Body); err != nil {
		return nil, decodeErrorf("entry.body: %v", err)
	}
	d.Entry.Body = body.Bytes()
	return &d, nil
}

// checkCanonical requires b to equal the canonical encoding of d up to
// insignificant whitespace: member names in their exact case, no duplicate
// or reordered members, no alternative spellings of the same value
// (upper-case hex, non-canonical base64, escapes).
func checkCanonical(b []byte, d *Document) error {
	want, err := d.Encode()
	if err != nil {
		return decodeErrorf("%v", err)
	}
	var got, canon bytes.Buffer
	if err := json.Compact(&got, b); err != nil {
		return decodeErrorf("not JSON: %v", err)
	}
	if err := json.Compact(&canon, want); err != nil {
		return decodeErrorf("re-encoding: %v", err)
	}
	g, c := got.Bytes(), canon.Bytes()
	if bytes.Equal(g, c) {
		return nil
	}
	i := 0
	for i < len(g) && i < len(c) && g[i] == c[i] {
		i++
	}
	from := max(0, i-24)
	return decodeErrorf("not in canonical form (edited or re-encoded?): at %q the canonical document has %q",
		snippet(g, from, i+16), snippet(c, from, i+16))
}

func snippet(b []byte, from, to int) string {
	return string(b[from:min(to, len(b))])
}

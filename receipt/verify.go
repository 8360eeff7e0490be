package receipt

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/auth"
	"canopy/ledger"
	"canopy/pos"
	"canopy/witness"
)

// Checks a verifier makes, in order. A Failure names the one that failed.
const (
	CheckDocument   = "document"
	CheckEvent      = "event"
	CheckEntry      = "entry"
	CheckNodeKey    = "node key"
	CheckSignature  = "signature"
	CheckEnrolment  = "enrolment"
	CheckBody       = "receipt body"
	CheckCheckpoint = "checkpoint"
	CheckProof      = "inclusion proof"
	CheckWitness    = "witness cosignature"
)

// Failure says which check of a receipt failed and why.
type Failure struct {
	Check  string // one of the Check constants
	Detail string
}

func (f *Failure) Error() string { return f.Check + ": " + f.Detail }

func fail(check, format string, args ...any) error {
	return &Failure{Check: check, Detail: fmt.Sprintf(format, args...)}
}

// Options adjust Verify.
type Options struct {
	// RequireProof makes a receipt without an inclusion proof (pending
	// checkpoint) fail.
	RequireProof bool
	// WitnessKeys are verifier keys of witnesses (a hub's, in the form
	// witness.VerifierKey writes) whose cosignature the checkpoint must
	// carry; a receipt without one fails the CheckWitness check.
	WitnessKeys []string
}

// Verify checks a receipt document offline against the event's public
// description: the entry decodes from its encoded bytes, hashes to the
// stated hash and matches every decoded field; its signature verifies with
// the node key; the enrolment token is signed by the event key, valid at the
// entry's HLC time, and names the entry's node and that key; the body is a
// completing payment carrying the receipt of the document's order; and,
// unless pending, the checkpoint note is signed by the node key and the
// inclusion proof puts the entry in it (checked with
// golang.org/x/mod/sumdb/tlog directly). Every error is a *Failure.
func Verify(doc []byte, ev *auth.Event, opt Options) (*Receipt, error) {
	d, err := Decode(doc)
	if err != nil {
		var de *DecodeError
		if errors.As(err, &de) {
			return nil, &Failure{Check: CheckDocument, Detail: de.Detail}
		}
		return nil, fail(CheckDocument, "%v", err)
	}
	return VerifyDocument(d, ev, opt)
}

// VerifyDocument is Verify for a decoded document.
func VerifyDocument(d *Document, ev *auth.Event, opt Options) (*Receipt, error) {
	if ev == nil || ev.PublicKey() == nil {
		return nil, fail(CheckEvent, "the event description has no valid public key")
	}
	if d.Event != ev.Slug {
		return nil, fail(CheckEvent, "the receipt is for event %q, the event description is %q", d.Event, ev.Slug)
	}

	e, err := checkEntry(d)
	if err != nil {
		return nil, err
	}
	if e.Event != ev.Slug {
		return nil, fail(CheckEntry, "the entry is of event %q, not %q", e.Event, ev.Slug)
	}

	pub, err := auth.ParsePublicKey(d.NodeKey)
	if err != nil {
		return nil, fail(CheckNodeKey, "%v", err)
	}
	if id := ledger.NodeIDOf(pub); id != e.Node {
		return nil, fail(CheckNodeKey, "the key is node %s's, the entry is by node %s", id, e.Node)
	}
	if err := e.Verify(pub); err != nil {
		return nil, fail(CheckSignature, "the entry's signature does not verify with the node key")
	}

	enr, err := auth.VerifyEnrolment(ev, d.Enrolment, e.HLC.Time())
	switch {
	case errors.Is(err, auth.ErrBadSignature):
		return nil, fail(CheckEnrolment, "signed by another event key (not the key of event %q)", ev.Slug)
	case errors.Is(err, auth.ErrExpired), errors.Is(err, auth.ErrNotYetValid):
		return nil, fail(CheckEnrolment, "not valid when the entry was written (%s): %v", e.HLC.Time().Format("2006-01-02T15:04:05Z07:00"), err)
	case err != nil:
		return nil, fail(CheckEnrolment, "%v", err)
	case enr.Node != e.Node:
		return nil, fail(CheckEnrolment, "names node %s, the entry is by node %s", enr.Node, e.Node)
	case !enr.PublicKey.Equal(pub):
		return nil, fail(CheckEnrolment, "names another public key than the receipt's node key")
	}

	pay, err := checkBody(d, e)
	if err != nil {
		return nil, err
	}

	r := &Receipt{Document: *d, Entry: e, Payment: pay}
	if d.PendingCheckpoint {
		if len(opt.WitnessKeys) > 0 {
			return nil, fail(CheckWitness, "absent: the receipt has no checkpoint yet (pending_checkpoint)")
		}
		if opt.RequireProof {
			return nil, fail(CheckProof, "absent: no checkpoint covered the entry when the receipt was issued (pending_checkpoint)")
		}
		return r, nil
	}
	cp, err := ledger.OpenCheckpoint([]byte(d.Checkpoint), ev.Slug, pub)
	if err != nil {
		return nil, fail(CheckCheckpoint, "%v", err)
	}
	if cp.Size < e.Seq {
		return nil, fail(CheckCheckpoint, "size %d does not cover entry seq %d", cp.Size, e.Seq)
	}
	if err := checkProof(d.Proof, cp, e.Seq, d.Entry.Hash); err != nil {
		return nil, err
	}
	r.Checkpoint = &cp
	found, err := witness.Cosignatures([]byte(d.Checkpoint), ev.Slug)
	if err != nil {
		return nil, fail(CheckCheckpoint, "%v", err)
	}
	for _, c := range found {
		r.Cosignatures = append(r.Cosignatures, Cosignature{Cosignature: c})
	}
	for _, k := range opt.WitnessKeys {
		if err := witness.VerifyCosignature([]byte(d.Checkpoint), k); err != nil {
			return nil, fail(CheckWitness, "%v", err)
		}
		name, rest, _ := strings.Cut(k, "+")
		hash, _, _ := strings.Cut(rest, "+")
		for i, c := range r.Cosignatures {
			if c.Name == name && fmt.Sprintf("%08x", c.KeyHash) == hash {
				r.Cosignatures[i].Verified = true
			}
		}
	}
	return r, nil
}

// checkEntry decodes the encoded entry and compares it with the document's
// decoded fields.
func checkEntry(d *Document) (*ledger.Entry, error) {
	de := &d.Entry
	if h := ledger.Hash(sha256.Sum256(de.Encoded)); h != de.Hash {
		return nil, fail(CheckEntry, "hash %s does not match the encoded entry (its SHA-256 is %s)", de.Hash, h)
	}
	e, err := ledger.Decode(de.Encoded)
	if err != nil {
		return nil, fail(CheckEntry, "the encoded entry does not decode: %v", err)
	}
	mismatch := func(field string, doc, enc any) error {
		return fail(CheckEntry, "field %s is %v, the encoded entry has %v", field, doc, enc)
	}
	switch {
	case de.Event != e.Event:
		return nil, mismatch("event", de.Event, e.Event)
	case de.Node != e.Node:
		return nil, mismatch("node", de.Node, e.Node)
	case de.Seq != e.Seq:
		return nil, mismatch("seq", de.Seq, e.Seq)
	case de.Prev != e.Prev:
		return nil, mismatch("prev", de.Prev, e.Prev)
	case de.HLC != e.HLC:
		return nil, mismatch("hlc", de.HLC, e.HLC)
	case de.Kind != e.Kind:
		return nil, mismatch("kind", de.Kind, e.Kind)
	case de.Key != e.Key:
		return nil, mismatch("key", de.Key, e.Key)
	case !bytes.Equal(de.Sig, e.Sig):
		return nil, fail(CheckEntry, "field sig differs from the encoded entry's signature")
	}
	var body bytes.Buffer
	if err := json.Compact(&body, e.Body); err != nil || !bytes.Equal(body.Bytes(), de.Body) {
		return nil, fail(CheckEntry, "field body differs from the encoded entry's body")
	}
	return e, nil
}

// checkBody requires the entry to be the completing payment of the
// document's order, carrying its receipt.
func checkBody(d *Document, e *ledger.Entry) (pos.PaymentBody, error) {
	var p pos.PaymentBody
	if e.Kind != pos.KindPaymentRecorded {
		return p, fail(CheckBody, "the entry is %q, not a payment (%s)", e.Kind, pos.KindPaymentRecorded)
	}
	if want := pos.OrderKey(d.Order); e.Key != want {
		return p, fail(CheckBody, "the entry is about %q, the receipt names order %q", e.Key, d.Order)
	}
	if err := json.Unmarshal(e.Body, &p); err != nil {
		return p, fail(CheckBody, "the payment body does not parse: %v", err)
	}
	switch {
	case p.Receipt == nil:
		return p, fail(CheckBody, "the payment carries no receipt (it did not complete the order)")
	case p.Order != d.Order:
		return p, fail(CheckBody, "the payment is for order %q, the receipt names %q", p.Order, d.Order)
	case p.Receipt.Order != d.Order:
		return p, fail(CheckBody, "the signed receipt is for order %q, the document names %q", p.Receipt.Order, d.Order)
	}
	return p, nil
}

// checkProof verifies the inclusion proof with tlog directly, independent
// of ledger.VerifyInclusion.
func checkProof(p *ledger.InclusionProof, cp ledger.Checkpoint, seq uint64, entryHash ledger.Hash) error {
	if p.Size < 0 || uint64(p.Size) != cp.Size {
		return fail(CheckProof, "for a tree of size %d, the checkpoint has size %d", p.Size, cp.Size)
	}
	if p.Index < 0 || uint64(p.Index) != seq-1 {
		return fail(CheckProof, "for leaf %d, but entry seq %d is leaf %d", p.Index, seq, seq-1)
	}
	hashes := make([]tlog.Hash, len(p.Hashes))
	for i, h := range p.Hashes {
		hashes[i] = tlog.Hash(h)
	}
	leaf := tlog.RecordHash(entryHash[:])
	if err := tlog.CheckRecord(hashes, p.Size, tlog.Hash(cp.Root), p.Index, leaf); err != nil {
		return fail(CheckProof, "root does not match checkpoint size %d (%s)", cp.Size, strings.TrimPrefix(err.Error(), "tlog: "))
	}
	return nil
}

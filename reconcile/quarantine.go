package reconcile

import (
	"errors"
	"fmt"
	"unicode/utf8"

	"canopy/ledger"
)

// KindNodeQuarantined records that a node was caught showing two histories
// (two different entries at one seq, or an inconsistent checkpoint). The
// hub's witness writes it; its key is QuarantineKey(node) and its body a
// Quarantine. It syncs like any other fact and is a report item on every
// node that holds it.
const KindNodeQuarantined = "node.quarantined/v1"

// MaxQuarantineReasonLen bounds a quarantine's reason, in characters.
const MaxQuarantineReasonLen = 500

// QuarantineKey returns the entry key of a quarantine: "node:<id>".
func QuarantineKey(node ledger.NodeID) string { return "node:" + node.String() }

// Quarantine is the body of a node.quarantined entry: the node, why, and
// the two conflicting entries (or checkpoints' last entries) as evidence.
type Quarantine struct {
	Node     ledger.NodeID `json:"node"`
	Reason   string        `json:"reason"`
	Evidence []ledger.Ref  `json:"evidence"`
}

// ErrInvalidQuarantine is wrapped by the errors of Quarantine.Validate.
var ErrInvalidQuarantine = errors.New("reconcile: invalid quarantine")

// Validate checks that the quarantine names a node, has a reason of at most
// MaxQuarantineReasonLen characters of valid UTF-8, and carries exactly two
// different pieces of evidence, both by the quarantined node.
func (q Quarantine) Validate() error {
	switch {
	case q.Node == (ledger.NodeID{}):
		return fmt.Errorf("%w: no node", ErrInvalidQuarantine)
	case q.Reason == "":
		return fmt.Errorf("%w: no reason", ErrInvalidQuarantine)
	case !utf8.ValidString(q.Reason):
		return fmt.Errorf("%w: reason is not valid UTF-8", ErrInvalidQuarantine)
	case utf8.RuneCountInString(q.Reason) > MaxQuarantineReasonLen:
		return fmt.Errorf("%w: reason longer than %d characters", ErrInvalidQuarantine, MaxQuarantineReasonLen)
	case len(q.Evidence) != 2:
		return fmt.Errorf("%w: want 2 pieces of evidence, got %d", ErrInvalidQuarantine, len(q.Evidence))
	case q.Evidence[0] == q.Evidence[1]:
		return fmt.Errorf("%w: the two pieces of evidence are the same entry", ErrInvalidQuarantine)
	}
	for i, r := range q.Evidence {
		if r.Node != q.Node {
			return fmt.Errorf("%w: evidence %d is by node %s, not the quarantined node %s", ErrInvalidQuarantine, i, r.Node, q.Node)
		}
	}
	return nil
}

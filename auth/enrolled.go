package auth

import (
	"encoding/json"
	"fmt"

	"canopy/ledger"
)

// EnrolledKind is the kind of the first entry of every node's log: the
// node's enrolment token, so that any log names its author's public key and
// the event key's statement about it, and verifies with event.json alone.
const EnrolledKind = "node.enrolled/v1"

// enrolledBody is the body of an EnrolledKind entry.
type enrolledBody struct {
	Enrolment string `json:"enrolment"`
}

// EnrolledBody returns the body of the enrolment entry for a token.
func EnrolledBody(token string) []byte {
	b, _ := json.Marshal(enrolledBody{Enrolment: token})
	return b
}

// EnrolmentFromEntry reads the enrolment carried by a node's enrolment
// entry, verifies it with the event key (valid at the entry's own HLC time)
// and checks that it names the entry's author.
func EnrolmentFromEntry(ev *Event, e *ledger.Entry) (*Enrolment, error) {
	if e.Kind != EnrolledKind {
		return nil, fmt.Errorf("%w: entry %s/%d is %q, not the node's enrolment", ErrWrongPurpose, e.Node, e.Seq, e.Kind)
	}
	var b enrolledBody
	if err := json.Unmarshal(e.Body, &b); err != nil || b.Enrolment == "" {
		return nil, fmt.Errorf("%w: entry %s/%d: enrolment body unreadable", ErrMalformed, e.Node, e.Seq)
	}
	enr, err := VerifyEnrolment(ev, b.Enrolment, e.HLC.Time())
	if err != nil {
		return nil, fmt.Errorf("entry %s/%d: %w", e.Node, e.Seq, err)
	}
	if enr.Node != e.Node {
		return nil, fmt.Errorf("%w: entry by %s carries the enrolment of %s", ErrWrongPurpose, e.Node, enr.Node)
	}
	return enr, nil
}

// Package checkin is the door domain: every ticket scan as an entry, and
// the deterministic reducer that folds a ticket's scans into whether it is
// inside — reporting, not hiding, a ticket admitted twice by doors that
// could not see each other.
package checkin

import (
	"bytes"
	"encoding/json"
	"sort"
	"strings"

	"canopy/ledger"
	"canopy/store"
)

// KindScanned records one scan, accepted or rejected. Its key is
// "ticket:<id>" (for a ticket that did not verify, "ticket:?<sha256 of the
// token>" so the scan is still recorded).
const KindScanned = "checkin.scanned/v1"

// TicketKey returns the entry key of a ticket.
func TicketKey(id string) string { return "ticket:" + id }

// Directions of a scan.
const (
	In  = "in"
	Out = "out"
)

// Reasons a scan is rejected. They are the API's answer and are recorded
// in the entry.
const (
	ReasonAlreadyInside    = "already_inside"
	ReasonNotInside        = "not_inside"
	ReasonNoReentry        = "reentry_not_allowed"
	ReasonExpired          = "expired"
	ReasonNotYetValid      = "not_yet_valid"
	ReasonRevoked          = "revoked"
	ReasonInvalidSignature = "invalid_signature"
	ReasonWrongEvent       = "wrong_event"
	ReasonWrongDoor        = "wrong_door"
	ReasonMalformed        = "malformed_ticket"
)

// Scan is the body of a checkin.scanned entry.
type Scan struct {
	Ticket    string `json:"ticket"`
	Type      string `json:"type,omitempty"`
	Reentry   bool   `json:"reentry,omitempty"`
	Door      string `json:"door"`
	Direction string `json:"direction"`
	Device    string `json:"device"`
	Accepted  bool   `json:"accepted"`
	Reason    string `json:"reason,omitempty"`
}

// Decide answers a scan at an edge from the ticket's current row (nil: the
// ticket was never admitted). The caller has already verified the ticket
// (signature, event, validity, door, deny-list).
func Decide(row *Ticket, direction string, reentry bool) (accepted bool, reason string) {
	inside := row != nil && row.Inside
	switch direction {
	case In:
		switch {
		case inside:
			return false, ReasonAlreadyInside
		case row != nil && row.Admissions > 0 && !reentry:
			return false, ReasonNoReentry
		}
		return true, ""
	case Out:
		if !inside {
			return false, ReasonNotInside
		}
		return true, ""
	}
	return false, ReasonMalformed
}

// Fact is a scan's place in the (hlc, node, seq) order.
type Fact struct {
	Entry ledger.Ref `json:"entry"`
	HLC   ledger.HLC `json:"hlc"`
}

func (f Fact) less(o Fact) bool {
	if c := f.HLC.Compare(o.HLC); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(f.Entry.Node[:], o.Entry.Node[:]); c != 0 {
		return c < 0
	}
	return f.Entry.Seq < o.Entry.Seq
}

// ScanFact is an accepted scan with its place.
type ScanFact struct {
	Fact
	Door      string `json:"door"`
	Direction string `json:"direction"`
	Reentry   bool   `json:"reentry,omitempty"`
}

// Conflict is an accepted scan that the merged history shows should not
// have been: the ticket was admitted twice (double_entry), left without
// being inside, or re-entered without re-entry.
type Conflict struct {
	Fact
	Door   string `json:"door"`
	Reason string `json:"reason"`
}

// Ticket is the tickets view's row.
type Ticket struct {
	ID         string `json:"id"`
	Inside     bool   `json:"inside"`
	Door       string `json:"door,omitempty"` // door of the admission that holds
	Admissions int    `json:"admissions"`
	Rejected   int    `json:"rejected"` // rejected scans recorded
	// Accepted holds every accepted scan in (hlc, node, seq) order.
	Accepted  []ScanFact `json:"accepted,omitempty"`
	Conflicts []Conflict `json:"conflicts,omitempty"`
	// RejectedSeen lists rejected scans' refs, so a duplicate delivery is
	// not counted twice.
	RejectedSeen []ledger.Ref `json:"rejected_seen,omitempty"`
}

// View is the name of the tickets view; the row key is the ticket id.
const View = "checkin.tickets"

// Reducer folds scans into ticket rows.
type Reducer struct{}

// View implements views.Reducer.
func (Reducer) View() string { return View }

// Rows implements views.Reducer.
func (Reducer) Rows(s store.Stored) []string {
	if s.Entry.Kind != KindScanned {
		return nil
	}
	id, ok := strings.CutPrefix(s.Entry.Key, "ticket:")
	if !ok || id == "" {
		return nil
	}
	return []string{id}
}

// Fold implements views.Reducer: the accepted scans are kept sorted and
// replayed, so the row does not depend on arrival order.
func (Reducer) Fold(cur []byte, key string, s store.Stored) []byte {
	var sc Scan
	if json.Unmarshal(s.Entry.Body, &sc) != nil {
		return cur
	}
	t := Ticket{ID: key}
	if cur != nil && json.Unmarshal(cur, &t) != nil {
		t = Ticket{ID: key}
	}
	f := Fact{Entry: ledger.Ref{Node: s.Entry.Node, Seq: s.Entry.Seq, Hash: s.Hash}, HLC: s.Entry.HLC}
	if !sc.Accepted {
		for _, r := range t.RejectedSeen {
			if r == f.Entry {
				return cur
			}
		}
		t.RejectedSeen = append(t.RejectedSeen, f.Entry)
		sort.Slice(t.RejectedSeen, func(i, j int) bool { return refLess(t.RejectedSeen[i], t.RejectedSeen[j]) })
		t.Rejected = len(t.RejectedSeen)
		return mustJSON(t)
	}
	for _, a := range t.Accepted {
		if a.Entry == f.Entry {
			return cur
		}
	}
	t.Accepted = append(t.Accepted, ScanFact{Fact: f, Door: sc.Door, Direction: sc.Direction, Reentry: sc.Reentry})
	sort.Slice(t.Accepted, func(i, j int) bool { return t.Accepted[i].less(t.Accepted[j].Fact) })
	t.replay()
	return mustJSON(t)
}

func refLess(a, b ledger.Ref) bool {
	if c := bytes.Compare(a.Node[:], b.Node[:]); c != 0 {
		return c < 0
	}
	return a.Seq < b.Seq
}

// replay recomputes Inside, Door, Admissions and Conflicts from the
// accepted scans in order: the first admission by (hlc, node, seq) wins.
func (t *Ticket) replay() {
	t.Inside, t.Door, t.Admissions, t.Conflicts = false, "", 0, nil
	for _, a := range t.Accepted {
		switch a.Direction {
		case In:
			switch {
			case t.Inside:
				t.Conflicts = append(t.Conflicts, Conflict{Fact: a.Fact, Door: a.Door, Reason: "double_entry"})
			case t.Admissions > 0 && !a.Reentry:
				t.Conflicts = append(t.Conflicts, Conflict{Fact: a.Fact, Door: a.Door, Reason: ReasonNoReentry})
			default:
				t.Inside, t.Door = true, a.Door
				t.Admissions++
			}
		case Out:
			if !t.Inside {
				t.Conflicts = append(t.Conflicts, Conflict{Fact: a.Fact, Door: a.Door, Reason: ReasonNotInside})
				continue
			}
			t.Inside, t.Door = false, ""
		}
	}
}

// Occupancy counts tickets inside, in total and per door.
type Occupancy struct {
	Inside int            `json:"inside"`
	Doors  map[string]int `json:"doors"`
}

// Count computes occupancy from ticket rows.
func Count(rows []Ticket) Occupancy {
	o := Occupancy{Doors: map[string]int{}}
	for _, t := range rows {
		if t.Inside {
			o.Inside++
			o.Doors[t.Door]++
		}
	}
	return o
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		panic("checkin: marshal view row: " + err.Error())
	}
	return b
}

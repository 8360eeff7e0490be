// Package reconcile builds the reconciliation report: every disagreement
// between an event's facts, as a pure function of the entries a node holds,
// so every node holding the same entries produces a byte-identical report
// with the same hash.
//
// # Items
//
// Each item has a kind, a finer reason, the entity it is about, the entries
// involved (node, seq, hash, and the HLC where known, each with a role) and
// a human-readable detail:
//
//   - duplicate_idempotency_key: one Idempotency-Key accepted more than once
//     (two edges during a partition). The idempotency view names the winner,
//     the earliest entry by (hlc, node, seq); the others are duplicates. Both
//     are kept as evidence.
//   - double_entry: a ticket admitted while already inside (two doors that
//     could not see each other). The entries are the admission that holds
//     and the conflicting one.
//   - checkin_conflict: any other scan the merged history refuses (reason
//     reentry_not_allowed or not_inside).
//   - oversold: a SKU whose stock is below zero (sales accepted offline).
//   - order_conflict: a fact about an order that the merged history refuses
//     (reason overpayment, duplicate_order_id, refund_above_paid,
//     illegal_transition_…, order_<state>, unknown_order).
//   - intent_changed_winner: a lot whose high bid is an intent (a bid
//     recorded away from the lot's home edge).
//   - clock_skew: an entry whose HLC is implausible (rules below).
//   - quarantined_node: a node.quarantined entry (reason: the one it
//     gives), or a revocation of a node (reason revoked).
//   - unreadable_view_row: a view row that does not decode (a bug; listed
//     rather than hidden).
//
// Items are sorted by kind, entity, reason, entries and detail; the report
// also names the entries it covers (per author, the highest seq) and the
// skew threshold. Its hash is the SHA-256 of its JSON encoding without the
// hash member; the JSON carries the hash.
//
// # Clock skew
//
// What an author had seen when it wrote an entry is not recorded, so the
// rules use a proxy that depends only on the set of entries. Entries are
// taken in (hlc, node, seq) order. The origin of a wall time W is the author
// of the first entry in that order whose HLC wall is W: the node whose
// clock reading it was. An entry whose wall has another origin inherited it
// through the HLC (its author had seen a later time than its own clock), so
// its author did not lead. With threshold T (DefaultSkewThreshold unless
// given), an entry e of author A with HLC wall W is flagged:
//
//   - behind_own_previous, when A's previous entry (seq − 1) has a wall
//     greater than W + T. A correct HLC never goes back, so this is an HLC
//     bug or tampering.
//   - ahead, when all of these hold: W's origin is A; some entry with a
//     strictly lower HLC has a wall whose origin is not A (call the nearest
//     one below e the reference R — the most the rest of the event can have
//     shown A before e, since anything A had seen has a lower HLC); W is more
//     than T above both R's wall and the wall of A's previous entry; and no
//     entry with a strictly higher HLC whose wall's origin is not A has a
//     wall within T above W.
//
// The own-previous bound makes a node whose clock jumps ahead flagged once,
// at the jump, not at each of its later entries; the entries of nodes that
// inherited its time are not flagged. The last condition keeps a quiet
// spell (no entries for a while, then one node writes first) from being
// flagged once another node's own clock shows the same time; until one does,
// the first entry after a spell longer than T is indistinguishable from a
// fast clock and is flagged. A node whose clock is behind leaves no trace in
// a correct HLC (its times are raised to what it has seen), so it is not
// flagged unless its HLC goes back.
package reconcile

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"sort"
	"strconv"
	"time"

	"canopy/ledger"
	"canopy/store"
)

// Item kinds.
const (
	KindDuplicateIdempotencyKey = "duplicate_idempotency_key"
	KindDoubleEntry             = "double_entry"
	KindCheckinConflict         = "checkin_conflict"
	KindOversold                = "oversold"
	KindOrderConflict           = "order_conflict"
	KindIntentChangedWinner     = "intent_changed_winner"
	KindClockSkew               = "clock_skew"
	KindQuarantinedNode         = "quarantined_node"
	KindUnreadableViewRow       = "unreadable_view_row"
)

// Kinds lists every item kind; the report counts each of them.
var Kinds = []string{
	KindDuplicateIdempotencyKey, KindDoubleEntry, KindCheckinConflict, KindOversold,
	KindOrderConflict, KindIntentChangedWinner, KindClockSkew, KindQuarantinedNode,
	KindUnreadableViewRow,
}

// ReasonRevoked is the reason of a quarantined_node item from a node
// revocation.
const ReasonRevoked = "revoked"

// EntryRef is an entry involved in an item, with its role in it (winner,
// duplicate, admitted, conflict, flagged, reference, evidence…).
type EntryRef struct {
	Role string        `json:"role"`
	Node ledger.NodeID `json:"node"`
	Seq  uint64        `json:"seq"`
	Hash ledger.Hash   `json:"hash"`
	HLC  *ledger.HLC   `json:"hlc,omitempty"`
}

func refOf(role string, r ledger.Ref, h ledger.HLC) EntryRef {
	return EntryRef{Role: role, Node: r.Node, Seq: r.Seq, Hash: r.Hash, HLC: &h}
}

// Item is one disagreement.
type Item struct {
	Kind    string     `json:"kind"`
	Reason  string     `json:"reason,omitempty"`
	Entity  string     `json:"entity"` // e.g. "ticket:<id>", "order:<id>", "sku:<sku>", "lot:<id>", "node:<id>", "idempotency:<key>"
	Entries []EntryRef `json:"entries"`
	Detail  string     `json:"detail"`
}

// Head is how much of one author's log a report covers.
type Head struct {
	Node ledger.NodeID `json:"node"`
	Seq  uint64        `json:"seq"`
}

// Report is the reconciliation report of one event.
type Report struct {
	Event string `json:"event"`
	// Entries counts the distinct entries the report was built from;
	// Heads names them (per author, the highest seq), sorted by node.
	Entries         int            `json:"entries"`
	Heads           []Head         `json:"heads"`
	SkewThresholdMs int64          `json:"skew_threshold_ms"`
	Counts          map[string]int `json:"counts"` // items per kind, every kind present
	Items           []Item         `json:"items"`
	// Digest is Hash() of the rest of the report, lower-case hex.
	Digest string `json:"hash"`
}

// Hash returns the SHA-256, in lower-case hex, of the report's canonical
// encoding: its JSON encoding (encoding/json, struct members in declaration
// order, map keys sorted) with the hash member empty.
func (r Report) Hash() string {
	r.Digest = ""
	b, err := json.Marshal(r)
	if err != nil {
		// Only strings, numbers and fixed-size ids are encoded.
		panic("reconcile: encode report: " + err.Error())
	}
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// Options tune a report. The zero value uses DefaultSkewThreshold.
type Options struct {
	SkewThreshold time.Duration
}

// Build computes the report of event from its entries (in any order,
// duplicates allowed; only Kind, Key, Node, Seq, HLC and the hash are read,
// and the body of node.quarantined entries) and the rows of the views in
// Views (other rows are ignored). It reads no clock.
func Build(event string, entries []store.Stored, rows []store.ViewRow, opt Options) Report {
	threshold := opt.SkewThreshold
	if threshold <= 0 {
		threshold = DefaultSkewThreshold
	}
	rep := Report{Event: event, SkewThresholdMs: threshold.Milliseconds(), Counts: map[string]int{}, Items: []Item{}, Heads: []Head{}}

	seen := map[ledger.Ref]bool{}
	var metas []meta
	heads := map[ledger.NodeID]uint64{}
	for _, s := range entries {
		if s.Entry == nil {
			continue
		}
		ref := ledger.Ref{Node: s.Entry.Node, Seq: s.Entry.Seq, Hash: s.Hash}
		if seen[ref] {
			continue
		}
		seen[ref] = true
		metas = append(metas, meta{ref: ref, hlc: s.Entry.HLC})
		heads[ref.Node] = max(heads[ref.Node], ref.Seq)
		if s.Entry.Kind == KindNodeQuarantined {
			rep.Items = append(rep.Items, quarantineItem(s))
		}
	}
	rep.Entries = len(metas)
	for n, seq := range heads {
		rep.Heads = append(rep.Heads, Head{Node: n, Seq: seq})
	}
	sort.Slice(rep.Heads, func(i, j int) bool { return bytes.Compare(rep.Heads[i].Node[:], rep.Heads[j].Node[:]) < 0 })

	rep.Items = append(rep.Items, skewItems(metas, threshold)...)
	rep.Items = append(rep.Items, rowItems(rows)...)

	sortItems(rep.Items)
	for _, k := range Kinds {
		rep.Counts[k] = 0
	}
	for _, it := range rep.Items {
		rep.Counts[it.Kind]++
	}
	rep.Digest = rep.Hash()
	return rep
}

func sortItems(items []Item) {
	sort.SliceStable(items, func(i, j int) bool { return itemLess(items[i], items[j]) })
}

func itemLess(a, b Item) bool {
	if a.Kind != b.Kind {
		return a.Kind < b.Kind
	}
	if a.Entity != b.Entity {
		return a.Entity < b.Entity
	}
	if a.Reason != b.Reason {
		return a.Reason < b.Reason
	}
	for k := 0; k < len(a.Entries) && k < len(b.Entries); k++ {
		x, y := a.Entries[k], b.Entries[k]
		if c := bytes.Compare(x.Node[:], y.Node[:]); c != 0 {
			return c < 0
		}
		if x.Seq != y.Seq {
			return x.Seq < y.Seq
		}
		if x.Role != y.Role {
			return x.Role < y.Role
		}
	}
	if len(a.Entries) != len(b.Entries) {
		return len(a.Entries) < len(b.Entries)
	}
	return a.Detail < b.Detail
}

func refString(r ledger.Ref) string {
	return r.Node.String() + "/" + strconv.FormatUint(r.Seq, 10)
}

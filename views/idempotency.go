package views

import (
	"bytes"
	"encoding/json"
	"errors"
	"sort"

	"canopy/ledger"
	"canopy/store"
)

func isNotFound(err error) bool { return errors.Is(err, store.ErrNotFound) }

// IdempotencyView is the name of the view that maps Idempotency-Key values
// to the entries they created.
const IdempotencyView = "idempotency"

// Idempotency maintains the idempotency view. An API mutation's entry body
// carries the request's Idempotency-Key and request fingerprint as top-level
// members "idempotency_key" and "request_hash"; the row keyed by the
// Idempotency-Key names the earliest such entry by (hlc, node, seq) as the
// winner and keeps every later one as a duplicate (the same key accepted on
// two edges during a partition), so the row does not depend on the order in
// which entries arrive.
type Idempotency struct{}

// IdempotencyRecord is the value of one idempotency row.
type IdempotencyRecord struct {
	RequestHash string         `json:"request_hash"`
	Entry       ledger.Ref     `json:"entry"`
	HLC         ledger.HLC     `json:"hlc"`
	Kind        string         `json:"kind"`
	Duplicates  []IdempotentOf `json:"duplicates,omitempty"`
}

// IdempotentOf is an entry that reused an Idempotency-Key already taken by
// an earlier entry.
type IdempotentOf struct {
	RequestHash string     `json:"request_hash"`
	Entry       ledger.Ref `json:"entry"`
	HLC         ledger.HLC `json:"hlc"`
	Kind        string     `json:"kind"`
}

type idempotencyMembers struct {
	Key         string `json:"idempotency_key"`
	RequestHash string `json:"request_hash"`
}

// View implements Reducer.
func (Idempotency) View() string { return IdempotencyView }

// Rows implements Reducer.
func (Idempotency) Rows(s store.Stored) []string {
	if !mayNameKey(s.Entry.Body) {
		return nil
	}
	var m idempotencyMembers
	if json.Unmarshal(s.Entry.Body, &m) != nil || m.Key == "" {
		return nil
	}
	return []string{m.Key}
}

// keyPrefix is the part of the member name "idempotency_key" whose letters
// have no case partner outside ASCII ('k' has one: the Kelvin sign).
const keyPrefix = "idempotency_"

// mayNameKey reports whether body may have a member that json.Unmarshal
// matches to "idempotency_key", so most bodies are not parsed at all. The
// match is case-insensitive, so without escapes such a member's name holds
// keyPrefix in some ASCII case; a body with a backslash is parsed anyway.
func mayNameKey(body []byte) bool {
	if bytes.IndexByte(body, '\\') >= 0 {
		return true
	}
	for i := 0; i+len(keyPrefix) <= len(body); i++ {
		j := bytes.IndexAny(body[i:], "iI")
		if j < 0 {
			return false
		}
		i += j
		if i+len(keyPrefix) <= len(body) && bytes.EqualFold(body[i:i+len(keyPrefix)], []byte(keyPrefix)) {
			return true
		}
	}
	return false
}

// Fold implements Reducer.
func (Idempotency) Fold(cur []byte, _ string, s store.Stored) []byte {
	var m idempotencyMembers
	if json.Unmarshal(s.Entry.Body, &m) != nil {
		return cur
	}
	in := IdempotentOf{
		RequestHash: m.RequestHash,
		Entry:       ledger.Ref{Node: s.Entry.Node, Seq: s.Entry.Seq, Hash: s.Hash},
		HLC:         s.Entry.HLC,
		Kind:        s.Entry.Kind,
	}
	var rec IdempotencyRecord
	if cur == nil || json.Unmarshal(cur, &rec) != nil {
		rec = IdempotencyRecord{RequestHash: in.RequestHash, Entry: in.Entry, HLC: in.HLC, Kind: in.Kind}
		return mustJSON(rec)
	}
	all := append([]IdempotentOf{{RequestHash: rec.RequestHash, Entry: rec.Entry, HLC: rec.HLC, Kind: rec.Kind}}, rec.Duplicates...)
	for _, d := range all {
		if d.Entry == in.Entry {
			return cur // already folded
		}
	}
	all = append(all, in)
	sort.Slice(all, func(i, j int) bool { return refLess(all[i], all[j]) })
	rec = IdempotencyRecord{RequestHash: all[0].RequestHash, Entry: all[0].Entry, HLC: all[0].HLC, Kind: all[0].Kind, Duplicates: all[1:]}
	return mustJSON(rec)
}

func refLess(a, b IdempotentOf) bool {
	if c := a.HLC.Compare(b.HLC); c != 0 {
		return c < 0
	}
	if a.Entry.Node != b.Entry.Node {
		return a.Entry.Node.String() < b.Entry.Node.String()
	}
	return a.Entry.Seq < b.Entry.Seq
}

func mustJSON(v any) []byte {
	b, err := json.Marshal(v)
	if err != nil {
		// Only plain structs of strings and numbers are marshalled here.
		panic("views: marshal: " + err.Error())
	}
	return b
}

// Package revocation is the deny-list domain: the signed fact that revokes a
// ticket, a device token or a node, the order-independent reducer that keeps
// one row per revoked thing, and a device-token verifier that refuses
// revoked tokens.
package revocation

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"unicode/utf8"

	"canopy/auth"
	"canopy/ledger"
	"canopy/store"
)

// Kind records one revocation. Its key is Key(what, id).
const Kind = "revocation.recorded/v1"

// View is the name of the revocations view; the row key is RowKey(what, id)
// and the value a Row.
const View = "revocations"

// What can be revoked.
const (
	WhatTicket = "ticket" // id: the ticket id
	WhatToken  = "token"  // id: the device token's id (jti, auth.Device.TokenID)
	WhatNode   = "node"   // id: the node id (32 hex characters)
)

// Whats lists what can be revoked.
var Whats = []string{WhatTicket, WhatToken, WhatNode}

// Limits on a revocation's fields.
const (
	MaxIDLen     = 128
	MaxReasonLen = 500
)

// Key returns the entry key of a revocation: "revoked:<what>:<id>".
func Key(what, id string) string { return "revoked:" + what + ":" + id }

// RowKey returns the view row key of a revocation: "<what>:<id>".
func RowKey(what, id string) string { return what + ":" + id }

// Body is the body of a revocation.recorded entry.
type Body struct {
	What   string `json:"what"`
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
	Device string `json:"device"` // name of the device that recorded it
}

// ErrInvalid is wrapped by the errors of Validate.
var ErrInvalid = errors.New("revocation: invalid")

// FieldError names the field of a revocation that is invalid.
type FieldError struct {
	Field  string // "what", "id" or "reason"
	Detail string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Detail }

// Unwrap returns ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

// Validate checks what, id and reason, returning every problem as a
// *FieldError (joined with errors.Join when there are several).
func Validate(what, id, reason string) error {
	var errs []error
	bad := func(field, format string, args ...any) {
		errs = append(errs, &FieldError{Field: field, Detail: fmt.Sprintf(format, args...)})
	}
	switch what {
	case WhatTicket, WhatToken, WhatNode:
	case "":
		bad("what", "must be one of %s", strings.Join(Whats, ", "))
	default:
		bad("what", "must be one of %s, got %q", strings.Join(Whats, ", "), what)
	}
	switch {
	case id == "":
		bad("id", "must not be empty")
	case len(id) > MaxIDLen:
		bad("id", "must be at most %d characters, got %d", MaxIDLen, len(id))
	case !printableID(id):
		bad("id", "must be printable ASCII without spaces")
	case what == WhatNode:
		if _, err := ledger.ParseNodeID(id); err != nil {
			bad("id", "a node id is 32 lower-case hex characters, got %q", id)
		}
	}
	if !utf8.ValidString(reason) {
		bad("reason", "must be valid UTF-8")
	} else if n := utf8.RuneCountInString(reason); n > MaxReasonLen {
		bad("reason", "must be at most %d characters, got %d", MaxReasonLen, n)
	}
	return errors.Join(errs...)
}

func printableID(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c <= 0x20 || c > 0x7e {
			return false
		}
	}
	return true
}

// Row is the revocations view's row: the earliest revocation of a thing by
// (hlc, node, seq). Later revocations of the same thing change nothing.
type Row struct {
	What   string     `json:"what"`
	ID     string     `json:"id"`
	Reason string     `json:"reason,omitempty"`
	Device string     `json:"device"`
	Entry  ledger.Ref `json:"entry"`
	HLC    ledger.HLC `json:"hlc"`
}

func (r *Row) after(hlc ledger.HLC, ref ledger.Ref) bool {
	if c := r.HLC.Compare(hlc); c != 0 {
		return c > 0
	}
	if c := bytes.Compare(r.Entry.Node[:], ref.Node[:]); c != 0 {
		return c > 0
	}
	return r.Entry.Seq > ref.Seq
}

// Reducer folds revocation facts into the revocations view.
type Reducer struct{}

// View implements views.Reducer.
func (Reducer) View() string { return View }

// Rows implements views.Reducer: a revocation touches the row of the thing
// it revokes; an entry whose key and body disagree touches nothing.
func (Reducer) Rows(s store.Stored) []string {
	b, ok := parse(s)
	if !ok {
		return nil
	}
	return []string{RowKey(b.What, b.ID)}
}

// Fold implements views.Reducer: the earliest fact by (hlc, node, seq)
// wins, so the row does not depend on arrival order.
func (Reducer) Fold(cur []byte, key string, s store.Stored) []byte {
	b, ok := parse(s)
	if !ok || RowKey(b.What, b.ID) != key {
		return cur
	}
	ref := ledger.Ref{Node: s.Entry.Node, Seq: s.Entry.Seq, Hash: s.Hash}
	if cur != nil {
		var old Row
		if json.Unmarshal(cur, &old) == nil && !old.after(s.Entry.HLC, ref) {
			return cur
		}
	}
	out, err := json.Marshal(Row{What: b.What, ID: b.ID, Reason: b.Reason, Device: b.Device, Entry: ref, HLC: s.Entry.HLC})
	if err != nil {
		return cur
	}
	return out
}

// parse decodes a revocation entry, accepting it only if its key names what
// its body says and the body is valid.
func parse(s store.Stored) (Body, bool) {
	if s.Entry == nil || s.Entry.Kind != Kind {
		return Body{}, false
	}
	var b Body
	if json.Unmarshal(s.Entry.Body, &b) != nil {
		return Body{}, false
	}
	if Validate(b.What, b.ID, b.Reason) != nil || s.Entry.Key != Key(b.What, b.ID) {
		return Body{}, false
	}
	return b, true
}

// Reader reads one view row; a store.Store is one. It returns an error
// wrapping store.ErrNotFound when the row does not exist.
type Reader interface {
	View(ctx context.Context, event, view, key string) ([]byte, error)
}

// Lookup returns the revocation of (what, id), or nil if it is not
// revoked. Errors are the store's (e.g. wrapping store.ErrUnavailable).
func Lookup(ctx context.Context, r Reader, event, what, id string) (*Row, error) {
	v, err := r.View(ctx, event, View, RowKey(what, id))
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("revocation: read %s %s: %w", what, id, err)
	}
	var row Row
	if err := json.Unmarshal(v, &row); err != nil {
		return nil, fmt.Errorf("revocation: row %s: %w", RowKey(what, id), err)
	}
	return &row, nil
}

// DeviceVerifier checks a device token; api.DeviceVerifier and
// *auth.Verifier are ones.
type DeviceVerifier interface {
	VerifyDevice(token string) (*auth.Device, error)
}

// Guard is a DeviceVerifier that refuses a token revoked in the
// revocations view with an error wrapping auth.ErrRevoked. It reads the
// view on every call, so a revocation is effective as soon as its entry is
// durable, whichever node wrote it. It is safe for concurrent use.
type Guard struct {
	next  DeviceVerifier
	rows  Reader
	event string
}

// NewGuard wraps next with the revocation check against event's view.
func NewGuard(next DeviceVerifier, rows Reader, event string) *Guard {
	return &Guard{next: next, rows: rows, event: event}
}

// VerifyDevice verifies the token with the wrapped verifier, then refuses
// it if its id is revoked. A store error is returned wrapped (a failing
// store wraps store.ErrUnavailable), never as an accepted token.
func (g *Guard) VerifyDevice(token string) (*auth.Device, error) {
	d, err := g.next.VerifyDevice(token)
	if err != nil {
		return nil, err
	}
	if d.TokenID == "" {
		return d, nil
	}
	row, err := Lookup(context.Background(), g.rows, g.event, WhatToken, d.TokenID)
	if err != nil {
		return nil, err
	}
	if row != nil {
		return nil, fmt.Errorf("%w: token %s of device %q was revoked at %s by %q", auth.ErrRevoked, d.TokenID, d.Name, row.HLC.Time().Format("2006-01-02T15:04:05Z07:00"), row.Device)
	}
	return d, nil
}

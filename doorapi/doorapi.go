// Package doorapi serves the door routes of the device API: ticket scans
// (POST /v1/checkins), occupancy (GET /v1/occupancy) and revocations
// (POST and GET /v1/revocations), deciding every scan offline at the edge.
package doorapi

import (
	"canopy/keylock"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"

	"canopy/api"
	"canopy/auth"
	"canopy/checkin"
	"canopy/ledger"
	"canopy/revocation"
	"canopy/store"
)

// Limits of a check-in request.
const (
	// MaxTicketLen bounds the scanned ticket string. Real tickets are at
	// most auth.MaxTicketLen characters; anything over 1 KiB is refused as a
	// bad request (ticket-too-long) rather than recorded as a scan.
	MaxTicketLen = 1024
	// MaxDoorLen bounds a door name.
	MaxDoorLen = 32
	// maxCheckinBody caps the body of POST /v1/checkins.
	maxCheckinBody = 4 << 10
)

// Roles of the routes.
var (
	ScanRoles       = []auth.Role{auth.RoleDoor, auth.RoleOrganizer}
	OccupancyRoles  = []auth.Role{auth.RoleDoor, auth.RoleOrganizer, auth.RoleAdmin}
	RevocationRoles = []auth.Role{auth.RoleOrganizer, auth.RoleAdmin}
)

// TicketVerifier checks a ticket token offline; *auth.Verifier is one. It
// returns errors wrapping auth.ErrMalformed, ErrBadSignature,
// ErrWrongPurpose, ErrWrongEvent, ErrNotYetValid or ErrExpired.
type TicketVerifier interface {
	VerifyTicket(token string) (*auth.Ticket, error)
}

// Views reads an event's derived state; a store.Store is one. View returns
// an error wrapping store.ErrNotFound for a missing row.
type Views interface {
	View(ctx context.Context, event, view, key string) ([]byte, error)
	ViewRows(ctx context.Context, event, view string) ([]store.ViewRow, error)
}

// Config is what the door routes need.
type Config struct {
	Event   string // the event slug
	Tickets TicketVerifier
	Views   Views
	// Doors, if not empty, is the door registry: a scan at a door not
	// listed is refused with invalid-door. Empty: any well-formed name.
	Doors []string
}

// Register adds the door routes to s.
func Register(s *api.Server, c Config) {
	d := &doors{cfg: c, pending: map[*http.Request]*ticketHold{}}
	if len(c.Doors) > 0 {
		d.registry = map[string]bool{}
		for _, name := range c.Doors {
			d.registry[name] = true
		}
	}
	api.HandleMutation(s, api.MutationRoute[CheckinRequest]{
		Pattern: "POST /v1/checkins",
		Roles:   ScanRoles,
		MaxBody: maxCheckinBody,
		Lock:    d.lockScan,
		Prepare: d.prepareScan,
		Render:  renderScan,
	})
	s.Handle(api.Route{Pattern: "GET /v1/occupancy", Roles: OccupancyRoles, Handler: d.occupancy})
	api.HandleMutation(s, api.MutationRoute[RevocationRequest]{
		Pattern: "POST /v1/revocations",
		Roles:   RevocationRoles,
		MaxBody: 8 << 10,
		Prepare: d.prepareRevocation,
		Render:  renderRevocation,
	})
	s.Handle(api.Route{Pattern: "GET /v1/revocations", Roles: RevocationRoles, Handler: d.listRevocations})
}

// doors holds the routes' state.
type doors struct {
	cfg      Config
	registry map[string]bool // nil: any door

	// pending hands the per-ticket lock from Lock (which sees only the
	// request) to Prepare (which learns the ticket id): Lock files a hold
	// under the request, Prepare fills it, and Lock's unlock releases it
	// after the entry is appended.
	mu      sync.Mutex
	pending map[*http.Request]*ticketHold
	tickets keylock.Map
}

type ticketHold struct{ unlock func() }

// CheckinRequest is the body of POST /v1/checkins.
type CheckinRequest struct {
	Ticket    string `json:"ticket"`    // the scanned ticket token
	Door      string `json:"door"`      // [A-Za-z0-9_-]{1,32}
	Direction string `json:"direction"` // "in" or "out"
}

// ValidateCheckin checks a decoded request, answering the first problem
// found as a specific 422 problem: ticket-missing, ticket-too-long,
// invalid-door, invalid-direction. doors, if not nil, is the door registry.
func ValidateCheckin(req *CheckinRequest, doors map[string]bool) error {
	switch {
	case req.Ticket == "":
		return fieldProblem(api.TypeTicketMissing, "/ticket", "send the scanned ticket string")
	case len(req.Ticket) > MaxTicketLen:
		return fieldProblem(api.TypeTicketTooLong, "/ticket", "the ticket string is %d bytes; at most %d are allowed", len(req.Ticket), MaxTicketLen)
	}
	if !ValidDoor(req.Door) {
		if req.Door == "" {
			return fieldProblem(api.TypeInvalidDoor, "/door", "send the door's name")
		}
		return fieldProblem(api.TypeInvalidDoor, "/door", "a door name is 1 to %d letters, digits, '_' or '-', got %q", MaxDoorLen, req.Door)
	}
	if doors != nil && !doors[req.Door] {
		return fieldProblem(api.TypeInvalidDoor, "/door", "the door %q is not one of this event's doors", req.Door)
	}
	if req.Direction != checkin.In && req.Direction != checkin.Out {
		return fieldProblem(api.TypeInvalidDirection, "/direction", "must be %q or %q, got %q", checkin.In, checkin.Out, req.Direction)
	}
	return nil
}

func fieldProblem(typ, pointer, format string, args ...any) *api.Problem {
	p := api.NewProblem(typ, format, args...)
	p.Detail = pointer + ": " + p.Detail
	p.Errors = []api.FieldError{{Pointer: pointer, Detail: fmt.Sprintf(format, args...)}}
	return p
}

// ValidDoor reports whether name matches [A-Za-z0-9_-]{1,32}.
func ValidDoor(name string) bool {
	if name == "" || len(name) > MaxDoorLen {
		return false
	}
	for i := 0; i < len(name); i++ {
		c := name[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-') {
			return false
		}
	}
	return true
}

// UnverifiedID is the ticket id recorded for a scan whose ticket did not
// verify: "?" and the first 16 hex digits of the token's SHA-256.
func UnverifiedID(token string) string {
	sum := sha256.Sum256([]byte(token))
	return "?" + hex.EncodeToString(sum[:])[:16]
}

// rejectReason maps a ticket verification error to its scan reason.
func rejectReason(err error) string {
	switch {
	case errors.Is(err, auth.ErrExpired):
		return checkin.ReasonExpired
	case errors.Is(err, auth.ErrNotYetValid):
		return checkin.ReasonNotYetValid
	case errors.Is(err, auth.ErrWrongEvent):
		return checkin.ReasonWrongEvent
	case errors.Is(err, auth.ErrBadSignature):
		return checkin.ReasonInvalidSignature
	}
	return checkin.ReasonMalformed // ErrMalformed, ErrWrongPurpose (not a ticket), anything else
}

func (d *doors) lockScan(r *http.Request) (func(), error) {
	h := &ticketHold{}
	d.mu.Lock()
	d.pending[r] = h
	d.mu.Unlock()
	return func() {
		d.mu.Lock()
		delete(d.pending, r)
		d.mu.Unlock()
		if h.unlock != nil {
			h.unlock()
		}
	}, nil
}

// holdTicket takes the ticket's lock for the rest of the request.
func (d *doors) holdTicket(r *http.Request, id string) error {
	d.mu.Lock()
	h := d.pending[r]
	d.mu.Unlock()
	if h == nil {
		return fmt.Errorf("doorapi: no lock slot for the scan request")
	}
	unlock, err := d.tickets.Lock(r.Context(), id)
	if err != nil {
		return err
	}
	h.unlock = unlock
	return nil
}

// prepareScan verifies the ticket and decides the scan. Every scan of a
// well-formed request is recorded, accepted or not.
func (d *doors) prepareScan(r *http.Request, req *CheckinRequest) (api.Mutation, error) {
	if err := ValidateCheckin(req, d.registry); err != nil {
		return api.Mutation{}, err
	}
	dev := api.DeviceFrom(r.Context())
	scan := checkin.Scan{Door: req.Door, Direction: req.Direction, Device: dev.Name}
	t, err := d.cfg.Tickets.VerifyTicket(req.Ticket)
	if err != nil {
		scan.Ticket = UnverifiedID(req.Ticket)
		scan.Reason = rejectReason(err)
		return api.Mutation{Kind: checkin.KindScanned, Key: checkin.TicketKey(scan.Ticket), Body: scan}, nil
	}
	scan.Ticket, scan.Type, scan.Reentry = t.ID, t.Type, t.Reentry
	mu := api.Mutation{Kind: checkin.KindScanned, Key: checkin.TicketKey(t.ID), Body: &scan}
	if err := d.holdTicket(r, t.ID); err != nil {
		return api.Mutation{}, err
	}
	ctx := r.Context()
	rev, err := revocation.Lookup(ctx, d.cfg.Views, d.cfg.Event, revocation.WhatTicket, t.ID)
	if err != nil {
		return api.Mutation{}, err
	}
	switch {
	case rev != nil:
		scan.Reason = checkin.ReasonRevoked
	case len(t.Doors) > 0 && !contains(t.Doors, req.Door):
		scan.Reason = checkin.ReasonWrongDoor
	}
	if scan.Reason != "" {
		return mu, nil
	}
	row, err := d.ticketRow(ctx, t.ID)
	if err != nil {
		return api.Mutation{}, err
	}
	scan.Accepted, scan.Reason = checkin.Decide(row, req.Direction, t.Reentry)
	return mu, nil
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ticketRow reads a ticket's row, nil if it was never scanned.
func (d *doors) ticketRow(ctx context.Context, id string) (*checkin.Ticket, error) {
	v, err := d.cfg.Views.View(ctx, d.cfg.Event, checkin.View, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("doorapi: read ticket %s: %w", id, err)
	}
	var t checkin.Ticket
	if err := json.Unmarshal(v, &t); err != nil {
		return nil, fmt.Errorf("doorapi: ticket row %s: %w", id, err)
	}
	return &t, nil
}

// TicketInfo describes the scanned ticket in a scan's answer.
type TicketInfo struct {
	ID      string `json:"id"`
	Type    string `json:"type"`
	Reentry bool   `json:"reentry"`
}

// CheckinResponse is the answer to a scan (besides "entry"). Ticket is nil
// when the ticket did not verify.
type CheckinResponse struct {
	Accepted  bool        `json:"accepted"`
	Reason    string      `json:"reason,omitempty"`
	Ticket    *TicketInfo `json:"ticket,omitempty"`
	Door      string      `json:"door"`
	Direction string      `json:"direction"`
}

func renderScan(e *ledger.Entry) (int, any, error) {
	var s checkin.Scan
	if err := json.Unmarshal(e.Body, &s); err != nil {
		return 0, nil, fmt.Errorf("scan entry %d: %w", e.Seq, err)
	}
	resp := CheckinResponse{Accepted: s.Accepted, Reason: s.Reason, Door: s.Door, Direction: s.Direction}
	if s.Type != "" {
		resp.Ticket = &TicketInfo{ID: s.Ticket, Type: s.Type, Reentry: s.Reentry}
	}
	return http.StatusOK, resp, nil
}

func (d *doors) occupancy(w http.ResponseWriter, r *http.Request) error {
	rows, err := d.cfg.Views.ViewRows(r.Context(), d.cfg.Event, checkin.View)
	if err != nil {
		return fmt.Errorf("doorapi: read tickets: %w", err)
	}
	ts := make([]checkin.Ticket, 0, len(rows))
	for _, row := range rows {
		var t checkin.Ticket
		if err := json.Unmarshal(row.Value, &t); err != nil {
			return fmt.Errorf("doorapi: ticket row %s: %w", row.Key, err)
		}
		ts = append(ts, t)
	}
	return api.WriteJSON(w, http.StatusOK, checkin.Count(ts))
}

// RevocationRequest is the body of POST /v1/revocations.
type RevocationRequest struct {
	What   string `json:"what"` // ticket, token or node
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

func (d *doors) prepareRevocation(r *http.Request, req *RevocationRequest) (api.Mutation, error) {
	if err := revocation.Validate(req.What, req.ID, req.Reason); err != nil {
		var v api.Validation
		for _, e := range unjoin(err) {
			var fe *revocation.FieldError
			if errors.As(e, &fe) {
				v.Field("/"+fe.Field, "%s", fe.Detail)
			}
		}
		if verr := v.Err(); verr != nil {
			return api.Mutation{}, verr
		}
		return api.Mutation{}, err
	}
	dev := api.DeviceFrom(r.Context())
	return api.Mutation{
		Kind: revocation.Kind,
		Key:  revocation.Key(req.What, req.ID),
		Body: revocation.Body{What: req.What, ID: req.ID, Reason: req.Reason, Device: dev.Name},
	}, nil
}

func unjoin(err error) []error {
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		return j.Unwrap()
	}
	return []error{err}
}

// RevocationResponse is the answer to a revocation (besides "entry").
type RevocationResponse struct {
	What   string `json:"what"`
	ID     string `json:"id"`
	Reason string `json:"reason,omitempty"`
	Device string `json:"device"`
}

func renderRevocation(e *ledger.Entry) (int, any, error) {
	var b revocation.Body
	if err := json.Unmarshal(e.Body, &b); err != nil {
		return 0, nil, fmt.Errorf("revocation entry %d: %w", e.Seq, err)
	}
	return http.StatusCreated, RevocationResponse(b), nil
}

// RevocationList is the answer of GET /v1/revocations.
type RevocationList struct {
	Revocations []revocation.Row `json:"revocations"`
}

func (d *doors) listRevocations(w http.ResponseWriter, r *http.Request) error {
	rows, err := d.cfg.Views.ViewRows(r.Context(), d.cfg.Event, revocation.View)
	if err != nil {
		return fmt.Errorf("doorapi: read revocations: %w", err)
	}
	out := RevocationList{Revocations: make([]revocation.Row, 0, len(rows))}
	for _, row := range rows {
		var rv revocation.Row
		if err := json.Unmarshal(row.Value, &rv); err != nil {
			return fmt.Errorf("doorapi: revocation row %s: %w", row.Key, err)
		}
		out.Revocations = append(out.Revocations, rv)
	}
	return api.WriteJSON(w, http.StatusOK, out)
}

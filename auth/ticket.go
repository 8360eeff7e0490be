package auth

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"
)

// MaxTicketLen is the longest ticket token IssueTicket produces, in
// characters, so that every ticket fits an ordinary QR code.
const MaxTicketLen = 280

// ErrTicketTooLong is returned by IssueTicket when a ticket's token would
// exceed MaxTicketLen.
var ErrTicketTooLong = errors.New("auth: ticket token too long for a QR code")

// Ticket is the content of a ticket token.
type Ticket struct {
	ID         string    // unique ticket id, the handle for check-in and revocation
	Event      string    // event slug the ticket is for
	Type       string    // ticket type, e.g. "general", "vip"
	Doors      []string  // doors it may enter by; empty means every door
	Reentry    bool      // whether it may re-enter after scanning out
	ValidFrom  time.Time // first moment it is valid (whole seconds)
	ValidUntil time.Time // last moment it is valid (whole seconds)
}

// NewTicketID returns a random ticket id (64 bits, 13 characters).
func NewTicketID() string { return newID(8) }

// ticketClaims is the ticket payload: one-letter names (in sorted order, so
// the signed bytes are canonical) and unix-second times keep the token short
// enough for a QR code. The purpose claim "p" is "t".
type ticketClaims struct {
	Doors   string `json:"d,omitempty"` // comma-separated door names
	Event   string `json:"e"`
	ID      string `json:"i"`
	Type    string `json:"k"`
	NBF     int64  `json:"n"`
	Purpose string `json:"p"`
	Reentry int    `json:"r,omitempty"` // 1 if re-entry is allowed
	Exp     int64  `json:"x"`
}

// IssueTicket signs t with the event key. ID, Event, Type, ValidFrom and
// ValidUntil are required; times are truncated to whole seconds. A ticket
// whose token would be longer than MaxTicketLen is refused with
// ErrTicketTooLong: shorten the slug, type or door names, or list fewer
// doors. The slug is part of every ticket: with a 12-character slug a ticket
// has room for a type, re-entry and about four 7-character door names; a
// slug longer than 58 characters leaves no room for even a minimal ticket.
func IssueTicket(eventKey ed25519.PrivateKey, t Ticket) (string, error) {
	if err := validateID("ticket id", t.ID); err != nil {
		return "", err
	}
	if err := ValidateSlug(t.Event); err != nil {
		return "", err
	}
	if err := validateID("ticket type", t.Type); err != nil {
		return "", err
	}
	for _, d := range t.Doors {
		if err := validateID("door", d); err != nil {
			return "", err
		}
	}
	if err := checkWindow(t.ValidFrom, t.ValidUntil); err != nil {
		return "", err
	}
	c := ticketClaims{
		Doors:   strings.Join(t.Doors, ","),
		Event:   t.Event,
		ID:      t.ID,
		Type:    t.Type,
		NBF:     t.ValidFrom.Unix(),
		Purpose: purposeTicket,
		Exp:     t.ValidUntil.Unix(),
	}
	if c.Exp <= c.NBF {
		return "", fmt.Errorf("%w: validity window shorter than a second", ErrInvalidArguments)
	}
	if t.Reentry {
		c.Reentry = 1
	}
	tok, err := signClaims(eventKey, c)
	if err != nil {
		return "", err
	}
	if len(tok) > MaxTicketLen {
		return "", fmt.Errorf("%w: ticket %s would be %d characters, limit %d (shorten the event slug, ticket type or door names, or list fewer doors)",
			ErrTicketTooLong, t.ID, len(tok), MaxTicketLen)
	}
	return tok, nil
}

// VerifyTicket checks a ticket token: signature by the event key, purpose,
// event, and validity at the clock's now. Errors wrap ErrMalformed,
// ErrBadSignature, ErrWrongPurpose, ErrWrongEvent, ErrNotYetValid or
// ErrExpired. Times in the result are in the event's time zone.
func (v *Verifier) VerifyTicket(token string) (*Ticket, error) {
	t, ok := v.tickets.get(token)
	if !ok {
		parsed, err := v.parseTicket(token)
		if err != nil {
			return nil, err
		}
		t = *parsed
		v.tickets.put(token, t)
	}
	if err := checkTime(v.clock.Now(), t.ValidFrom, t.ValidUntil); err != nil {
		return nil, err
	}
	t.Doors = slices.Clone(t.Doors) // callers may not change the cached one
	return &t, nil
}

func (v *Verifier) parseTicket(token string) (*Ticket, error) {
	if len(token) > 4*MaxTicketLen {
		return nil, fmt.Errorf("%w: %d characters is far too long for a ticket", ErrMalformed, len(token))
	}
	pub, err := v.verifyKey()
	if err != nil {
		return nil, err
	}
	var c ticketClaims
	if err := openClaims(pub, token, &c); err != nil {
		return nil, err
	}
	if c.Purpose != purposeTicket {
		return nil, fmt.Errorf("%w: purpose %q, want ticket %q", ErrWrongPurpose, c.Purpose, purposeTicket)
	}
	if c.Event != v.ev.Slug {
		return nil, fmt.Errorf("%w: ticket for %q, this is %q", ErrWrongEvent, c.Event, v.ev.Slug)
	}
	if c.ID == "" || c.Type == "" {
		return nil, fmt.Errorf("%w: ticket has no id or type", ErrMalformed)
	}
	var doors []string
	if c.Doors != "" {
		doors = strings.Split(c.Doors, ",")
		if slices.Contains(doors, "") {
			return nil, fmt.Errorf("%w: ticket door list %q has an empty name", ErrMalformed, c.Doors)
		}
	}
	if c.Reentry != 0 && c.Reentry != 1 {
		return nil, fmt.Errorf("%w: ticket re-entry flag %d", ErrMalformed, c.Reentry)
	}
	return &Ticket{
		ID:         c.ID,
		Event:      c.Event,
		Type:       c.Type,
		Doors:      doors,
		Reentry:    c.Reentry == 1,
		ValidFrom:  time.Unix(c.NBF, 0).In(v.loc),
		ValidUntil: time.Unix(c.Exp, 0).In(v.loc),
	}, nil
}

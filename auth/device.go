// Package auth holds the organizer's event keys and everything they sign:
// the public event description, node enrolments, device tokens and tickets
// (PASETO v4.public), all verifiable offline with the event's public key.
package auth

import (
	"errors"
	"time"
)

// Role is what a device token allows.
type Role string

// The roles a device token can carry.
const (
	RolePOS        Role = "pos"
	RoleDoor       Role = "door"
	RoleAuctioneer Role = "auctioneer"
	RoleBidder     Role = "bidder"
	RoleOrganizer  Role = "organizer"
	RoleAdmin      Role = "admin"
)

// Roles lists every valid role.
var Roles = []Role{RolePOS, RoleDoor, RoleAuctioneer, RoleBidder, RoleOrganizer, RoleAdmin}

// Device is the verified content of a device token.
type Device struct {
	TokenID string // unique id of the token (jti), the handle for revocation
	Event   string // event slug the token is bound to
	Role    Role   // what the device may do
	Name    string // the device's name, e.g. "till-3"
	Vendor  string // vendor id the device is bound to; empty if none
	// Permissions are extra rights beyond the role (see Permissions), sorted.
	Permissions []string
	IssuedAt    time.Time // iat
	NotBefore   time.Time // nbf
	Expires     time.Time // exp
}

// PermPriceOverride lets a device set a manual unit price on an order line.
const PermPriceOverride = "price_override"

// Permissions lists every permission a device token can carry.
var Permissions = []string{PermPriceOverride}

// Can reports whether the device carries permission p.
func (d *Device) Can(p string) bool {
	for _, x := range d.Permissions {
		if x == p {
			return true
		}
	}
	return false
}

// Errors returned when a token or ticket is refused. Each maps to its own
// problem type on the API. Callers test them with errors.Is.
var (
	ErrMalformed    = errors.New("auth: malformed token")
	ErrBadSignature = errors.New("auth: token signature does not verify (forged or for another key)")
	ErrExpired      = errors.New("auth: token expired")
	ErrNotYetValid  = errors.New("auth: token not yet valid")
	ErrWrongEvent   = errors.New("auth: token is for another event")
	ErrWrongPurpose = errors.New("auth: token is not of the expected kind")
	ErrUnknownRole  = errors.New("auth: unknown role")
	// ErrRevoked: the token was revoked by a signed revocation fact (it is
	// returned by verifiers that consult the revocations, not by Verifier).
	ErrRevoked = errors.New("auth: token revoked")
)

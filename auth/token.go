package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base32"
	"fmt"
	"regexp"
	"slices"
	"sync"
	"time"

	"canopy/ledger"
)

// idEncoding spells random identifiers: lower-case base32, no padding.
var idEncoding = base32.NewEncoding("abcdefghijklmnopqrstuvwxyz234567").WithPadding(base32.NoPadding)

// newID returns a random identifier of n bytes of entropy.
func newID(n int) string {
	b := make([]byte, n)
	rand.Read(b) // never fails (crypto/rand panics on the impossible)
	return idEncoding.EncodeToString(b)
}

// NewTokenID returns a random device token id (128 bits, 26 characters).
func NewTokenID() string { return newID(16) }

// idRE is what token ids, ticket ids, ticket types, vendor ids and door
// names may be; door names in particular never hold a comma.
var idRE = regexp.MustCompile(`^[A-Za-z0-9_.-]{1,64}$`)

func validateID(what, s string) error {
	if !idRE.MatchString(s) {
		return fmt.Errorf("%w: %s %q must be 1 to 64 characters of A-Z, a-z, 0-9, '_', '.' and '-'", ErrInvalidArguments, what, s)
	}
	return nil
}

// ValidRole reports whether r is one of Roles.
func ValidRole(r Role) bool { return slices.Contains(Roles, r) }

// deviceClaims is the device token payload. JSON names are in sorted order
// so the signed bytes are canonical; times are RFC 3339 as PASETO registers.
type deviceClaims struct {
	Device    string `json:"device"`
	Event     string `json:"event"`
	Expires   string `json:"exp"`
	IssuedAt  string `json:"iat"`
	TokenID   string `json:"jti"`
	NotBefore string `json:"nbf"`
	// Permissions: sorted, no duplicates, omitted when empty.
	Permissions []string `json:"permissions,omitempty"`
	Purpose     string   `json:"purpose"`
	Role        Role     `json:"role"`
	Vendor      string   `json:"vendor,omitempty"`
}

// normPermissions checks every permission is known and returns them sorted
// without duplicates (nil for none).
func normPermissions(ps []string) ([]string, error) {
	var out []string
	for _, p := range ps {
		if !slices.Contains(Permissions, p) {
			return nil, fmt.Errorf("%w: unknown permission %q (want one of %v)", ErrInvalidArguments, p, Permissions)
		}
		out = append(out, p)
	}
	slices.Sort(out)
	return slices.Compact(out), nil
}

// IssueDevice signs a device token for d with the event key. d.Event, Role,
// Name, NotBefore and Expires are required; IssuedAt defaults to NotBefore
// and TokenID to a fresh NewTokenID.
func IssueDevice(eventKey ed25519.PrivateKey, d Device) (string, error) {
	if err := ValidateSlug(d.Event); err != nil {
		return "", err
	}
	if !ValidRole(d.Role) {
		return "", fmt.Errorf("%w: %q (want one of %v)", ErrUnknownRole, d.Role, Roles)
	}
	if err := validateText("device name", d.Name, 64); err != nil {
		return "", fmt.Errorf("%w: %v", ErrInvalidArguments, err)
	}
	if d.Vendor != "" {
		if err := validateID("vendor", d.Vendor); err != nil {
			return "", err
		}
	}
	perms, err := normPermissions(d.Permissions)
	if err != nil {
		return "", err
	}
	if d.TokenID == "" {
		d.TokenID = NewTokenID()
	} else if err := validateID("token id", d.TokenID); err != nil {
		return "", err
	}
	if err := checkWindow(d.NotBefore, d.Expires); err != nil {
		return "", err
	}
	if d.IssuedAt.IsZero() {
		d.IssuedAt = d.NotBefore
	}
	return signClaims(eventKey, deviceClaims{
		Device:      d.Name,
		Event:       d.Event,
		Expires:     d.Expires.UTC().Format(time.RFC3339),
		IssuedAt:    d.IssuedAt.UTC().Format(time.RFC3339),
		TokenID:     d.TokenID,
		NotBefore:   d.NotBefore.UTC().Format(time.RFC3339),
		Permissions: perms,
		Purpose:     purposeDevice,
		Role:        d.Role,
		Vendor:      d.Vendor,
	})
}

// cacheSize bounds how many verified tokens of each kind a Verifier keeps.
const cacheSize = 4096

// Verifier checks device tokens and tickets of one event offline, with the
// event's public key and an injected clock. Tokens whose signature and
// claims have been checked once are cached (a bounded number of them), but
// their validity window is checked against the clock on every call. A
// Verifier is safe for concurrent use.
type Verifier struct {
	ev      Event
	pub     ed25519.PublicKey
	loc     *time.Location
	clock   ledger.Clock
	devices *boundedCache[Device]
	tickets *boundedCache[Ticket]
}

// NewVerifier returns a verifier for ev reading time from clock (the system
// clock if nil). ev must be valid, as LoadEvent and InitEvent return it;
// with no usable public key every token is refused as ErrBadSignature.
func NewVerifier(ev *Event, clock ledger.Clock) *Verifier {
	if clock == nil {
		clock = ledger.SystemClock{}
	}
	return &Verifier{
		ev:      *ev,
		pub:     ev.PublicKey(),
		loc:     ev.Location(),
		clock:   clock,
		devices: newBoundedCache[Device](cacheSize),
		tickets: newBoundedCache[Ticket](cacheSize),
	}
}

// verifyKey returns the event public key or an error if there is none.
func (v *Verifier) verifyKey() (ed25519.PublicKey, error) {
	if v.pub == nil {
		return nil, fmt.Errorf("%w: event %q has no valid public key", ErrBadSignature, v.ev.Slug)
	}
	return v.pub, nil
}

// VerifyDevice checks a device token: signature by the event key, purpose,
// event, role, and validity at the clock's now. Errors wrap ErrMalformed,
// ErrBadSignature, ErrWrongPurpose, ErrWrongEvent, ErrUnknownRole,
// ErrNotYetValid or ErrExpired.
func (v *Verifier) VerifyDevice(token string) (*Device, error) {
	d, ok := v.devices.get(token)
	if !ok {
		parsed, err := v.parseDevice(token)
		if err != nil {
			return nil, err
		}
		d = *parsed
		v.devices.put(token, d)
	}
	if err := checkTime(v.clock.Now(), d.NotBefore, d.Expires); err != nil {
		return nil, err
	}
	return &d, nil
}

func (v *Verifier) parseDevice(token string) (*Device, error) {
	pub, err := v.verifyKey()
	if err != nil {
		return nil, err
	}
	var c deviceClaims
	if err := openClaims(pub, token, &c); err != nil {
		return nil, err
	}
	if c.Purpose != purposeDevice {
		return nil, fmt.Errorf("%w: purpose %q, want %q", ErrWrongPurpose, c.Purpose, purposeDevice)
	}
	if c.Event != v.ev.Slug {
		return nil, fmt.Errorf("%w: token for %q, this is %q", ErrWrongEvent, c.Event, v.ev.Slug)
	}
	if !ValidRole(c.Role) {
		return nil, fmt.Errorf("%w: %q", ErrUnknownRole, c.Role)
	}
	if c.TokenID == "" || c.Device == "" {
		return nil, fmt.Errorf("%w: token has no jti or device name", ErrMalformed)
	}
	perms, err := normPermissions(c.Permissions)
	if err != nil || !slices.Equal(perms, c.Permissions) {
		return nil, fmt.Errorf("%w: permissions %q are unknown, unsorted or repeated", ErrMalformed, c.Permissions)
	}
	d := &Device{TokenID: c.TokenID, Event: c.Event, Role: c.Role, Name: c.Device, Vendor: c.Vendor, Permissions: perms}
	if d.IssuedAt, err = parseClaimTime("iat", c.IssuedAt); err != nil {
		return nil, err
	}
	if d.NotBefore, err = parseClaimTime("nbf", c.NotBefore); err != nil {
		return nil, err
	}
	if d.Expires, err = parseClaimTime("exp", c.Expires); err != nil {
		return nil, err
	}
	return d, nil
}

// boundedCache maps token strings to verified claims, forgetting the oldest
// entry once it holds max. It is safe for concurrent use.
type boundedCache[V any] struct {
	mu    sync.Mutex
	max   int
	m     map[string]V
	order []string // insertion order, used as a ring once full
	next  int      // index in order of the oldest entry once full
}

func newBoundedCache[V any](max int) *boundedCache[V] {
	return &boundedCache[V]{max: max, m: make(map[string]V, max)}
}

func (c *boundedCache[V]) get(k string) (V, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	v, ok := c.m[k]
	return v, ok
}

func (c *boundedCache[V]) put(k string, v V) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[k]; ok {
		c.m[k] = v
		return
	}
	if len(c.order) < c.max {
		c.order = append(c.order, k)
	} else {
		delete(c.m, c.order[c.next])
		c.order[c.next] = k
		c.next = (c.next + 1) % c.max
	}
	c.m[k] = v
}

func (c *boundedCache[V]) len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.m)
}

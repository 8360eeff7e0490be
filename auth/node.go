package auth

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"canopy/ledger"
)

// Node roles an enrolment can carry.
const (
	NodeEdge = "edge"
	NodeHub  = "hub"
)

// Names of the files in a node directory.
const (
	NodeKeyFile       = "node.key"        // the node's Ed25519 key (PKCS#8 PEM), 0600
	EnrolmentFileName = "enrolment.token" // its enrolment token, 0644
)

// Token purposes, the "purpose" claim that keeps one kind of token from
// being accepted as another.
const (
	purposeEnrolment = "enrolment"
	purposeDevice    = "device"
	purposeTicket    = "t" // tickets use one-letter claims to fit a QR code
)

// Enrolment is the verified content of a node enrolment token: the event
// key's statement that the node with this public key belongs to the event.
type Enrolment struct {
	Event, Name, Role string
	Node              ledger.NodeID
	PublicKey         ed25519.PublicKey
	NotBefore         time.Time
	Expires           time.Time
}

// enrolmentClaims is the token payload. JSON names are in sorted order so
// the signed bytes are canonical; times are RFC 3339 as PASETO registers.
type enrolmentClaims struct {
	Event     string `json:"event"`
	Expires   string `json:"exp"`
	IssuedAt  string `json:"iat"`
	Name      string `json:"name"`
	NotBefore string `json:"nbf"`
	Node      string `json:"node"`
	NodeKey   string `json:"node_key"` // PASERK k4.public
	Purpose   string `json:"purpose"`
	Role      string `json:"role"`
}

// EnrollNode generates a node key and signs its enrolment into ev with the
// event key, valid from validFrom until validUntil.
func EnrollNode(eventKey ed25519.PrivateKey, ev *Event, name, role string, validFrom, validUntil time.Time) (nodeKey ed25519.PrivateKey, enrolment string, err error) {
	if ev == nil {
		return nil, "", fmt.Errorf("%w: no event", ErrInvalidArguments)
	}
	if err := ValidateSlug(ev.Slug); err != nil {
		return nil, "", err
	}
	if len(eventKey) != ed25519.PrivateKeySize {
		return nil, "", fmt.Errorf("%w: event key is %d bytes, want %d", ErrInvalidArguments, len(eventKey), ed25519.PrivateKeySize)
	}
	if pub := ev.PublicKey(); pub != nil && !pub.Equal(eventKey.Public()) {
		return nil, "", fmt.Errorf("%w: the signing key is not event %s's key", ErrKeyMismatch, ev.Slug)
	}
	if err := validateText("node name", name, 64); err != nil {
		return nil, "", fmt.Errorf("%w: %v", ErrInvalidArguments, err)
	}
	if role != NodeEdge && role != NodeHub {
		return nil, "", fmt.Errorf("%w: node role %q (want %q or %q)", ErrUnknownRole, role, NodeEdge, NodeHub)
	}
	if err := checkWindow(validFrom, validUntil); err != nil {
		return nil, "", err
	}
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, "", fmt.Errorf("generate node key: %w", err)
	}
	c := enrolmentClaims{
		Event:     ev.Slug,
		Expires:   validUntil.UTC().Format(time.RFC3339),
		IssuedAt:  validFrom.UTC().Format(time.RFC3339),
		Name:      name,
		NotBefore: validFrom.UTC().Format(time.RFC3339),
		Node:      ledger.NodeIDOf(pub).String(),
		NodeKey:   FormatPublicKey(pub),
		Purpose:   purposeEnrolment,
		Role:      role,
	}
	tok, err := signClaims(eventKey, c)
	if err != nil {
		return nil, "", err
	}
	return priv, tok, nil
}

// checkWindow validates a validity window given by an issuer.
func checkWindow(from, until time.Time) error {
	if from.IsZero() || until.IsZero() {
		return fmt.Errorf("%w: validity window needs both a start and an end", ErrInvalidArguments)
	}
	if !until.After(from) {
		return fmt.Errorf("%w: valid until %s is not after valid from %s", ErrInvalidArguments,
			until.Format(time.RFC3339), from.Format(time.RFC3339))
	}
	return nil
}

// checkTime compares now against a token's validity window. A token is valid
// at nbf and at exp, invalid before nbf and after exp.
func checkTime(now, nbf, exp time.Time) error {
	if now.Before(nbf) {
		return fmt.Errorf("%w: valid from %s, now %s", ErrNotYetValid, nbf.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	if now.After(exp) {
		return fmt.Errorf("%w: expired at %s, now %s", ErrExpired, exp.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	return nil
}

// parseClaimTime parses an RFC 3339 time claim.
func parseClaimTime(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("%w: claim %s: %v", ErrMalformed, name, err)
	}
	return t, nil
}

// VerifyEnrolment checks an enrolment token against the event's public key
// and now, and returns what it states.
func VerifyEnrolment(ev *Event, token string, now time.Time) (*Enrolment, error) {
	if ev == nil || ev.PublicKey() == nil {
		return nil, fmt.Errorf("%w: event has no valid public key", ErrInvalidArguments)
	}
	var c enrolmentClaims
	if err := openClaims(ev.PublicKey(), token, &c); err != nil {
		return nil, err
	}
	if c.Purpose != purposeEnrolment {
		return nil, fmt.Errorf("%w: purpose %q, want %q", ErrWrongPurpose, c.Purpose, purposeEnrolment)
	}
	if c.Event != ev.Slug {
		return nil, fmt.Errorf("%w: enrolment for %q, this is %q", ErrWrongEvent, c.Event, ev.Slug)
	}
	if c.Role != NodeEdge && c.Role != NodeHub {
		return nil, fmt.Errorf("%w: node role %q", ErrUnknownRole, c.Role)
	}
	pub, err := ParsePublicKey(c.NodeKey)
	if err != nil {
		return nil, fmt.Errorf("%w: node_key: %v", ErrMalformed, err)
	}
	id, err := ledger.ParseNodeID(c.Node)
	if err != nil {
		return nil, fmt.Errorf("%w: node: %v", ErrMalformed, err)
	}
	if id != ledger.NodeIDOf(pub) {
		return nil, fmt.Errorf("%w: node id %s does not match node_key (id %s)", ErrMalformed, id, ledger.NodeIDOf(pub))
	}
	nbf, err := parseClaimTime("nbf", c.NotBefore)
	if err != nil {
		return nil, err
	}
	exp, err := parseClaimTime("exp", c.Expires)
	if err != nil {
		return nil, err
	}
	if err := checkTime(now, nbf, exp); err != nil {
		return nil, err
	}
	return &Enrolment{Event: c.Event, Name: c.Name, Role: c.Role, Node: id, PublicKey: pub, NotBefore: nbf, Expires: exp}, nil
}

// WriteNode stores a node's key (node.key, 0600) and enrolment token
// (enrolment.token, 0644) in dir, creating it if needed. It refuses to
// overwrite an existing node key.
func WriteNode(dir string, key ed25519.PrivateKey, enrolment string) error {
	if dir == "" {
		return fmt.Errorf("%w: node directory is empty", ErrInvalidArguments)
	}
	if len(key) != ed25519.PrivateKeySize {
		return fmt.Errorf("%w: node key is %d bytes, want %d", ErrInvalidArguments, len(key), ed25519.PrivateKeySize)
	}
	if enrolment == "" || strings.ContainsAny(enrolment, " \t\r\n") {
		return fmt.Errorf("%w: enrolment token is empty or contains whitespace", ErrInvalidArguments)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("create node directory: %w", err)
	}
	for _, name := range []string{NodeKeyFile, EnrolmentFileName} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return fmt.Errorf("%w: %s exists; refusing to overwrite a node", ErrNodeExists, filepath.Join(dir, name))
		} else if !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("check node directory: %w", err)
		}
	}
	pemKey, err := encodeKey(key)
	if err != nil {
		return err
	}
	keyPath := filepath.Join(dir, NodeKeyFile)
	if err := writeNewFile(keyPath, pemKey, 0o600); err != nil {
		return err
	}
	if err := writeNewFile(filepath.Join(dir, EnrolmentFileName), []byte(enrolment+"\n"), 0o644); err != nil {
		os.Remove(keyPath)
		return err
	}
	return nil
}

// LoadNode reads a node's key and enrolment token from dir. The token is
// returned as stored; verify it with VerifyEnrolment.
func LoadNode(dir string) (ed25519.PrivateKey, string, error) {
	key, err := readKey(filepath.Join(dir, NodeKeyFile))
	if err != nil {
		return nil, "", err
	}
	data, err := os.ReadFile(filepath.Join(dir, EnrolmentFileName))
	if err != nil {
		return nil, "", fmt.Errorf("read enrolment: %w", err)
	}
	tok := strings.TrimSpace(string(data))
	if tok == "" {
		return nil, "", fmt.Errorf("%w: %s is empty", ErrMalformed, filepath.Join(dir, EnrolmentFileName))
	}
	// Catch a key and token from different nodes now, not at first sync.
	// This reads the claims unverified; VerifyEnrolment is the real check.
	nodeKey, err := enrolledKeyUnverified(tok)
	if err != nil {
		return nil, "", fmt.Errorf("%s: %w", filepath.Join(dir, EnrolmentFileName), err)
	}
	if !nodeKey.Equal(key.Public()) {
		return nil, "", fmt.Errorf("%w: %s enrols another node than %s", ErrKeyMismatch,
			filepath.Join(dir, EnrolmentFileName), filepath.Join(dir, NodeKeyFile))
	}
	return key, tok, nil
}

// enrolledKeyUnverified returns the node key an enrolment token names,
// without checking its signature.
func enrolledKeyUnverified(tok string) (ed25519.PublicKey, error) {
	body, ok := strings.CutPrefix(tok, v4PublicHeader)
	if !ok {
		return nil, fmt.Errorf("%w: not a PASETO v4.public token", ErrMalformed)
	}
	body, _, _ = strings.Cut(body, ".")
	raw, err := b64.DecodeString(body)
	if err != nil || len(raw) < ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: token payload unreadable", ErrMalformed)
	}
	var c enrolmentClaims
	if err := json.Unmarshal(raw[:len(raw)-ed25519.SignatureSize], &c); err != nil || c.Purpose != purposeEnrolment {
		return nil, fmt.Errorf("%w: not an enrolment token", ErrMalformed)
	}
	pub, err := ParsePublicKey(c.NodeKey)
	if err != nil {
		return nil, fmt.Errorf("%w: node_key: %v", ErrMalformed, err)
	}
	return pub, nil
}

package auth

import (
	"bytes"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"time"
	_ "time/tzdata" // IANA zones on appliances without a zoneinfo database
	"unicode"

	"filippo.io/age"
)

// EventFormat is the major format version of event.json this code reads and
// writes. A file with another major version is refused.
const EventFormat = 1

// Names of the files in an event directory.
const (
	EventFile       = "event.json"       // public event description, 0644
	EventKeyFile    = "event.key"        // event signing key (PKCS#8 PEM), 0600
	OrganizerAgeKey = "organizer.agekey" // organizer's age X25519 identity, 0600
)

// Errors about event directories and descriptions. Callers test them with
// errors.Is; the returned errors wrap them with the offending detail.
var (
	ErrInvalidEvent     = errors.New("auth: invalid event description")
	ErrEventExists      = errors.New("auth: an event already exists there")
	ErrNodeExists       = errors.New("auth: a node already exists there")
	ErrEventFormat      = errors.New("auth: unsupported event.json format version")
	ErrKeyMismatch      = errors.New("auth: key does not match the event's public key")
	ErrInvalidKeyFile   = errors.New("auth: invalid key file")
	ErrInvalidArguments = errors.New("auth: invalid arguments")
)

// Event is the public description of an event, stored as event.json. It is
// safe to copy to every node: it carries only public keys.
//
// PublicKeyPASERK is the event's Ed25519 public key in PASERK form,
// "k4.public." followed by the unpadded base64url encoding of the 32 key
// bytes. AgeRecipient is the organizer's age X25519 recipient ("age1…"):
// personal data is encrypted to it so that only the organizer can read it.
type Event struct {
	Format          int       `json:"format"`
	Slug            string    `json:"slug"`
	Name            string    `json:"name"`
	TimeZone        string    `json:"time_zone"`
	StartsAt        time.Time `json:"starts_at"`
	EndsAt          time.Time `json:"ends_at"`
	Currency        string    `json:"currency"`
	PublicKeyPASERK string    `json:"public_key"`
	AgeRecipient    string    `json:"age_recipient"`
}

var (
	slugRE     = regexp.MustCompile(`^[a-z0-9-]{1,64}$`)
	currencyRE = regexp.MustCompile(`^[A-Z]{3}$`)
)

// ValidateSlug reports whether s is a valid event slug: 1 to 64 characters
// of a-z, 0-9 and '-'.
func ValidateSlug(s string) error {
	if !slugRE.MatchString(s) {
		return fmt.Errorf("%w: slug %q must be 1 to 64 characters of a-z, 0-9 and '-'", ErrInvalidEvent, s)
	}
	return nil
}

// validateText checks a human-readable label: non-empty, at most max bytes,
// no control characters.
func validateText(what, s string, max int) error {
	if strings.TrimSpace(s) == "" {
		return fmt.Errorf("%s is empty", what)
	}
	if len(s) > max {
		return fmt.Errorf("%s is %d bytes long, limit %d", what, len(s), max)
	}
	if strings.IndexFunc(s, unicode.IsControl) >= 0 {
		return fmt.Errorf("%s %q contains control characters", what, s)
	}
	return nil
}

// validateDescription checks the fields an organizer chooses.
func (ev *Event) validateDescription() error {
	if err := ValidateSlug(ev.Slug); err != nil {
		return err
	}
	if err := validateText("name", ev.Name, 200); err != nil {
		return fmt.Errorf("%w: %v", ErrInvalidEvent, err)
	}
	if ev.TimeZone == "" || ev.TimeZone == "Local" {
		return fmt.Errorf("%w: time zone %q is not an IANA zone name such as Europe/Berlin", ErrInvalidEvent, ev.TimeZone)
	}
	if _, err := time.LoadLocation(ev.TimeZone); err != nil {
		return fmt.Errorf("%w: unknown time zone %q (want an IANA name such as Europe/Berlin)", ErrInvalidEvent, ev.TimeZone)
	}
	if ev.StartsAt.IsZero() {
		return fmt.Errorf("%w: starts_at is missing", ErrInvalidEvent)
	}
	if ev.EndsAt.IsZero() {
		return fmt.Errorf("%w: ends_at is missing", ErrInvalidEvent)
	}
	if !ev.EndsAt.After(ev.StartsAt) {
		return fmt.Errorf("%w: ends_at %s is not after starts_at %s", ErrInvalidEvent,
			ev.EndsAt.Format(time.RFC3339), ev.StartsAt.Format(time.RFC3339))
	}
	if !currencyRE.MatchString(ev.Currency) {
		return fmt.Errorf("%w: currency %q is not an ISO 4217 code (three upper-case letters, e.g. EUR)", ErrInvalidEvent, ev.Currency)
	}
	return nil
}

// Validate checks every field of the description, including the keys.
func (ev *Event) Validate() error {
	if ev.Format != EventFormat {
		return fmt.Errorf("%w: format %d (this canopy reads format %d)", ErrEventFormat, ev.Format, EventFormat)
	}
	if err := ev.validateDescription(); err != nil {
		return err
	}
	if _, err := ParsePublicKey(ev.PublicKeyPASERK); err != nil {
		return fmt.Errorf("%w: public_key: %v", ErrInvalidEvent, err)
	}
	if _, err := age.ParseX25519Recipient(ev.AgeRecipient); err != nil {
		return fmt.Errorf("%w: age_recipient %q: %v", ErrInvalidEvent, ev.AgeRecipient, err)
	}
	return nil
}

// PublicKey returns the event's Ed25519 public key, or nil if the
// description holds no valid key (LoadEvent and InitEvent never return such
// an event).
func (ev *Event) PublicKey() ed25519.PublicKey {
	pub, err := ParsePublicKey(ev.PublicKeyPASERK)
	if err != nil {
		return nil
	}
	return pub
}

// Location returns the event's time zone, or UTC if the description names
// no valid zone (LoadEvent and InitEvent never return such an event).
func (ev *Event) Location() *time.Location {
	loc, err := time.LoadLocation(ev.TimeZone)
	if err != nil || ev.TimeZone == "" {
		return time.UTC
	}
	return loc
}

// Recipient returns the organizer's age recipient, to encrypt personal data
// that only the organizer may read.
func (ev *Event) Recipient() (*age.X25519Recipient, error) {
	r, err := age.ParseX25519Recipient(ev.AgeRecipient)
	if err != nil {
		return nil, fmt.Errorf("%w: age_recipient: %v", ErrInvalidEvent, err)
	}
	return r, nil
}

// paserkPublicPrefix starts a PASERK v4 public key.
const paserkPublicPrefix = "k4.public."

// FormatPublicKey returns pub in PASERK form: "k4.public." and the unpadded
// base64url encoding of its 32 bytes.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return paserkPublicPrefix + b64.EncodeToString(pub)
}

// ParsePublicKey parses a PASERK "k4.public." Ed25519 public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	rest, ok := strings.CutPrefix(s, paserkPublicPrefix)
	if !ok {
		return nil, fmt.Errorf("public key %q does not start with %q", s, paserkPublicPrefix)
	}
	b, err := b64.DecodeString(rest)
	if err != nil {
		return nil, fmt.Errorf("public key %q: %v", s, err)
	}
	if len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q: %d bytes, want %d", s, len(b), ed25519.PublicKeySize)
	}
	return ed25519.PublicKey(b), nil
}

// InitEvent creates the event directory dir (or uses it if it exists and is
// empty), generates the event signing key and the organizer's age identity,
// and writes event.json (0644), event.key (0600) and organizer.agekey
// (0600). The description's slug, name, time zone, times and currency come
// from ev and are validated; its format and keys are filled in. InitEvent
// refuses to touch a directory that already holds files, so an existing
// event is never overwritten.
func InitEvent(dir string, ev Event) (*Event, error) {
	if dir == "" {
		return nil, fmt.Errorf("%w: event directory is empty", ErrInvalidArguments)
	}
	if err := ev.validateDescription(); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create event directory: %w", err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("read event directory: %w", err)
	}
	if len(entries) > 0 {
		return nil, fmt.Errorf("%w: %s is not empty (it holds %s); choose a new directory", ErrEventExists, dir, entries[0].Name())
	}

	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate event key: %w", err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("generate organizer age identity: %w", err)
	}
	ev.Format = EventFormat
	ev.PublicKeyPASERK = FormatPublicKey(pub)
	ev.AgeRecipient = id.Recipient().String()
	if err := ev.Validate(); err != nil {
		return nil, err
	}
	doc, err := json.MarshalIndent(&ev, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode event.json: %w", err)
	}
	doc = append(doc, '\n')
	keyPEM, err := encodeKey(priv)
	if err != nil {
		return nil, err
	}
	agekey := fmt.Sprintf("# canopy organizer identity for event %s\n# created: %s\n# public key: %s\n%s\n",
		ev.Slug, time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)

	// Secrets first, event.json last: a directory with event.json is complete.
	files := []struct {
		name string
		data []byte
		mode os.FileMode
	}{
		{EventKeyFile, keyPEM, 0o600},
		{OrganizerAgeKey, []byte(agekey), 0o600},
		{EventFile, doc, 0o644},
	}
	var written []string
	for _, f := range files {
		p := filepath.Join(dir, f.name)
		if err := writeNewFile(p, f.data, f.mode); err != nil {
			for _, w := range written {
				os.Remove(w)
			}
			return nil, err
		}
		written = append(written, p)
	}
	return &ev, nil
}

// writeNewFile creates path with exactly mode, failing if it exists, and
// syncs it to disk.
func writeNewFile(path string, data []byte, mode os.FileMode) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, mode)
	if err != nil {
		if errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("refusing to overwrite %s: %w", path, err)
		}
		return fmt.Errorf("create %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil { // undo the umask
		f.Close()
		return fmt.Errorf("chmod %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("sync %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("close %s: %w", path, err)
	}
	return nil
}

// LoadEvent reads and validates an event description. path is the event
// directory or the event.json file itself. Unknown fields and unknown major
// format versions are refused.
func LoadEvent(path string) (*Event, error) {
	if fi, err := os.Stat(path); err == nil && fi.IsDir() {
		path = filepath.Join(path, EventFile)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read event description: %w", err)
	}
	var head struct {
		Format *int `json:"format"`
	}
	if err := json.Unmarshal(data, &head); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidEvent, path, err)
	}
	if head.Format == nil {
		return nil, fmt.Errorf("%w: %s has no \"format\" field", ErrEventFormat, path)
	}
	if *head.Format != EventFormat {
		return nil, fmt.Errorf("%w: %s is format %d, this canopy reads format %d (upgrade canopy)",
			ErrEventFormat, path, *head.Format, EventFormat)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var ev Event
	if err := dec.Decode(&ev); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidEvent, path, err)
	}
	if dec.More() {
		return nil, fmt.Errorf("%w: %s: trailing data after the JSON object", ErrInvalidEvent, path)
	}
	if err := ev.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return &ev, nil
}

// LoadEventKey reads the event signing key from the event directory dir. If
// dir also holds event.json, the key must match its public key.
func LoadEventKey(dir string) (ed25519.PrivateKey, error) {
	key, err := readKey(filepath.Join(dir, EventKeyFile))
	if err != nil {
		return nil, err
	}
	if _, err := os.Stat(filepath.Join(dir, EventFile)); err == nil {
		ev, err := LoadEvent(dir)
		if err != nil {
			return nil, err
		}
		if !ev.PublicKey().Equal(key.Public()) {
			return nil, fmt.Errorf("%w: %s does not belong to the event in %s", ErrKeyMismatch,
				filepath.Join(dir, EventKeyFile), filepath.Join(dir, EventFile))
		}
	}
	return key, nil
}

// LoadOrganizerIdentity reads the organizer's age identity from the event
// directory dir, to decrypt personal data.
func LoadOrganizerIdentity(dir string) (*age.X25519Identity, error) {
	path := filepath.Join(dir, OrganizerAgeKey)
	f, err := os.Open(path)
	if err != nil {
		return nil, fmt.Errorf("read organizer identity: %w", err)
	}
	defer f.Close()
	ids, err := age.ParseIdentities(f)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidKeyFile, path, err)
	}
	if len(ids) != 1 {
		return nil, fmt.Errorf("%w: %s holds %d identities, want 1", ErrInvalidKeyFile, path, len(ids))
	}
	id, ok := ids[0].(*age.X25519Identity)
	if !ok {
		return nil, fmt.Errorf("%w: %s does not hold an X25519 identity", ErrInvalidKeyFile, path)
	}
	return id, nil
}

const pemPrivateKey = "PRIVATE KEY"

// encodeKey returns key as a PKCS#8 PEM block.
func encodeKey(key ed25519.PrivateKey) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("encode key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: pemPrivateKey, Bytes: der}), nil
}

// readKey reads an Ed25519 private key stored as a PKCS#8 PEM block.
func readKey(path string) (ed25519.PrivateKey, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read key: %w", err)
	}
	block, rest := pem.Decode(data)
	if block == nil || block.Type != pemPrivateKey {
		return nil, fmt.Errorf("%w: %s is not a PEM %q block", ErrInvalidKeyFile, path, pemPrivateKey)
	}
	if len(bytes.TrimSpace(rest)) > 0 {
		return nil, fmt.Errorf("%w: %s has data after the key", ErrInvalidKeyFile, path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrInvalidKeyFile, path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%w: %s holds a %T, want an Ed25519 key", ErrInvalidKeyFile, path, k)
	}
	return key, nil
}

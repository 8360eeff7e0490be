package auth

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
)

func TestInitEventWritesFilesAndLoads(t *testing.T) {
	ev, key, dir := newTestEvent(t)

	for name, want := range map[string]os.FileMode{EventFile: 0o644, EventKeyFile: 0o600, OrganizerAgeKey: 0o600} {
		fi, err := os.Stat(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if got := fi.Mode().Perm(); got != want {
			t.Errorf("%s mode = %o, want %o", name, got, want)
		}
	}
	if ev.Format != EventFormat {
		t.Errorf("format = %d, want %d", ev.Format, EventFormat)
	}
	if !strings.HasPrefix(ev.PublicKeyPASERK, "k4.public.") || !strings.HasPrefix(ev.AgeRecipient, "age1") {
		t.Errorf("keys not filled in: %q %q", ev.PublicKeyPASERK, ev.AgeRecipient)
	}
	if !ev.PublicKey().Equal(key.Public()) {
		t.Error("event public key does not match event.key")
	}
	if got := ev.Location().String(); got != "Europe/Berlin" {
		t.Errorf("Location = %s", got)
	}

	for _, path := range []string{dir, filepath.Join(dir, EventFile)} {
		loaded, err := LoadEvent(path)
		if err != nil {
			t.Fatalf("LoadEvent(%s): %v", path, err)
		}
		if loaded.Slug != ev.Slug || loaded.PublicKeyPASERK != ev.PublicKeyPASERK || !loaded.StartsAt.Equal(testStart) ||
			!loaded.EndsAt.Equal(testEnd) || loaded.Currency != "EUR" || loaded.AgeRecipient != ev.AgeRecipient {
			t.Errorf("LoadEvent(%s) = %+v, want %+v", path, loaded, ev)
		}
		if _, off := loaded.StartsAt.Zone(); off != 2*3600 {
			t.Errorf("starts_at lost its offset: %s", loaded.StartsAt)
		}
	}

	// The organizer identity decrypts what is encrypted to the recipient.
	id, err := LoadOrganizerIdentity(dir)
	if err != nil {
		t.Fatal(err)
	}
	rcpt, err := ev.Recipient()
	if err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, rcpt)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "jane@example.org")
	w.Close()
	r, err := age.Decrypt(&buf, id)
	if err != nil {
		t.Fatalf("organizer identity cannot decrypt: %v", err)
	}
	if got, _ := io.ReadAll(r); string(got) != "jane@example.org" {
		t.Errorf("decrypted %q", got)
	}
}

func TestInitEventRefusesExistingEvent(t *testing.T) {
	_, _, dir := newTestEvent(t)
	before, _ := os.ReadFile(filepath.Join(dir, EventKeyFile))
	if _, err := InitEvent(dir, testDescription()); !errors.Is(err, ErrEventExists) {
		t.Fatalf("second InitEvent: err = %v, want ErrEventExists", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, EventKeyFile))
	if !bytes.Equal(before, after) {
		t.Fatal("event.key was overwritten")
	}

	// An existing empty directory is fine.
	empty := t.TempDir()
	if _, err := InitEvent(empty, testDescription()); err != nil {
		t.Fatalf("InitEvent in empty dir: %v", err)
	}
}

func TestInitEventValidatesEveryField(t *testing.T) {
	cases := []struct {
		name   string
		change func(*Event)
		want   string
	}{
		{"empty slug", func(e *Event) { e.Slug = "" }, "slug"},
		{"upper-case slug", func(e *Event) { e.Slug = "Night" }, "slug"},
		{"underscore slug", func(e *Event) { e.Slug = "night_market" }, "slug"},
		{"long slug", func(e *Event) { e.Slug = strings.Repeat("a", 65) }, "slug"},
		{"empty name", func(e *Event) { e.Name = " " }, "name"},
		{"control name", func(e *Event) { e.Name = "a\nb" }, "name"},
		{"unknown zone", func(e *Event) { e.TimeZone = "Mars/Olympus" }, "time zone"},
		{"empty zone", func(e *Event) { e.TimeZone = "" }, "time zone"},
		{"local zone", func(e *Event) { e.TimeZone = "Local" }, "time zone"},
		{"no start", func(e *Event) { e.StartsAt = time.Time{} }, "starts_at"},
		{"no end", func(e *Event) { e.EndsAt = time.Time{} }, "ends_at"},
		{"end before start", func(e *Event) { e.EndsAt = e.StartsAt.Add(-time.Hour) }, "not after"},
		{"lower currency", func(e *Event) { e.Currency = "eur" }, "currency"},
		{"long currency", func(e *Event) { e.Currency = "EURO" }, "currency"},
		{"no currency", func(e *Event) { e.Currency = "" }, "currency"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			ev := testDescription()
			c.change(&ev)
			dir := filepath.Join(t.TempDir(), "ev")
			_, err := InitEvent(dir, ev)
			if !errors.Is(err, ErrInvalidEvent) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want ErrInvalidEvent mentioning %q", err, c.want)
			}
			if _, statErr := os.Stat(filepath.Join(dir, EventKeyFile)); statErr == nil {
				t.Fatal("invalid event left a key behind")
			}
		})
	}
}

func TestLoadEventIsStrict(t *testing.T) {
	_, _, dir := newTestEvent(t)
	good, err := os.ReadFile(filepath.Join(dir, EventFile))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name string
		doc  string
		want error
	}{
		{"future major version", strings.Replace(string(good), `"format": 1`, `"format": 2`, 1), ErrEventFormat},
		{"no version", strings.Replace(string(good), `"format": 1,`, ``, 1), ErrEventFormat},
		{"unknown field", strings.Replace(string(good), `"format": 1,`, `"format": 1, "colour": "red",`, 1), ErrInvalidEvent},
		{"bad public key", strings.Replace(string(good), `"k4.public.`, `"k3.public.`, 1), ErrInvalidEvent},
		{"bad recipient", strings.Replace(string(good), `"age1`, `"age2`, 1), ErrInvalidEvent},
		{"bad slug", strings.Replace(string(good), `"night-market"`, `"Night Market"`, 1), ErrInvalidEvent},
		{"trailing data", string(good) + "{}", ErrInvalidEvent},
		{"not json", "slug: x", ErrInvalidEvent},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if c.doc == string(good) {
				t.Fatal("test case did not change the document")
			}
			p := filepath.Join(t.TempDir(), EventFile)
			if err := os.WriteFile(p, []byte(c.doc), 0o644); err != nil {
				t.Fatal(err)
			}
			if _, err := LoadEvent(p); !errors.Is(err, c.want) {
				t.Fatalf("err = %v, want %v", err, c.want)
			}
		})
	}
	if _, err := LoadEvent(filepath.Join(dir, "missing")); err == nil {
		t.Fatal("LoadEvent of a missing file succeeded")
	}
}

func TestLoadEventKeyChecksItBelongsToTheEvent(t *testing.T) {
	_, _, dir := newTestEvent(t)
	pemKey, err := encodeKey(otherKey(t))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, EventKeyFile), pemKey, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadEventKey(dir); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("err = %v, want ErrKeyMismatch", err)
	}
	if err := os.WriteFile(filepath.Join(dir, EventKeyFile), []byte("not a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadEventKey(dir); !errors.Is(err, ErrInvalidKeyFile) {
		t.Fatalf("err = %v, want ErrInvalidKeyFile", err)
	}
}

func TestPublicKeyPASERKRoundTrip(t *testing.T) {
	k := otherKey(t)
	s := FormatPublicKey(k.Public().(ed25519.PublicKey))
	got, err := ParsePublicKey(s)
	if err != nil || !got.Equal(k.Public()) {
		t.Fatalf("ParsePublicKey(%q) = %v, %v", s, got, err)
	}
	for _, bad := range []string{"", "k4.public.", "k4.public.AAAA", "k4.secret." + s[10:], s + "="} {
		if _, err := ParsePublicKey(bad); err == nil {
			t.Errorf("ParsePublicKey(%q) succeeded", bad)
		}
	}
}

package cli

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"canopy/auth"
)

func init() {
	register(command{
		name:    "event init",
		summary: "create an event: its description, signing key and organizer identity (offline)",
		run:     runEventInit,
	})
}

// ceremonyNow is the organizer tools' clock.
var ceremonyNow = time.Now

// skewAllowance backdates the start of what the organizer tools issue, so a
// device or node whose clock runs a little behind accepts it at once.
const skewAllowance = 5 * time.Minute

func runEventInit(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "event init", "--dir DIR --slug SLUG [flags]")
	dir := fs.String("dir", "", "event directory to create (required; must not exist or be empty)")
	slug := fs.String("slug", "", "event slug: 1-64 characters of a-z, 0-9 and '-' (required)")
	name := fs.String("name", "", "event name (default: the slug)")
	tz := fs.String("tz", "UTC", "IANA time zone of the venue, e.g. Europe/Berlin")
	starts := fs.String("starts", "", "start, RFC 3339 with offset (default: the next full hour)")
	ends := fs.String("ends", "", "end, RFC 3339 with offset (default: 12 hours after the start)")
	currency := fs.String("currency", "EUR", "ISO 4217 currency code")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *dir == "" {
		return usageErrorf("--dir is required")
	}
	if *slug == "" {
		return usageErrorf("--slug is required")
	}
	if err := auth.ValidateSlug(*slug); err != nil {
		return usageErrorf("--slug: %v", err)
	}
	if *name == "" {
		*name = *slug
	}
	loc, err := time.LoadLocation(*tz)
	if err != nil || *tz == "" || *tz == "Local" {
		return usageErrorf("--tz: unknown time zone %q (want an IANA name such as Europe/Berlin)", *tz)
	}
	start := ceremonyNow().In(loc).Truncate(time.Hour).Add(time.Hour)
	if *starts != "" {
		if start, err = parseTimeFlag("starts", *starts); err != nil {
			return err
		}
	}
	end := start.Add(12 * time.Hour)
	if *ends != "" {
		if end, err = parseTimeFlag("ends", *ends); err != nil {
			return err
		}
	}
	if fi, err := os.Stat(*dir); err == nil {
		if !fi.IsDir() {
			return usageErrorf("--dir: %s exists and is not a directory", *dir)
		}
		if entries, err := os.ReadDir(*dir); err == nil && len(entries) > 0 {
			return usageErrorf("--dir: %s already exists and is not empty; refusing to overwrite an event", *dir)
		}
	}

	ev, err := auth.InitEvent(*dir, auth.Event{
		Slug: *slug, Name: *name, TimeZone: *tz, StartsAt: start, EndsAt: end, Currency: *currency,
	})
	if err != nil {
		return authError(err)
	}
	if len(ev.Slug) > 32 {
		fmt.Fprintf(e.stderr, "note: the slug is in every ticket; at %d characters it leaves little room for door lists in a QR-sized ticket\n", len(ev.Slug))
	}
	w := e.stdout
	fmt.Fprintf(w, "Created event %s (%s), %s to %s, %s, %s.\n\n", ev.Slug, ev.Name,
		ev.StartsAt.Format(time.RFC3339), ev.EndsAt.Format(time.RFC3339), ev.TimeZone, ev.Currency)
	fmt.Fprintf(w, "  %-40s public description: copy it to every edge and hub\n", filepath.Join(*dir, auth.EventFile))
	fmt.Fprintf(w, "  %-40s SECRET event signing key (0600)\n", filepath.Join(*dir, auth.EventKeyFile))
	fmt.Fprintf(w, "  %-40s SECRET organizer identity (0600)\n\n", filepath.Join(*dir, auth.OrganizerAgeKey))
	fmt.Fprintf(w, "Event public key: %s\nOrganizer age recipient: %s\n\n", ev.PublicKeyPASERK, ev.AgeRecipient)
	fmt.Fprintf(w, "BACK UP %s AND %s OFFLINE NOW (e.g. two USB sticks kept in different places).\n",
		auth.EventKeyFile, auth.OrganizerAgeKey)
	fmt.Fprintf(w, "If %s is lost, the event's personal data (encrypted to the organizer) is unreadable forever,\n", auth.OrganizerAgeKey)
	fmt.Fprintf(w, "and if %s is lost, no ticket, device token or node can ever be issued for this event again.\n", auth.EventKeyFile)
	fmt.Fprintf(w, "Anyone holding %s can mint tickets and tokens: keep it off edges, hubs and shared drives.\n", auth.EventKeyFile)
	return nil
}

// parseTimeFlag parses an RFC 3339 time with an explicit offset.
func parseTimeFlag(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, usageErrorf("--%s: %q is not an RFC 3339 time with offset, e.g. 2026-06-12T18:00:00+02:00", name, s)
	}
	return t, nil
}

// parseTTLFlag parses a positive duration: Go syntax ("90m", "36h") or a
// whole number of days ("7d").
func parseTTLFlag(name, s string) (time.Duration, error) {
	var d time.Duration
	if days, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(days)
		if err != nil || n <= 0 || n > 3660 {
			return 0, usageErrorf("--%s: %q is not a duration such as 12h, 90m or 7d", name, s)
		}
		d = time.Duration(n) * 24 * time.Hour
	} else {
		var err error
		if d, err = time.ParseDuration(s); err != nil {
			return 0, usageErrorf("--%s: %q is not a duration such as 12h, 90m or 7d", name, s)
		}
	}
	if d <= 0 {
		return 0, usageErrorf("--%s: %q must be positive", name, s)
	}
	return d, nil
}

// loadCeremony reads an event directory (or its event.json) and the event
// signing key beside it.
func loadCeremony(path string) (*auth.Event, ed25519.PrivateKey, error) {
	if path == "" {
		return nil, nil, usageErrorf("--event is required")
	}
	dir := path
	if fi, err := os.Stat(path); err != nil {
		return nil, nil, usageErrorf("--event: %v", err)
	} else if !fi.IsDir() {
		dir = filepath.Dir(path)
	}
	ev, err := auth.LoadEvent(path)
	if err != nil {
		return nil, nil, err
	}
	key, err := auth.LoadEventKey(dir)
	if err != nil {
		return nil, nil, fmt.Errorf("%w (the event key stays with the organizer; run this where it is)", err)
	}
	return ev, key, nil
}

// authError turns an auth error caused by what the user asked for into a
// usage error, and leaves other failures as they are.
func authError(err error) error {
	for _, u := range []error{auth.ErrInvalidArguments, auth.ErrInvalidEvent, auth.ErrUnknownRole,
		auth.ErrTicketTooLong, auth.ErrEventExists, auth.ErrNodeExists} {
		if errors.Is(err, u) {
			return usageErrorf("%v", err)
		}
	}
	return err
}

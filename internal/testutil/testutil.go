// Package testutil builds the real things tests run against: an event with
// its keys, enrolled nodes and device tokens in temporary directories, and a
// fresh database on the test PostgreSQL server.
package testutil

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"canopy/auth"
	"canopy/config"
)

// Event is an event created for a test, with its secrets.
type Event struct {
	Dir   string // event directory (event.json, event.key, organizer.agekey)
	Event *auth.Event
	Key   ed25519.PrivateKey
}

// NewEvent creates an event in a temporary directory.
func NewEvent(t testing.TB, slug string) *Event {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "event")
	now := time.Now().UTC()
	ev, err := auth.InitEvent(dir, auth.Event{
		Slug: slug, Name: "Test " + slug, TimeZone: "Europe/Berlin",
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(24 * time.Hour), Currency: "EUR",
	})
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.LoadEventKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	return &Event{Dir: dir, Event: ev, Key: key}
}

// EdgeConfig enrols a new edge node and returns a config for it with its
// data in dataDir (a fresh temporary directory if empty), listening on a
// free loopback port.
func (e *Event) EdgeConfig(t testing.TB, name, dataDir string) config.Config {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	nodeDir := filepath.Join(t.TempDir(), "node")
	key, enr, err := auth.EnrollNode(e.Key, e.Event, name, auth.NodeEdge, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if err := auth.WriteNode(nodeDir, key, enr); err != nil {
		t.Fatal(err)
	}
	cfg := config.Default()
	cfg.Node.Dir = dataDir
	cfg.Node.Event = e.Dir
	cfg.Node.Key = nodeDir
	cfg.Node.Listen = "127.0.0.1:0"
	return cfg
}

// Token issues a device token for the event.
func (e *Event) Token(t testing.TB, role auth.Role, device string, nbf, exp time.Time) string {
	t.Helper()
	tok, err := auth.IssueDevice(e.Key, auth.Device{Event: e.Event.Slug, Role: role, Name: device, NotBefore: nbf, Expires: exp})
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// ValidToken issues a device token valid for the next hour.
func (e *Event) ValidToken(t testing.TB, role auth.Role) string {
	return e.Token(t, role, string(role)+"-device", time.Now().Add(-time.Minute), time.Now().Add(time.Hour))
}

// PostgresDSN returns the test PostgreSQL server CANOPY_TEST_POSTGRES
// names. Without the variable the test is skipped, except on CI, which must
// run it.
func PostgresDSN(tb testing.TB) string {
	tb.Helper()
	if dsn := os.Getenv("CANOPY_TEST_POSTGRES"); dsn != "" {
		return dsn
	}
	const how = `CANOPY_TEST_POSTGRES is not set; start a throwaway server with eval "$(./scripts/postgres.sh start)" ` +
		`(it prints the export line; ./scripts/postgres.sh stop stops it), or run ./scripts/test.sh, which does both`
	if os.Getenv("CI") == "true" {
		tb.Fatal(how)
	}
	tb.Skip(how)
	return ""
}

// FreshPostgres creates an empty database (named prefix plus random hex) on
// the test PostgreSQL server (see PostgresDSN), drops it when the test ends,
// and returns its DSN.
func FreshPostgres(tb testing.TB, prefix string) string {
	tb.Helper()
	admin := PostgresDSN(tb)
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		tb.Fatalf("connect to CANOPY_TEST_POSTGRES: %v", err)
	}
	defer conn.Close(ctx)
	var b [8]byte
	if _, err := rand.Read(b[:]); err != nil {
		tb.Fatal(err)
	}
	name := prefix + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		tb.Fatalf("CREATE DATABASE %s: %v", name, err)
	}
	tb.Cleanup(func() {
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			tb.Errorf("connect to drop %s: %v", name, err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			tb.Errorf("DROP DATABASE %s: %v", name, err)
		}
	})
	if strings.HasPrefix(admin, "postgres://") || strings.HasPrefix(admin, "postgresql://") {
		u, err := url.Parse(admin)
		if err != nil {
			tb.Fatalf("CANOPY_TEST_POSTGRES: %v", err)
		}
		u.Path = "/" + name
		return u.String()
	}
	return admin + " dbname=" + name
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a server the test starts itself.
func FreeAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

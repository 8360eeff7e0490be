package auth

import (
	"crypto/ed25519"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"canopy/ledger"
)

func TestEnrolNodeAndVerify(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	nodeKey, tok, err := EnrollNode(key, ev, "edge-north", NodeEdge, testStart, testEnd)
	if err != nil {
		t.Fatal(err)
	}
	pub := nodeKey.Public().(ed25519.PublicKey)
	e, err := VerifyEnrolment(ev, tok, testStart.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	if e.Event != ev.Slug || e.Name != "edge-north" || e.Role != NodeEdge || e.Node != ledger.NodeIDOf(pub) ||
		!e.PublicKey.Equal(pub) || !e.NotBefore.Equal(testStart) || !e.Expires.Equal(testEnd) {
		t.Fatalf("VerifyEnrolment = %+v", e)
	}

	dir := filepath.Join(t.TempDir(), "node")
	if err := WriteNode(dir, nodeKey, tok); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, NodeKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("node.key mode %o, want 600", fi.Mode().Perm())
	}
	k2, tok2, err := LoadNode(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !k2.Equal(nodeKey) || tok2 != tok {
		t.Fatal("LoadNode did not return what WriteNode stored")
	}
	if err := WriteNode(dir, nodeKey, tok); !errors.Is(err, ErrNodeExists) {
		t.Fatalf("second WriteNode: err = %v, want ErrNodeExists", err)
	}
	// A key and token from different nodes are caught on load.
	otherNode, _, err := EnrollNode(key, ev, "edge-south", NodeEdge, testStart, testEnd)
	if err != nil {
		t.Fatal(err)
	}
	mixed := filepath.Join(t.TempDir(), "mixed")
	if err := WriteNode(mixed, otherNode, tok); err != nil {
		t.Fatal(err)
	}
	if _, _, err := LoadNode(mixed); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("mixed node dir: err = %v, want ErrKeyMismatch", err)
	}
	if _, _, err := LoadNode(t.TempDir()); err == nil {
		t.Fatal("LoadNode of an empty dir succeeded")
	}
}

func TestEnrolmentRejections(t *testing.T) {
	ev, key, _ := newTestEvent(t)
	_, tok, err := EnrollNode(key, ev, "hub-1", NodeHub, testStart, testEnd)
	if err != nil {
		t.Fatal(err)
	}
	otherSlug := *ev
	otherSlug.Slug = "other-market"
	forgedEvent := *ev
	forgedEvent.PublicKeyPASERK = FormatPublicKey(otherKey(t).Public().(ed25519.PublicKey))
	device, err := IssueDevice(key, testDevice(ev))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name  string
		ev    *Event
		token string
		now   time.Time
		want  error
	}{
		{"expired", ev, tok, testEnd.Add(time.Second), ErrExpired},
		{"not yet valid", ev, tok, testStart.Add(-time.Second), ErrNotYetValid},
		{"wrong event", &otherSlug, tok, testStart, ErrWrongEvent},
		{"other key", &forgedEvent, tok, testStart, ErrBadSignature},
		{"flipped", ev, flip(tok, 30), testStart, ErrBadSignature},
		{"device token", ev, device, testStart, ErrWrongPurpose},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if e, err := VerifyEnrolment(c.ev, c.token, c.now); !errors.Is(err, c.want) {
				t.Fatalf("VerifyEnrolment = %+v, %v; want %v", e, err, c.want)
			}
		})
	}

	if _, _, err := EnrollNode(key, ev, "x", "router", testStart, testEnd); !errors.Is(err, ErrUnknownRole) {
		t.Fatalf("role router: err = %v, want ErrUnknownRole", err)
	}
	if _, _, err := EnrollNode(key, ev, "", NodeEdge, testStart, testEnd); !errors.Is(err, ErrInvalidArguments) {
		t.Fatalf("empty name: err = %v", err)
	}
	if _, _, err := EnrollNode(otherKey(t), ev, "x", NodeEdge, testStart, testEnd); !errors.Is(err, ErrKeyMismatch) {
		t.Fatalf("foreign key: err = %v, want ErrKeyMismatch", err)
	}
	if _, _, err := EnrollNode(key, ev, "x", NodeEdge, testEnd, testStart); !errors.Is(err, ErrInvalidArguments) {
		t.Fatalf("inverted window: err = %v", err)
	}
}

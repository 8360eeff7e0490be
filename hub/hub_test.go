package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/hub"
	"canopy/internal/testutil"
	"canopy/viewset"
)

func TestEdgesSyncThroughHub(t *testing.T) {
	market := testutil.NewEvent(t, "night-market")
	fair := testutil.NewEvent(t, "craft-fair")
	h := openHub(t, hub.Config{Dir: hubDir(t, "hub-1", market, fair), Listen: "127.0.0.1:0"})
	defer closeHub(t, h)
	if got := strings.Join(h.Slugs(), ","); got != "craft-fair,night-market" {
		t.Fatalf("slugs %q", got)
	}
	slug := market.Event.Slug
	org := market.ValidToken(t, auth.RoleOrganizer)

	a := openEdge(t, market, "edge-a", h.EventURL(slug))
	for i := 0; i < 10; i++ {
		note(t, a, org, "a-note-"+string(rune('0'+i)))
	}
	sell(t, a, org, "a", 5)
	hubStore := h.Store
	waitSame(t, slug, 10*time.Second, a.Store, hubStore)

	// The hub stored A's entries through its own journal: its stored views
	// are the ones rebuilt from the entries.
	if err := viewset.All().Verify(context.Background(), hubStore, slug); err != nil {
		t.Fatal(err)
	}

	// B joins later, learns A's entries through the hub, and its own
	// writes reach A through the hub (relay).
	b := openEdge(t, market, "edge-b", h.EventURL(slug))
	sell(t, b, org, "b", 3)
	note(t, a, org, "a-after-b")
	waitSame(t, slug, 10*time.Second, a.Store, b.Store, hubStore)
	av, _ := a.Store.Vector(context.Background(), slug)
	if av[b.Enrolment.Node] == 0 || av[h.Lookup(slug).Enrolment.Node] != 1 {
		t.Fatalf("A's vector %v lacks B's entries or the hub's enrolment entry", av)
	}
	// A write on one edge reaches the other within a second (pushed to the
	// hub, streamed on to the other edge).
	start := time.Now()
	note(t, b, org, "b-live")
	waitSame(t, slug, 5*time.Second, a.Store, b.Store)
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a write took %s to reach the other edge through the hub", took)
	}

	// The other event served by the same hub holds none of this.
	if n := entries(t, hubStore, fair.Event.Slug); n != 1 {
		t.Fatalf("the hub holds %d entries of %s, want only its own enrolment", n, fair.Event.Slug)
	}
}

func TestHubRestartLosesNothing(t *testing.T) {
	ev := testutil.NewEvent(t, "restart-market")
	slug := ev.Event.Slug
	org := ev.ValidToken(t, auth.RoleOrganizer)
	cfg := hub.Config{Dir: hubDir(t, "hub-1", ev), Listen: testutil.FreeAddr(t)}
	h := openHub(t, cfg)
	url := h.EventURL(slug)
	a := openEdge(t, ev, "edge-a", url)
	b := openEdge(t, ev, "edge-b", url)

	// Writes go on while the hub stops and comes back on the same address.
	done := make(chan error, 1)
	go func() {
		for i := 0; i < 40; i++ {
			if err := postNote(a.URL(), org, fmt.Sprintf("a-%d", i)); err != nil {
				done <- err
				return
			}
		}
		done <- nil
	}()
	for i := 0; i < 5; i++ {
		note(t, b, org, "b-before-"+string(rune('0'+i)))
	}
	closeHub(t, h)
	for i := 0; i < 5; i++ {
		note(t, b, org, "b-during-"+string(rune('0'+i)))
	}
	h = openHub(t, cfg)
	defer closeHub(t, h)
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 5; i++ {
		note(t, b, org, "b-after-"+string(rune('0'+i)))
	}
	waitSame(t, slug, 15*time.Second, a.Store, b.Store, h.Store)
	v, err := h.Store.Vector(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	// Each edge: its enrolment and every note; the hub: its enrolment once,
	// not again after the restart.
	if v[a.Enrolment.Node] != 41 || v[b.Enrolment.Node] != 16 || v[h.Lookup(slug).Enrolment.Node] != 1 {
		t.Fatalf("hub vector %v: want A 41, B 16, hub 1", v)
	}
}

func TestHubRoutes(t *testing.T) {
	ev := testutil.NewEvent(t, "routes-market")
	slug := ev.Event.Slug
	h := openHub(t, hub.Config{Dir: hubDir(t, "hub-1", ev), Listen: "127.0.0.1:0"})
	defer closeHub(t, h)
	a := openEdge(t, ev, "edge-a", h.EventURL(slug))
	note(t, a, ev.ValidToken(t, auth.RoleOrganizer), "n-1")
	waitSame(t, slug, 10*time.Second, a.Store, h.Store)

	code, ctype, body := get(t, h.URL()+"/v1/events/no-such-event/v1/sync/vector")
	if code != 404 || ctype != "application/problem+json" || !strings.Contains(body, `no-such-event`) ||
		!strings.Contains(body, `"status":404`) {
		t.Fatalf("unknown slug: %d %s %s", code, ctype, body)
	}
	if code, ctype, body = get(t, h.URL()+"/v1/events/"+slug); code != 404 || ctype != "application/problem+json" {
		t.Fatalf("bare event path: %d %s %s", code, ctype, body)
	}
	if code, _, body = get(t, h.URL()+"/nowhere"); code != 404 || !strings.Contains(body, "route-not-found") {
		t.Fatalf("unknown route: %d %s", code, body)
	}
	resp, err := http.Post(h.URL()+"/v1/events", "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 405 || resp.Header.Get("Allow") != "GET, HEAD" {
		t.Fatalf("POST /v1/events: %d Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}

	code, _, body = get(t, h.URL()+"/v1/events")
	var list hub.EventsResponse
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Events) != 1 || list.Events[0] != slug {
		t.Fatalf("GET /v1/events: %d %s", code, body)
	}
	if code, _, body = get(t, h.URL()+"/healthz"); code != 200 || body != "ok\n" {
		t.Fatalf("healthz: %d %q", code, body)
	}
	if code, _, body = get(t, h.URL()+"/readyz"); code != 200 || body != "ready\n" {
		t.Fatalf("readyz: %d %q", code, body)
	}
	code, _, body = get(t, h.URL()+"/metrics")
	if code != 200 || !strings.Contains(body, `canopy_ledger_appends_total{event="`+slug+`"}`) ||
		!strings.Contains(body, `canopy_api_requests_total{code="200",event="`+slug+`",route="POST /v1/sync/push"}`) {
		t.Fatalf("metrics lack the event's journal and sync metrics: %d\n%s", code, body)
	}

	// The event's own routes work under the prefix: sync needs a node's
	// signature, the audit log an organizer's token.
	if code, _, body = get(t, h.EventURL(slug)+"/v1/sync/vector"); code != 401 || !strings.Contains(body, "node-unauthenticated") {
		t.Fatalf("unsigned vector request: %d %s", code, body)
	}
	out := call(t, h.EventURL(slug), ev.ValidToken(t, auth.RoleOrganizer), "GET",
		"/v1/log/entries?node="+a.Enrolment.Node.String(), "", nil, http.StatusOK)
	if !strings.Contains(string(out), auth.EnrolledKind) {
		t.Fatalf("audit entries of A through the hub: %s", out)
	}
	if code, _, _ = get(t, h.EventURL(slug)+"/healthz"); code != 200 {
		t.Fatalf("event healthz: %d", code)
	}
}

func TestAddEventChecksTheNode(t *testing.T) {
	ev := testutil.NewEvent(t, "add-market")
	other := testutil.NewEvent(t, "other-market")
	dir := t.TempDir()
	now := time.Now()

	cases := []struct {
		name, event, node, want string
	}{
		{"edge role", ev.Dir, enrolNode(t, ev, "edge-1", auth.NodeEdge), "not as a hub"},
		{"other event's node", ev.Dir, enrolHub(t, other, "hub-x"), "enrolment"},
		{"no node", ev.Dir, filepath.Join(t.TempDir(), "missing"), "node in"},
		{"no event", filepath.Join(t.TempDir(), "nothing.json"), enrolHub(t, ev, "hub-1"), "read event description"},
	}
	for _, c := range cases {
		_, err := hub.AddEvent(dir, c.event, c.node, now)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: err %v, want one mentioning %q", c.name, err, c.want)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, hub.EventsDir, ev.Event.Slug)); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("a refused event was installed: %v", err)
	}

	// Accepted: event.json and the node are copied, the event key is not.
	slug, err := hub.AddEvent(dir, filepath.Join(ev.Dir, auth.EventFile), enrolHub(t, ev, "hub-1"), now)
	if err != nil || slug != ev.Event.Slug {
		t.Fatalf("AddEvent: %q %v", slug, err)
	}
	evDir := filepath.Join(dir, hub.EventsDir, slug)
	for _, f := range []string{auth.EventFile, filepath.Join(hub.NodeDir, auth.NodeKeyFile), filepath.Join(hub.NodeDir, auth.EnrolmentFileName)} {
		if _, err := os.Stat(filepath.Join(evDir, f)); err != nil {
			t.Errorf("installed event lacks %s: %v", f, err)
		}
	}
	ents, _ := os.ReadDir(evDir)
	if len(ents) != 2 {
		t.Errorf("installed event holds %d files, want event.json and node/ only", len(ents))
	}
	if _, err := hub.AddEvent(dir, ev.Dir, enrolHub(t, ev, "hub-2"), now); err == nil || !strings.Contains(err.Error(), "already installed") {
		t.Fatalf("second AddEvent of the same event: %v", err)
	}
	// Expired at the time of adding.
	if _, err := hub.AddEvent(t.TempDir(), ev.Dir, enrolHub(t, ev, "hub-3"), now.Add(72*time.Hour)); err == nil || !strings.Contains(err.Error(), "expire") {
		t.Fatalf("expired enrolment: %v", err)
	}
}

func TestOpenRefusesBadEventDirectories(t *testing.T) {
	ev := testutil.NewEvent(t, "bad-market")
	t.Run("renamed directory", func(t *testing.T) {
		dir := hubDir(t, "hub-1", ev)
		if err := os.Rename(filepath.Join(dir, hub.EventsDir, ev.Event.Slug), filepath.Join(dir, hub.EventsDir, "other")); err != nil {
			t.Fatal(err)
		}
		_, err := hub.Open(context.Background(), hub.Config{Dir: dir, Listen: "127.0.0.1:0"})
		if err == nil || !strings.Contains(err.Error(), "must be named by the slug") {
			t.Fatalf("err %v", err)
		}
		if _, err := os.Stat(filepath.Join(dir, hub.StoreFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatalf("a refused hub created its store: %v", err)
		}
	})
	t.Run("edge node", func(t *testing.T) {
		dir := t.TempDir()
		evDir := filepath.Join(dir, hub.EventsDir, ev.Event.Slug)
		if err := os.MkdirAll(evDir, 0o700); err != nil {
			t.Fatal(err)
		}
		raw, err := os.ReadFile(filepath.Join(ev.Dir, auth.EventFile))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(evDir, auth.EventFile), raw, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(enrolNode(t, ev, "edge-1", auth.NodeEdge), filepath.Join(evDir, hub.NodeDir)); err != nil {
			t.Fatal(err)
		}
		_, err = hub.Open(context.Background(), hub.Config{Dir: dir, Listen: "127.0.0.1:0"})
		if err == nil || !strings.Contains(err.Error(), "not as a hub") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("bad database", func(t *testing.T) {
		_, err := hub.Open(context.Background(), hub.Config{Dir: t.TempDir(), Listen: "127.0.0.1:0", DB: "mysql://u:secret@h/db"})
		if err == nil || !strings.Contains(err.Error(), "postgres://") || strings.Contains(err.Error(), "secret") {
			t.Fatalf("err %v", err)
		}
	})
	t.Run("bad listen address", func(t *testing.T) {
		_, err := hub.Open(context.Background(), hub.Config{Dir: t.TempDir(), Listen: "nowhere"})
		if err == nil || !strings.Contains(err.Error(), "listen address") {
			t.Fatalf("err %v", err)
		}
	})
}

func TestReadyzFailsWhenTheStoreIsGone(t *testing.T) {
	ev := testutil.NewEvent(t, "ready-market")
	h := openHub(t, hub.Config{Dir: hubDir(t, "hub-1", ev), Listen: "127.0.0.1:0"})
	if code, _, _ := get(t, h.URL()+"/readyz"); code != 200 {
		t.Fatalf("readyz before: %d", code)
	}
	if err := h.Store.Close(); err != nil {
		t.Fatal(err)
	}
	code, ctype, body := get(t, h.URL()+"/readyz")
	if code != 503 || ctype != "application/problem+json" || !strings.Contains(body, "not-ready") || !strings.Contains(body, ev.Event.Slug) {
		t.Fatalf("readyz with the store closed: %d %s %s", code, ctype, body)
	}
	if code, _, _ := get(t, h.URL()+"/healthz"); code != 200 {
		t.Fatalf("healthz (liveness) with the store closed: %d", code)
	}
	_ = h.Close(context.Background()) // the store is already closed: its error is expected
}

package hub_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"canopy/auth"
	"canopy/hub"
	"canopy/internal/testutil"
	"canopy/viewset"
)

// Two hub processes on one PostgreSQL database serve the same event, each
// with its own hub node (enrolled separately). Edge A syncs with hub 1,
// edge B with hub 2, and edge C with both at once (so both processes ingest
// the same entries concurrently). Everything converges.
func TestTwoHubsOnOnePostgres(t *testing.T) {
	dsn := testutil.FreshPostgres(t, "canopy_hub_test_")
	ev := testutil.NewEvent(t, "pg-market")
	slug := ev.Event.Slug
	org := ev.ValidToken(t, auth.RoleOrganizer)
	h1 := openHub(t, hub.Config{Dir: hubDir(t, "hub-1", ev), Listen: "127.0.0.1:0", DB: dsn})
	defer closeHub(t, h1)
	h2 := openHub(t, hub.Config{Dir: hubDir(t, "hub-2", ev), Listen: "127.0.0.1:0", DB: dsn})
	defer closeHub(t, h2)
	n1, n2 := h1.Lookup(slug).Enrolment.Node, h2.Lookup(slug).Enrolment.Node
	if n1 == n2 {
		t.Fatal("the two hub processes share a node identity")
	}

	a := openEdge(t, ev, "edge-a", h1.EventURL(slug))
	b := openEdge(t, ev, "edge-b", h2.EventURL(slug))
	cfgC := ev.EdgeConfig(t, "edge-c", "")
	cfgC.Sync.Hubs = []string{h1.EventURL(slug)}
	cfgC.Sync.Peers = []string{h2.EventURL(slug)}
	c := openEdgeConfig(t, cfgC)

	errs := make(chan error, 3)
	for _, e := range []struct {
		base, name string
	}{{a.URL(), "a"}, {b.URL(), "b"}, {c.URL(), "c"}} {
		go func() {
			for i := 0; i < 30; i++ {
				if err := postNote(e.base, org, fmt.Sprintf("%s-%d", e.name, i)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for range 3 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
	sell(t, a, org, "a", 3)
	sell(t, b, org, "b", 3)
	waitSame(t, slug, 20*time.Second, h1.Store, a.Store, b.Store, c.Store, h2.Store)

	// A live write on A reaches B through two processes: hub 1 stores it,
	// hub 2 finds it at its next look (every DefaultSharedHeartbeat).
	start := time.Now()
	note(t, a, org, "a-live")
	waitSame(t, slug, 10*time.Second, a.Store, b.Store)
	took := time.Since(start)
	t.Logf("a live write crossed from hub 1 to hub 2 in %s", took)
	if took > 2*hub.DefaultSharedHeartbeat+time.Second {
		t.Errorf("a write took %s to cross from hub 1 to hub 2", took)
	}

	if err := viewset.All().Verify(context.Background(), h1.Store, slug); err != nil {
		t.Errorf("stored views of the shared store: %v", err)
	}
	v, err := h2.Store.Vector(context.Background(), slug)
	if err != nil {
		t.Fatal(err)
	}
	// Each edge: its enrolment and every write; each hub: its enrolment.
	// Orders: vendor, SKU, then an order and a payment each (3 of each).
	want := map[string]uint64{"a": 31 + 2 + 6 + 1, "b": 31 + 2 + 6, "c": 31, "hub-1": 1, "hub-2": 1}
	got := map[string]uint64{
		"a": v[a.Enrolment.Node], "b": v[b.Enrolment.Node], "c": v[c.Enrolment.Node],
		"hub-1": v[n1], "hub-2": v[n2],
	}
	if fmt.Sprint(got) != fmt.Sprint(want) || len(v) != 5 {
		t.Fatalf("shared store holds %v (vector %v), want %v", got, v, want)
	}
}

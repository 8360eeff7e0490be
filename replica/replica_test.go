package replica_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/store"
	"canopy/viewset"
)

func open(t *testing.T, cfg config.Config) *edge.Edge {
	t.Helper()
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	return e
}

func note(t *testing.T, e *edge.Edge, token, key, text string) {
	t.Helper()
	req, _ := http.NewRequest("POST", e.URL()+"/v1/log/notes", strings.NewReader(fmt.Sprintf(`{"text":%q}`, text)))
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("note on %s: %d %s", e.URL(), resp.StatusCode, b)
	}
}

// same reports whether two nodes hold the same entries and views.
func same(ctx context.Context, a, b store.Store, event string) (bool, string) {
	va, _ := a.Vector(ctx, event)
	vb, _ := b.Vector(ctx, event)
	if fmt.Sprint(va) != fmt.Sprint(vb) {
		return false, fmt.Sprintf("vectors %v vs %v", va, vb)
	}
	ra, err := viewset.All().Rebuild(ctx, a, event)
	if err != nil {
		return false, err.Error()
	}
	rb, err := viewset.All().Rebuild(ctx, b, event)
	if err != nil {
		return false, err.Error()
	}
	if len(ra) != len(rb) {
		return false, fmt.Sprintf("%d vs %d view rows", len(ra), len(rb))
	}
	for i := range ra {
		if ra[i].Key != rb[i].Key || !bytes.Equal(ra[i].Value, rb[i].Value) {
			return false, "view " + ra[i].View + "/" + ra[i].Key + " differs"
		}
	}
	return true, ""
}

func waitSame(t *testing.T, a, b store.Store, event string, within time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		ok, why := same(context.Background(), a, b, event)
		if ok {
			return time.Since(start)
		}
		if time.Since(start) > within {
			t.Fatalf("nodes did not converge within %s: %s", within, why)
		}
		time.Sleep(5 * time.Millisecond) // polling for convergence
	}
}

func TestTwoEdgesConvergeAcrossAPartition(t *testing.T) {
	ev := testutil.NewEvent(t, "sync-market")
	org := ev.ValidToken(t, auth.RoleOrganizer)
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	cfgB.Node.Listen = testutil.FreeAddr(t)
	b := open(t, cfgB)
	cfgA := ev.EdgeConfig(t, "edge-a", "")
	cfgA.Sync.Peers = []string{"http://" + cfgB.Node.Listen}
	a := open(t, cfgA)
	defer a.Close(context.Background())
	slug := ev.Event.Slug

	for i := 0; i < 20; i++ {
		note(t, a, org, fmt.Sprintf("a-%d", i), "from a")
		note(t, b, org, fmt.Sprintf("b-%d", i), "from b")
	}
	took := waitSame(t, a.Store, b.Store, slug, 10*time.Second)
	t.Logf("converged %s after the last write", took)

	// A write on either side reaches the other (pushed on commit, not
	// polled; how fast is a benchmark's question: bench sync).
	note(t, b, org, "b-live", "live from b")
	t.Logf("a live write reached the peer in %s", waitSame(t, a.Store, b.Store, slug, 10*time.Second))

	// Partition: B goes away; both sides take writes, including the same
	// Idempotency-Key (accepted on both, as in a real partition).
	if err := b.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 10; i++ {
		note(t, a, org, fmt.Sprintf("a-cut-%d", i), "a during the cut")
	}
	note(t, a, org, "same-key", "taken by a")
	b = open(t, cfgB) // heals: same node, same address
	defer b.Close(context.Background())
	note(t, b, org, "same-key", "taken by b")
	waitSame(t, a.Store, b.Store, slug, 10*time.Second)

	// Both hold both entries for the key; the earliest wins, the other is a
	// duplicate, identically on both nodes (views are byte-identical).
	for _, s := range []store.Store{a.Store, b.Store} {
		v, err := s.View(context.Background(), slug, "idempotency", "same-key")
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Contains(v, []byte(`"duplicates":[`)) {
			t.Fatalf("idempotency row %s lists no duplicate", v)
		}
	}
	// Views rebuilt from entries equal the stored ones on both.
	for _, s := range []store.Store{a.Store, b.Store} {
		if err := viewset.All().Verify(context.Background(), s, slug); err != nil {
			t.Fatal(err)
		}
	}
}

func TestSyncRefusesForgedAndUnenrolled(t *testing.T) {
	ev := testutil.NewEvent(t, "sync-guard")
	org := ev.ValidToken(t, auth.RoleOrganizer)
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	b := open(t, cfgB)
	defer b.Close(context.Background())
	// A node of ANOTHER event (same slug, other key) cannot sync with B.
	other := testutil.NewEvent(t, "sync-guard")
	cfgX := other.EdgeConfig(t, "intruder", "")
	cfgX.Sync.Peers = []string{b.URL()}
	x := open(t, cfgX)
	defer x.Close(context.Background())
	note(t, x, other.ValidToken(t, auth.RoleOrganizer), "x-1", "should not arrive")
	note(t, b, org, "b-1", "stays")
	deadline := time.Now().Add(5 * time.Second)
	for {
		if st := x.Peers[0].Status(); st.LastError != "" {
			if !strings.Contains(st.LastError, "401") || !strings.Contains(st.LastError, "node-unauthenticated") {
				t.Fatalf("intruder's error %q, want a 401 node-unauthenticated problem", st.LastError)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the intruder's sync was never refused")
		}
		time.Sleep(5 * time.Millisecond) // polling the peer's status
	}
	vec, _ := b.Store.Vector(context.Background(), ev.Event.Slug)
	if len(vec) != 1 {
		t.Fatalf("B holds entries of %d authors, want only its own: %v", len(vec), vec)
	}
}

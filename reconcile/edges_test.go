package reconcile_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/reconcile"
)

func post(t *testing.T, e *edge.Edge, path, token, key, body string) []byte {
	t.Helper()
	req, err := http.NewRequest("POST", e.URL()+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", key)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode/100 != 2 {
		t.Fatalf("POST %s on %s: %d %s", path, e.URL(), res.StatusCode, b)
	}
	return b
}

func getReport(t *testing.T, e *edge.Edge, token string) []byte {
	t.Helper()
	req, _ := http.NewRequest("GET", e.URL()+reconcile.Path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	if res.StatusCode != 200 || res.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("GET %s: %d %s", reconcile.Path, res.StatusCode, b)
	}
	return b
}

// TestTwoEdgesAgreeAfterAPartition: two edges, not yet connected, accept
// the same Idempotency-Key and admit the same ticket; once they sync, both
// serve the same bytes, listing exactly those two conflicts.
func TestTwoEdgesAgreeAfterAPartition(t *testing.T) {
	ctx := context.Background()
	ev := testutil.NewEvent(t, "recon-edges")
	org := ev.ValidToken(t, auth.RoleOrganizer)
	door := ev.ValidToken(t, auth.RoleDoor)

	b, err := edge.Open(ctx, ev.EdgeConfig(t, "edge-b", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(ctx)
	cfgA := ev.EdgeConfig(t, "edge-a", "")
	a, err := edge.Open(ctx, cfgA, nil) // no peers yet: a partition
	if err != nil {
		t.Fatal(err)
	}

	now := time.Now()
	tk, err := auth.IssueTicket(ev.Key, auth.Ticket{ID: "tk-1", Event: ev.Event.Slug, Type: "GA", ValidFrom: now.Add(-time.Hour), ValidUntil: now.Add(time.Hour)})
	if err != nil {
		t.Fatal(err)
	}
	scan := func(doorName string) string {
		b, _ := json.Marshal(map[string]string{"ticket": tk, "door": doorName, "direction": "in"})
		return string(b)
	}
	post(t, a, "/v1/log/notes", org, "same-key", `{"text":"taken by a"}`)
	post(t, b, "/v1/log/notes", org, "same-key", `{"text":"taken by b"}`)
	for _, r := range []struct {
		e    *edge.Edge
		door string
	}{{a, "north"}, {b, "south"}} {
		out := post(t, r.e, "/v1/checkins", door, "scan-"+r.door, scan(r.door))
		if !bytes.Contains(out, []byte(`"accepted":true`)) {
			t.Fatalf("scan at %s: %s", r.door, out)
		}
	}
	post(t, a, "/v1/log/notes", org, "only-a", `{"text":"no conflict"}`)

	// Before they meet, each side sees no conflict.
	for _, e := range []*edge.Edge{a, b} {
		var rep reconcile.Report
		if err := json.Unmarshal(getReport(t, e, org), &rep); err != nil {
			t.Fatal(err)
		}
		if len(rep.Items) != 0 {
			t.Fatalf("%s reports %+v before the partition heals", e.URL(), rep.Items)
		}
	}

	// Heal: A restarts with B as its peer.
	if err := a.Close(ctx); err != nil {
		t.Fatal(err)
	}
	cfgA.Sync.Peers = []string{b.URL()}
	a, err = edge.Open(ctx, cfgA, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(ctx)

	var ra, rb []byte
	deadline := time.Now().Add(15 * time.Second)
	for {
		va, _ := a.Store.Vector(ctx, ev.Event.Slug)
		vb, _ := b.Store.Vector(ctx, ev.Event.Slug)
		if len(va) == 2 && fmt.Sprint(va) == fmt.Sprint(vb) {
			ra, rb = getReport(t, a, org), getReport(t, b, ev.ValidToken(t, auth.RoleAdmin))
			if bytes.Equal(ra, rb) {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edges did not converge: vectors %v / %v, reports\n%s\n%s", va, vb, ra, rb)
		}
		time.Sleep(10 * time.Millisecond) // polling for convergence
	}

	var rep reconcile.Report
	if err := json.Unmarshal(ra, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Hash() != rep.Digest {
		t.Fatalf("served hash %s, content hashes to %s", rep.Digest, rep.Hash())
	}
	if len(rep.Items) != 2 {
		t.Fatalf("%d items, want exactly the 2 injected conflicts: %s", len(rep.Items), ra)
	}
	for _, k := range reconcile.Kinds {
		want := 0
		if k == reconcile.KindDuplicateIdempotencyKey || k == reconcile.KindDoubleEntry {
			want = 1
		}
		if rep.Counts[k] != want {
			t.Errorf("counts[%s] = %d, want %d", k, rep.Counts[k], want)
		}
	}
	nodes := map[string]bool{a.Journal.Node().String(): true, b.Journal.Node().String(): true}
	for _, it := range rep.Items {
		switch it.Kind {
		case reconcile.KindDuplicateIdempotencyKey:
			if it.Entity != "idempotency:same-key" {
				t.Errorf("duplicate key item %+v", it)
			}
		case reconcile.KindDoubleEntry:
			if it.Entity != "ticket:tk-1" {
				t.Errorf("double entry item %+v", it)
			}
		}
		if len(it.Entries) != 2 || it.Entries[0].Node == it.Entries[1].Node ||
			!nodes[it.Entries[0].Node.String()] || !nodes[it.Entries[1].Node.String()] {
			t.Errorf("%s item should name one entry of each edge: %+v", it.Kind, it.Entries)
		}
	}
	// The report is the one the entries give, read straight from either store.
	direct, err := reconcile.Read(ctx, b.Store, ev.Event.Slug, reconcile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if direct.Digest != rep.Digest {
		t.Fatalf("store report hash %s, served %s", direct.Digest, rep.Digest)
	}
}

package replica_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"

	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/ledger"
	"canopy/replica"
)

// TestPushRefusesTamperedEntries: an enrolled node pushes a stream whose
// third entry has one byte changed (in the body, or in the signature); the
// receiver keeps the valid prefix, refuses the rest and says why.
func TestPushRefusesTamperedEntries(t *testing.T) {
	ev := testutil.NewEvent(t, "push-guard")
	cfgA := ev.EdgeConfig(t, "edge-a", "")
	a, err := edge.Open(context.Background(), cfgA, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close(context.Background())
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	b, err := edge.Open(context.Background(), cfgB, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	for i := 0; i < 4; i++ {
		if _, err := a.Journal.Append(context.Background(), "test.thing/v1", "k", []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	held, err := a.Store.Entries(context.Background(), ev.Event.Slug, a.Journal.Node(), 1, 5, 0)
	if err != nil || len(held) != 5 {
		t.Fatalf("%d entries, %v", len(held), err)
	}
	key, enrolment, err := auth.LoadNode(cfgA.Node.Key)
	if err != nil {
		t.Fatal(err)
	}
	for _, where := range []string{"body", "signature"} {
		var buf bytes.Buffer
		sw, _ := replica.NewStreamWriter(&buf)
		for i, s := range held {
			enc := s.Entry.Encode()
			if i == 2 {
				if where == "body" {
					enc[len(enc)-ledger.SigSize-3] ^= 0x01
				} else {
					enc[len(enc)-1] ^= 0x80
				}
			}
			sw.Entry(enc)
		}
		sw.End()
		sw.Flush()
		req, _ := http.NewRequest("POST", b.URL()+"/v1/sync/push", bytes.NewReader(buf.Bytes()))
		req.Header.Set("Content-Type", replica.ContentType)
		replica.Sign(req, key, enrolment, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var pr replica.PushResponse
		json.NewDecoder(resp.Body).Decode(&pr)
		resp.Body.Close()
		if resp.StatusCode != 200 || pr.Refused == "" {
			t.Fatalf("tampered %s: %d %+v, want 200 with a refusal", where, resp.StatusCode, pr)
		}
		if got := pr.Vector[a.Journal.Node()]; got != 2 {
			t.Fatalf("tampered %s: receiver holds %d of the author's entries, want the 2 before the tampered one", where, got)
		}
		if pr.RefusedReason != replica.RefusedSignature {
			t.Fatalf("tampered %s: refused_reason %q, want %q", where, pr.RefusedReason, replica.RefusedSignature)
		}
		t.Logf("tampered %s: refused: %s", where, pr.Refused)
	}
	labels := fmt.Sprintf("peer=%q,reason=%q,side=%q", "node:"+a.Journal.Node().String(), replica.RefusedSignature, "received")
	if n, _ := scrape(t, b, "canopy_sync_refused_entries_total", labels); n != 2 {
		t.Fatalf("B counted %v refusals {%s}, want 2", n, labels)
	}
	// Unauthenticated: no credentials.
	resp, err := http.Post(b.URL()+"/v1/sync/push", replica.ContentType, bytes.NewReader(nil))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 401 {
		t.Fatalf("push without node credentials: %d, want 401", resp.StatusCode)
	}
}

package replica_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"testing"
	"time"

	"canopy/auth"
	"canopy/internal/testutil"
	"canopy/reconcile"
	"canopy/store"
)

// TestClockSkewConvergesAndIsFlaggedAlike: one edge runs three hours
// ahead (the binary's clock-offset setting). The two edges still converge,
// and the reconciliation report — flagging the skewed node's entries — is
// byte-identical on both.
func TestClockSkewConvergesAndIsFlaggedAlike(t *testing.T) {
	ev := testutil.NewEvent(t, "skew-market")
	// Valid for the skewed node's clock too.
	org := ev.Token(t, auth.RoleOrganizer, "laptop", time.Now().Add(-time.Hour), time.Now().Add(6*time.Hour))
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	cfgB.Node.Listen = testutil.FreeAddr(t)
	b := open(t, cfgB)
	defer b.Close(context.Background())
	cfgA := ev.EdgeConfig(t, "edge-a", "")
	cfgA.Node.ClockOffset.Duration = 3 * time.Hour
	cfgA.Sync.Peers = []string{"http://" + cfgB.Node.Listen}
	a := open(t, cfgA)
	defer a.Close(context.Background())

	for i := 0; i < 5; i++ {
		note(t, b, org, fmt.Sprintf("b-%d", i), "on time")
	}
	waitSame(t, a.Store, b.Store, ev.Event.Slug, 10*time.Second)
	for i := 0; i < 5; i++ {
		note(t, a, org, fmt.Sprintf("a-%d", i), "three hours ahead")
		note(t, b, org, fmt.Sprintf("b2-%d", i), "on time")
	}
	waitSame(t, a.Store, b.Store, ev.Event.Slug, 10*time.Second)

	get := func(url string) []byte {
		req, _ := http.NewRequest("GET", url+"/v1/reconciliation", nil)
		req.Header.Set("Authorization", "Bearer "+org)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		body, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("report: %d %s", resp.StatusCode, body)
		}
		return body
	}
	ra, rb := get(a.URL()), get(b.URL())
	if string(ra) != string(rb) {
		t.Fatalf("reports differ:\n%s\n%s", ra, rb)
	}
	rep, err := reconcile.Read(context.Background(), b.Store, ev.Event.Slug, reconcile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	flagged := 0
	for _, it := range rep.Items {
		if it.Kind == reconcile.KindClockSkew {
			flagged++
			if it.Entity != "node:"+a.Journal.Node().String() {
				t.Fatalf("clock-skew item is about %s, not the skewed node %s: %+v", it.Entity, a.Journal.Node(), it)
			}
			for _, e := range it.Entries {
				if e.Role == "flagged" && e.Node != a.Journal.Node() {
					t.Fatalf("clock-skew item flags an entry of %s, not of the skewed node: %+v", e.Node, it)
				}
			}
		}
	}
	if flagged == 0 {
		t.Fatalf("the node three hours ahead was not flagged: %s", rb)
	}
	var _ store.Store = a.Store
}

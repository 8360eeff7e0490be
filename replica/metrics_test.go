package replica_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/ledger"
	"canopy/replica"
	"canopy/store"
)

// scrape reads a node's /metrics and returns the value of the sample with
// the given name and exact label set (e.g. `peer="http://…"`), and whether
// there is one.
func scrape(t *testing.T, e *edge.Edge, name, labels string) (float64, bool) {
	t.Helper()
	resp, err := http.Get(e.URL() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := name
	if labels != "" {
		want += "{" + labels + "}"
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, want+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			if err != nil {
				t.Fatalf("metric line %q: %v", line, err)
			}
			return f, true
		}
	}
	return 0, false
}

// TestSyncMetrics: after A syncs with B, A's metrics count exactly the
// entries that crossed each way, show the link up with no backlog, and
// observe one lag sample per entry received; GET /v1/sync/status says the
// same.
func TestSyncMetrics(t *testing.T) {
	ev := testutil.NewEvent(t, "sync-metrics")
	org := ev.ValidToken(t, auth.RoleOrganizer)
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	cfgB.Node.Listen = testutil.FreeAddr(t)
	b := open(t, cfgB)
	defer b.Close(context.Background())
	for i := range 3 {
		note(t, b, org, fmt.Sprintf("b-%d", i), "from b")
	}
	cfgA := ev.EdgeConfig(t, "edge-a", "")
	peer := "http://" + cfgB.Node.Listen
	cfgA.Sync.Peers = []string{peer}
	a := open(t, cfgA)
	defer a.Close(context.Background())
	for i := range 5 {
		note(t, a, org, fmt.Sprintf("a-%d", i), "from a")
	}
	waitSame(t, a.Store, b.Store, ev.Event.Slug, 10*time.Second)

	label := fmt.Sprintf("peer=%q", peer)
	nodeA, nodeB := a.Journal.Node(), b.Journal.Node()
	deadline := time.Now().Add(10 * time.Second)
	for {
		// A sends its whole log and receives B's; nobody else writes.
		sent, _ := scrape(t, a, "canopy_sync_entries_sent_total", label)
		recv, _ := scrape(t, a, "canopy_sync_entries_received_total", label)
		backlog, okB := scrape(t, a, "canopy_sync_peer_backlog_entries", label)
		lagCount, _ := scrape(t, a, "canopy_sync_lag_seconds_count", "")
		wantSent, wantRecv := float64(a.Journal.Durable()), float64(b.Journal.Durable())
		if sent == wantSent && recv == wantRecv && okB && backlog == 0 && lagCount == wantRecv {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A's metrics: sent %v (want %v), received %v (want %v), backlog %v (%v), lag samples %v",
				sent, wantSent, recv, wantRecv, backlog, okB, lagCount)
		}
		time.Sleep(10 * time.Millisecond) // polling the metrics
	}
	if up, _ := scrape(t, a, "canopy_sync_peer_connected", label); up != 1 {
		t.Fatalf("connected = %v, want 1", up)
	}
	last, _ := scrape(t, a, "canopy_sync_peer_last_contact_seconds", label)
	if d := time.Since(time.Unix(int64(last), 0)); d < -time.Second || d > time.Minute {
		t.Fatalf("last contact %v is %s from now", last, d)
	}
	// B took A's pushes: its received counter is labelled by A's node.
	if got, _ := scrape(t, b, "canopy_sync_entries_received_total", fmt.Sprintf("peer=%q", "node:"+nodeA.String())); got != float64(a.Journal.Durable()) {
		t.Fatalf("B received %v from A, want %d", got, a.Journal.Durable())
	}

	resp, err := http.Get(a.URL() + "/v1/sync/status")
	if err != nil {
		t.Fatal(err)
	}
	var st replica.StatusResponse
	err = json.NewDecoder(resp.Body).Decode(&st)
	resp.Body.Close()
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("status: %d %v", resp.StatusCode, err)
	}
	if st.Node != nodeA || st.Event != ev.Event.Slug || st.Vector[nodeB] != b.Journal.Durable() || len(st.Peers) != 1 {
		t.Fatalf("status %+v", st)
	}
	p := st.Peers[0]
	if p.URL != peer || p.Node != nodeB.String() || !p.Connected || p.Backlog != 0 ||
		uint64(p.Sent) != a.Journal.Durable() || uint64(p.Received) != b.Journal.Durable() {
		t.Fatalf("peer status %+v", p)
	}
}

func TestRefusedReason(t *testing.T) {
	for _, c := range []struct {
		err  error
		want string
	}{
		{fmt.Errorf("x: %w", replica.ErrRevokedAuthor), replica.RefusedRevoked},
		{fmt.Errorf("x: %w", replica.ErrUnknownAuthor), replica.RefusedUnknownAuthor},
		{fmt.Errorf("x: %w", ledger.ErrBadSignature), replica.RefusedSignature},
		{fmt.Errorf("x: %w", store.ErrConflict), replica.RefusedChain},
		{fmt.Errorf("x: %w", replica.ErrMalformed), replica.RefusedMalformed},
		{fmt.Errorf("x: %w", replica.ErrVersion), replica.RefusedVersion},
		{errors.New("disk on fire"), replica.RefusedOther},
	} {
		if got := replica.RefusedReason(c.err); got != c.want {
			t.Errorf("RefusedReason(%v) = %q, want %q", c.err, got, c.want)
		}
	}
}

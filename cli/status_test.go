package cli_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/replica"
)

// TestStatus: canopy status shows a node, its vector and its peer's link
// once the two edges have synced; --json prints what the node serves; bad
// input is a usage error.
func TestStatus(t *testing.T) {
	ev := testutil.NewEvent(t, "status-cli")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addrB := ln.Addr().String()
	ln.Close()
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	cfgB.Node.Listen = addrB
	b, err := edge.Open(context.Background(), cfgB, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { b.Close(context.Background()) })
	cfgA := ev.EdgeConfig(t, "edge-a", "")
	cfgA.Sync.Peers = []string{"http://" + addrB}
	a, err := edge.Open(context.Background(), cfgA, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { a.Close(context.Background()) })
	nodeA, nodeB := a.Journal.Node(), b.Journal.Node()

	// Wait until A has B's log (its enrolment) and B has A's.
	var st replica.StatusResponse
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := runCLI("status", "--url", a.URL(), "--json")
		if r.code != 0 {
			t.Fatalf("status --json: exit %d: %s", r.code, r.stderr)
		}
		if err := json.Unmarshal([]byte(r.stdout), &st); err != nil {
			t.Fatalf("status --json printed %q: %v", r.stdout, err)
		}
		if len(st.Peers) == 1 && st.Peers[0].Connected && st.Peers[0].Backlog == 0 && st.Vector[nodeB] >= 1 &&
			uint64(st.Peers[0].Sent) == st.Vector[nodeA] {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("A never showed a synced peer: %s", r.stdout)
		}
		time.Sleep(10 * time.Millisecond) // polling the node's status
	}
	if st.Node != nodeA || st.Event != "status-cli" {
		t.Fatalf("status %+v", st)
	}

	r := runCLI("status", "--url", a.URL())
	if r.code != 0 {
		t.Fatalf("status: exit %d: %s", r.code, r.stderr)
	}
	peerRow := fmt.Sprintf("http://%s  %s  yes", addrB, nodeB)
	for _, want := range []string{
		"node    " + nodeA.String(), "event   status-cli", "vector  2 authors",
		nodeA.String() + "  ", "(this node)", "URL", "BACKLOG", "SENT", "RECEIVED", peerRow,
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("table lacks %q:\n%s", want, r.stdout)
		}
	}
	// B syncs with nobody itself.
	if r := runCLI("status", "--url", b.URL()); r.code != 0 || !strings.Contains(r.stdout, "peers   none") {
		t.Errorf("status of B: exit %d: %s%s", r.code, r.stdout, r.stderr)
	}

	for _, c := range []struct {
		args []string
		code int
		want string
	}{
		{[]string{"status"}, 2, "--url"},
		{[]string{"status", "--url", "ftp://x"}, 2, "http://"},
		{[]string{"status", "--url", a.URL(), "extra"}, 2, ""},
		{[]string{"status", "--url", "http://" + addrB + "/nowhere"}, 1, "404"},
	} {
		r := runCLI(c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.want) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, r.code, r.stderr, c.code, c.want)
		}
	}
}

package cli_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"canopy/api"
	"canopy/auth"
	"canopy/cli"
	"canopy/edge"
	"canopy/hub"
	"canopy/internal/testutil"
)

var hubServing = regexp.MustCompile(`(?m)^canopy hub serving (http://127\.0\.0\.1:[0-9]+) \(([0-9]+) events: ([^)]*)\)$`)

// The organizer enrols a hub node, the operator adds the event to a hub
// directory and runs the hub; an edge syncs with it; cancelling the
// context stops the hub with exit code 0.
func TestHubCommand(t *testing.T) {
	evDir := newCeremonyEvent(t)
	nodeDir := filepath.Join(t.TempDir(), "hub-node")
	ceremonyRun(t, "node", "enroll", "--event", evDir, "--name", "hub-1", "--role", "hub", "--out", nodeDir).mustSucceed(t)
	hubDir := t.TempDir()
	r := ceremonyRun(t, "hub", "add-event", "--dir", hubDir, "--event", evDir, "--node", nodeDir).mustSucceed(t)
	if strings.TrimSpace(r.stdout) != "night-market" || !strings.Contains(r.stderr, "/v1/events/night-market") {
		t.Fatalf("add-event printed %q / %q", r.stdout, r.stderr)
	}
	if _, err := os.Stat(filepath.Join(hubDir, hub.EventsDir, "night-market", auth.EventKeyFile)); err == nil {
		t.Fatal("add-event copied the event's secret key")
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := new(syncBuffer)
	code := make(chan int, 1)
	go func() {
		code <- cli.Run(ctx, []string{"hub", "--dir", hubDir, "--listen", "127.0.0.1:0", "--log-level", "warn"}, out, out)
	}()
	var base string
	deadline := time.Now().Add(30 * time.Second)
	for base == "" {
		if m := hubServing.FindStringSubmatch(out.String()); m != nil {
			if m[2] != "1" || m[3] != "night-market" {
				t.Fatalf("serving line %q", m[0])
			}
			base = m[1]
			break
		}
		select {
		case c := <-code:
			t.Fatalf("hub exited with %d before serving:\n%s", c, out)
		case <-time.After(5 * time.Millisecond): // poll interval, bounded by deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("hub printed no serving line within 30s:\n%s", out)
		}
	}
	if _, err := os.Stat(filepath.Join(hubDir, hub.StoreFile)); err != nil {
		t.Fatalf("the hub's default store: %v", err)
	}

	// An edge of the event syncs with the hub; its note appears in the
	// hub's audit log of the event.
	ev, err := auth.LoadEvent(evDir)
	if err != nil {
		t.Fatal(err)
	}
	key, err := auth.LoadEventKey(evDir)
	if err != nil {
		t.Fatal(err)
	}
	tev := &testutil.Event{Dir: evDir, Event: ev, Key: key}
	cfg := tev.EdgeConfig(t, "edge-1", "")
	cfg.Sync.Hubs = []string{base + "/v1/events/night-market"}
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	org := tev.ValidToken(t, auth.RoleOrganizer)
	req, _ := http.NewRequest("POST", e.URL()+"/v1/log/notes", strings.NewReader(`{"text":"hello hub"}`))
	req.Header.Set("Authorization", "Bearer "+org)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "n-1")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 {
		t.Fatalf("note: %d", resp.StatusCode)
	}
	for deadline := time.Now().Add(10 * time.Second); ; {
		req, _ := http.NewRequest("GET", base+"/v1/events/night-market/v1/log/entries?node="+e.Enrolment.Node.String(), nil)
		req.Header.Set("Authorization", "Bearer "+org)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		var page api.EntryPage
		if resp.StatusCode == 200 && json.Unmarshal(b, &page) == nil && len(page.Entries) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the edge's note did not reach the hub: %d %s", resp.StatusCode, b)
		}
		time.Sleep(10 * time.Millisecond) // polling for the sync
	}

	cancel()
	select {
	case c := <-code:
		if c != 0 {
			t.Fatalf("hub exited with %d:\n%s", c, out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("hub did not stop within 30s of its context ending:\n%s", out)
	}
}

func TestHubCommandRejectsBadInput(t *testing.T) {
	evDir := newCeremonyEvent(t)
	edgeNode := filepath.Join(t.TempDir(), "edge-node")
	ceremonyRun(t, "node", "enroll", "--event", evDir, "--name", "edge-1", "--role", "edge", "--out", edgeNode).mustSucceed(t)
	hubDir := t.TempDir()

	for _, c := range []struct {
		args    []string
		code    int
		mention string
	}{
		{[]string{"hub", "add-event", "--event", evDir, "--node", edgeNode}, 2, "--dir is required"},
		{[]string{"hub", "add-event", "--dir", hubDir, "--node", edgeNode}, 2, "--event is required"},
		{[]string{"hub", "add-event", "--dir", hubDir, "--event", evDir}, 2, "--node is required"},
		{[]string{"hub", "add-event", "--dir", hubDir, "--event", evDir, "--node", edgeNode}, 1, "not as a hub"},
		{[]string{"hub", "--dir", hubDir, "--listen", "nowhere"}, 1, "listen"},
		{[]string{"hub", "--dir", hubDir, "--listen", "127.0.0.1:0", "--db", "mysql://x/y"}, 1, "postgres://"},
		{[]string{"hub", "--dir", hubDir, "extra"}, 2, "unexpected argument"},
	} {
		r := ceremonyRun(t, c.args...)
		if r.code != c.code || !strings.Contains(r.stderr, c.mention) {
			t.Errorf("%v: exit %d, stderr %q; want exit %d mentioning %q", c.args, r.code, r.stderr, c.code, c.mention)
		}
	}
	// CANOPY_HUB_DB is read when --db is not given.
	t.Setenv("CANOPY_HUB_DB", "sqlserver://u@h/db")
	if r := ceremonyRun(t, "hub", "--dir", hubDir, "--listen", "127.0.0.1:0"); r.code != 1 || !strings.Contains(r.stderr, "sqlserver://") {
		t.Errorf("CANOPY_HUB_DB ignored: exit %d, stderr %q", r.code, r.stderr)
	}
	if ents, _ := os.ReadDir(filepath.Join(hubDir, hub.EventsDir)); len(ents) != 0 {
		t.Fatalf("refused add-events left %d entries in the events directory", len(ents))
	}
}

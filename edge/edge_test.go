package edge_test

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"canopy/api"
	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/viewset"
)

func openEdge(t *testing.T, ev *testutil.Event, dataDir string) *edge.Edge {
	t.Helper()
	cfg := ev.EdgeConfig(t, "edge-1", dataDir)
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

func call(t *testing.T, method, url, token, body string, hdr ...string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return reply{res.StatusCode, res.Header, b}
}

func wantProblem(t *testing.T, r reply, status int, typ string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d: %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Fatalf("Content-Type %q, want application/problem+json", ct)
	}
	var p struct {
		Type   string `json:"type"`
		Status int    `json:"status"`
		Detail string `json:"detail"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p.Type != typ || p.Status != status || p.Detail == "" {
		t.Fatalf("problem %s, want type %s", r.body, typ)
	}
}

func TestEdgeServesWithRealTokens(t *testing.T) {
	ev := testutil.NewEvent(t, "edge-market")
	e := openEdge(t, ev, "")
	u := e.URL()
	for _, p := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.yaml"} {
		if r := call(t, "GET", u+p, "", ""); r.status != 200 {
			t.Fatalf("GET %s without a token: %d %s", p, r.status, r.body)
		}
	}
	org := ev.ValidToken(t, auth.RoleOrganizer)
	r := call(t, "POST", u+"/v1/log/notes", org, `{"text":"doors open"}`, "Idempotency-Key", "n1")
	if r.status != 201 {
		t.Fatalf("note: %d %s", r.status, r.body)
	}
	var note struct {
		Entry struct {
			Seq uint64 `json:"seq"`
		} `json:"entry"`
	}
	json.Unmarshal(r.body, &note)
	if note.Entry.Seq != 2 {
		t.Fatalf("note is seq %d, want 2 (seq 1 is the node's enrolment)", note.Entry.Seq)
	}

	now := time.Now()
	other := testutil.NewEvent(t, "edge-market") // same slug, another key
	tokenCases := []struct {
		name, token, typ string
		status           int
	}{
		{"missing", "", api.TypeTokenMissing, 401},
		{"garbage", "not-a-token", api.TypeTokenMalformed, 401},
		{"expired", ev.Token(t, auth.RoleOrganizer, "old", now.Add(-2*time.Hour), now.Add(-time.Hour)), api.TypeTokenExpired, 401},
		{"not yet valid", ev.Token(t, auth.RoleOrganizer, "early", now.Add(time.Hour), now.Add(2*time.Hour)), api.TypeTokenNotYetValid, 401},
		{"forged", other.ValidToken(t, auth.RoleOrganizer), api.TypeTokenForged, 401},
		{"wrong event", func() string {
			tok, err := auth.IssueDevice(ev.Key, auth.Device{Event: "another-market", Role: auth.RoleOrganizer, Name: "x", NotBefore: now.Add(-time.Minute), Expires: now.Add(time.Hour)})
			if err != nil {
				t.Fatal(err)
			}
			return tok
		}(), api.TypeTokenWrongEvent, 401},
		{"wrong role", ev.ValidToken(t, auth.RoleDoor), api.TypeForbiddenRole, 403},
	}
	for _, tc := range tokenCases {
		t.Run(tc.name, func(t *testing.T) {
			wantProblem(t, call(t, "GET", u+"/v1/log/entries", tc.token, ""), tc.status, tc.typ)
			wantProblem(t, call(t, "POST", u+"/v1/log/notes", tc.token, `{"text":"x"}`, "Idempotency-Key", "k-"+tc.name), tc.status, tc.typ)
		})
	}
	wantProblem(t, call(t, "GET", u+"/v1/nope", org, ""), 404, api.TypeRouteNotFound)
	wantProblem(t, call(t, "POST", u+"/v1/log/notes", org, `{"text":"`+strings.Repeat("x", 2<<20)+`"}`, "Idempotency-Key", "big"), 413, api.TypeBodyTooLarge)

	// Metrics name the group commit batch size and the requests by route.
	m := call(t, "GET", u+"/metrics", "", "")
	for _, want := range []string{"canopy_ledger_commit_batch_size", "canopy_ledger_appends_total", `route="POST /v1/log/notes"`} {
		if !strings.Contains(string(m.body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

func TestEdgeOpenAPIDocumentsEveryRoute(t *testing.T) {
	ev := testutil.NewEvent(t, "doc-market")
	e := openEdge(t, ev, "")
	missing, extra, err := e.API.UndocumentedRoutes(api.OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 || len(extra) > 0 {
		t.Fatalf("openapi.yaml out of date: undocumented %v, documented but not served %v", missing, extra)
	}
}

func TestEdgeRefusesBadSetup(t *testing.T) {
	ev := testutil.NewEvent(t, "setup-market")
	cfg := ev.EdgeConfig(t, "edge-1", "")
	cfg.Node.Event = filepath.Join(t.TempDir(), "missing")
	if _, err := edge.Open(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "canopy event init") {
		t.Fatalf("missing event: %v", err)
	}
	// A node enrolled in another event is refused.
	other := testutil.NewEvent(t, "setup-market")
	cfg = other.EdgeConfig(t, "edge-x", "")
	cfg.Node.Event = ev.Dir
	if _, err := edge.Open(context.Background(), cfg, nil); err == nil || !strings.Contains(err.Error(), "enrolment") {
		t.Fatalf("foreign enrolment: %v", err)
	}
}

// TestEdgeFullDisk fills a real (tmpfs) disk under the edge's store: the API
// answers 503 problem+json, nothing acknowledged is lost, the store stays
// valid, and the edge takes writes again once space returns.
func TestEdgeFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestEdgeFullDisk must run as root: it mounts a small tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=1m"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	ev := testutil.NewEvent(t, "full-market")
	e := openEdge(t, ev, dir)
	org := ev.ValidToken(t, auth.RoleOrganizer)
	text := strings.Repeat("n", 1900)
	acked := map[string]bool{}
	var full reply
	for i := 0; ; i++ {
		if i > 5000 {
			t.Fatal("a 1 MiB disk never filled")
		}
		key := fmt.Sprintf("fill-%d", i)
		r := call(t, "POST", e.URL()+"/v1/log/notes", org, fmt.Sprintf(`{"text":"%s %d"}`, text, i), "Idempotency-Key", key)
		if r.status == 201 {
			acked[key] = true
			continue
		}
		full = r
		break
	}
	wantProblem(t, full, 503, api.TypeStoreUnavailable)
	if full.header.Get("Retry-After") == "" {
		t.Fatal("503 without Retry-After")
	}
	if len(acked) == 0 {
		t.Fatal("nothing was written before the disk filled")
	}
	ctx := context.Background()
	if err := e.Store.Check(ctx); err != nil {
		t.Fatalf("store not valid on a full disk: %v", err)
	}
	// Space returns.
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=64m"); err != nil {
		t.Fatalf("grow tmpfs: %v", err)
	}
	r := call(t, "POST", e.URL()+"/v1/log/notes", org, `{"text":"space is back"}`, "Idempotency-Key", "after")
	if r.status != 201 {
		t.Fatalf("after space returned: %d %s", r.status, r.body)
	}
	// Every acknowledged note replays (it is stored), the views match the
	// entries, and the chain has no gap.
	for key := range acked {
		if r := call(t, "POST", e.URL()+"/v1/log/notes", org, `{"text":"ignored"}`, "Idempotency-Key", key); r.status != 422 {
			t.Fatalf("acknowledged note %s: replay with another body gave %d, want 422 (key known)", key, r.status)
		}
	}
	if err := viewset.All().Verify(ctx, e.Store, ev.Event.Slug); err != nil {
		t.Fatal(err)
	}
	head, _, err := e.Store.Head(ctx, ev.Event.Slug, e.Journal.Node())
	if err != nil {
		t.Fatal(err)
	}
	if want := uint64(len(acked) + 2); head != want {
		t.Fatalf("head seq %d, want %d (enrolment + acknowledged + one after)", head, want)
	}
}

// TestEdgeClosesWithOpenStreams: an open lot event stream does not hold up
// shutdown, and Close may be called twice.
func TestEdgeClosesWithOpenStreams(t *testing.T) {
	ev := testutil.NewEvent(t, "close-market")
	e, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-1", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	auctioneer := ev.ValidToken(t, auth.RoleAuctioneer)
	if r := call(t, "POST", e.URL()+"/v1/lots", auctioneer, `{"id":"l1","title":"Lamp","start_price":100,"increment":10,"duration_s":600}`, "Idempotency-Key", "l1"); r.status != 201 {
		t.Fatalf("open lot: %d %s", r.status, r.body)
	}
	req, _ := http.NewRequest("GET", e.URL()+"/v1/lots/l1/events", nil)
	req.Header.Set("Authorization", "Bearer "+auctioneer)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("stream: %d", resp.StatusCode)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.Close(ctx); err != nil {
		t.Fatalf("Close with an open stream: %v", err)
	}
	if err := e.Close(ctx); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"canopy/api"
	"canopy/auth"
	"canopy/cli"
)

// syncBuffer is an io.Writer the command writes to while the test reads.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// demoRun is one `canopy demo` running in a goroutine.
type demoRun struct {
	out    *syncBuffer
	cancel context.CancelFunc
	code   chan int
	url    string
	token  string
	node   string
}

var (
	demoURL   = regexp.MustCompile(`(?m)^  device API   (http://127\.0\.0\.1:[0-9]+)$`)
	demoToken = regexp.MustCompile(`(?m)^Organizer token \(also in ([^)]+)\):\n  (v4\.public\.[A-Za-z0-9_-]+)$`)
	demoNode  = regexp.MustCompile(`edge node ([0-9a-f]{32})`)
)

// startDemo runs the demo in dir with extra flags and waits (at most 30 s)
// until it has printed its URL and token.
func startDemo(t *testing.T, dir string, flags ...string) *demoRun {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	d := &demoRun{out: new(syncBuffer), cancel: cancel, code: make(chan int, 1)}
	args := append([]string{"demo", "--dir", dir, "--listen", "127.0.0.1:0"}, flags...)
	go func() {
		d.code <- cli.Run(ctx, args, d.out, d.out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-d.code:
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop within 30s of its context ending")
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		out := d.out.String()
		u, tok := demoURL.FindStringSubmatch(out), demoToken.FindStringSubmatch(out)
		if u != nil && tok != nil && strings.Contains(out, "Press Ctrl-C to stop") {
			d.url, d.token = u[1], tok[2]
			if tp := tok[1]; tp != filepath.Join(dir, "organizer.token") {
				t.Fatalf("token file %q, want it in the demo directory %s", tp, dir)
			}
			if n := demoNode.FindStringSubmatch(out); n != nil {
				d.node = n[1]
			}
			return d
		}
		select {
		case c := <-d.code:
			d.code <- c
			t.Fatalf("demo exited with %d before serving:\n%s", c, out)
		case <-time.After(5 * time.Millisecond): // poll interval, bounded by deadline
		}
		if time.Now().After(deadline) {
			t.Fatalf("demo printed no URL and token within 30s:\n%s", out)
		}
	}
}

// stop cancels the demo and requires exit code 0 within 30 s.
func (d *demoRun) stop(t *testing.T) string {
	t.Helper()
	d.cancel()
	select {
	case c := <-d.code:
		d.code <- c // for the cleanup
		if c != 0 {
			t.Fatalf("demo exited with %d:\n%s", c, d.out)
		}
	case <-time.After(30 * time.Second):
		t.Fatalf("demo did not stop within 30s:\n%s", d.out)
	}
	return d.out.String()
}

func demoRequest(t *testing.T, method, url, token, body string, header ...string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Content-Type", "application/json")
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b
}

func TestDemo(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")

	first := startDemo(t, dir, "--devices=false")
	for _, want := range []string{first.url + "/healthz", first.url + "/metrics", first.url + "/v1/openapi.yaml",
		"curl -s -X POST " + first.url + "/v1/log/notes"} {
		if !strings.Contains(first.out.String(), want) {
			t.Fatalf("demo output lacks %q:\n%s", want, first.out)
		}
	}
	status, body := demoRequest(t, "POST", first.url+"/v1/log/notes", first.token, `{"text":"demo doors open"}`, "Idempotency-Key", "demo-test-1")
	if status != http.StatusCreated {
		t.Fatalf("note with the demo's token: %d %s", status, body)
	}
	out := first.stop(t)
	if !strings.Contains(out, "Stopped. The demo's event, keys and data are in "+dir) {
		t.Fatalf("demo output does not say where the data is:\n%s", out)
	}
	ev, err := auth.LoadEvent(filepath.Join(dir, "event"))
	if err != nil {
		t.Fatal(err)
	}

	// Again on the same directory: the same event, node and log.
	second := startDemo(t, dir, "--devices=false")
	if second.node == "" || second.node != first.node {
		t.Fatalf("second demo runs node %q, first ran %q", second.node, first.node)
	}
	ev2, err := auth.LoadEvent(filepath.Join(dir, "event"))
	if err != nil {
		t.Fatal(err)
	}
	if ev2.Slug != ev.Slug || ev2.PublicKeyPASERK != ev.PublicKeyPASERK {
		t.Fatalf("second demo made a new event %q (%s), want %q (%s)", ev2.Slug, ev2.PublicKeyPASERK, ev.Slug, ev.PublicKeyPASERK)
	}
	// The first run's token still works: same event key.
	status, body = demoRequest(t, "GET", second.url+"/v1/log/entries", first.token, "")
	if status != http.StatusOK {
		t.Fatalf("entries with the first run's token: %d %s", status, body)
	}
	var page api.EntryPage
	if err := json.Unmarshal(body, &page); err != nil {
		t.Fatal(err)
	}
	if len(page.Entries) != 2 || page.Entries[0].Kind != auth.EnrolledKind || page.Entries[1].Kind != api.NoteKind ||
		page.Entries[1].Event != ev.Slug || !bytes.Contains(page.Entries[1].Body, []byte(`"demo doors open"`)) {
		t.Fatalf("second demo's log, want the enrolment and the first run's note:\n%s", body)
	}
	status, body = demoRequest(t, "POST", second.url+"/v1/log/notes", second.token, `{"text":"second run"}`, "Idempotency-Key", "demo-test-2")
	var n struct {
		Entry struct{ Seq uint64 }
	}
	if status != http.StatusCreated || json.Unmarshal(body, &n) != nil || n.Entry.Seq != 3 {
		t.Fatalf("note in the second run: %d %s, want seq 3", status, body)
	}
	second.stop(t)
}

func TestDemoBadFlags(t *testing.T) {
	r := ceremonyRun(t, "demo", "--listen")
	if r.code != 2 || !strings.Contains(r.stderr, "listen") {
		t.Fatalf("demo --listen without a value: exit %d\nstderr: %s", r.code, r.stderr)
	}
	r = ceremonyRun(t, "demo", "extra")
	if r.code != 2 || !strings.Contains(r.stderr, `unexpected argument "extra"`) {
		t.Fatalf("demo extra: exit %d\nstderr: %s", r.code, r.stderr)
	}
}

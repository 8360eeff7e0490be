package cli_test

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"canopy/api"
	"canopy/auth"
	"canopy/checkin"
	"canopy/cli"
	"canopy/reconcile"
	"canopy/salesreport"
	"canopy/simulate"
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

	first := startDemo(t, dir, "--devices=false", "--edges", "1")
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
	second := startDemo(t, dir, "--devices=false", "--edges", "1")
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
	for _, bad := range [][]string{{"--rate", "0"}, {"--rate", "-3"}, {"--duration", "-1s"}, {"--devices=maybe"},
		{"--edges", "0"}, {"--edges", "6"}, {"--edges", "two"}, {"--cuts=sometimes"}} {
		r = ceremonyRun(t, append([]string{"demo"}, bad...)...)
		if r.code != 2 || !strings.Contains(r.stderr, strings.TrimPrefix(strings.SplitN(bad[0], "=", 2)[0], "--")) {
			t.Fatalf("demo %v: exit %d\nstderr: %s", bad, r.code, r.stderr)
		}
	}
	r = ceremonyRun(t, "demo", "extra")
	if r.code != 2 || !strings.Contains(r.stderr, `unexpected argument "extra"`) {
		t.Fatalf("demo extra: exit %d\nstderr: %s", r.code, r.stderr)
	}
}

var (
	demoSummaryLine = regexp.MustCompile(`(?m)^demo summary: (\{.*\})$`)
	verifiedEntries = regexp.MustCompile(`(?m)^OK   node ([0-9a-f]{32}) \(demo-edge\): ([0-9]+) entries`)
)

// TestDemoDevices runs the one-edge demo event for 30 s with its simulated
// devices and checks that it stops by itself with exit 0, that no device
// met an unexpected answer, that every kind of answer came up, and that
// the devices' counts match what the edge wrote down (its sales report and
// its log, read offline from the demo's directory afterwards).
func TestDemoDevices(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	out := new(syncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	start := time.Now()
	go func() {
		code <- cli.Run(ctx, []string{"demo", "--dir", dir, "--listen", "127.0.0.1:0", "--duration", "30s", "--edges", "1"}, out, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-code:
		case <-time.After(30 * time.Second):
			t.Error("demo did not stop within 30s of its context ending")
		}
	})
	select {
	case c := <-code:
		code <- c // for the cleanup
		if c != 0 {
			t.Fatalf("demo exited with %d:\n%s", c, out)
		}
	case <-time.After(90 * time.Second):
		t.Fatalf("demo --duration 30s still running after 90s:\n%s", out)
	}
	if took := time.Since(start); took > 50*time.Second {
		t.Fatalf("demo --duration 30s took %s", took)
	}
	text := out.String()
	if !strings.Contains(text, "Stopped. The demo's event, keys and data are in "+dir) {
		t.Fatalf("demo output does not say where the data is:\n%s", text)
	}
	if strings.Contains(text, "demo error:") {
		t.Fatalf("a device met an unexpected answer:\n%s", text)
	}
	for _, want := range []string{"/v1/reports/sales -H \"Authorization: Bearer v4.public.", "orders/s", "revenue EUR ", "errors 0"} {
		if !strings.Contains(text, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, text)
		}
	}
	m := demoSummaryLine.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no final summary line:\n%s", text)
	}
	var sum simulate.Summary
	if err := json.Unmarshal([]byte(m[1]), &sum); err != nil {
		t.Fatalf("summary line: %v\n%s", err, m[1])
	}
	if sum.Errors != 0 {
		t.Fatalf("%d errors: %+v", sum.Errors, sum.FirstErrors)
	}
	if sum.Orders == 0 || sum.Receipts == 0 || sum.Refunds == 0 || sum.SplitPayments == 0 || sum.Change == 0 || sum.Fulfilled == 0 {
		t.Fatalf("the tills did not sell, split, give change, fulfil and refund: %s", m[1])
	}
	if sum.Scans.Accepted == 0 {
		t.Fatalf("no accepted scan: %s", m[1])
	}
	for _, reason := range []string{checkin.ReasonAlreadyInside, checkin.ReasonExpired, checkin.ReasonNotYetValid, checkin.ReasonInvalidSignature} {
		if sum.Scans.Rejected[reason] == 0 {
			t.Fatalf("no scan rejected as %s: %s", reason, m[1])
		}
	}
	for _, slot := range []int{0, 1} {
		var first *simulate.Lot
		for i := range sum.Lots {
			if sum.Lots[i].Slot == slot {
				first = &sum.Lots[i]
				break
			}
		}
		if first == nil || first.Bids == 0 {
			t.Fatalf("lot slot %d: no lot with an accepted bid: %+v", slot, sum.Lots)
		}
	}
	if sum.Bids.Extensions == 0 && sum.Bids.Closed == 0 {
		t.Fatalf("no soft-close extension and no closed lot: %s", m[1])
	}
	if sum.Watcher.Bids == 0 {
		t.Fatalf("the bid screen saw no bid: %s", m[1])
	}

	// The edge's own records, read offline from the demo's directory.
	data, event := filepath.Join(dir, "data"), filepath.Join(dir, "event")
	var stdout, stderr bytes.Buffer
	if c := cli.Run(context.Background(), []string{"report", "sales", "--dir", data, "--event", event, "--json"}, &stdout, &stderr); c != 0 {
		t.Fatalf("report sales: exit %d: %s", c, stderr.String())
	}
	var rep salesreport.Report
	if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
		t.Fatal(err)
	}
	tot := rep.Totals
	var settled int64
	for _, v := range tot.Payments {
		settled += v
	}
	if int64(tot.Orders) != sum.Orders || int64(tot.Sold) != sum.Receipts || tot.Open != 0 ||
		tot.Refunds != sum.Refunded || tot.Net != sum.Revenue || settled != sum.Settled {
		t.Fatalf("the edge's sales report %+v disagrees with the devices' summary %s", tot, m[1])
	}
	stdout.Reset()
	stderr.Reset()
	if c := cli.Run(context.Background(), []string{"verify", "log", data, "--event", event}, &stdout, &stderr); c != 0 {
		t.Fatalf("verify log: exit %d:\n%s%s", c, stdout.String(), stderr.String())
	}
	v := verifiedEntries.FindStringSubmatch(stdout.String())
	if v == nil {
		t.Fatalf("verify log names no demo-edge log:\n%s", stdout.String())
	}
	if n, _ := strconv.ParseInt(v[2], 10, 64); n != sum.Entries+1 {
		t.Fatalf("the edge's log holds %d entries; the devices appended %d after the enrolment", n, sum.Entries)
	}
}

// demoCutsSummary is the final summary line of a demo with a hub.
type demoCutsSummary struct {
	simulate.Summary
	Sync *struct {
		Edges         int     `json:"edges"`
		Cuts          int     `json:"cuts"`
		Heals         int     `json:"heals"`
		ConvergenceMs []int64 `json:"convergence_ms"`
		Converged     bool    `json:"converged"`
		Nodes         []struct {
			Name       string `json:"name"`
			Entries    uint64 `json:"entries"`
			ReportHash string `json:"report_hash"`
		} `json:"nodes"`
		Items    map[string]int `json:"items"`
		Injected int            `json:"injected"`
	} `json:"sync"`
}

// TestDemoCuts runs the default demo — a hub and two edges with the
// devices spread over them — for 40 s while the links to the hub are cut
// and restored. It must stop by itself with exit 0 and no device error,
// see at least one heal converge, and end with the same entries and the
// same report on every node; the report, recomputed offline from each
// edge's data directory, lists the double entry and the duplicate
// Idempotency-Key the demo wrote during a cut.
func TestDemoCuts(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "demo")
	out := new(syncBuffer)
	ctx, cancel := context.WithCancel(context.Background())
	code := make(chan int, 1)
	go func() {
		code <- cli.Run(ctx, []string{"demo", "--dir", dir, "--listen", "127.0.0.1:0", "--duration", "40s"}, out, out)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-code:
		case <-time.After(60 * time.Second):
			t.Error("demo did not stop within 60s of its context ending")
		}
	})
	select {
	case c := <-code:
		code <- c // for the cleanup
		if c != 0 {
			t.Fatalf("demo exited with %d:\n%s", c, out)
		}
	case <-time.After(150 * time.Second):
		t.Fatalf("demo --duration 40s still running after 150s:\n%s", out)
	}
	text := out.String()
	for _, want := range []string{"edge B API", "hub          http://127.0.0.1:", "links to the hub CUT", "converged ", "hashes match"} {
		if !strings.Contains(text, want) {
			t.Fatalf("demo output lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(text, "demo error:") {
		t.Fatalf("a device met an unexpected answer:\n%s", text)
	}
	m := demoSummaryLine.FindStringSubmatch(text)
	if m == nil {
		t.Fatalf("no final summary line:\n%s", text)
	}
	var sum demoCutsSummary
	if err := json.Unmarshal([]byte(m[1]), &sum); err != nil {
		t.Fatalf("summary line: %v\n%s", err, m[1])
	}
	if sum.Errors != 0 || sum.Orders == 0 || sum.Scans.Accepted == 0 || sum.Bids.Accepted == 0 {
		t.Fatalf("errors %d (%+v), orders %d, scans %d, bids %d", sum.Errors, sum.FirstErrors, sum.Orders, sum.Scans.Accepted, sum.Bids.Accepted)
	}
	sy := sum.Sync
	if sy == nil || sy.Edges != 2 || len(sy.Nodes) != 3 || !sy.Converged {
		t.Fatalf("sync summary: %s", m[1])
	}
	if sy.Cuts < 1 || sy.Heals < 1 || len(sy.ConvergenceMs) < 1 {
		t.Fatalf("%d cuts, %d heals, convergence %v: want at least one heal seen to converge", sy.Cuts, sy.Heals, sy.ConvergenceMs)
	}
	for _, n := range sy.Nodes[1:] {
		if n.ReportHash == "" || n.ReportHash != sy.Nodes[0].ReportHash || n.Entries != sy.Nodes[0].Entries {
			t.Fatalf("nodes did not end alike: %+v", sy.Nodes)
		}
	}
	if sy.Injected < 1 || len(sum.Injected) != sy.Injected {
		t.Fatalf("injected in %d cuts, devices list %+v", sy.Injected, sum.Injected)
	}
	if sy.Items["double_entry"] < sy.Injected || sy.Items["duplicate_idempotency_key"] < sy.Injected {
		t.Fatalf("report items %v, want a double entry and a duplicate key per injection (%d)", sy.Items, sy.Injected)
	}

	// Each edge's report, recomputed offline from its data directory.
	event := filepath.Join(dir, "event")
	for _, data := range []string{"data", "data-b"} {
		var stdout, stderr bytes.Buffer
		if c := cli.Run(context.Background(), []string{"report", "reconcile", "--dir", filepath.Join(dir, data), "--event", event, "--json"}, &stdout, &stderr); c != 0 {
			t.Fatalf("report reconcile %s: exit %d: %s", data, c, stderr.String())
		}
		var rep reconcile.Report
		if err := json.Unmarshal(stdout.Bytes(), &rep); err != nil {
			t.Fatalf("report of %s: %v\n%s", data, err, stdout.String())
		}
		if rep.Digest != sy.Nodes[0].ReportHash {
			t.Fatalf("%s: offline report hash %s, the demo ended with %s", data, rep.Digest, sy.Nodes[0].ReportHash)
		}
		found := map[string]string{}
		for _, it := range rep.Items {
			found[it.Entity] = it.Kind
		}
		for _, in := range sum.Injected {
			if found["ticket:"+in.Ticket] != reconcile.KindDoubleEntry || found["idempotency:"+in.Key] != reconcile.KindDuplicateIdempotencyKey {
				t.Fatalf("%s: the report does not list the injected double entry of %s and duplicate key %s:\n%s", data, in.Ticket, in.Key, stdout.String())
			}
		}
	}
}

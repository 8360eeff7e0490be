package main_test

import (
	"bufio"
	"bytes"
	"context"
	"database/sql"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	_ "modernc.org/sqlite" // the "sqlite" driver, to tamper with a store

	"canopy/api"
	"canopy/ledger"
)

// canopyBin is the real binary, built once by TestMain.
var canopyBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "canopy-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	canopyBin = filepath.Join(dir, "canopy")
	out, err := exec.Command("go", "build", "-o", canopyBin, "canopy/cmd/canopy").CombinedOutput()
	if err != nil {
		fmt.Fprintf(os.Stderr, "e2e: go build canopy: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// cleanEnv is the test process's environment without CANOPY_* variables, so
// a developer's settings cannot change what the binary does.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "CANOPY_") {
			env = append(env, kv)
		}
	}
	return env
}

// result is what one run of the binary produced.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

// canopy runs the binary to completion (at most a minute).
func canopy(t *testing.T, args ...string) result {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, canopyBin, args...)
	cmd.Env = cleanEnv()
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	r := result{stdout: out.String(), stderr: errOut.String()}
	var exit *exec.ExitError
	switch {
	case err == nil:
	case errors.As(err, &exit):
		r.code = exit.ExitCode()
	default:
		t.Fatalf("canopy %s: %v", strings.Join(args, " "), err)
	}
	if ctx.Err() != nil {
		t.Fatalf("canopy %s: did not finish within a minute\n%s", strings.Join(args, " "), r)
	}
	return r
}

// mustCanopy runs the binary and fails the test unless it exits 0.
func mustCanopy(t *testing.T, args ...string) result {
	t.Helper()
	r := canopy(t, args...)
	if r.code != 0 {
		t.Fatalf("canopy %s: %s", strings.Join(args, " "), r)
	}
	return r
}

// lockedBuffer collects a child's output while the test reads it.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// edgeProc is a running `canopy edge` child process.
type edgeProc struct {
	cmd    *exec.Cmd
	url    string
	node   string
	stdout *lockedBuffer
	stderr *lockedBuffer
	exited chan struct{} // closed when Wait returned
	err    error         // Wait's result, set before exited is closed
}

var servingLine = regexp.MustCompile(`^canopy edge for "([a-z0-9-]+)" serving (http://127\.0\.0\.1:[0-9]+) \(node ([0-9a-f]{32})\)$`)

// startEdge starts the edge daemon and waits (at most 30 s) for the line
// that names its URL.
func startEdge(t *testing.T, slug string, args ...string) *edgeProc {
	t.Helper()
	return startEdgeEnv(t, nil, slug, args...)
}

// startEdgeEnv is startEdge with extra environment variables.
func startEdgeEnv(t *testing.T, env []string, slug string, args ...string) *edgeProc {
	t.Helper()
	p, line := startDaemon(t, env, append([]string{"edge"}, args...)...)
	m := servingLine.FindStringSubmatch(line)
	if m == nil {
		t.Fatalf("edge's first line %q is not the serving line\nstderr: %s", line, p.stderr)
	}
	if m[1] != slug {
		t.Fatalf("edge serves event %q, want %q", m[1], slug)
	}
	p.url, p.node = m[2], m[3]
	return p
}

// startDaemon starts the binary with args and returns once it has printed
// its first line (at most 30 s), and that line.
func startDaemon(t *testing.T, env []string, args ...string) (*edgeProc, string) {
	t.Helper()
	cmd := exec.Command(canopyBin, args...)
	cmd.Env = append(cleanEnv(), env...)
	p := &edgeProc{cmd: cmd, stdout: new(lockedBuffer), stderr: new(lockedBuffer), exited: make(chan struct{})}
	cmd.Stderr = p.stderr
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	lines := make(chan string, 1)
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pipe)
		first := true
		for sc.Scan() {
			fmt.Fprintln(p.stdout, sc.Text())
			if first {
				lines <- sc.Text()
				first = false
			}
		}
		io.Copy(io.Discard, pipe)
	}()
	go func() {
		<-copied // Wait closes the pipe: read it all first
		p.err = cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(func() {
		select {
		case <-p.exited:
		default:
			cmd.Process.Kill()
			<-p.exited
		}
	})
	select {
	case line := <-lines:
		return p, line
	case <-p.exited:
		t.Fatalf("%v exited before serving: %v\nstdout: %s\nstderr: %s", args, p.err, p.stdout, p.stderr)
	case <-time.After(30 * time.Second):
		t.Fatalf("%v printed nothing within 30s\nstderr: %s", args, p.stderr)
	}
	return nil, ""
}

// stop sends SIGTERM and requires a clean exit within 20 s.
func (p *edgeProc) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("edge did not exit within 20s of SIGTERM\nstderr: %s", p.stderr)
	}
	if p.err != nil {
		t.Fatalf("edge exited with %v after SIGTERM\nstderr: %s", p.err, p.stderr)
	}
}

// httpResult is one HTTP exchange.
type httpResult struct {
	status int
	header http.Header
	body   []byte
}

var client = &http.Client{Timeout: 30 * time.Second}

func do(t *testing.T, method, url, token, body string, header ...string) httpResult {
	t.Helper()
	r, err := doErr(method, url, token, body, header...)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// doErr is do without the test, for goroutines.
func doErr(method, url, token, body string, header ...string) (httpResult, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		return httpResult{}, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	resp, err := client.Do(req)
	if err != nil {
		return httpResult{}, fmt.Errorf("%s %s: %w", method, url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return httpResult{}, fmt.Errorf("%s %s: read body: %w", method, url, err)
	}
	return httpResult{status: resp.StatusCode, header: resp.Header, body: b}, nil
}

// noteResponse is the part of a note's response the tests read.
type noteResponse struct {
	Text  string     `json:"text"`
	Role  string     `json:"role"`
	Entry ledger.Ref `json:"entry"`
}

// wantProblem requires an RFC 9457 problem with the given status.
func wantProblem(t *testing.T, what string, r httpResult, status int) {
	t.Helper()
	if r.status != status {
		t.Fatalf("%s: status %d, want %d: %s", what, r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, api.ContentTypeProblem) {
		t.Fatalf("%s: Content-Type %q, want %s", what, ct, api.ContentTypeProblem)
	}
	var p struct {
		Type   string `json:"type"`
		Title  string `json:"title"`
		Status int    `json:"status"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("%s: problem body %s: %v", what, r.body, err)
	}
	if p.Status != status || p.Type == "" || p.Title == "" {
		t.Fatalf("%s: problem %s lacks type, title or status %d", what, r.body, status)
	}
}

// fixture is an event with one enrolled edge and two device tokens, made
// with the binary's own organizer tools.
type fixture struct {
	root, ev, data, nodeDir string
	org, door               string
}

const slug = "e2e-market"

func newFixture(t *testing.T) *fixture {
	t.Helper()
	root := t.TempDir()
	f := &fixture{root: root, ev: filepath.Join(root, "EV"), data: filepath.Join(root, "DATA")}
	f.nodeDir = filepath.Join(f.data, "node")
	start := time.Now().Add(-time.Hour).UTC().Truncate(time.Second)
	mustCanopy(t, "event", "init", "--dir", f.ev, "--slug", slug, "--name", "E2E Market",
		"--tz", "Europe/Berlin", "--starts", start.Format(time.RFC3339),
		"--ends", start.Add(12*time.Hour).Format(time.RFC3339), "--currency", "EUR")
	r := mustCanopy(t, "node", "enroll", "--event", f.ev, "--name", "edge-1", "--role", "edge", "--out", f.nodeDir)
	if !regexp.MustCompile(`^[0-9a-f]{32}\n`).MatchString(r.stdout) {
		t.Fatalf("node enroll printed %q, want the node id first", r.stdout)
	}
	f.org = strings.TrimSpace(mustCanopy(t, "token", "issue", "--event", f.ev, "--role", "organizer", "--device", "laptop", "--ttl", "1h").stdout)
	f.door = strings.TrimSpace(mustCanopy(t, "token", "issue", "--event", f.ev, "--role", "door", "--device", "scanner-1", "--ttl", "1h").stdout)
	for _, tok := range []string{f.org, f.door} {
		if !strings.HasPrefix(tok, "v4.public.") || strings.ContainsAny(tok, " \n") {
			t.Fatalf("token issue printed %q, want one PASETO v4.public token", tok)
		}
	}
	return f
}

func (f *fixture) startEdge(t *testing.T) *edgeProc {
	t.Helper()
	return startEdge(t, slug, "--dir", f.data, "--event", f.ev, "--key", f.nodeDir, "--listen", "127.0.0.1:0", "--log-level", "warn")
}

func TestEdgeEndToEnd(t *testing.T) {
	f := newFixture(t)
	ed := f.startEdge(t)
	u := ed.url

	t.Run("operations need no token", func(t *testing.T) {
		for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.yaml"} {
			if r := do(t, "GET", u+path, "", ""); r.status != 200 {
				t.Fatalf("GET %s: %d %s", path, r.status, r.body)
			}
		}
		oa := do(t, "GET", u+"/v1/openapi.yaml", "", "")
		if !bytes.Contains(oa.body, []byte("openapi: 3.1")) || !bytes.Contains(oa.body, []byte("/v1/log/notes")) {
			t.Fatalf("OpenAPI document does not look like ours:\n%.300s", oa.body)
		}
	})

	var first noteResponse
	t.Run("note and its replay", func(t *testing.T) {
		a := do(t, "POST", u+"/v1/log/notes", f.org, `{"text":"doors open"}`, "Idempotency-Key", "e2e-note-1")
		if a.status != 201 {
			t.Fatalf("note: %d %s", a.status, a.body)
		}
		if err := json.Unmarshal(a.body, &first); err != nil {
			t.Fatalf("note response %s: %v", a.body, err)
		}
		if first.Text != "doors open" || first.Role != "organizer" || first.Entry.Node.String() != ed.node ||
			first.Entry.Seq != 2 || first.Entry.Hash == (ledger.Hash{}) {
			t.Fatalf("note response %s: want text, role and entry {node %s, seq 2, hash}", a.body, ed.node)
		}
		b := do(t, "POST", u+"/v1/log/notes", f.org, `{"text":"doors open"}`, "Idempotency-Key", "e2e-note-1")
		if b.status != 201 || !bytes.Equal(a.body, b.body) || b.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay: %d Idempotent-Replayed=%q\n%s\nfirst:\n%s", b.status, b.header.Get("Idempotent-Replayed"), b.body, a.body)
		}
		if a.header.Get("Idempotent-Replayed") != "" {
			t.Fatalf("first response says Idempotent-Replayed: %q", a.header.Get("Idempotent-Replayed"))
		}
	})

	t.Run("tokens are checked", func(t *testing.T) {
		wantProblem(t, "door token", do(t, "POST", u+"/v1/log/notes", f.door, `{"text":"x"}`, "Idempotency-Key", "e2e-door"), 403)
		wantProblem(t, "no token", do(t, "POST", u+"/v1/log/notes", "", `{"text":"x"}`, "Idempotency-Key", "e2e-none"), 401)
		wantProblem(t, "garbage token", do(t, "POST", u+"/v1/log/notes", "v4.public.bm90IGEgdG9rZW4", `{"text":"x"}`, "Idempotency-Key", "e2e-garbage"), 401)
		wantProblem(t, "no token on the audit log", do(t, "GET", u+"/v1/log/entries", "", ""), 401)
	})

	const notes, workers = 200, 32
	t.Run("concurrent notes", func(t *testing.T) {
		type got struct {
			seq uint64
			err error
		}
		jobs := make(chan int)
		results := make(chan got, notes)
		var wg sync.WaitGroup
		for range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range jobs {
					body := fmt.Sprintf(`{"text":"concurrent note %d"}`, i)
					r, err := doErr("POST", u+"/v1/log/notes", f.org, body, "Idempotency-Key", fmt.Sprintf("e2e-c-%d", i))
					if err == nil && r.status != 201 {
						err = fmt.Errorf("note %d: status %d: %s", i, r.status, r.body)
					}
					var n noteResponse
					if err == nil {
						err = json.Unmarshal(r.body, &n)
					}
					if err == nil && n.Text != fmt.Sprintf("concurrent note %d", i) {
						err = fmt.Errorf("note %d answered with text %q", i, n.Text)
					}
					results <- got{n.Entry.Seq, err}
				}
			}()
		}
		for i := range notes {
			jobs <- i
		}
		close(jobs)
		wg.Wait()
		close(results)
		seen := map[uint64]bool{}
		for r := range results {
			if r.err != nil {
				t.Fatal(r.err)
			}
			if seen[r.seq] {
				t.Fatalf("seq %d acknowledged twice", r.seq)
			}
			seen[r.seq] = true
		}
		// Seq 1 is the enrolment and seq 2 the first note.
		for s := uint64(3); s < 3+notes; s++ {
			if !seen[s] {
				t.Fatalf("no note got seq %d; seqs must be 3..%d without gaps", s, 2+notes)
			}
		}
	})

	t.Run("metrics", func(t *testing.T) {
		m := do(t, "GET", u+"/metrics", "", "")
		if ct := m.header.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
			t.Fatalf("/metrics Content-Type %q, want Prometheus text", ct)
		}
		for _, want := range []string{"canopy_ledger_commit_batch_size_count", "canopy_api_requests_total{", "canopy_ledger_appends_total"} {
			if !bytes.Contains(m.body, []byte(want)) {
				t.Fatalf("/metrics lacks %s", want)
			}
		}
		appends := regexp.MustCompile(`(?m)^canopy_ledger_appends_total ([0-9]+)`).FindSubmatch(m.body)
		if appends == nil || string(appends[1]) != fmt.Sprint(2+notes) {
			t.Fatalf("canopy_ledger_appends_total is %q, want %d", appends, 2+notes)
		}
	})

	ed.stop(t)
	total := 2 + notes
	wantOK := fmt.Sprintf("OK   node %s (edge-1): %d entries", ed.node, total)

	t.Run("verify the data directory", func(t *testing.T) {
		r := mustCanopy(t, "verify", "log", f.data, "--event", f.ev)
		if !strings.Contains(r.stdout, wantOK) || !strings.Contains(r.stdout, fmt.Sprintf("latest checkpoint size %d", total)) {
			t.Fatalf("verify log printed %q, want %q and a checkpoint of size %d", r.stdout, wantOK, total)
		}
	})

	t.Run("tampered entry body", func(t *testing.T) {
		dir := copyDataDir(t, f.data)
		tamperEntry(t, dir, 3, func(data []byte) {
			i := bytes.Index(data, []byte(`"text":"concurrent note`))
			if i < 0 {
				t.Fatalf("entry 3 carries no note text: %q", data)
			}
			data[i+len(`"text":"`)] ^= 0x01 // "concurrent" → "boncurrent"
		})
		r := canopy(t, "verify", "log", dir, "--event", f.ev)
		if r.code != 1 {
			t.Fatalf("verify log of a tampered store: %s", r)
		}
		for _, want := range []string{"FAIL", "entry seq 3", "signature", "root"} {
			if !strings.Contains(r.stdout+r.stderr, want) {
				t.Fatalf("verify log of a tampered store does not say %q: %s", want, r)
			}
		}
	})

	t.Run("tampered entry signature", func(t *testing.T) {
		dir := copyDataDir(t, f.data)
		tamperEntry(t, dir, 3, func(data []byte) { data[len(data)-1] ^= 0x80 })
		r := canopy(t, "verify", "log", dir, "--event", f.ev)
		if r.code != 1 || !strings.Contains(r.stdout, "FAIL") || !strings.Contains(r.stdout, "entry seq 3: ") ||
			!strings.Contains(r.stdout, "signature") {
			t.Fatalf("verify log of a store with a forged signature: %s", r)
		}
	})

	t.Run("unreadable entry", func(t *testing.T) {
		dir := copyDataDir(t, f.data)
		tamperEntry(t, dir, 3, func(data []byte) { data[0] ^= 0x80 })
		r := canopy(t, "verify", "log", dir, "--event", f.ev)
		if r.code != 1 || !strings.Contains(r.stderr, "malformed entry") {
			t.Fatalf("verify log of a store with an entry that does not decode: %s", r)
		}
	})

	t.Run("verify a running edge over HTTP", func(t *testing.T) {
		ed2 := f.startEdge(t)
		if ed2.node != ed.node {
			t.Fatalf("restarted edge is node %s, was %s", ed2.node, ed.node)
		}
		// The restarted edge continues the log.
		a := do(t, "POST", ed2.url+"/v1/log/notes", f.org, `{"text":"after restart"}`, "Idempotency-Key", "e2e-after")
		var n noteResponse
		if a.status != 201 || json.Unmarshal(a.body, &n) != nil || n.Entry.Seq != uint64(total+1) {
			t.Fatalf("note after restart: %d %s, want seq %d", a.status, a.body, total+1)
		}
		// A key used before the restart still replays.
		b := do(t, "POST", ed2.url+"/v1/log/notes", f.org, `{"text":"doors open"}`, "Idempotency-Key", "e2e-note-1")
		if b.header.Get("Idempotent-Replayed") != "true" {
			t.Fatalf("replay after restart: %d %s", b.status, b.body)
		}
		r := mustCanopy(t, "verify", "log", ed2.url, "--event", f.ev, "--token", f.org)
		want := fmt.Sprintf("OK   node %s (edge-1): %d entries", ed.node, total+1)
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("verify log %s printed %q, want %q", ed2.url, r.stdout, want)
		}
		bad := canopy(t, "verify", "log", ed2.url, "--event", f.ev, "--token", f.door)
		if bad.code != 1 || !strings.Contains(bad.stderr, "403") {
			t.Fatalf("verify log with a door token: %s", bad)
		}
		ed2.stop(t)
	})
}

// copyDataDir copies a stopped node's data directory into a new temp dir.
func copyDataDir(t *testing.T, src string) string {
	t.Helper()
	dst := t.TempDir()
	des, err := os.ReadDir(src)
	if err != nil {
		t.Fatal(err)
	}
	for _, de := range des {
		if !de.Type().IsRegular() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(src, de.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, de.Name()), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return dst
}

// tamperEntry rewrites the stored bytes of entry seq in the store in dir.
func tamperEntry(t *testing.T, dir string, seq int, change func([]byte)) {
	t.Helper()
	db, err := sql.Open("sqlite", filepath.Join(dir, "canopy.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var data []byte
	if err := db.QueryRow(`SELECT data FROM entries WHERE seq = ?`, seq).Scan(&data); err != nil {
		t.Fatalf("read entry %d: %v", seq, err)
	}
	orig := bytes.Clone(data)
	change(data)
	if bytes.Equal(orig, data) {
		t.Fatal("tamper changed nothing")
	}
	res, err := db.Exec(`UPDATE entries SET data = ? WHERE seq = ?`, data, seq)
	if err != nil {
		t.Fatal(err)
	}
	if n, _ := res.RowsAffected(); n != 1 {
		t.Fatalf("tamper updated %d rows, want 1", n)
	}
}

func TestConfigErrors(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.toml")
	if err := os.WriteFile(bad, []byte("[node]\nlisten = \"127.0.0.1:0\"\nlisten_adress = \"127.0.0.1:9\"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := canopy(t, "edge", "--config", bad)
	if r.code == 0 || !strings.Contains(r.stderr, "node.listen_adress") {
		t.Fatalf("edge with an unknown config key: %s", r)
	}

	empty := filepath.Join(dir, "empty")
	r = canopy(t, "edge", "--dir", empty, "--listen", "127.0.0.1:0")
	if r.code == 0 || !strings.Contains(r.stderr, "canopy event init") {
		t.Fatalf("edge without an event: %s", r)
	}

	r = canopy(t, "frobnicate")
	if r.code != 2 || !strings.Contains(r.stderr, `unknown command "frobnicate"`) {
		t.Fatalf("unknown command: %s", r)
	}
	r = canopy(t, "edge", "--no-such-flag")
	if r.code != 2 || !strings.Contains(r.stderr, "no-such-flag") {
		t.Fatalf("unknown flag: %s", r)
	}
}

func TestHelp(t *testing.T) {
	r := mustCanopy(t, "--help")
	for _, want := range []string{"Usage: canopy <command>", "edge ", "verify log", "bench ledger", "demo"} {
		if !strings.Contains(r.stdout, want) {
			t.Fatalf("canopy --help lacks %q:\n%s", want, r.stdout)
		}
	}
	r = mustCanopy(t, "edge", "--help")
	for _, want := range []string{"Usage: canopy edge", "-listen", "-config", "-clock-offset"} {
		if !strings.Contains(r.stdout+r.stderr, want) {
			t.Fatalf("canopy edge --help lacks %q: %s", want, r)
		}
	}
	if r := canopy(t); r.code != 2 || !strings.Contains(r.stdout, "Usage: canopy") {
		t.Fatalf("canopy without arguments: %s", r)
	}
}

func TestBenchLedger(t *testing.T) {
	r := mustCanopy(t, "bench", "ledger", "--duration", "200ms", "--concurrency", "1,4", "--dir", t.TempDir())
	names := map[string]bool{}
	lines := strings.Split(strings.TrimSpace(r.stdout), "\n")
	for _, line := range lines {
		var obj map[string]any
		if err := json.Unmarshal([]byte(line), &obj); err != nil {
			t.Fatalf("bench line %q is not a JSON object: %v", line, err)
		}
		if name, ok := obj["bench"].(string); ok {
			names[name] = true
		}
	}
	for _, want := range []string{"ledger.append", "baseline.write4k_fsync", "baseline.sqlite_row_fsync"} {
		if !names[want] {
			t.Fatalf("bench output names %v, lacks %s:\n%s", names, want, r.stdout)
		}
	}
}

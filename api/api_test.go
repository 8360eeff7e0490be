package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"canopy/auth"
	"canopy/ledger"
	"canopy/store"
)

const widgets = "/v1/test/shelves/a1/widgets"

func TestProblems(t *testing.T) {
	h := newHarness(t, true)
	key := func(k string) []string { return []string{"Idempotency-Key", k} }
	big := `{"name":"` + strings.Repeat("x", DefaultMaxBodyBytes) + `","qty":1}`
	cases := []struct {
		name         string
		method, path string
		token, body  string
		hdr          []string
		status       int
		typ          string
	}{
		{"no token", "GET", "/v1/log/entries", "", "", nil, 401, TypeTokenMissing},
		{"not bearer", "GET", "/v1/log/entries", "", "", []string{"Authorization", "Basic dXNlcjpwdw=="}, 401, TypeTokenMalformed},
		{"empty bearer", "GET", "/v1/log/entries", "", "", []string{"Authorization", "Bearer"}, 401, TypeTokenMalformed},
		{"expired", "GET", "/v1/log/entries", "tok-expired", "", nil, 401, TypeTokenExpired},
		{"not yet valid", "GET", "/v1/log/entries", "tok-early", "", nil, 401, TypeTokenNotYetValid},
		{"wrong event", "GET", "/v1/log/entries", "tok-elsewhere", "", nil, 401, TypeTokenWrongEvent},
		{"wrong event (device)", "GET", "/v1/log/entries", "tok-other-event", "", nil, 401, TypeTokenWrongEvent},
		{"forged", "GET", "/v1/log/entries", "tok-forged", "", nil, 401, TypeTokenForged},
		{"malformed", "GET", "/v1/log/entries", "tok-garbage", "", nil, 401, TypeTokenMalformed},
		{"ticket as token", "GET", "/v1/log/entries", "tok-ticket", "", nil, 401, TypeTokenWrongKind},
		{"unknown role", "GET", "/v1/log/entries", "tok-badrole", "", nil, 401, TypeTokenUnknownRole},
		{"other verifier error", "GET", "/v1/log/entries", "tok-weird", "", nil, 401, TypeTokenRejected},
		{"wrong role", "GET", "/v1/log/entries", "tok-pos", "", nil, 403, TypeForbiddenRole},
		{"unknown route", "GET", "/v1/nothing-here", "tok-admin", "", nil, 404, TypeRouteNotFound},
		{"unknown route, no token", "GET", "/nope", "", "", nil, 404, TypeRouteNotFound},
		{"method not allowed", "DELETE", "/v1/log/entries", "tok-admin", "", nil, 405, TypeMethodNotAllowed},
		{"bad query", "GET", "/v1/log/entries?from=zero", "tok-admin", "", nil, 400, TypeInvalidParameter},
		{"key required", "POST", widgets, "tok-pos", `{"name":"w","qty":1}`, nil, 400, TypeIdempotencyNeeded},
		{"key too long", "POST", widgets, "tok-pos", `{"name":"w","qty":1}`, key(strings.Repeat("k", 256)), 400, TypeIdempotencyBadKey},
		{"key not printable", "POST", widgets, "tok-pos", `{"name":"w","qty":1}`, key("caf\u00e9"), 400, TypeIdempotencyBadKey},
		{"too large", "POST", widgets, "tok-pos", big, key("k-big"), 413, TypeBodyTooLarge},
		{"no content type", "POST", widgets, "tok-pos", `{"name":"w","qty":1}`, append(key("k"), "Content-Type", ""), 415, TypeUnsupportedMedia},
		{"text content type", "POST", widgets, "tok-pos", `{"name":"w","qty":1}`, append(key("k"), "Content-Type", "text/plain"), 415, TypeUnsupportedMedia},
		{"latin1 charset", "POST", widgets, "tok-pos", `{"name":"w","qty":1}`, append(key("k"), "Content-Type", "application/json; charset=latin1"), 415, TypeUnsupportedMedia},
		{"gzip", "POST", widgets, "tok-pos", `{"name":"w","qty":1}`, append(key("k"), "Content-Encoding", "gzip"), 415, TypeUnsupportedMedia},
		{"syntax", "POST", widgets, "tok-pos", `{"name":"w",}`, key("k"), 400, TypeMalformedJSON},
		{"truncated", "POST", widgets, "tok-pos", `{"name":"w"`, key("k"), 400, TypeMalformedJSON},
		{"null", "POST", widgets, "tok-pos", `null`, key("k"), 400, TypeMalformedJSON},
		{"bad utf8", "POST", widgets, "tok-pos", "{\"name\":\"\xff\",\"qty\":1}", key("k"), 400, TypeMalformedJSON},
		{"empty", "POST", widgets, "tok-pos", `   `, key("k"), 400, TypeEmptyBody},
		{"unknown field", "POST", widgets, "tok-pos", `{"name":"w","qty":1,"colour":"red"}`, key("k"), 400, TypeUnknownField},
		{"wrong type", "POST", widgets, "tok-pos", `{"name":"w","qty":"one"}`, key("k"), 400, TypeWrongFieldType},
		{"trailing", "POST", widgets, "tok-pos", `{"name":"w","qty":1} {}`, key("k"), 400, TypeTrailingData},
		{"validation", "POST", widgets, "tok-pos", `{"name":"","qty":0}`, key("k"), 422, TypeValidationFailed},
		{"not found", "POST", "/v1/test/shelves/missing/widgets", "tok-pos", `{"name":"w","qty":1}`, key("k"), 404, TypeNotFound},
		{"conflict", "POST", widgets, "tok-pos", `{"name":"taken","qty":1}`, key("k"), 409, TypeConflict},
		{"internal", "POST", widgets, "tok-pos", `{"name":"boom","qty":1}`, key("k"), 500, TypeInternal},
		{"panic", "POST", widgets, "tok-pos", `{"name":"explode","qty":1}`, key("k"), 500, TypeInternal},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := h.do(c.method, c.path, c.token, c.body, c.hdr...)
			p := problemOf(t, r, c.status, c.typ)
			switch c.status {
			case 401:
				if !strings.HasPrefix(r.header.Get("WWW-Authenticate"), "Bearer") {
					t.Errorf("401 without a Bearer challenge: %q", r.header.Get("WWW-Authenticate"))
				}
			case 405:
				if r.header.Get("Allow") != "GET, HEAD" {
					t.Errorf("Allow %q, want %q", r.header.Get("Allow"), "GET, HEAD")
				}
			case 415:
				if r.header.Get("Accept") == "" && r.header.Get("Accept-Encoding") == "" {
					t.Errorf("415 says nothing of what is accepted")
				}
			case 500:
				inst, _ := p["instance"].(string)
				id, ok := strings.CutPrefix(inst, "urn:canopy:incident:")
				if !ok || id == "" {
					t.Fatalf("500 instance %q is not an incident id", inst)
				}
				if bytes.Contains(r.body, []byte("hunter2")) || bytes.Contains(r.body, []byte("exploded")) {
					t.Fatalf("500 leaks internal text: %s", r.body)
				}
				if !strings.Contains(h.logs.String(), id) {
					t.Fatalf("incident %s not logged; logs:\n%s", id, h.logs.String())
				}
			default:
				if p["instance"] != strings.Split(c.path, "?")[0] {
					t.Errorf("instance %v, want the request path", p["instance"])
				}
			}
			if c.typ == TypeForbiddenRole {
				roles, _ := p["allowed_roles"].([]any)
				if len(roles) != 2 || roles[0] != "organizer" || roles[1] != "admin" {
					t.Errorf("allowed_roles %v", p["allowed_roles"])
				}
			}
		})
	}
	if !strings.Contains(h.logs.String(), "widget exploded") || !strings.Contains(h.logs.String(), "hunter2") {
		t.Error("internal errors and panics must be logged")
	}
	if n := h.node.appendCount(); n != 0 {
		t.Errorf("%d appends from requests that all failed", n)
	}
}

func TestFieldErrors(t *testing.T) {
	h := newHarness(t, true)
	r := h.do("POST", widgets, "tok-pos", `{"name":"","qty":-2}`, "Idempotency-Key", "k1")
	want := `[{"pointer":"/name","detail":"must not be empty"},{"pointer":"/qty","detail":"must be positive, got -2"}]`
	problemOf(t, r, 422, TypeValidationFailed)
	if got := r.body; !bytes.Contains(got, []byte(`"errors":`+want)) {
		t.Errorf("errors %s, want %s", got, want)
	}

	r = h.do("POST", widgets, "tok-pos", `{"name":"w","qty":1,"tags":{"a":1}}`, "Idempotency-Key", "k2")
	p := problemOf(t, r, 400, TypeWrongFieldType)
	got, _ := json.Marshal(p["errors"])
	if !strings.Contains(string(got), `"pointer":"/tags"`) || !strings.Contains(string(got), "must be a string") {
		t.Errorf("wrong-type errors %s", got)
	}

	r = h.do("POST", widgets, "tok-pos", `{"name":"w","qty":1,"colour":"red"}`, "Idempotency-Key", "k3")
	problemOf(t, r, 400, TypeUnknownField)
	if got := r.body; !bytes.Contains(got, []byte(`"errors":[{"pointer":"/colour","detail":"unknown field"}]`)) {
		t.Errorf("unknown-field errors %s", got)
	}

	r = h.do("GET", "/v1/log/entries?from=5&to=2&color=red", "tok-admin", "")
	p = problemOf(t, r, 400, TypeInvalidParameter)
	got, _ = json.Marshal(p["errors"])
	if !strings.Contains(string(got), `"parameter":"color"`) {
		t.Errorf("parameter errors %s", got)
	}
}

func TestOperationalRoutesNeedNoToken(t *testing.T) {
	h := newHarness(t, false)
	for _, path := range []string{"/healthz", "/readyz", "/metrics", "/v1/openapi.yaml"} {
		r := h.do("GET", path, "", "")
		if r.status != 200 {
			t.Errorf("GET %s: %d %s", path, r.status, r.body)
		}
	}
	r := h.do("GET", "/v1/openapi.yaml", "", "")
	if ct := r.header.Get("Content-Type"); ct != "application/yaml" {
		t.Errorf("openapi Content-Type %q", ct)
	}
	if !bytes.Equal(r.body, OpenAPI) {
		t.Error("served document differs from the embedded one")
	}

	h.readMu.Lock()
	h.ready = errors.New("store not open: secret path /var/lib/x")
	h.readMu.Unlock()
	r = h.do("GET", "/readyz", "", "")
	problemOf(t, r, 503, TypeNotReady)
	if r.header.Get("Retry-After") != "7" {
		t.Errorf("Retry-After %q, want 7", r.header.Get("Retry-After"))
	}
	if bytes.Contains(r.body, []byte("secret")) {
		t.Errorf("readiness reason leaked: %s", r.body)
	}
}

func TestDeviceInContext(t *testing.T) {
	h := newHarness(t, false)
	var got *auth.Device
	h.srv.Handle(Route{Pattern: "GET /v1/test/whoami", Roles: auth.Roles, Handler: func(w http.ResponseWriter, r *http.Request) error {
		got = DeviceFrom(r.Context())
		return WriteJSON(w, 200, map[string]string{"name": got.Name})
	}})
	r := h.do("GET", "/v1/test/whoami", "tok-door", "")
	if r.status != 200 || got == nil || got.Role != auth.RoleDoor || string(r.body) != "{\"name\":\"door-1\"}\n" {
		t.Fatalf("whoami: %d %s, device %+v", r.status, r.body, got)
	}
	if DeviceFrom(context.Background()) != nil {
		t.Error("DeviceFrom on a bare context must be nil")
	}
}

func TestIdempotentReplay(t *testing.T) {
	h := newHarness(t, true)
	body := `{"name":"lamp","qty":2,"tags":{"colour":"red","size":"s"}}`
	first := h.do("POST", widgets, "tok-pos", body, "Idempotency-Key", "order-1")
	if first.status != http.StatusCreated {
		t.Fatalf("first: %d %s", first.status, first.body)
	}
	if first.header.Get("Idempotent-Replayed") != "" {
		t.Error("first response marked as replayed")
	}
	var resp struct {
		Entry  ledger.Ref `json:"entry"`
		Widget widgetBody `json:"widget"`
	}
	if err := json.Unmarshal(first.body, &resp); err != nil {
		t.Fatal(err)
	}
	e := h.node.entries[0]
	if resp.Entry != e.Ref() || resp.Widget.Name != "lamp" || resp.Widget.By != "pos-1" {
		t.Fatalf("response %s does not name entry %+v", first.body, e.Ref())
	}
	var stored map[string]any
	if err := json.Unmarshal(e.Body, &stored); err != nil {
		t.Fatal(err)
	}
	if stored["idempotency_key"] != "order-1" || !regexp.MustCompile(`^[0-9a-f]{64}$`).MatchString(fmt.Sprint(stored["request_hash"])) {
		t.Fatalf("entry body lacks the idempotency members: %s", e.Body)
	}

	replays := []struct{ name, body string }{
		{"same bytes", body},
		{"reordered and spaced", "{ \"tags\" : {\"size\":\"s\", \"colour\":\"red\"},\n \"qty\": 2, \"name\": \"lamp\" }"},
	}
	for _, rp := range replays {
		r := h.do("POST", widgets, "tok-pos", rp.body, "Idempotency-Key", "order-1")
		if r.status != first.status || !bytes.Equal(r.body, first.body) {
			t.Errorf("%s: replay %d %s, want %d %s", rp.name, r.status, r.body, first.status, first.body)
		}
		if r.header.Get("Idempotent-Replayed") != "true" {
			t.Errorf("%s: replay without Idempotent-Replayed: true", rp.name)
		}
	}

	for _, c := range []struct{ name, path, body string }{
		{"different body", widgets, `{"name":"lamp","qty":3,"tags":{"colour":"red","size":"s"}}`},
		{"different path value", "/v1/test/shelves/b2/widgets", body},
	} {
		r := h.do("POST", c.path, "tok-pos", c.body, "Idempotency-Key", "order-1")
		p := problemOf(t, r, 422, TypeIdempotencyReused)
		ent, _ := p["entry"].(map[string]any)
		if ent["seq"] != float64(1) {
			t.Errorf("%s: reused problem names entry %v", c.name, p["entry"])
		}
	}
	if n := h.node.appendCount(); n != 1 {
		t.Fatalf("%d appends, want 1", n)
	}

	// A restarted API (a new Server over the same log and views) replays
	// too: the record is the entry itself, not server memory.
	srv2, err := New(Config{Event: testEvent, Verifier: h.ver, Appender: h.node, Log: h.node, Views: h.node})
	if err != nil {
		t.Fatal(err)
	}
	addWidgetRoute(srv2)
	req := httptest.NewRequest("POST", widgets, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer tok-pos")
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Idempotency-Key", "order-1")
	rec := httptest.NewRecorder()
	srv2.ServeHTTP(rec, req)
	if rec.Code != first.status || !bytes.Equal(rec.Body.Bytes(), first.body) || rec.Header().Get("Idempotent-Replayed") != "true" {
		t.Fatalf("after restart: %d %s", rec.Code, rec.Body.Bytes())
	}
}

func TestRefusedRequestsAreNotRemembered(t *testing.T) {
	h := newHarness(t, true)
	r := h.do("POST", widgets, "tok-pos", `{"name":"lamp","qty":0}`, "Idempotency-Key", "k")
	problemOf(t, r, 422, TypeValidationFailed)
	r = h.do("POST", widgets, "tok-pos", `{"name":"lamp","qty":1}`, "Idempotency-Key", "k")
	if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("after a refused request the key must be free: %d %s", r.status, r.body)
	}
}

func TestIdempotencyConcurrent(t *testing.T) {
	h := newHarness(t, true)
	const n = 32
	var wg sync.WaitGroup
	results := make([]response, n)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Vary the key order so requests differ in bytes, not in content.
			body := `{"name":"lamp","qty":1}`
			if i%2 == 1 {
				body = `{"qty":1,"name":"lamp"}`
			}
			results[i] = h.do("POST", widgets, "tok-pos", body, "Idempotency-Key", "same-key")
		}()
	}
	wg.Wait()
	if got := h.node.appendCount(); got != 1 {
		t.Fatalf("%d appends for one key, want exactly 1", got)
	}
	fresh := 0
	for i, r := range results {
		if r.status != http.StatusCreated || !bytes.Equal(r.body, results[0].body) {
			t.Fatalf("request %d: %d %s, want %s", i, r.status, r.body, results[0].body)
		}
		if r.header.Get("Idempotent-Replayed") == "" {
			fresh++
		}
	}
	if fresh != 1 {
		t.Fatalf("%d responses not marked as replays, want 1", fresh)
	}
	if left := h.srv.locks.Len(); left != 0 {
		t.Errorf("%d key locks left behind", left)
	}
}

func TestStoreUnavailable(t *testing.T) {
	h := newHarness(t, true)
	h.node.setUnavailable(true)
	r := h.do("POST", widgets, "tok-pos", `{"name":"lamp","qty":1}`, "Idempotency-Key", "k")
	problemOf(t, r, 503, TypeStoreUnavailable)
	if r.header.Get("Retry-After") != "7" {
		t.Errorf("Retry-After %q, want 7", r.header.Get("Retry-After"))
	}
	if bytes.Contains(r.body, []byte("no space left")) {
		t.Errorf("503 leaks internal text: %s", r.body)
	}
	h.node.setUnavailable(false)
	r = h.do("POST", widgets, "tok-pos", `{"name":"lamp","qty":1}`, "Idempotency-Key", "k")
	if r.status != http.StatusCreated || r.header.Get("Idempotent-Replayed") != "" {
		t.Fatalf("retry after the disk recovered: %d %s", r.status, r.body)
	}
}

func TestMetrics(t *testing.T) {
	h := newHarness(t, true)
	h.do("GET", "/healthz", "", "")
	h.do("GET", "/healthz", "", "")
	h.do("GET", "/v1/log/entries", "tok-pos", "")
	h.do("GET", "/no/such/thing", "", "")
	h.do("POST", widgets, "tok-pos", `{"name":"lamp","qty":1}`, "Idempotency-Key", "k")
	h.do("POST", widgets, "tok-pos", `{"name":"lamp","qty":1}`, "Idempotency-Key", "k")
	r := h.do("GET", "/metrics", "", "")
	text := string(r.body)
	for _, want := range []string{
		`canopy_api_requests_total{code="200",route="GET /healthz"} 2`,
		`canopy_api_requests_total{code="403",route="GET /v1/log/entries"} 1`,
		`canopy_api_requests_total{code="404",route="unmatched"} 1`,
		`canopy_api_requests_total{code="201",route="POST /v1/test/shelves/{shelf}/widgets"} 2`,
		`canopy_api_request_duration_seconds_count{route="GET /healthz"} 2`,
		`canopy_api_idempotent_replays_total 1`,
	} {
		if !strings.Contains(text, want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	// A second server on the same registry shares the collectors.
	if _, err := New(Config{Verifier: h.ver, Appender: h.node, Log: h.node, Views: h.node, Registerer: h.reg, Gatherer: h.reg}); err != nil {
		t.Fatalf("second server on one registry: %v", err)
	}
}

func TestAuditEntries(t *testing.T) {
	h := newHarness(t, true)
	for i := range 5 {
		r := h.do("POST", widgets, "tok-pos", fmt.Sprintf(`{"name":"w%d","qty":1}`, i), "Idempotency-Key", fmt.Sprint("k", i))
		if r.status != http.StatusCreated {
			t.Fatal(r.status, string(r.body))
		}
	}
	var all []EntryJSON
	path := "/v1/log/entries?limit=2"
	for pages := 0; ; pages++ {
		if pages > 5 {
			t.Fatal("pagination does not end")
		}
		r := h.do("GET", path, "tok-organizer", "")
		if r.status != 200 || r.header.Get("Content-Type") != "application/json" {
			t.Fatalf("%s: %d %s", path, r.status, r.body)
		}
		var page EntryPage
		if err := json.Unmarshal(r.body, &page); err != nil {
			t.Fatal(err)
		}
		if page.Node != h.node.Node() || len(page.Entries) > 2 {
			t.Fatalf("page %s", r.body)
		}
		all = append(all, page.Entries...)
		if page.Next == nil {
			break
		}
		path = fmt.Sprintf("/v1/log/entries?limit=2&from=%d", *page.Next)
	}
	if len(all) != 5 {
		t.Fatalf("%d entries over all pages, want 5", len(all))
	}
	for i, ej := range all {
		e, err := ledger.Decode(ej.Encoded)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Verify(h.node.pub()); err != nil {
			t.Fatalf("entry %d: %v", i, err)
		}
		if e.Hash() != ej.Hash || e.Seq != uint64(i+1) || e.Seq != ej.Seq || !bytes.Equal(e.Body, ej.Body) ||
			!bytes.Equal(e.Sig, ej.Sig) || e.Kind != ej.Kind || e.Key != ej.Key || e.Prev != ej.Prev || e.HLC != ej.HLC || e.Event != ej.Event {
			t.Fatalf("entry %d fields do not match its encoding: %+v", i, ej)
		}
	}

	r := h.do("GET", "/v1/log/entries?from=2&to=3", "tok-admin", "")
	var page EntryPage
	if err := json.Unmarshal(r.body, &page); err != nil || len(page.Entries) != 2 || page.Entries[0].Seq != 2 || page.Next != nil {
		t.Fatalf("range 2..3: %s", r.body)
	}
	for _, bad := range []string{"from=0", "to=x", "from=3&to=2", "limit=0", "limit=1001", "node=zz", "from=1&from=2", "seq=1"} {
		problemOf(t, h.do("GET", "/v1/log/entries?"+bad, "tok-admin", ""), 400, TypeInvalidParameter)
	}
}

func TestAuditCheckpoint(t *testing.T) {
	h := newHarness(t, true)
	problemOf(t, h.do("GET", "/v1/log/checkpoint", "tok-admin", ""), 404, TypeNotFound)
	h.do("POST", widgets, "tok-pos", `{"name":"lamp","qty":1}`, "Idempotency-Key", "k")
	h.node.signCheckpoint(t)
	r := h.do("GET", "/v1/log/checkpoint", "tok-organizer", "")
	if r.status != 200 || r.header.Get("Content-Type") != "text/plain; charset=utf-8" {
		t.Fatalf("checkpoint: %d %q", r.status, r.header.Get("Content-Type"))
	}
	cp, err := ledger.OpenCheckpoint(r.body, testEvent, h.node.pub())
	if err != nil {
		t.Fatal(err)
	}
	if cp.Size != 1 || cp.Root != ledger.RootOf([]ledger.Hash{h.node.entries[0].Hash()}) {
		t.Fatalf("checkpoint %+v", cp)
	}
	problemOf(t, h.do("GET", "/v1/log/checkpoint", "tok-door", ""), 403, TypeForbiddenRole)
}

func TestOpenAPIDocumentsEveryRoute(t *testing.T) {
	h := newHarness(t, false)
	// Routes of other packages (point of sale, doors, …) are documented but
	// not served by this bare server; edge/edge_test.go checks the whole
	// daemon in both directions.
	missing, _, err := h.srv.UndocumentedRoutes(OpenAPI)
	if err != nil {
		t.Fatal(err)
	}
	if len(missing) > 0 {
		t.Fatalf("openapi.yaml out of date: undocumented routes %v", missing)
	}
	if len(h.srv.Routes()) != 7 {
		t.Fatalf("routes %v", h.srv.Routes())
	}
	// The check itself notices a route the document lacks.
	addWidgetRoute(h.srv)
	missing, _, _ = h.srv.UndocumentedRoutes(OpenAPI)
	if len(missing) != 1 || missing[0] != "POST /v1/test/shelves/{shelf}/widgets" {
		t.Fatalf("missing %v", missing)
	}
	for typ, pt := range problemTypes {
		if !bytes.Contains(OpenAPI, fmt.Appendf(nil, "`%s` (%d)", typ, pt.status)) {
			t.Errorf("openapi.yaml does not document problem type %s (%d)", typ, pt.status)
		}
	}
	for _, must := range []string{"openapi: 3.1.0", "bearerFormat: PASETO", "IdempotencyKey:", "EntryRef:", "Problem:"} {
		if !bytes.Contains(OpenAPI, []byte(must)) {
			t.Errorf("openapi.yaml lacks %q", must)
		}
	}
}

func TestDocumentedOperations(t *testing.T) {
	doc := "openapi: 3.1.0\npaths:\n  /a:\n    get:\n      x: 1\n    parameters: []\n    post:\n  \"/b/{id}\":\n    put:\ncomponents:\n  /notapath:\n    get:\n"
	ops, err := DocumentedOperations([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	if fmt.Sprint(ops) != "[GET /a POST /a PUT /b/{id}]" {
		t.Fatalf("ops %v", ops)
	}
	if _, err := DocumentedOperations([]byte("paths:\n  notapath:\n")); err == nil {
		t.Fatal("a non-path key under paths: must be an error")
	}
}

func TestEmptyBodyMutation(t *testing.T) {
	h := newHarness(t, false)
	HandleMutation(h.srv, MutationRoute[struct{}]{
		Pattern:   "POST /v1/test/lots/{id}/close",
		Roles:     []auth.Role{auth.RoleAuctioneer},
		EmptyBody: true,
		Prepare: func(r *http.Request, _ *struct{}) (Mutation, error) {
			return Mutation{Kind: "lot.closed/v1", Key: r.PathValue("id"), Body: struct{}{}}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) { return 200, map[string]string{"lot": e.Key}, nil },
	})
	r := h.do("POST", "/v1/test/lots/7/close", "tok-auctioneer", "", "Idempotency-Key", "close-7")
	if r.status != 200 {
		t.Fatalf("%d %s", r.status, r.body)
	}
	want := fmt.Sprintf(`{"entry":{"node":"%s","seq":1,"hash":"%s"},"lot":"7"}`+"\n", h.node.Node(), h.node.entries[0].Hash())
	if string(r.body) != want {
		t.Fatalf("body %s, want %s", r.body, want)
	}
	if string(h.node.entries[0].Body) != fmt.Sprintf(`{"idempotency_key":"close-7","request_hash":"%s"}`, mustHash(t, h, "close-7")) {
		t.Fatalf("entry body %s", h.node.entries[0].Body)
	}
	r2 := h.do("POST", "/v1/test/lots/7/close", "tok-auctioneer", "{}", "Idempotency-Key", "close-7")
	if !bytes.Equal(r2.body, r.body) || r2.header.Get("Idempotent-Replayed") != "true" {
		t.Fatalf("an empty body and {} are the same request: %d %s", r2.status, r2.body)
	}
}

func mustHash(t *testing.T, h *harness, key string) string {
	t.Helper()
	row, err := h.node.View(context.Background(), IdempotencyView, key)
	if err != nil {
		t.Fatal(err)
	}
	var rec idempotencyRecord
	if err := json.Unmarshal(row, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.RequestHash
}

func TestRequestHashIsCanonical(t *testing.T) {
	r := httptest.NewRequest("POST", "/v1/x/1", nil)
	r.SetPathValue("id", "1")
	var key []byte
	hash := func(body string) string {
		var req widgetRequest
		if err := decodeJSONBytes([]byte(body), &req); err != nil {
			t.Fatal(err)
		}
		s, err := requestHash(key, "POST", "POST /v1/x/{id}", []string{"id"}, r, &req)
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	a := hash(`{"name":"n","qty":1,"note":{"b":1,"a":[1,{"y":2,"x":1}]}}`)
	b := hash(` { "note" : { "a" : [1, {"x":1, "y":2}], "b":1 }, "qty":1, "name":"n" } `)
	if a != b {
		t.Error("key order and whitespace changed the fingerprint")
	}
	if a == hash(`{"name":"n","qty":2,"note":{"b":1,"a":[1,{"y":2,"x":1}]}}`) {
		t.Error("a different qty gave the same fingerprint")
	}
	r.SetPathValue("id", "2")
	if a == hash(`{"name":"n","qty":1,"note":{"b":1,"a":[1,{"y":2,"x":1}]}}`) {
		t.Error("a different path value gave the same fingerprint")
	}
	// With a FingerprintKey the fingerprint is an HMAC: still canonical,
	// but not the plain hash, and different per key.
	r.SetPathValue("id", "1")
	key = []byte("key one")
	k1 := hash(`{"name":"n","qty":1,"note":{"b":1,"a":[1,{"y":2,"x":1}]}}`)
	if k1 == a || k1 != hash(` { "note" : { "a" : [1, {"x":1, "y":2}], "b":1 }, "qty":1, "name":"n" } `) {
		t.Error("keyed fingerprint is the plain hash or not canonical")
	}
	key = []byte("key two")
	if k1 == hash(`{"name":"n","qty":1,"note":{"b":1,"a":[1,{"y":2,"x":1}]}}`) {
		t.Error("two keys gave the same fingerprint")
	}
}

func TestHandlePanicsOnBadDeclarations(t *testing.T) {
	h := newHarness(t, false)
	ok := func(w http.ResponseWriter, r *http.Request) error { return nil }
	for _, rt := range []Route{
		{Pattern: "/v1/no-method", Roles: auth.Roles, Handler: ok},
		{Pattern: "GET /v1/x", Roles: []auth.Role{"wizard"}, Handler: ok},
		{Pattern: "GET /v1/y", Roles: auth.Roles},
	} {
		func() {
			defer func() {
				if recover() == nil {
					t.Errorf("Handle(%+v) did not panic", rt.Pattern)
				}
			}()
			h.srv.Handle(rt)
		}()
	}
}

func TestProblemJSON(t *testing.T) {
	p := NewProblem(TypeConflict, "order %s is paid", "o1")
	p.Instance = "/v1/orders/o1"
	p.Extensions = map[string]any{"status": "ignored", "order": "o1"}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	want := `{"type":"urn:canopy:problem:conflict","title":"Conflict","status":409,"detail":"order o1 is paid","instance":"/v1/orders/o1","order":"o1"}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	var wrapped error = fmt.Errorf("x: %w", store.ErrUnavailable)
	s := &Server{cfg: Config{RetryAfter: 1500 * time.Millisecond}}
	if q := s.problemFor(wrapped); q.Status != 503 || q.Header().Get("Retry-After") != "1" {
		t.Fatalf("problemFor(unavailable) = %+v", q)
	}
	if q := s.problemFor(fmt.Errorf("get: %w", store.ErrNotFound)); q.Type != TypeNotFound {
		t.Fatalf("not found: %+v", q)
	}
	if q := s.problemFor(fmt.Errorf("commit: %w", store.ErrConflict)); q.Type != TypeConflict {
		t.Fatalf("conflict: %+v", q)
	}
}

func TestNewHTTPServerServesOnLoopback(t *testing.T) {
	h := newHarness(t, false)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := NewHTTPServer(ln.Addr().String(), h.srv, nil)
	if hs.ReadHeaderTimeout <= 0 || hs.IdleTimeout <= 0 || hs.MaxHeaderBytes <= 0 {
		t.Fatalf("server without limits: %+v", hs)
	}
	done := make(chan error, 1)
	go func() { done <- hs.Serve(ln) }()
	res, err := http.Get("http://" + ln.Addr().String() + "/healthz")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Fatalf("healthz: %d", res.StatusCode)
	}
	if err := hs.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, http.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
}

func TestNewRequiresDependencies(t *testing.T) {
	n := newFakeNode(t)
	if _, err := New(Config{Appender: n, Log: n, Views: n}); err == nil || !strings.Contains(err.Error(), "Verifier") {
		t.Fatalf("New without a verifier: %v", err)
	}
}

func TestPanicIsCountedUnderItsRoute(t *testing.T) {
	h := newHarness(t, true)
	h.do("POST", widgets, "tok-pos", `{"name":"explode","qty":1}`, "Idempotency-Key", "k")
	r := h.do("GET", "/metrics", "", "")
	if want := `canopy_api_requests_total{code="500",route="POST /v1/test/shelves/{shelf}/widgets"} 1`; !strings.Contains(string(r.body), want) {
		t.Fatalf("metrics lack %q", want)
	}
}

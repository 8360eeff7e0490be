package api

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"canopy/auth"
	"canopy/ledger"
	"canopy/store"
	"canopy/views"
)

const testEvent = "night-market"

// fakeVerifier knows tokens by their literal text.
type fakeVerifier struct {
	now    time.Time
	tokens map[string]*auth.Device
	errs   map[string]error
}

func (v *fakeVerifier) VerifyDevice(token string) (*auth.Device, error) {
	if err, ok := v.errs[token]; ok {
		return nil, fmt.Errorf("verify device token: %w", err)
	}
	if d, ok := v.tokens[token]; ok {
		return d, nil
	}
	return nil, fmt.Errorf("%w: unknown test token", auth.ErrMalformed)
}

func newFakeVerifier() *fakeVerifier {
	now := time.Date(2026, 7, 4, 18, 0, 0, 0, time.UTC)
	v := &fakeVerifier{now: now, tokens: map[string]*auth.Device{}, errs: map[string]error{
		"tok-expired":   auth.ErrExpired,
		"tok-early":     auth.ErrNotYetValid,
		"tok-elsewhere": auth.ErrWrongEvent,
		"tok-forged":    auth.ErrBadSignature,
		"tok-garbage":   auth.ErrMalformed,
		"tok-ticket":    auth.ErrWrongPurpose,
		"tok-badrole":   auth.ErrUnknownRole,
		"tok-weird":     errors.New("deny-list lookup failed in a novel way"),
	}}
	for _, r := range auth.Roles {
		v.tokens["tok-"+string(r)] = &auth.Device{
			TokenID: "jti-" + string(r), Event: testEvent, Role: r, Name: string(r) + "-1",
			IssuedAt: now, NotBefore: now, Expires: now.Add(24 * time.Hour),
		}
	}
	v.tokens["tok-other-event"] = &auth.Device{TokenID: "jti-x", Event: "another-market", Role: auth.RoleOrganizer}
	return v
}

// fakeNode is a node's log in memory: it appends signed, chained entries
// and maintains the idempotency view with the real reducer from package
// views, as the journal does in the same transaction as the entry.
type fakeNode struct {
	key ed25519.PrivateKey
	hlc *ledger.HLCSource

	mu          sync.Mutex
	entries     []*ledger.Entry
	rows        map[string][]byte
	unavailable bool
	appends     int
	checkpoint  []byte
}

type fixedClock struct{ t time.Time }

func (c fixedClock) Now() time.Time { return c.t }

func newFakeNode(t testing.TB) *fakeNode {
	seed := bytes.Repeat([]byte{7}, ed25519.SeedSize)
	return &fakeNode{
		key:  ed25519.NewKeyFromSeed(seed),
		hlc:  ledger.NewHLCSource(fixedClock{time.Date(2026, 7, 4, 18, 0, 0, 0, time.UTC)}),
		rows: map[string][]byte{},
	}
}

func (n *fakeNode) pub() ed25519.PublicKey { return n.key.Public().(ed25519.PublicKey) }

func (n *fakeNode) Append(ctx context.Context, kind, key string, body []byte) (*ledger.Entry, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	n.appends++
	if n.unavailable {
		return nil, fmt.Errorf("commit batch: write: no space left on device: %w", store.ErrUnavailable)
	}
	e := &ledger.Entry{Event: testEvent, Seq: uint64(len(n.entries) + 1), HLC: n.hlc.Now(), Kind: kind, Key: key, Body: body}
	if len(n.entries) > 0 {
		e.Prev = n.entries[len(n.entries)-1].Hash()
	}
	if err := e.Sign(n.key); err != nil {
		return nil, err
	}
	red := views.Idempotency{}
	st := store.Stored{Entry: e, Hash: e.Hash()}
	for _, row := range red.Rows(st) {
		n.rows[red.View()+"\x00"+row] = red.Fold(n.rows[red.View()+"\x00"+row], row, st)
	}
	n.entries = append(n.entries, e)
	return e, nil
}

func (n *fakeNode) View(ctx context.Context, view, key string) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	v, ok := n.rows[view+"\x00"+key]
	if !ok {
		return nil, fmt.Errorf("view %s/%s: %w", view, key, store.ErrNotFound)
	}
	return v, nil
}

func (n *fakeNode) Node() ledger.NodeID { return ledger.NodeIDOf(n.pub()) }

func (n *fakeNode) Checkpoint(ctx context.Context) ([]byte, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.checkpoint == nil {
		return nil, fmt.Errorf("latest checkpoint: %w", store.ErrNotFound)
	}
	return n.checkpoint, nil
}

// signCheckpoint signs a checkpoint over every entry so far.
func (n *fakeNode) signCheckpoint(t testing.TB) {
	n.mu.Lock()
	defer n.mu.Unlock()
	hashes := make([]ledger.Hash, len(n.entries))
	for i, e := range n.entries {
		hashes[i] = e.Hash()
	}
	note, err := ledger.SignCheckpoint(n.key, testEvent, uint64(len(hashes)), ledger.RootOf(hashes))
	if err != nil {
		t.Fatal(err)
	}
	n.checkpoint = note
}

func (n *fakeNode) Entries(ctx context.Context, node ledger.NodeID, from, to uint64, limit int) ([]*ledger.Entry, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []*ledger.Entry
	if node != ledger.NodeIDOf(n.pub()) {
		return nil, nil
	}
	for _, e := range n.entries {
		if e.Seq >= from && e.Seq <= to && (limit <= 0 || len(out) < limit) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (n *fakeNode) Entry(ctx context.Context, node ledger.NodeID, seq uint64) (*ledger.Entry, error) {
	n.mu.Lock()
	defer n.mu.Unlock()
	if node != ledger.NodeIDOf(n.pub()) || seq == 0 || seq > uint64(len(n.entries)) {
		return nil, fmt.Errorf("entry %s/%d: %w", node, seq, store.ErrNotFound)
	}
	// Hand out a decoded copy, as a store would.
	return ledger.Decode(n.entries[seq-1].Encode())
}

func (n *fakeNode) setUnavailable(v bool) {
	n.mu.Lock()
	n.unavailable = v
	n.mu.Unlock()
}

func (n *fakeNode) appendCount() int {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.appends
}

// syncBuffer is a log destination safe for concurrent handlers.
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

// widgetRequest is the test-only mutation route's request.
type widgetRequest struct {
	Name  string            `json:"name"`
	Qty   int               `json:"qty"`
	Tags  map[string]string `json:"tags,omitempty"`
	Price *int64            `json:"price,omitempty"`
	Note  json.RawMessage   `json:"note,omitempty"`
}

type widgetBody struct {
	Shelf string            `json:"shelf"`
	Name  string            `json:"name"`
	Qty   int               `json:"qty"`
	Tags  map[string]string `json:"tags,omitempty"`
	By    string            `json:"by"`
}

// addWidgetRoute registers the test-only mutation route.
func addWidgetRoute(s *Server) {
	HandleMutation(s, MutationRoute[widgetRequest]{
		Pattern: "POST /v1/test/shelves/{shelf}/widgets",
		Roles:   []auth.Role{auth.RolePOS, auth.RoleOrganizer},
		Prepare: func(r *http.Request, req *widgetRequest) (Mutation, error) {
			switch req.Name {
			case "explode":
				panic("widget exploded")
			case "boom":
				return Mutation{}, errors.New("secret internal detail: db password is hunter2")
			case "taken":
				return Mutation{}, Conflict("widget %q is already on the shelf", req.Name)
			}
			if r.PathValue("shelf") == "missing" {
				return Mutation{}, NotFound("shelf %q does not exist", r.PathValue("shelf"))
			}
			var v Validation
			if req.Name == "" {
				v.Field("/name", "must not be empty")
			}
			if req.Qty <= 0 {
				v.Field("/qty", "must be positive, got %d", req.Qty)
			}
			if err := v.Err(); err != nil {
				return Mutation{}, err
			}
			shelf := r.PathValue("shelf")
			return Mutation{Kind: "widget.added/v1", Key: shelf + "/" + req.Name, Body: widgetBody{
				Shelf: shelf, Name: req.Name, Qty: req.Qty, Tags: req.Tags, By: DeviceFrom(r.Context()).Name,
			}}, nil
		},
		Render: func(e *ledger.Entry) (int, any, error) {
			var b widgetBody
			if err := json.Unmarshal(e.Body, &b); err != nil {
				return 0, nil, err
			}
			return http.StatusCreated, map[string]any{"widget": b, "kind": e.Kind}, nil
		},
	})
}

type harness struct {
	t      *testing.T
	node   *fakeNode
	ver    *fakeVerifier
	srv    *Server
	http   *httptest.Server
	reg    *prometheus.Registry
	logs   *syncBuffer
	ready  error
	readMu sync.Mutex
}

func newHarness(t *testing.T, withWidgets bool) *harness {
	t.Helper()
	h := &harness{t: t, node: newFakeNode(t), ver: newFakeVerifier(), reg: prometheus.NewRegistry(), logs: &syncBuffer{}}
	srv, err := New(Config{
		Event: testEvent, Verifier: h.ver, Appender: h.node, Log: h.node, Views: h.node,
		Ready: func(ctx context.Context) error {
			h.readMu.Lock()
			defer h.readMu.Unlock()
			return h.ready
		},
		Registerer: h.reg, Gatherer: h.reg,
		Logger:     slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		RetryAfter: 7 * time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if withWidgets {
		addWidgetRoute(srv)
	}
	h.srv = srv
	h.http = httptest.NewServer(srv)
	t.Cleanup(h.http.Close)
	return h
}

type response struct {
	status int
	header http.Header
	body   []byte
}

// do sends a request; hdr is alternating header names and values.
func (h *harness) do(method, path, token, body string, hdr ...string) response {
	h.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, h.http.URL+path, rd)
	if err != nil {
		h.t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i+1] == "" {
			req.Header.Del(hdr[i])
			continue
		}
		req.Header.Set(hdr[i], hdr[i+1])
	}
	res, err := h.http.Client().Do(req)
	if err != nil {
		h.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: b}
}

// problemOf checks r is a problem+json with the status and type and
// returns it decoded.
func problemOf(t *testing.T, r response, status int, typ string) map[string]any {
	t.Helper()
	if r.status != status {
		t.Fatalf("status %d, want %d; body %s", r.status, status, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != ContentTypeProblem {
		t.Fatalf("Content-Type %q, want %q", ct, ContentTypeProblem)
	}
	var p map[string]any
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem body %s: %v", r.body, err)
	}
	if p["type"] != typ {
		t.Fatalf("type %v, want %s; body %s", p["type"], typ, r.body)
	}
	if p["status"] != float64(status) {
		t.Fatalf("status member %v, want %d", p["status"], status)
	}
	if title, _ := p["title"].(string); title == "" {
		t.Fatalf("problem without a title: %s", r.body)
	}
	if detail, _ := p["detail"].(string); detail == "" {
		t.Fatalf("problem without a detail: %s", r.body)
	}
	return p
}

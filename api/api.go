// Package api serves Canopy's device-facing HTTP/JSON API: routing with
// device-token authentication and roles, RFC 9457 problem responses,
// request limits and JSON decoding, Idempotency-Key handling for mutations,
// metrics, the audit endpoints and the OpenAPI document. Domain routes
// (orders, doors, auctions) are added on top with Server.Handle and
// HandleMutation.
package api

import (
	"canopy/keylock"
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"runtime/debug"
	"sort"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"canopy/auth"
	"canopy/ledger"
)

// DeviceVerifier checks a device token (PASETO v4.public). It returns the
// errors of canopy/auth (ErrMalformed, ErrBadSignature, ErrExpired,
// ErrNotYetValid, ErrWrongEvent, ErrWrongPurpose, ErrUnknownRole), wrapped
// or not, for a token it refuses.
type DeviceVerifier interface {
	VerifyDevice(token string) (*auth.Device, error)
}

// Appender appends one entry to this node's log. It returns only once the
// entry (and the view rows derived from it) are durable, and an error
// wrapping store.ErrUnavailable when the write could not be made durable.
// It is safe for concurrent use.
type Appender interface {
	Append(ctx context.Context, kind, key string, body []byte) (*ledger.Entry, error)
}

// Log reads the node's log for the audit endpoints and idempotent replays.
// Implementations are safe for concurrent use.
type Log interface {
	// Node returns this node's id.
	Node() ledger.NodeID
	// Checkpoint returns the latest signed checkpoint note of this node's
	// log, or an error wrapping store.ErrNotFound if none is signed yet.
	Checkpoint(ctx context.Context) ([]byte, error)
	// Entries returns the entries of author node with from <= seq <= to,
	// in seq order, at most limit of them.
	Entries(ctx context.Context, node ledger.NodeID, from, to uint64, limit int) ([]*ledger.Entry, error)
	// Entry returns one entry, or an error wrapping store.ErrNotFound.
	Entry(ctx context.Context, node ledger.NodeID, seq uint64) (*ledger.Entry, error)
}

// Views reads derived state. View returns an error wrapping
// store.ErrNotFound when the row does not exist.
type Views interface {
	View(ctx context.Context, view, key string) ([]byte, error)
}

// Config is what the daemon gives the API.
type Config struct {
	Event    string // event slug; a token for another event is refused
	Verifier DeviceVerifier
	Appender Appender
	Log      Log
	Views    Views
	// Ready reports whether the node can serve; nil: always ready.
	Ready func(ctx context.Context) error

	// Registerer receives the API's metrics and Gatherer serves /metrics.
	// If both are nil a private registry is used for both.
	Registerer prometheus.Registerer
	Gatherer   prometheus.Gatherer

	Logger *slog.Logger // nil: discard
	Clock  ledger.Clock // nil: ledger.SystemClock{}; times request latency

	MaxBodyBytes int64         // request body cap; 0: DefaultMaxBodyBytes
	RetryAfter   time.Duration // Retry-After on 503s; 0: DefaultRetryAfter
	MaxPageSize  int           // cap on /v1/log/entries pages; 0: DefaultMaxPageSize

	// FingerprintKey, when set, keys the Idempotency-Key request
	// fingerprint kept in entries (HMAC-SHA256 instead of plain SHA-256),
	// so the fingerprint of a request carrying personal data cannot be
	// confirmed by hashing guesses. Keep it stable for the node's life.
	FingerprintKey []byte
}

// Defaults for zero Config fields.
const (
	DefaultMaxBodyBytes = 1 << 20
	DefaultRetryAfter   = 5 * time.Second
	DefaultMaxPageSize  = 1000
	defaultPageSize     = 100
)

// Keys of log attributes.
const (
	logKeyIncident = "incident"
	logKeyMethod   = "method"
	logKeyPath     = "path"
	logKeyStatus   = "status"
	logKeyError    = "err"
	logKeyPanic    = "panic"
	logKeyStack    = "stack"
)

// Server is the API's http.Handler. Routes are added with Handle and
// HandleMutation; it is safe to add routes while serving.
type Server struct {
	cfg     Config
	log     *slog.Logger
	mux     *http.ServeMux
	metrics *metrics
	locks   keylock.Map // per Idempotency-Key

	mu     sync.Mutex
	routes []string // registered patterns
}

// New returns a server with the operational and audit routes registered.
func New(cfg Config) (*Server, error) {
	switch {
	case cfg.Verifier == nil:
		return nil, errorf("config: no Verifier")
	case cfg.Appender == nil:
		return nil, errorf("config: no Appender")
	case cfg.Log == nil:
		return nil, errorf("config: no Log")
	case cfg.Views == nil:
		return nil, errorf("config: no Views")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Clock == nil {
		cfg.Clock = ledger.SystemClock{}
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = DefaultRetryAfter
	}
	if cfg.MaxPageSize <= 0 {
		cfg.MaxPageSize = DefaultMaxPageSize
	}
	if cfg.Registerer == nil && cfg.Gatherer == nil {
		reg := prometheus.NewRegistry()
		cfg.Registerer, cfg.Gatherer = reg, reg
	}
	if cfg.Registerer == nil || cfg.Gatherer == nil {
		return nil, errorf("Registerer and Gatherer must be given together")
	}
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	s := &Server{cfg: cfg, log: cfg.Logger, mux: http.NewServeMux(), metrics: m}
	s.registerOps()
	s.registerAudit()
	return s, nil
}

// Routes returns the registered patterns, sorted.
func (s *Server) Routes() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := append([]string(nil), s.routes...)
	sort.Strings(out)
	return out
}

// ServeHTTP implements http.Handler: it dispatches to the matching route,
// answers unknown routes and methods with problems, recovers panics and
// records metrics.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := s.cfg.Clock.Now()
	rec := &recorder{ResponseWriter: w}
	route := "unmatched"
	defer func() {
		if v := recover(); v != nil {
			if v == http.ErrAbortHandler {
				panic(v)
			}
			s.log.LogAttrs(r.Context(), slog.LevelError, "handler panicked",
				slog.String(logKeyMethod, r.Method), slog.String(logKeyPath, r.URL.Path),
				slog.Any(logKeyPanic, v), slog.String(logKeyStack, string(debug.Stack())))
			if !rec.wrote {
				s.writeProblem(rec, r, errorf("panic: %v", v))
			}
		}
		s.metrics.observe(route, rec.status(), s.cfg.Clock.Now().Sub(start))
	}()

	h, pattern := s.mux.Handler(r)
	if pattern == "" {
		s.unmatched(rec, r, h)
		return
	}
	route = pattern
	s.mux.ServeHTTP(rec, r)
	if r.Pattern == "" {
		// ServeMux redirected to the canonical path; pattern was that path.
		route = "redirect"
	}
}

// unmatched answers a request no route matches: 405 with Allow if the path
// exists for other methods, else 404.
func (s *Server) unmatched(w http.ResponseWriter, r *http.Request, muxHandler http.Handler) {
	probe := &headerProbe{h: http.Header{}}
	muxHandler.ServeHTTP(probe, r)
	if probe.code == http.StatusMethodNotAllowed {
		allow := probe.h.Get("Allow")
		p := NewProblem(TypeMethodNotAllowed, "%s is not allowed on %s; allowed: %s", r.Method, r.URL.Path, allow)
		p.Header().Set("Allow", allow)
		s.writeProblem(w, r, p)
		return
	}
	s.writeProblem(w, r, NewProblem(TypeRouteNotFound, "no route for %s %s", r.Method, r.URL.Path))
}

// headerProbe runs ServeMux's own 404/405 handler to learn which it is and
// the Allow header, discarding its plain-text body.
type headerProbe struct {
	h    http.Header
	code int
}

func (p *headerProbe) Header() http.Header         { return p.h }
func (p *headerProbe) Write(b []byte) (int, error) { return len(b), nil }
func (p *headerProbe) WriteHeader(code int)        { p.code = code }

// recorder notes the status of a response. It passes Flush through for
// streaming routes and unwraps for http.ResponseController.
type recorder struct {
	http.ResponseWriter
	code  int
	wrote bool
}

func (w *recorder) WriteHeader(code int) {
	if !w.wrote && code >= 200 {
		w.code, w.wrote = code, true
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *recorder) Write(b []byte) (int, error) {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	return w.ResponseWriter.Write(b)
}

func (w *recorder) Flush() {
	if !w.wrote {
		w.code, w.wrote = http.StatusOK, true
	}
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *recorder) Unwrap() http.ResponseWriter { return w.ResponseWriter }

func (w *recorder) status() int {
	if !w.wrote {
		return http.StatusOK
	}
	return w.code
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func errorf(format string, args ...any) error {
	return fmt.Errorf("api: "+format, args...)
}

package api

import (
	_ "embed"
	"errors"
	"log/slog"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// OpenAPI is the API's OpenAPI 3.1 document, served at /v1/openapi.yaml.
//
//go:embed openapi.yaml
var OpenAPI []byte

// metrics are the API's Prometheus collectors.
type metrics struct {
	requests *prometheus.CounterVec
	duration *prometheus.HistogramVec
	replays  prometheus.Counter
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "canopy_api_requests_total",
			Help: "Device API requests by route pattern and status code.",
		}, []string{"route", "code"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "canopy_api_request_duration_seconds",
			Help:    "Device API request latency by route pattern.",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"route"}),
		replays: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "canopy_api_idempotent_replays_total",
			Help: "Mutations answered from an earlier request with the same Idempotency-Key.",
		}),
	}
	var err error
	m.requests, err = register(reg, m.requests)
	if err != nil {
		return nil, err
	}
	m.duration, err = register(reg, m.duration)
	if err != nil {
		return nil, err
	}
	m.replays, err = register(reg, m.replays)
	if err != nil {
		return nil, err
	}
	return m, nil
}

// register registers c, or returns the equal collector already registered
// (a second Server on the same registry shares the metrics).
func register[C prometheus.Collector](reg prometheus.Registerer, c C) (C, error) {
	err := reg.Register(c)
	var already prometheus.AlreadyRegisteredError
	if errors.As(err, &already) {
		if prev, ok := already.ExistingCollector.(C); ok {
			return prev, nil
		}
	}
	if err != nil {
		return c, errorf("register metrics: %w", err)
	}
	return c, nil
}

func (m *metrics) observe(route string, code int, d time.Duration) {
	m.requests.WithLabelValues(route, strconv.Itoa(code)).Inc()
	m.duration.WithLabelValues(route).Observe(d.Seconds())
}

// registerOps adds the routes that need no token.
func (s *Server) registerOps() {
	s.Handle(Route{Pattern: "GET /healthz", Handler: func(w http.ResponseWriter, r *http.Request) error {
		writeText(w, http.StatusOK, "text/plain; charset=utf-8", []byte("ok\n"))
		return nil
	}})
	s.Handle(Route{Pattern: "GET /readyz", Handler: func(w http.ResponseWriter, r *http.Request) error {
		if s.cfg.Ready != nil {
			if err := s.cfg.Ready(r.Context()); err != nil {
				s.log.LogAttrs(r.Context(), slog.LevelWarn, "not ready", slog.Any(logKeyError, err))
				return NewProblem(TypeNotReady, "the node is not ready to serve yet")
			}
		}
		writeText(w, http.StatusOK, "text/plain; charset=utf-8", []byte("ready\n"))
		return nil
	}})
	metricsHandler := promhttp.HandlerFor(s.cfg.Gatherer, promhttp.HandlerOpts{
		ErrorLog:      slog.NewLogLogger(s.log.Handler(), slog.LevelError),
		ErrorHandling: promhttp.ContinueOnError,
	})
	s.Handle(Route{Pattern: "GET /metrics", Handler: func(w http.ResponseWriter, r *http.Request) error {
		metricsHandler.ServeHTTP(w, r)
		return nil
	}})
	s.Handle(Route{Pattern: "GET /v1/openapi.yaml", Handler: func(w http.ResponseWriter, r *http.Request) error {
		writeText(w, http.StatusOK, "application/yaml", OpenAPI)
		return nil
	}})
}

func writeText(w http.ResponseWriter, status int, contentType string, b []byte) {
	w.Header().Set("Content-Type", contentType)
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(b)
}

// NewHTTPServer returns an http.Server for h with the timeouts a device API
// needs: slow or stalled clients cannot hold connections open forever.
// There is no WriteTimeout, so streaming routes (server-sent events) work;
// such routes set their own deadlines with http.ResponseController.
func NewHTTPServer(addr string, h http.Handler, logger *slog.Logger) *http.Server {
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	return &http.Server{
		Addr:              addr,
		Handler:           h,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       30 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(logger.Handler(), slog.LevelWarn),
	}
}

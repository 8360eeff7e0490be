package hub

import (
	"encoding/json"
	"log/slog"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"canopy/api"
)

// EventsResponse answers GET /v1/events: the slugs of the events served
// (public: an edge needs its event's slug to sync, and slugs are in every
// enrolment anyway).
type EventsResponse struct {
	Events []string `json:"events"`
}

// ServeHTTP routes /v1/events/<slug>/… to that event's API (with the prefix
// stripped, so the event's routes are those of an edge), and serves the
// hub's own routes: GET /v1/events, /healthz, /readyz and /metrics.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	if rest, ok := strings.CutPrefix(path, "/v1/events/"); ok {
		slug, _, _ := strings.Cut(rest, "/")
		handler, found := h.routes[eventPrefix(slug)]
		if !found {
			writeProblem(w, r, api.NewProblem(api.TypeNotFound, "this hub serves no event %q (GET /v1/events lists them)", slug))
			return
		}
		if rest == slug {
			writeProblem(w, r, api.NewProblem(api.TypeRouteNotFound, "no route for %s %s; the event's routes are under %s/", r.Method, path, path))
			return
		}
		handler.ServeHTTP(w, r)
		return
	}
	route := r.Method + " " + path
	switch route {
	case "GET /v1/events", "HEAD /v1/events":
		writeJSON(w, http.StatusOK, EventsResponse{Events: h.Slugs()})
	case "GET /healthz", "HEAD /healthz":
		writeText(w, http.StatusOK, "ok\n")
	case "GET /readyz", "HEAD /readyz":
		if slug, err := h.ready(r.Context()); err != nil {
			h.log.Warn("not ready", logKeyEvent, slug, "err", err)
			// The cause is logged, not sent: /readyz needs no token.
			writeProblem(w, r, api.NewProblem(api.TypeNotReady, "the hub is not ready to serve event %s; see its log", slug))
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	case "GET /metrics", "HEAD /metrics":
		promhttp.HandlerFor(h.registry, promhttp.HandlerOpts{
			ErrorLog:      slog.NewLogLogger(h.log.Handler(), slog.LevelError),
			ErrorHandling: promhttp.ContinueOnError,
		}).ServeHTTP(w, r)
	case "GET /v1/openapi.yaml", "HEAD /v1/openapi.yaml":
		w.Header().Set("Content-Type", "application/yaml")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(api.OpenAPI)
	default:
		switch path {
		case "/v1/events", "/healthz", "/readyz", "/metrics", "/v1/openapi.yaml":
			p := api.NewProblem(api.TypeMethodNotAllowed, "%s is not allowed on %s; allowed: GET, HEAD", r.Method, path)
			p.Header().Set("Allow", "GET, HEAD")
			writeProblem(w, r, p)
		default:
			writeProblem(w, r, api.NewProblem(api.TypeRouteNotFound, "no route for %s %s (events are served under /v1/events/<slug>/)", r.Method, path))
		}
	}
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, _ := json.Marshal(v) // EventsResponse always encodes
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

func writeText(w http.ResponseWriter, status int, text string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(text))
}

// writeProblem answers with an RFC 9457 problem.
func writeProblem(w http.ResponseWriter, r *http.Request, p *api.Problem) {
	out := *p
	if out.Instance == "" {
		out.Instance = r.URL.Path
	}
	b, _ := json.Marshal(&out) // no extension members: always encodes
	for k, v := range p.Header() {
		w.Header()[k] = v
	}
	w.Header().Set("Content-Type", api.ContentTypeProblem)
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(out.Status)
	_, _ = w.Write(append(b, '\n'))
}

package api

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"slices"
	"strings"

	"canopy/auth"
	"canopy/store"
)

// HandlerFunc serves one route. An error it returns before writing
// anything is answered as a problem (see Problem and the error mapping);
// after writing, it is only logged.
type HandlerFunc func(w http.ResponseWriter, r *http.Request) error

// Route declares one route.
type Route struct {
	// Pattern is a net/http ServeMux pattern with a method, e.g.
	// "GET /v1/orders/{id}".
	Pattern string
	// Roles may call the route. nil means no token is needed at all — only
	// the operational routes are like that; every other route lists roles.
	Roles []auth.Role
	// MaxBody caps the request body; 0: Config.MaxBodyBytes.
	MaxBody int64
	// Screen, if set, is called once the token is checked and before the
	// handler, with the whole body read (within MaxBody); it may refuse the
	// request by returning an error (e.g. a card number anywhere in it).
	// The handler then reads the same body again.
	Screen  func(r *http.Request, body []byte) error
	Handler HandlerFunc
}

type deviceKey struct{}

// DeviceFrom returns the verified device of an authenticated request, or
// nil on a route that needs no token.
func DeviceFrom(ctx context.Context) *auth.Device {
	d, _ := ctx.Value(deviceKey{}).(*auth.Device)
	return d
}

// Handle registers a route. It panics if the pattern has no method, names
// an unknown role, or conflicts with a registered pattern (as ServeMux
// does): routes are fixed at startup by code, not by outside input.
func (s *Server) Handle(rt Route) {
	method, _, ok := strings.Cut(rt.Pattern, " ")
	if !ok || method == "" || strings.ToUpper(method) != method {
		panic("api: route pattern " + rt.Pattern + " must start with a method")
	}
	for _, role := range rt.Roles {
		if !slices.Contains(auth.Roles, role) {
			panic("api: route " + rt.Pattern + " names unknown role " + string(role))
		}
	}
	if rt.Handler == nil {
		panic("api: route " + rt.Pattern + " has no handler")
	}
	limit := rt.MaxBody
	if limit <= 0 {
		limit = s.cfg.MaxBodyBytes
	}
	roles := slices.Clone(rt.Roles)
	public := rt.Roles == nil
	s.mux.HandleFunc(rt.Pattern, func(w http.ResponseWriter, r *http.Request) {
		if !public {
			dev, err := s.authenticate(r, roles)
			if err != nil {
				s.writeProblem(w, r, err)
				return
			}
			r = r.WithContext(context.WithValue(r.Context(), deviceKey{}, dev))
		}
		if r.ContentLength > limit {
			s.writeProblem(w, r, NewProblem(TypeBodyTooLarge, "the request body of %d bytes is larger than %d bytes", r.ContentLength, limit))
			return
		}
		if r.Body != nil {
			r.Body = http.MaxBytesReader(w, r.Body, limit)
		}
		if rt.Screen != nil {
			if err := screen(r, rt.Screen); err != nil {
				s.writeProblem(w, r, err)
				return
			}
		}
		if err := rt.Handler(w, r); err != nil {
			if rec, ok := w.(*recorder); ok && rec.wrote {
				s.log.LogAttrs(r.Context(), slog.LevelError, "error after response started",
					slog.String(logKeyMethod, r.Method), slog.String(logKeyPath, r.URL.Path),
					slog.Any(logKeyError, err))
				return
			}
			s.writeProblem(w, r, err)
		}
	})
	s.mu.Lock()
	s.routes = append(s.routes, rt.Pattern)
	s.mu.Unlock()
}

// screen reads the body, shows the request to fn, and puts the body back.
func screen(r *http.Request, fn func(*http.Request, []byte) error) error {
	body, err := readBody(r)
	if err != nil {
		return err
	}
	if err := fn(r, body); err != nil {
		return err
	}
	if r.Body != nil {
		r.Body = io.NopCloser(bytes.NewReader(body))
	}
	return nil
}

// authenticate verifies the bearer token and the device's role.
func (s *Server) authenticate(r *http.Request, roles []auth.Role) (*auth.Device, error) {
	values := r.Header.Values("Authorization")
	if len(values) == 0 || strings.TrimSpace(values[0]) == "" {
		p := NewProblem(TypeTokenMissing, "send the device token as Authorization: Bearer <token>")
		p.Header().Set("WWW-Authenticate", `Bearer realm="canopy"`)
		return nil, p
	}
	malformed := func(detail string) error {
		p := NewProblem(TypeTokenMalformed, "%s", detail)
		p.Header().Set("WWW-Authenticate", `Bearer realm="canopy", error="invalid_request"`)
		return p
	}
	if len(values) > 1 {
		return nil, malformed("more than one Authorization header")
	}
	scheme, token, _ := strings.Cut(strings.TrimSpace(values[0]), " ")
	if !strings.EqualFold(scheme, "Bearer") {
		return nil, malformed("the Authorization scheme must be Bearer")
	}
	token = strings.TrimSpace(token)
	if token == "" {
		return nil, malformed("the Bearer token is empty")
	}
	dev, err := s.cfg.Verifier.VerifyDevice(token)
	if err != nil {
		if p := authProblem(err); p != nil {
			return nil, p
		}
		if errors.Is(err, store.ErrUnavailable) {
			return nil, err
		}
		s.log.LogAttrs(r.Context(), slog.LevelWarn, "device token refused",
			slog.String(logKeyPath, r.URL.Path), slog.Any(logKeyError, err))
		p := NewProblem(TypeTokenRejected, "the device token was refused")
		p.Header().Set("WWW-Authenticate", `Bearer realm="canopy", error="invalid_token"`)
		return nil, p
	}
	if dev == nil {
		return nil, errorf("verifier returned neither a device nor an error")
	}
	if s.cfg.Event != "" && dev.Event != s.cfg.Event {
		p := NewProblem(TypeTokenWrongEvent, "the token is for event %q; this node serves %q", dev.Event, s.cfg.Event)
		p.Header().Set("WWW-Authenticate", `Bearer realm="canopy", error="invalid_token"`)
		return nil, p
	}
	if !slices.Contains(roles, dev.Role) {
		names := make([]string, len(roles))
		for i, role := range roles {
			names[i] = string(role)
		}
		p := NewProblem(TypeForbiddenRole, "role %q may not call %s; allowed: %s", dev.Role, r.Pattern, strings.Join(names, ", "))
		p.Extensions = map[string]any{"allowed_roles": names}
		return nil, p
	}
	return dev, nil
}

// WriteJSON answers with status and v encoded as JSON.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return errorf("encode response: %w", err)
	}
	writeJSONBytes(w, status, b)
	return nil
}

func writeJSONBytes(w http.ResponseWriter, status int, b []byte) {
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	_, _ = w.Write(append(b, '\n'))
}

package edgecache

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
)

// Sites routes each request to a site's Handler by its Host header (the
// port ignored, case-insensitive); over TLS the SNI name selects the site,
// and a Host naming another site is refused as misdirected. With a single
// site, every host goes to it.
type Sites struct {
	byName map[string]*Handler
	only   *Handler
}

// NewSites maps site names to handlers.
func NewSites(sites map[string]*Handler) *Sites {
	s := &Sites{byName: map[string]*Handler{}}
	for name, h := range sites {
		s.byName[strings.ToLower(name)] = h
		s.only = h
	}
	if len(sites) != 1 {
		s.only = nil
	}
	return s
}

// Names lists the site names (lower case).
func (s *Sites) Names() []string {
	var out []string
	for n := range s.byName {
		out = append(out, n)
	}
	sortStrings(out)
	return out
}

// ServeHTTP implements http.Handler.
func (s *Sites) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	host := r.Host
	if h, _, err := net.SplitHostPort(host); err == nil {
		host = h
	}
	if r.TLS != nil && r.TLS.ServerName != "" {
		if !strings.EqualFold(host, r.TLS.ServerName) {
			w.Header().Set("Cache-Status", "canopy; fwd=uri-miss; detail=misdirected")
			http.Error(w, "this connection is for "+r.TLS.ServerName+", not "+host, http.StatusMisdirectedRequest)
			return
		}
	}
	h := s.byName[strings.ToLower(host)]
	if h == nil {
		h = s.only
	}
	if h == nil {
		w.Header().Set("Cache-Status", "canopy; fwd=uri-miss; detail=no-site")
		http.Error(w, "no cached site is named "+host, http.StatusMisdirectedRequest)
		return
	}
	h.ServeHTTP(w, r)
}

// Close closes every site's handler.
func (s *Sites) Close(ctx context.Context) error {
	var errs []error
	for _, h := range s.byName {
		errs = append(errs, h.Close(ctx))
	}
	return errors.Join(errs...)
}

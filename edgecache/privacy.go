package edgecache

import (
	"fmt"
	"net/http"
	"net/url"
	"strings"
)

// stripper removes a site's configured request headers and query
// parameters (client addresses, tracking ids) from every request before it
// is keyed or sent upstream, so they neither reach the origin nor split
// the cache.
type stripper struct {
	headers  []string        // canonical header names
	exact    map[string]bool // lower-case query parameter names
	prefixes []string        // lower-case query parameter name prefixes ("utm_*")
}

// newStripper checks and compiles the header names and query parameter
// patterns (an exact name, or a prefix ending in "*").
func newStripper(headers, query []string) (*stripper, error) {
	s := &stripper{exact: map[string]bool{}}
	for _, h := range headers {
		if !validHeaderName(h) {
			return nil, fmt.Errorf("edgecache: strip header %q: not a header name", h)
		}
		c := http.CanonicalHeaderKey(h)
		if c == "Host" {
			return nil, fmt.Errorf("edgecache: strip header %q: the Host header cannot be stripped", h)
		}
		s.headers = append(s.headers, c)
	}
	for _, q := range query {
		name, prefix := strings.CutSuffix(q, "*")
		if strings.ContainsAny(name, "*&=#") || (name == "" && !prefix) {
			return nil, fmt.Errorf("edgecache: strip query %q: want a parameter name, or a name prefix ending in *", q)
		}
		if prefix {
			s.prefixes = append(s.prefixes, strings.ToLower(name))
		} else {
			s.exact[strings.ToLower(name)] = true
		}
	}
	return s, nil
}

func validHeaderName(h string) bool {
	if h == "" {
		return false
	}
	for _, c := range []byte(h) {
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// overrideHeaders are always removed from requests: they are outside the
// cache key, yet common origin frameworks let them rewrite the target,
// host, scheme or method, so one client's value could be stored for all
// (cache poisoning).
var overrideHeaders = []string{"X-Original-Url", "X-Rewrite-Url", "X-Forwarded-Scheme", "X-Forwarded-Server",
	"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Host", "X-Http-Method-Override", "X-Http-Method", "X-Method-Override"}

// stripsParam reports whether a (decoded) query parameter name is stripped.
func (s *stripper) stripsParam(name string) bool {
	name = strings.ToLower(name)
	if s.exact[name] {
		return true
	}
	for _, p := range s.prefixes {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return false
}

// apply returns r without the stripped headers and parameters; r itself
// when there is nothing to strip. The remaining parameters keep their
// order and encoding.
func (s *stripper) apply(r *http.Request) *http.Request {
	strip := false
	for _, h := range overrideHeaders {
		if _, ok := r.Header[h]; ok {
			strip = true
			break
		}
	}
	for _, h := range s.headers {
		if _, ok := r.Header[h]; ok {
			strip = true
			break
		}
	}
	query := r.URL.RawQuery
	if query != "" && (len(s.exact) > 0 || len(s.prefixes) > 0) {
		var kept []string
		parts := strings.Split(query, "&")
		for _, part := range parts {
			name, _, _ := strings.Cut(part, "=")
			if dec, err := url.QueryUnescape(name); err == nil {
				name = dec
			}
			if part != "" && !s.stripsParam(name) {
				kept = append(kept, part)
			}
		}
		if len(kept) != len(parts) {
			query = strings.Join(kept, "&")
			strip = true
		}
	}
	if !strip {
		return r
	}
	out := r.Clone(r.Context())
	for _, h := range overrideHeaders {
		delete(out.Header, h)
	}
	for _, h := range s.headers {
		delete(out.Header, h)
	}
	out.URL.RawQuery = query
	out.URL.ForceQuery = false
	out.RequestURI = out.URL.RequestURI()
	return out
}

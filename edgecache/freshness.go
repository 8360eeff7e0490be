package edgecache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// heuristicStatus are the status codes cacheable by default (RFC 9110 §15.1).
var heuristicStatus = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 308: true,
	404: true, 405: true, 410: true, 414: true, 501: true}

// responseDirectives returns the directives this cache obeys: those of
// CDN-Cache-Control when the response carries it (RFC 9213 §2.1: the
// targeted field overrides Cache-Control), else those of Cache-Control.
func responseDirectives(h http.Header) Directives {
	if v := h.Values("Cdn-Cache-Control"); len(v) > 0 {
		return ParseDirectives(v)
	}
	return ParseDirectives(h.Values("Cache-Control"))
}

// requestDirectives parses a request's Cache-Control; Pragma: no-cache
// counts as no-cache when the request has no Cache-Control (RFC 9111 §5.4).
func requestDirectives(h http.Header) Directives {
	cc := h.Values("Cache-Control")
	d := ParseDirectives(cc)
	if len(cc) == 0 {
		for _, p := range h.Values("Pragma") {
			if strings.Contains(strings.ToLower(p), "no-cache") {
				d["no-cache"] = ""
			}
		}
	}
	return d
}

// dateOf parses an HTTP-date header; ok is false when absent or invalid.
func dateOf(h http.Header, name string) (time.Time, bool) {
	v := h.Get(name)
	if v == "" {
		return time.Time{}, false
	}
	t, err := http.ParseTime(v)
	return t, err == nil
}

// maxHeuristic caps heuristic freshness.
const maxHeuristic = 24 * time.Hour

// freshnessLifetime computes a stored response's freshness lifetime for a
// shared cache (RFC 9111 §4.2.1, heuristics per §4.2.2).
func freshnessLifetime(o *object) time.Duration {
	h := o.Header
	d := responseDirectives(h)
	if v, ok := d.Seconds("s-maxage"); ok {
		return v
	}
	if d.Has("s-maxage") {
		return 0
	}
	if v, ok := d.Seconds("max-age"); ok {
		return v
	}
	if d.Has("max-age") {
		return 0 // an invalid max-age makes the response stale
	}
	if len(h.Values("Expires")) > 0 {
		exp, ok := dateOf(h, "Expires")
		if !ok || len(h.Values("Expires")) > 1 {
			return 0
		}
		date, ok := dateOf(h, "Date")
		if !ok {
			date = o.ResponseTime
		}
		return exp.Sub(date)
	}
	if heuristicStatus[o.Status] || d.Has("public") {
		if lm, ok := dateOf(h, "Last-Modified"); ok {
			date, ok := dateOf(h, "Date")
			if !ok {
				date = o.ResponseTime
			}
			if date.After(lm) {
				return min(date.Sub(lm)/10, maxHeuristic)
			}
		}
	}
	return 0
}

// initialAge is the corrected initial age of a response received at
// respTime for a request sent at reqTime (RFC 9111 §4.2.3).
func initialAge(h http.Header, reqTime, respTime time.Time) time.Duration {
	apparent := time.Duration(0)
	if date, ok := dateOf(h, "Date"); ok && respTime.After(date) {
		apparent = respTime.Sub(date)
	}
	var ageValue time.Duration
	if v := strings.TrimSpace(strings.Split(h.Get("Age"), ",")[0]); v != "" {
		if n, err := strconv.ParseInt(v, 10, 64); err == nil && n >= 0 {
			ageValue = time.Duration(min(n, 1<<31)) * time.Second
		}
	}
	corrected := ageValue + max(0, respTime.Sub(reqTime))
	return max(apparent, corrected)
}

// currentAge is the object's age at now.
func currentAge(o *object, now time.Time) time.Duration {
	return o.InitialAge + max(0, now.Sub(o.ResponseTime))
}

// storable decides whether a response to a GET may be stored by a shared
// cache (RFC 9111 §3), under Canopy's privacy rule that responses setting
// cookies are never shared.
func storable(req http.Header, reqCC Directives, status int, h http.Header) bool {
	if reqCC.Has("no-store") || status < 200 || status == 206 || status == 304 {
		return false
	}
	d := responseDirectives(h)
	if d.Has("no-store") || d.Has("private") || len(h.Values("Set-Cookie")) > 0 {
		return false
	}
	for _, v := range h.Values("Vary") {
		if strings.Contains(v, "*") {
			return false
		}
	}
	if req.Get("Authorization") != "" && !d.Has("public") && !d.Has("s-maxage") && !d.Has("must-revalidate") {
		return false
	}
	if d.Has("public") || d.Has("max-age") || d.Has("s-maxage") || len(h.Values("Expires")) > 0 {
		return true
	}
	return heuristicStatus[status]
}

// varyNames lists the (lower-case, sorted, unique) header names a response
// varies on.
func varyNames(h http.Header) []string {
	seen := map[string]bool{}
	var out []string
	for _, v := range h.Values("Vary") {
		for _, n := range strings.Split(v, ",") {
			n = strings.ToLower(strings.TrimSpace(n))
			if n != "" && !seen[n] {
				seen[n] = true
				out = append(out, n)
			}
		}
	}
	sortStrings(out)
	return out
}

// normalizeValue joins a request header's field lines and normalizes the
// whitespace around list separators, so equivalent requests match.
func normalizeValue(h http.Header, name string) string {
	vals := h.Values(name)
	var parts []string
	for _, v := range vals {
		for _, p := range strings.Split(v, ",") {
			p = strings.Join(strings.Fields(p), " ")
			if p != "" {
				parts = append(parts, p)
			}
		}
	}
	return strings.Join(parts, ",")
}

func sortStrings(s []string) {
	for i := 1; i < len(s); i++ {
		for j := i; j > 0 && s[j] < s[j-1]; j-- {
			s[j], s[j-1] = s[j-1], s[j]
		}
	}
}

// matchesVary reports whether a request selects the stored variant o.
func matchesVary(o *object, req http.Header) bool {
	if o.VaryAll {
		return false
	}
	for name, val := range o.Vary {
		if normalizeValue(req, name) != val {
			return false
		}
	}
	return true
}

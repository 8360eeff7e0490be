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

// SurrogateToken is the device token this cache announces in
// Surrogate-Capability and answers to in targeted Surrogate-Control
// directives (W3C Edge Architecture Specification 1.0).
const SurrogateToken = "canopy"

// understoodStatus are the status codes whose caching semantics this
// cache implements (for must-understand).
var understoodStatus = map[int]bool{200: true, 203: true, 204: true, 300: true, 301: true, 302: true, 303: true,
	307: true, 308: true, 404: true, 405: true, 410: true, 414: true, 501: true}

// responseDirectives returns the directives this cache obeys: those of
// Surrogate-Control when the response carries it (the surrogate's own
// field, as for a reverse proxy), else those of CDN-Cache-Control (RFC
// 9213 §2.1: the targeted field overrides Cache-Control), else those of
// Cache-Control.
func responseDirectives(h http.Header) Directives {
	if v := h.Values("Surrogate-Control"); len(v) > 0 {
		return surrogateDirectives(v)
	}
	if v := h.Values("Cdn-Cache-Control"); len(v) > 0 {
		return ParseDirectives(v)
	}
	return ParseDirectives(h.Values("Cache-Control"))
}

// surrogateDirectives parses Surrogate-Control field lines: members are
// directives, each optionally followed by ";target"; a member targeted at
// another device is ignored, and one targeted at SurrogateToken overrides
// an untargeted one of the same name.
func surrogateDirectives(lines []string) Directives {
	general, mine := Directives{}, Directives{}
	for _, line := range lines {
		for _, member := range strings.Split(line, ",") {
			text, target, targeted := strings.Cut(member, ";")
			into := general
			if targeted {
				if !strings.EqualFold(strings.TrimSpace(target), SurrogateToken) {
					continue
				}
				into = mine
			}
			for k, v := range ParseDirectives([]string{text}) {
				if !into.Has(k) {
					into[k] = v
				}
			}
		}
	}
	for k, v := range mine {
		general[k] = v
	}
	return general
}

// requestDirectives parses a request's Cache-Control; Pragma: no-cache
// counts as no-cache when the request has no Cache-Control (RFC 9111 §5.4).
func requestDirectives(h http.Header) Directives {
	if cc := h.Values("Cache-Control"); len(cc) > 0 {
		return ParseDirectives(cc)
	}
	var d Directives // nil: no directives, nothing allocated
	for _, p := range h.Values("Pragma") {
		if strings.Contains(strings.ToLower(p), "no-cache") {
			d = Directives{"no-cache": ""}
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
func freshnessLifetime(o *object) time.Duration { return o.prepared().life }

// lifetimeOf computes it from o's header and directives d.
func lifetimeOf(o *object, d Directives) time.Duration {
	h := o.Header
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
	ageValue := ageOf(h)
	corrected := ageValue + max(0, respTime.Sub(reqTime))
	return max(apparent, corrected)
}

// invalidAge is the age given to a response whose Age field is invalid:
// such a response is treated as stale.
const invalidAge = time.Duration(1<<31) * time.Second

// ageOf parses the Age field (RFC 9111 §5.1: a single delta-seconds). An
// Age sent as a list or on several field lines, or whose value is not a
// non-negative integer (a sign, a fraction, parameters), is invalid.
func ageOf(h http.Header) time.Duration {
	lines := h.Values("Age")
	switch len(lines) {
	case 0:
		return 0
	case 1:
	default:
		return invalidAge
	}
	v := strings.TrimSpace(lines[0])
	if v == "" {
		return invalidAge
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return invalidAge
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > 1<<31 {
		return invalidAge
	}
	return time.Duration(n) * time.Second
}

// currentAge is the object's age at now.
func currentAge(o *object, now time.Time) time.Duration {
	return o.InitialAge + max(0, now.Sub(o.ResponseTime))
}

// storable decides whether a response to a GET may be stored by a shared
// cache (RFC 9111 §3), under Canopy's privacy rule that responses setting
// cookies are never shared.
func storable(req http.Header, reqCC Directives, status int, h http.Header) bool {
	if reqCC.Has("no-store") || status < 200 || status == 304 {
		return false
	}
	if status == http.StatusPartialContent {
		// A single known range of a known length can be stored and
		// reused for ranges within it (RFC 9111 §3.3).
		if _, _, ok := parseContentRange(h.Get("Content-Range")); !ok || h.Get("Content-Encoding") != "" {
			return false
		}
	}
	d := responseDirectives(h)
	noStore := d.Has("no-store")
	if d.Has("must-understand") {
		// RFC 9111 §5.2.2.3: store only status codes whose caching rules
		// this cache implements; for those, no-store no longer applies.
		if !understoodStatus[status] {
			return false
		}
		noStore = false
	}
	if noStore || d.Has("private") || len(h.Values("Set-Cookie")) > 0 {
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

// parseContentRange parses a 206's "bytes first-last/complete" with a
// known complete length; ok is false for anything else.
func parseContentRange(v string) (r ByteRange, total int64, ok bool) {
	rest, found := strings.CutPrefix(strings.TrimSpace(v), "bytes ")
	if !found {
		return ByteRange{}, 0, false
	}
	span, size, found := strings.Cut(rest, "/")
	if !found {
		return ByteRange{}, 0, false
	}
	first, last, found := strings.Cut(span, "-")
	if !found {
		return ByteRange{}, 0, false
	}
	a, err1 := digits(strings.TrimSpace(first))
	b, err2 := digits(strings.TrimSpace(last))
	n, err3 := digits(strings.TrimSpace(size))
	if err1 != nil || err2 != nil || err3 != nil || b < a || b >= n {
		return ByteRange{}, 0, false
	}
	return ByteRange{Start: a, Length: b - a + 1}, n, true
}

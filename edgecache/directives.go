package edgecache

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Directives is a parsed Cache-Control (or CDN-Cache-Control) field value:
// directive names in lower case mapped to their argument ("" when none).
// A directive that appears twice keeps its first value.
type Directives map[string]string

// Has reports whether the directive is present.
func (d Directives) Has(name string) bool { _, ok := d[name]; return ok }

// Seconds returns a delta-seconds argument. ok is false when the directive
// is absent or its argument is not a non-negative integer; values beyond
// 2^31 are capped there, as RFC 9111 §1.2.2 asks.
func (d Directives) Seconds(name string) (time.Duration, bool) {
	v, ok := d[name]
	if !ok || v == "" {
		return 0, false
	}
	for _, c := range v {
		if c < '0' || c > '9' {
			return 0, false
		}
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil || n > 1<<31 {
		n = 1 << 31
	}
	return time.Duration(n) * time.Second, true
}

// ParseDirectives parses the field lines of a Cache-Control-like header
// (RFC 9111 §5.2): comma-separated tokens, each optionally "=token" or
// "=quoted-string". Unparseable members are skipped; the rest still count.
func ParseDirectives(lines []string) Directives {
	d := Directives{}
	for _, line := range lines {
		s := line
		for len(s) > 0 {
			var name, val string
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			i := 0
			for i < len(s) && isTokenChar(s[i]) {
				i++
			}
			name = strings.ToLower(s[:i])
			s = strings.TrimLeft(s[i:], " \t")
			bad := name == ""
			if len(s) > 0 && s[0] == '=' {
				s = strings.TrimLeft(s[1:], " \t")
				if len(s) > 0 && s[0] == '"' {
					var ok bool
					val, s, ok = quoted(s)
					bad = bad || !ok
				} else {
					j := 0
					for j < len(s) && isTokenChar(s[j]) {
						j++
					}
					val = s[:j]
					s = s[j:]
				}
				s = strings.TrimLeft(s, " \t")
			}
			if len(s) > 0 && s[0] != ',' {
				// Garbage after a member: skip to the next comma.
				bad = true
				if k := strings.IndexByte(s, ','); k >= 0 {
					s = s[k:]
				} else {
					s = ""
				}
			}
			if !bad {
				if _, dup := d[name]; !dup {
					d[name] = val
				}
			}
		}
	}
	return d
}

// quoted reads a quoted-string at the start of s, returning its unescaped
// content and the rest.
func quoted(s string) (string, string, bool) {
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], true
		default:
			b.WriteByte(s[i])
		}
	}
	return b.String(), "", false
}

func isTokenChar(c byte) bool {
	if c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' {
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0
}

// ByteRange is one satisfiable range, [Start, Start+Length).
type ByteRange struct{ Start, Length int64 }

// Errors from ParseRange.
var (
	// ErrRangeUnsatisfiable means the ranges are well-formed but none
	// overlaps the representation: the answer is 416.
	ErrRangeUnsatisfiable = errors.New("range not satisfiable")
)

// ParseRange parses a Range header value (RFC 9110 §14.2) against a
// representation of size bytes. It returns the satisfiable ranges; an
// error wrapping ErrRangeUnsatisfiable when none is; another error for a
// malformed value (which the caller ignores, serving the whole
// representation, as RFC 9110 allows).
func ParseRange(v string, size int64) ([]ByteRange, error) {
	unit, set, ok := strings.Cut(v, "=")
	if !ok || strings.TrimSpace(strings.ToLower(unit)) != "bytes" {
		return nil, fmt.Errorf("range %q: want a bytes range", v)
	}
	var out []ByteRange
	if strings.Trim(set, " \t,") == "" {
		// A range-set needs at least one range-spec (RFC 9110 §14.1.1):
		// this is invalid and ignored, not unsatisfiable.
		return nil, fmt.Errorf("range %q: no ranges", v)
	}
	members := strings.Split(set, ",")
	if len(members) > 100 {
		return nil, fmt.Errorf("range: %d ranges is too many", len(members))
	}
	for _, m := range members {
		m = strings.TrimSpace(m)
		if m == "" {
			continue
		}
		first, last, ok := strings.Cut(m, "-")
		if !ok {
			return nil, fmt.Errorf("range member %q: missing '-'", m)
		}
		first, last = strings.TrimSpace(first), strings.TrimSpace(last)
		if first == "" {
			n, err := digits(last)
			if err != nil {
				return nil, fmt.Errorf("range member %q: %w", m, err)
			}
			if n == 0 || size == 0 {
				continue
			}
			n = min(n, size)
			out = append(out, ByteRange{Start: size - n, Length: n})
			continue
		}
		a, err := digits(first)
		if err != nil {
			return nil, fmt.Errorf("range member %q: %w", m, err)
		}
		end := size - 1
		if last != "" {
			b, err := digits(last)
			if err != nil {
				return nil, fmt.Errorf("range member %q: %w", m, err)
			}
			if b < a {
				return nil, fmt.Errorf("range member %q: last before first", m)
			}
			end = min(b, size-1)
		}
		if a >= size {
			continue
		}
		out = append(out, ByteRange{Start: a, Length: end - a + 1})
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("range %q against %d bytes: %w", v, size, ErrRangeUnsatisfiable)
	}
	return out, nil
}

func digits(s string) (int64, error) {
	if s == "" || len(s) > 18 {
		return 0, fmt.Errorf("bad number %q", s)
	}
	for _, c := range s {
		if c < '0' || c > '9' {
			return 0, fmt.Errorf("bad number %q", s)
		}
	}
	return strconv.ParseInt(s, 10, 64)
}

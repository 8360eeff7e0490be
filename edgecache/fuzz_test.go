package edgecache

import (
	"errors"
	"testing"
)

func FuzzParseDirectives(f *testing.F) {
	for _, s := range []string{"max-age=60, public", `no-cache="set-cookie, foo", s-maxage=5`, "max-age=\"3\"", ",,=,", "a=\"unterminated"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		d := ParseDirectives([]string{s})
		for name := range d {
			if name == "" {
				t.Fatalf("empty directive name from %q", s)
			}
			if v, ok := d.Seconds(name); ok && v < 0 {
				t.Fatalf("negative seconds for %q", s)
			}
		}
	})
}

func FuzzParseRange(f *testing.F) {
	for _, s := range []string{"bytes=0-5", "bytes=-3", "bytes=5-", "bytes=1-2,4-9", "bytes=9-1", "items=1-2"} {
		f.Add(s, int64(10))
	}
	f.Fuzz(func(t *testing.T, s string, size int64) {
		if size < 0 {
			size = -size
		}
		if size < 0 {
			return
		}
		rs, err := ParseRange(s, size)
		if err != nil {
			if rs != nil {
				t.Fatal("ranges with an error")
			}
			return
		}
		for _, r := range rs {
			if r.Start < 0 || r.Length <= 0 || r.Start+r.Length > size {
				t.Fatalf("range %+v outside %d bytes for %q", r, size, s)
			}
		}
		_ = errors.Is(err, ErrRangeUnsatisfiable)
	})
}

func TestParseDirectives(t *testing.T) {
	d := ParseDirectives([]string{`Max-Age=60, no-cache="a, b"`, "max-age=5, private"})
	if v, ok := d.Seconds("max-age"); !ok || v.Seconds() != 60 {
		t.Fatalf("max-age %v %v", v, ok)
	}
	if d["no-cache"] != "a, b" || !d.Has("private") {
		t.Fatalf("%v", d)
	}
	if _, ok := ParseDirectives([]string{"max-age=1.5"}).Seconds("max-age"); ok {
		t.Fatal("fractional max-age accepted")
	}
}

func TestParseRange(t *testing.T) {
	for _, c := range []struct {
		in    string
		start int64
		n     int64
		err   bool
	}{{"bytes=0-4", 0, 5, false}, {"bytes=-3", 7, 3, false}, {"bytes=8-", 8, 2, false}, {"bytes=5-100", 5, 5, false},
		{"bytes=10-", 0, 0, true}, {"bytes=x-1", 0, 0, true}, {"bytes=3-1", 0, 0, true}} {
		rs, err := ParseRange(c.in, 10)
		if (err != nil) != c.err || (!c.err && (rs[0].Start != c.start || rs[0].Length != c.n)) {
			t.Errorf("%s: %v %v", c.in, rs, err)
		}
	}
}

func FuzzSurrogateAndAge(f *testing.F) {
	for _, s := range []string{"max-age=60;canopy, no-store", "max-age=3600;other", "foo;", ";canopy", "7200;foo=bar", "0, 0", "-1"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		for name := range surrogateDirectives([]string{s}) {
			if name == "" {
				t.Fatalf("empty directive name from %q", s)
			}
		}
		if a := ageOf(map[string][]string{"Age": {s}}); a < 0 || a > invalidAge {
			t.Fatalf("Age %q: %v", s, a)
		}
	})
}

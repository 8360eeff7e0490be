package edgecache

import (
	"fmt"
	"net/http"
	"testing"
	"time"
)

func TestSurrogateDirectives(t *testing.T) {
	d := surrogateDirectives([]string{`max-age=60, no-store;other, max-age=5;canopy`, `MaX-aGe=1`})
	if v, _ := d.Seconds("max-age"); v != 5*time.Second {
		t.Errorf("max-age %v, want the targeted 5s", v)
	}
	if d.Has("no-store") {
		t.Error("no-store targeted at another device applied")
	}
	h := http.Header{"Cache-Control": {"no-store"}, "Surrogate-Control": {"max-age=30"}}
	if !storable(http.Header{}, Directives{}, 200, h) {
		t.Error("Surrogate-Control max-age with Cache-Control no-store: not storable")
	}
	h = http.Header{"Cache-Control": {"max-age=30"}, "Surrogate-Control": {"no-store"}}
	if storable(http.Header{}, Directives{}, 200, h) {
		t.Error("Surrogate-Control no-store: storable")
	}
}

func TestAgeParse(t *testing.T) {
	for _, tc := range []struct {
		lines []string
		want  time.Duration
	}{
		{nil, 0}, {[]string{"7"}, 7 * time.Second}, {[]string{" 7 "}, 7 * time.Second},
		{[]string{"abc"}, invalidAge}, {[]string{"-1"}, invalidAge}, {[]string{"1.0"}, invalidAge},
		{[]string{"1;a=b"}, invalidAge}, {[]string{"0, 0"}, invalidAge}, {[]string{"0", "0"}, invalidAge},
		{[]string{""}, invalidAge}, {[]string{"99999999999999999999"}, invalidAge},
	} {
		if got := ageOf(http.Header{"Age": tc.lines}); got != tc.want {
			t.Errorf("Age %q: %v, want %v", tc.lines, got, tc.want)
		}
	}
}

func TestMustUnderstand(t *testing.T) {
	cc := http.Header{"Cache-Control": {"max-age=60, must-understand, no-store"}}
	if !storable(http.Header{}, Directives{}, 200, cc) {
		t.Error("200 with must-understand, no-store: not storable")
	}
	if storable(http.Header{}, Directives{}, 599, cc) {
		t.Error("599 with must-understand: storable")
	}
}

// TestSurrogateControlEndToEnd: Surrogate-Control sets the freshness, is
// stripped from responses, and Surrogate-Capability goes upstream.
func TestSurrogateControlEndToEnd(t *testing.T) {
	clk := &clock{t: time.Now()}
	var capability string
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		capability = r.Header.Get("Surrogate-Capability")
		w.Header().Set("Cache-Control", "no-store")
		w.Header().Set("Surrogate-Control", "max-age=60")
		fmt.Fprint(w, "s")
	}, clk)
	_, srv := newCache(t, clk, o.URL)
	resp, _ := get(t, srv.URL+"/s")
	if resp.Header.Get("Surrogate-Control") != "" {
		t.Errorf("Surrogate-Control forwarded downstream: %q", resp.Header.Get("Surrogate-Control"))
	}
	if capability != `canopy="Surrogate/1.0"` {
		t.Errorf("Surrogate-Capability %q", capability)
	}
	clk.Add(30 * time.Second)
	resp, _ = get(t, srv.URL+"/s")
	if o.hits.Load() != 1 || resp.Header.Get("Surrogate-Control") != "" {
		t.Errorf("origin hits %d (want 1), Surrogate-Control %q", o.hits.Load(), resp.Header.Get("Surrogate-Control"))
	}
	clk.Add(31 * time.Second)
	get(t, srv.URL+"/s")
	if o.hits.Load() != 2 {
		t.Errorf("after max-age: origin hits %d, want 2", o.hits.Load())
	}
}

// TestUpdate304Headers: a 304 updates the stored fields but not the stored
// ETag or Content-MD5. (Content-Type is updated too, but net/http's server
// drops it from a 304, so the public suite covers that.)
func TestUpdate304Headers(t *testing.T) {
	clk := &clock{t: time.Now()}
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=1")
		if r.Header.Get("If-None-Match") == `"a"` {
			w.Header().Set("ETag", `"b"`)
			w.Header().Set("Content-Type", "text/plain;charset=utf-8")
			w.Header().Set("Content-MD5", "new")
			w.Header().Set("X-Test", "new")
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("ETag", `"a"`)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-MD5", "old")
		w.Header().Set("X-Test", "old")
		fmt.Fprint(w, "body")
	}, clk)
	_, srv := newCache(t, clk, o.URL)
	get(t, srv.URL+"/v")
	clk.Add(2 * time.Second)
	resp, body := get(t, srv.URL+"/v")
	if body != "body" || o.hits.Load() != 2 {
		t.Fatalf("body %q, origin hits %d", body, o.hits.Load())
	}
	for k, want := range map[string]string{"ETag": `"a"`, "Content-MD5": "old", "X-Test": "new"} {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s: %q, want %q", k, got, want)
		}
	}
}

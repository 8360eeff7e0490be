package edgecache

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

// recordingOrigin is a loopback origin remembering what each request it
// received carried.
type recordingOrigin struct {
	*origin
	mu   sync.Mutex
	got  []*http.Request
	resp func(w http.ResponseWriter, n int)
}

func newRecordingOrigin(t *testing.T, resp func(w http.ResponseWriter, n int)) *recordingOrigin {
	ro := &recordingOrigin{resp: resp}
	ro.origin = newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		ro.mu.Lock()
		ro.got = append(ro.got, r.Clone(context.Background()))
		n := len(ro.got)
		ro.mu.Unlock()
		ro.resp(w, n)
	})
	return ro
}

func (ro *recordingOrigin) last(t *testing.T) *http.Request {
	t.Helper()
	ro.mu.Lock()
	defer ro.mu.Unlock()
	if len(ro.got) == 0 {
		t.Fatal("the origin received nothing")
	}
	return ro.got[len(ro.got)-1]
}

func newStrippingCache(t *testing.T, o string, headers, query []string) (*Handler, *httptest.Server) {
	t.Helper()
	st, err := OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(o)
	h, err := New(Config{Origins: []*url.URL{u}, Store: st, StripHeaders: headers, StripQuery: query,
		ResponseHeaderTimeout: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Close(ctx)
	})
	return h, srv
}

func TestStripBeforeUpstreamAndKey(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, n int) {
		w.Header().Set("Cache-Control", "max-age=60")
		fmt.Fprintf(w, "v%d", n)
	})
	h, srv := newStrippingCache(t, o.URL, []string{"X-Real-IP", "cookie"}, []string{"utm_*", "fbclid", "gclid"})

	_, body := get(t, srv.URL+"/p?utm_source=mail&id=7&fbclid=abc&UTM_Medium=x&q=a%20b&gclid=g",
		"X-Real-IP", "203.0.113.9", "Cookie", "session=alice", "Accept-Language", "de")
	if body != "v1" {
		t.Fatalf("first body %q", body)
	}
	r := o.last(t)
	if r.URL.RawQuery != "id=7&q=a%20b" {
		t.Errorf("origin query %q, want id=7&q=a%%20b", r.URL.RawQuery)
	}
	for _, name := range []string{"X-Real-Ip", "Cookie"} {
		if v := r.Header.Get(name); v != "" {
			t.Errorf("origin received %s: %q", name, v)
		}
	}
	if r.Header.Get("Accept-Language") != "de" {
		t.Errorf("a header not stripped was lost: %v", r.Header)
	}
	waitFor(t, "stored", func() bool { return h.store.Len() == 1 })

	// Other tracking ids, another client: the same cache entry.
	resp, body := get(t, srv.URL+"/p?id=7&utm_campaign=z&q=a%20b&fbclid=other", "X-Real-IP", "198.51.100.1")
	if body != "v1" || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Errorf("tracking ids split the cache: body %q, Cache-Status %q", body, resp.Header.Get("Cache-Status"))
	}
	// A parameter that is not stripped is still part of the key.
	if _, body := get(t, srv.URL+"/p?id=8&utm_source=mail"); body != "v2" {
		t.Errorf("id=8 answered %q, want a new fetch v2", body)
	}
	if got := o.last(t).URL.RawQuery; got != "id=8" {
		t.Errorf("origin query %q, want id=8", got)
	}
	// A query made only of tracking ids is the bare path.
	get(t, srv.URL+"/bare?gclid=1")
	if r := o.last(t); r.URL.RawQuery != "" || r.URL.Path != "/bare" {
		t.Errorf("origin got %q, want /bare without a query", r.URL.RequestURI())
	}
}

func TestStripPassThrough(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, n int) { fmt.Fprint(w, "ok") })
	_, srv := newStrippingCache(t, o.URL, []string{"X-Real-IP"}, []string{"utm_*"})
	req, _ := http.NewRequest(http.MethodPost, srv.URL+"/order?utm_source=a&sku=1", strings.NewReader("x"))
	req.Header.Set("X-Real-IP", "203.0.113.9")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	r := o.last(t)
	if r.Method != http.MethodPost || r.URL.RawQuery != "sku=1" || r.Header.Get("X-Real-Ip") != "" {
		t.Errorf("origin got %s %s X-Real-IP %q", r.Method, r.URL.RequestURI(), r.Header.Get("X-Real-Ip"))
	}
}

// TestSetCookieNeverShared: a response setting a cookie for one user is
// never served to another.
func TestSetCookieNeverShared(t *testing.T) {
	o := newRecordingOrigin(t, func(w http.ResponseWriter, n int) {
		w.Header().Set("Cache-Control", "public, max-age=600")
		w.Header().Set("Set-Cookie", fmt.Sprintf("session=user%d", n))
		fmt.Fprintf(w, "page for user%d", n)
	})
	_, srv := newStrippingCache(t, o.URL, nil, nil)
	for i := 1; i <= 3; i++ {
		resp, body := get(t, srv.URL+"/account")
		want := fmt.Sprintf("session=user%d", i)
		if got := resp.Header.Get("Set-Cookie"); got != want || body != fmt.Sprintf("page for user%d", i) {
			t.Fatalf("request %d: Set-Cookie %q body %q, want %q (another user's response was shared)", i, got, body, want)
		}
	}
	if n := o.hits.Load(); n != 3 {
		t.Errorf("origin hits %d, want 3", n)
	}
}

func TestStripConfigErrors(t *testing.T) {
	for _, c := range []struct{ h, q []string }{
		{h: []string{"Bad Header"}},
		{h: []string{"host"}},
		{q: []string{"*utm"}},
		{q: []string{"a=b"}},
		{q: []string{""}},
	} {
		if _, err := newStripper(c.h, c.q); err == nil {
			t.Errorf("headers %q query %q: no error", c.h, c.q)
		}
	}
}

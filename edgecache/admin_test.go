package edgecache

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestPurge(t *testing.T) {
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=600")
		switch {
		case strings.HasPrefix(r.URL.Path, "/static/"):
			w.Header().Set("Surrogate-Key", "static all")
		case strings.HasPrefix(r.URL.Path, "/img/"):
			w.Header().Set("Surrogate-Key", "img  all")
		}
		fmt.Fprint(w, r.URL.Path)
	})
	h, _ := newCache(t, nil, o.URL)
	admin := httptest.NewServer(Admin(h.store, []string{h.name}, h))
	t.Cleanup(admin.Close)
	paths := []string{"/static/a.css", "/static/b.js", "/img/1.png", "/img/2.png", "/page?x=1", "/other"}
	load := func() {
		for _, p := range paths {
			resp, _ := get(t, admin.URL+p)
			if resp.Header.Get("Surrogate-Key") != "" {
				t.Fatalf("Surrogate-Key forwarded downstream")
			}
		}
		waitFor(t, "all stored", func() bool { return h.store.Len() == len(paths) })
	}
	purge := func(body string) (int, string) {
		resp, err := http.Post(admin.URL+AdminPath, "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, strings.TrimSpace(string(b))
	}
	load()
	for _, tc := range []struct {
		body string
		want string
		left int
	}{
		{`{"url":"/page?x=1"}`, `{"purged":1}`, 5},
		{`{"url":"http://shop.example/other"}`, `{"purged":1}`, 4}, // the only site
		{`{"tag":"img"}`, `{"purged":2}`, 2},
		{`{"prefix":"/static/"}`, `{"purged":2}`, 0},
	} {
		code, got := purge(tc.body)
		if code != 200 || got != tc.want || h.store.Len() != tc.left {
			t.Fatalf("purge %s: %d %s, %d left (want %s, %d left)", tc.body, code, got, h.store.Len(), tc.want, tc.left)
		}
	}
	load()
	if code, got := purge(`{"site":"elsewhere","all":true}`); code != 200 || got != `{"purged":0}` {
		t.Fatalf("purge another site: %d %s", code, got)
	}
	if code, got := purge(`{"all":true}`); code != 200 || got != `{"purged":6}` || h.store.Len() != 0 {
		t.Fatalf("flush: %d %s", code, got)
	}
	hits := o.hits.Load()
	get(t, admin.URL+"/other")
	if o.hits.Load() != hits+1 {
		t.Fatal("a purged URL was still served from the cache")
	}
	for _, bad := range []string{`{}`, `{"url":"/a","tag":"b"}`, `{"prefix":"static"}`, `{"tag":"a b"}`, `{"url":"x"}`, `{"nope":1}`, `[`} {
		if code, got := purge(bad); code != 400 {
			t.Errorf("purge %s: %d %s, want 400", bad, code, got)
		}
	}
	if resp, _ := get(t, admin.URL+AdminPath); resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("GET %s: %d", AdminPath, resp.StatusCode)
	}
}

func TestAdminLoopbackOnly(t *testing.T) {
	called := false
	a := Admin(nil, nil, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called = true }))
	req := httptest.NewRequest(http.MethodPost, AdminPath, strings.NewReader(`{"all":true}`))
	req.RemoteAddr = "192.0.2.7:4000"
	rec := httptest.NewRecorder()
	a.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || called {
		t.Fatalf("remote client: %d (want 403), passed on %v", rec.Code, called)
	}
	req = httptest.NewRequest(http.MethodGet, "/x", nil)
	a.ServeHTTP(httptest.NewRecorder(), req)
	if !called {
		t.Fatal("other paths are not passed on")
	}
}

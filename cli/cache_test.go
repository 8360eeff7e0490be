package cli_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"canopy/edgecache"
)

// TestCacheWarmAndPurge warms a real cache from a URL list and a sitemap,
// then purges it by tag, prefix, URL and all, through the CLI.
func TestCacheWarmAndPurge(t *testing.T) {
	var hits atomic.Int64
	var originURL string
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if r.URL.Path == "/sitemap.xml" {
			fmt.Fprintf(w, `<?xml version="1.0"?><urlset xmlns="http://www.sitemaps.org/schemas/sitemap/0.9">
<url><loc>%[1]s/a</loc></url><url><loc>%[1]s/static/b.css</loc></url><url><loc>%[1]s/c?x=1</loc></url></urlset>`, originURL)
			return
		}
		if r.URL.Path == "/missing" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "max-age=600")
		if strings.HasPrefix(r.URL.Path, "/static/") {
			w.Header().Set("Surrogate-Key", "assets")
		}
		fmt.Fprint(w, strings.Repeat("z", 1000))
	}))
	t.Cleanup(origin.Close)
	originURL = origin.URL
	st, err := edgecache.OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(origin.URL)
	h, err := edgecache.New(edgecache.Config{Origins: []*url.URL{u}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	cache := httptest.NewServer(edgecache.Admin(st, []string{"canopy"}, h))
	t.Cleanup(func() {
		cache.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Close(ctx)
	})

	list := filepath.Join(t.TempDir(), "urls.txt")
	os.WriteFile(list, []byte("# before doors open\n"+origin.URL+"/a\n"+origin.URL+"/static/b.css\n\n"+origin.URL+"/d\n"), 0o600)
	r := runCLI("cache", "warm", "--urls", list, "--cache", cache.URL)
	if r.code != 0 || !strings.Contains(r.stdout, "warmed 3 of 3 URLs (0 were already cached)") {
		t.Fatalf("warm list: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if st.Len() != 3 {
		t.Fatalf("%d stored after warm-up, want 3", st.Len())
	}
	r = runCLI("cache", "warm", "--sitemap", origin.URL+"/sitemap.xml", "--cache", cache.URL, "--concurrency", "2")
	if r.code != 0 || !strings.Contains(r.stdout, "warmed 3 of 3 URLs (2 were already cached)") {
		t.Fatalf("warm sitemap: %d %q %q", r.code, r.stdout, r.stderr)
	}
	if st.Len() != 4 {
		t.Fatalf("%d stored after the sitemap, want 4", st.Len())
	}
	before := hits.Load()
	resp, err := http.Get(cache.URL + "/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if hits.Load() != before {
		t.Fatal("a warmed URL was not served from the cache")
	}

	for _, tc := range []struct {
		args []string
		want string
		left int
	}{
		{[]string{"--tag", "assets"}, "purged 1 ", 3},
		{[]string{"--url", origin.URL + "/c?x=1"}, "purged 1 ", 2},
		{[]string{"--prefix", "/d"}, "purged 1 ", 1},
		{[]string{"--all"}, "purged 1 ", 0},
	} {
		r := runCLI(append([]string{"cache", "purge", "--cache", cache.URL}, tc.args...)...)
		if r.code != 0 || !strings.HasPrefix(r.stdout, tc.want) || st.Len() != tc.left {
			t.Fatalf("purge %v: %d %q %q, %d left (want %d)", tc.args, r.code, r.stdout, r.stderr, st.Len(), tc.left)
		}
	}

	// Failures and bad input.
	os.WriteFile(list, []byte(origin.URL+"/missing\n"), 0o600)
	if r := runCLI("cache", "warm", "--urls", list, "--cache", cache.URL); r.code != 1 || !strings.Contains(r.stderr+r.stdout, "1 of 1 URLs failed") {
		t.Fatalf("warm a 404: %d %q %q", r.code, r.stdout, r.stderr)
	}
	os.WriteFile(list, []byte("/relative\n"), 0o600)
	if r := runCLI("cache", "warm", "--urls", list, "--cache", cache.URL); r.code != 1 || !strings.Contains(r.stderr, "urls.txt:1") {
		t.Fatalf("warm a relative URL: %d %q", r.code, r.stderr)
	}
	for _, args := range [][]string{
		{"cache", "purge", "--cache", cache.URL},
		{"cache", "purge", "--cache", cache.URL, "--all", "--tag", "x"},
		{"cache", "warm", "--cache", cache.URL},
		{"cache", "purge", "--all"},
	} {
		if r := runCLI(args...); r.code != 2 {
			t.Errorf("%v: exit %d, want 2 (usage): %q", args, r.code, r.stderr)
		}
	}
	if r := runCLI("cache", "purge", "--cache", cache.URL, "--prefix", "nope"); r.code != 1 || !strings.Contains(r.stderr, "want /path") {
		t.Errorf("purge a bad prefix: %d %q", r.code, r.stderr)
	}
}

package imagecache

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testCache serves a Cache over dir on loopback, with upstream
// "" → mirrors.
func testCache(t *testing.T, dir string, mirrors []string, mod func(*Config)) (*Cache, string) {
	t.Helper()
	cfg := Config{Dir: dir, UpstreamTimeout: 2 * time.Second, Upstreams: []Upstream{{Mirrors: mirrors}}}
	if mod != nil {
		mod(&cfg)
	}
	c, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c)
	t.Cleanup(func() {
		srv.Close()
		c.Close()
	})
	return c, srv.URL
}

type response struct {
	status int
	header http.Header
	body   []byte
	err    error // reading the body
}

func do(t *testing.T, method, url string, hdr map[string]string) response {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return response{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
}

// wantError checks a spec error response.
func wantError(t *testing.T, r response, status int, code string) {
	t.Helper()
	if r.err != nil {
		t.Fatalf("want %d %s, got error %v", status, code, r.err)
	}
	if r.status != status {
		t.Fatalf("status %d, want %d (body %s)", r.status, status, r.body)
	}
	var e struct {
		Errors []struct{ Code, Message string } `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &e); err != nil || len(e.Errors) != 1 || e.Errors[0].Code != code || e.Errors[0].Message == "" {
		t.Fatalf("body %s: want one error with code %s and a message", r.body, code)
	}
}

func TestPullByTagAndDigest(t *testing.T) {
	reg := newTestRegistry(t)
	reg.token = "secret-token" // anonymous bearer flow
	img := reg.addImage(t, "team/app", "v1", 3, 10000, 1)
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, nil)

	r := do(t, "GET", url+"/v2/", nil)
	if r.status != 200 || r.header.Get("Docker-Distribution-Api-Version") != "registry/2.0" {
		t.Fatalf("version check: %d %v", r.status, r.header)
	}
	for _, method := range []string{"HEAD", "GET"} {
		r = do(t, method, url+"/v2/team/app/manifests/v1", nil)
		if r.status != 200 || r.header.Get("Docker-Content-Digest") != img.manifest.String() ||
			r.header.Get("Content-Type") != ocispec.MediaTypeImageManifest || r.header.Get("Content-Length") != strconv.Itoa(len(img.body)) {
			t.Fatalf("%s manifest by tag: %d %v", method, r.status, r.header)
		}
		if method == "GET" && !bytes.Equal(r.body, img.body) {
			t.Fatalf("manifest bytes changed:\n%s\nwant\n%s", r.body, img.body)
		}
	}
	r = do(t, "GET", url+"/v2/team/app/manifests/"+img.manifest.String(), nil)
	if r.status != 200 || !bytes.Equal(r.body, img.body) || r.header.Get(HeaderCache) != "hit" {
		t.Fatalf("manifest by digest: %d %v", r.status, r.header)
	}
	r = do(t, "GET", url+"/v2/team/app/manifests/v1-index", nil)
	if r.status != 200 || !bytes.Equal(r.body, img.indexBody) || r.header.Get("Content-Type") != MediaTypeDockerManifestList {
		t.Fatalf("index by tag: %d %v", r.status, r.header)
	}
	// HEAD of a blob not yet cached asks upstream without fetching it.
	l0 := img.layers[0]
	r = do(t, "HEAD", url+"/v2/team/app/blobs/"+l0.String(), nil)
	if r.status != 200 || r.header.Get("Content-Length") != "10000" || reg.count("GET", "/v2/team/app/blobs/"+l0.String()) != 0 {
		t.Fatalf("HEAD uncached blob: %d %v", r.status, r.header)
	}
	for _, d := range img.blobDigests() {
		r = do(t, "GET", url+"/v2/team/app/blobs/"+d.String(), nil)
		if r.status != 200 || r.err != nil || !bytes.Equal(r.body, reg.blob(d)) || r.header.Get("Docker-Content-Digest") != d.String() {
			t.Fatalf("blob %s: %d %v %v", d, r.status, r.err, r.header)
		}
	}
	r = do(t, "GET", url+"/v2/team/app/blobs/"+l0.String(), map[string]string{"Range": "bytes=100-199"})
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, reg.blob(l0)[100:200]) {
		t.Fatalf("range: %d, %d bytes", r.status, len(r.body))
	}
	// Range on a blob not yet cached waits for it, then serves the range.
	l1 := img.layers[1]
	if got := reg.count("GET", "/v2/team/app/blobs/"+l1.String()); got != 1 {
		t.Fatalf("layer 1 fetched %d times, want 1", got)
	}
	r = do(t, "GET", url+"/v2/team/app/blobs/"+l1.String(), nil)
	if r.header.Get(HeaderCache) != "hit" || reg.count("GET", "/v2/team/app/blobs/"+l1.String()) != 1 {
		t.Fatalf("second pull of a blob went upstream")
	}
	wantError(t, do(t, "GET", url+"/v2/team/app/manifests/nope", nil), 404, CodeManifestUnknown)
	wantError(t, do(t, "GET", url+"/v2/team/app/blobs/"+digest.FromString("nope").String(), nil), 404, CodeBlobUnknown)
	wantError(t, do(t, "GET", url+"/v2/team/app/manifests/"+digest.FromString("nope").String(), nil), 404, CodeManifestUnknown)
}

func TestRangeOnColdBlob(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "v1", 1, 5000, 2)
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, nil)
	l := img.layers[0]
	r := do(t, "GET", url+"/v2/app/blobs/"+l.String(), map[string]string{"Range": "bytes=4990-"})
	if r.status != http.StatusPartialContent || !bytes.Equal(r.body, reg.blob(l)[4990:]) {
		t.Fatalf("cold range: %d %q", r.status, r.body)
	}
}

func TestBasicCredentialsForToken(t *testing.T) {
	reg := newTestRegistry(t)
	reg.token, reg.user, reg.password = "tok", "alice", "s3cret"
	img := reg.addImage(t, "private/app", "v1", 1, 100, 3)
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) {
		c.Upstreams[0].Username, c.Upstreams[0].Password = "alice", "s3cret"
	})
	r := do(t, "GET", url+"/v2/private/app/manifests/v1", nil)
	if r.status != 200 || r.header.Get("Docker-Content-Digest") != img.manifest.String() {
		t.Fatalf("with credentials: %d %s", r.status, r.body)
	}
	_, url2 := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) {
		c.Upstreams[0].Username, c.Upstreams[0].Password = "alice", "wrong"
	})
	wantError(t, do(t, "GET", url2+"/v2/private/app/manifests/v1", nil), 404, CodeManifestUnknown)
}

func TestTagPagination(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "a", 1, 10, 4)
	for _, tag := range []string{"b", "c", "d"} {
		reg.addManifest("app", img.body, ocispec.MediaTypeImageManifest, tag)
	}
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, nil)
	list := func(q string) ([]string, string) {
		r := do(t, "GET", url+"/v2/app/tags/list"+q, nil)
		if r.status != 200 {
			t.Fatalf("tags%s: %d %s", q, r.status, r.body)
		}
		var l struct {
			Name string
			Tags []string
		}
		if err := json.Unmarshal(r.body, &l); err != nil || l.Name != "app" {
			t.Fatalf("tags%s: %s", q, r.body)
		}
		return l.Tags, r.header.Get("Link")
	}
	// Upstream's own tags: a, a-index, b, c, d.
	tags, link := list("")
	if strings.Join(tags, ",") != "a,a-index,b,c,d" || link != "" {
		t.Fatalf("all tags: %v %q", tags, link)
	}
	tags, link = list("?n=2")
	if strings.Join(tags, ",") != "a,a-index" || link != `</v2/app/tags/list?last=a-index&n=2>; rel="next"` {
		t.Fatalf("n=2: %v %q", tags, link)
	}
	tags, _ = list("?n=2&last=a-index")
	if strings.Join(tags, ",") != "b,c" {
		t.Fatalf("n=2&last=a-index: %v", tags)
	}
	tags, link = list("?n=10&last=c")
	if strings.Join(tags, ",") != "d" || link != "" {
		t.Fatalf("last page: %v %q", tags, link)
	}
	tags, _ = list("?n=0")
	if len(tags) != 0 {
		t.Fatalf("n=0: %v", tags)
	}
	wantError(t, do(t, "GET", url+"/v2/app/tags/list?n=-1", nil), 400, CodeUnsupported)
	wantError(t, do(t, "GET", url+"/v2/nothere/tags/list", nil), 404, CodeNameUnknown)
}

// pullImage pulls the manifest by tag and every blob, checking the bytes.
func pullImage(t *testing.T, url string, reg *testRegistry, img *testImage, blobs map[digest.Digest][]byte) error {
	r := do(t, "GET", url+"/v2/"+img.repo+"/manifests/"+img.tag, nil)
	if r.status != 200 || !bytes.Equal(r.body, img.body) {
		return &pullError{"manifest", r}
	}
	for _, d := range img.blobDigests() {
		r := do(t, "GET", url+"/v2/"+img.repo+"/blobs/"+d.String(), nil)
		if r.status != 200 || r.err != nil || digest.FromBytes(r.body) != d {
			return &pullError{"blob " + d.String(), r}
		}
	}
	return nil
}

type pullError struct {
	what string
	r    response
}

func (e *pullError) Error() string {
	return e.what + ": status " + strconv.Itoa(e.r.status) + " " + string(e.r.body) + " " + errString(e.r.err)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func TestConcurrentColdPullsFetchEachBlobOnce(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "v1", 4, 300<<10, 5)
	gate := make(chan struct{})
	reg.gates[img.config] = gate // the first blob every client pulls stalls half-way
	c, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, nil)

	const clients = 20
	errs := make(chan error, clients)
	var wg sync.WaitGroup
	for i := 0; i < clients; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs <- pullImage(t, url, reg, img, nil)
		}()
	}
	// Release the stalled blob once all clients share its flight.
	waitFor(t, 10*time.Second, "20 clients to join one fetch", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		f := c.flights[img.config]
		if f == nil {
			return false
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		return f.refs == clients+1
	})
	close(gate)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	for _, d := range img.blobDigests() {
		if n := reg.count("GET", "/v2/app/blobs/"+d.String()); n != 1 {
			t.Errorf("blob %s fetched from upstream %d times, want 1", d, n)
		}
	}
}

func waitFor(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(time.Millisecond) // polling a condition, not synchronizing by sleep
	}
}

func TestCorruptBlobNeverServed(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "v1", 1, 200<<10, 6)
	l := img.layers[0]
	reg.corrupt[l] = true
	dir := t.TempDir()
	c, url := testCache(t, dir, []string{reg.srv.URL}, nil)
	for i := 0; i < 2; i++ {
		r := do(t, "GET", url+"/v2/app/blobs/"+l.String(), nil)
		if r.status == 200 && r.err == nil {
			t.Fatalf("corrupt blob served whole (%d bytes, digest %s)", len(r.body), digest.FromBytes(r.body))
		}
		if r.status == 200 && len(r.body) >= 200<<10 {
			t.Fatalf("every byte of a corrupt blob reached the client")
		}
	}
	if c.store.has(l) {
		t.Fatal("corrupt blob is in the store")
	}
	if _, err := os.Stat(c.store.blobPath(l)); !os.IsNotExist(err) {
		t.Fatalf("corrupt blob file exists: %v", err)
	}
	waitFor(t, 5*time.Second, "fetches to end", func() bool {
		c.mu.Lock()
		defer c.mu.Unlock()
		return len(c.flights) == 0
	})
	if ents, _ := os.ReadDir(dir + "/tmp"); len(ents) != 0 {
		t.Fatalf("temporary files left: %d", len(ents))
	}
	// A manifest whose bytes do not match the digest asked for: 404.
	reg.addManifest("app", []byte(`{"schemaVersion":2}`), ocispec.MediaTypeImageManifest, digest.FromString("other").String())
	wantError(t, do(t, "GET", url+"/v2/app/manifests/"+digest.FromString("other").String(), nil), 404, CodeManifestUnknown)
	// Range request on the corrupt blob: an error, not the bytes.
	r := do(t, "GET", url+"/v2/app/blobs/"+l.String(), map[string]string{"Range": "bytes=0-9"})
	wantError(t, r, 404, CodeBlobUnknown)
}

func TestRestartWithUpstreamDown(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "team/app", "v1", 2, 1000, 7)
	dir := t.TempDir()
	c, url := testCache(t, dir, []string{reg.srv.URL}, nil)
	if err := pullImage(t, url, reg, img, nil); err != nil {
		t.Fatal(err)
	}
	r := do(t, "GET", url+"/v2/team/app/manifests/v1-index", nil)
	if r.status != 200 {
		t.Fatal(r.status)
	}
	if r = do(t, "GET", url+"/v2/team/app/tags/list", nil); r.status != 200 {
		t.Fatal(r.status)
	}
	c.Close()
	reg.close()

	_, url = testCache(t, dir, []string{reg.srv.URL}, nil)
	if err := pullImage(t, url, reg, img, nil); err != nil {
		t.Fatal(err)
	}
	r = do(t, "GET", url+"/v2/team/app/manifests/v1", nil)
	if r.header.Get(HeaderStale) != "true" {
		t.Fatalf("tag served offline without %s: %v", HeaderStale, r.header)
	}
	r = do(t, "GET", url+"/v2/team/app/manifests/v1-index", nil)
	if r.status != 200 || !bytes.Equal(r.body, img.indexBody) {
		t.Fatalf("index offline: %d", r.status)
	}
	r = do(t, "GET", url+"/v2/team/app/tags/list", nil)
	if r.status != 200 || !strings.Contains(string(r.body), `"v1-index"`) {
		t.Fatalf("tags offline: %d %s", r.status, r.body)
	}
	wantError(t, do(t, "GET", url+"/v2/team/app/manifests/v2", nil), 404, CodeManifestUnknown)
	wantError(t, do(t, "GET", url+"/v2/team/other/manifests/v1", nil), 404, CodeManifestUnknown)
	wantError(t, do(t, "GET", url+"/v2/team/app/blobs/"+digest.FromString("x").String(), nil), 404, CodeBlobUnknown)
}

func TestUpstreamHung(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "v1", 2, 1000, 8)
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) { c.UpstreamTimeout = time.Second })
	if err := pullImage(t, url, reg, img, nil); err != nil {
		t.Fatal(err)
	}
	reg.setHang(true)
	start := time.Now()
	if err := pullImage(t, url, reg, img, nil); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > time.Second {
		t.Fatalf("cached image took %v with the upstream hung, want ≤ 1s", el)
	}
	start = time.Now()
	wantError(t, do(t, "GET", url+"/v2/app/manifests/unknown", nil), 404, CodeManifestUnknown)
	wantError(t, do(t, "GET", url+"/v2/app/blobs/"+digest.FromString("x").String(), nil), 404, CodeBlobUnknown)
	if el := time.Since(start); el > 3*time.Second {
		t.Fatalf("unknown content took %v with the upstream hung, want within the 1s upstream deadline each", el)
	}
}

func TestBadInput(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "v1", 1, 1000, 9)
	big := append([]byte(`{"schemaVersion":2,"config":{},"layers":[],"x":"`), bytes.Repeat([]byte("a"), MaxManifestSize)...)
	big = append(big, `"}`...)
	reg.addManifest("app", big, ocispec.MediaTypeImageManifest, "huge")
	reg.addManifest("app", []byte(`not json`), ocispec.MediaTypeImageManifest, "garbage")
	c, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, nil)
	if err := pullImage(t, url, reg, img, nil); err != nil {
		t.Fatal(err)
	}
	l := img.layers[0].String()
	cases := []struct {
		method, path string
		hdr          map[string]string
		status       int
		code         string
	}{
		{"GET", "/v2/App/manifests/v1", nil, 400, CodeNameInvalid},
		{"GET", "/v2/a/../app/manifests/v1", nil, 400, CodeNameInvalid},
		{"GET", "/v2/%2e%2e/%2e%2e/etc/manifests/v1", nil, 400, CodeNameInvalid},
		{"GET", "/v2//app/manifests/v1", nil, 400, CodeNameInvalid},
		{"GET", "/v2/app/manifests/sha256:zz", nil, 400, CodeDigestInvalid},
		{"GET", "/v2/app/manifests/md5:d41d8cd98f00b204e9800998ecf8427e", nil, 400, CodeDigestInvalid},
		{"GET", "/v2/app/manifests/bad!tag", nil, 400, CodeManifestInvalid},
		{"GET", "/v2/app/blobs/sha256:abc", nil, 400, CodeDigestInvalid},
		{"GET", "/v2/app/blobs/../../../etc/passwd", nil, 400, CodeDigestInvalid},
		{"GET", "/v2/" + strings.Repeat("a/", 130) + "b/manifests/v1", nil, 400, CodeNameInvalid},
		{"PUT", "/v2/app/manifests/v1", nil, 405, CodeUnsupported},
		{"POST", "/v2/app/blobs/uploads/", nil, 405, CodeUnsupported},
		{"DELETE", "/v2/app/blobs/" + l, nil, 405, CodeUnsupported},
		{"GET", "/v2/app/whatever", nil, 404, CodeNameUnknown},
		{"GET", "/v2/app/manifests/huge", nil, 404, CodeManifestUnknown},
		{"GET", "/v2/app/manifests/garbage", nil, 404, CodeManifestUnknown},
	}
	for _, tc := range cases {
		req := httptest.NewRequest(tc.method, tc.path, nil)
		rec := httptest.NewRecorder()
		c.ServeHTTP(rec, req)
		r := response{status: rec.Code, header: rec.Header(), body: rec.Body.Bytes()}
		t.Run(tc.method+" "+tc.path[:min(len(tc.path), 60)], func(t *testing.T) { wantError(t, r, tc.status, tc.code) })
	}
	for _, rng := range []string{"bytes=999999999999-", "bytes=5000-6000", "bytes=abc", "bytes=9-1"} {
		r := do(t, "GET", url+"/v2/app/blobs/"+l, map[string]string{"Range": rng})
		if r.status != http.StatusRequestedRangeNotSatisfiable {
			t.Errorf("Range %s: %d, want 416", rng, r.status)
		}
	}
}

func TestEvictionKeepsPins(t *testing.T) {
	reg := newTestRegistry(t)
	pinned := reg.addImage(t, "app", "pinned", 2, 40<<10, 10)
	other := reg.addImage(t, "app", "other", 2, 40<<10, 11)
	c, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) { c.MaxBytes = 120 << 10 })
	res, err := c.Pin(t.Context(), "app", "pinned", PinOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if res.Digest != pinned.manifest || res.Blobs != 3 || res.Manifests != 1 {
		t.Fatalf("pin: %+v", res)
	}
	if err := pullImage(t, url, reg, other, nil); err != nil {
		t.Fatal(err)
	}
	for _, d := range pinned.blobDigests() {
		if !c.store.has(d) {
			t.Fatalf("pinned blob %s evicted", d)
		}
	}
	if size, ev := c.Usage(); ev == 0 || size > 120<<10+int64(len(pinned.body)+len(other.body)+len(pinned.indexBody)) {
		t.Fatalf("usage %d bytes after %d evictions, budget %d", size, ev, 120<<10)
	}
	// The evicted image is fetched again when pulled.
	if err := pullImage(t, url, reg, other, nil); err != nil {
		t.Fatal(err)
	}
}

func TestInterruptedFetchResumes(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "v1", 1, 1<<20, 60)
	l := img.layers[0]
	reg.breakOnce[l] = true
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, nil)
	r := do(t, "GET", url+"/v2/app/blobs/"+l.String(), nil)
	if r.status != 200 || r.err != nil || !bytes.Equal(r.body, reg.blob(l)) {
		t.Fatalf("resumed blob: %d %v (%d bytes)", r.status, r.err, len(r.body))
	}
	reg.mu.Lock()
	ranges := reg.ranges
	reg.mu.Unlock()
	if reg.count("GET", "/v2/app/blobs/"+l.String()) != 2 || len(ranges) != 1 || ranges[0] == "bytes=0-" {
		t.Fatalf("want one resumed request, got ranges %v", ranges)
	}
}

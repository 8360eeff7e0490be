package edge_test

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
	"canopy/internal/testutil"
)

// TestImageCache: with [images] listen set, the edge serves the registry
// cache on its own listener; with the upstream gone after a pull, a restarted
// edge still serves the cached manifest and blob.
func TestImageCache(t *testing.T) {
	blob := []byte("layer bytes")
	bd := digest.FromBytes(blob)
	manifest := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + bd.String() + `","size":11},"layers":[]}`)
	up := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/app/manifests/v1", "/v2/app/manifests/" + digest.FromBytes(manifest).String():
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Write(manifest)
		case "/v2/app/blobs/" + bd.String():
			w.Write(blob)
		default:
			http.NotFound(w, r)
		}
	}))
	defer up.Close()

	ev := testutil.NewEvent(t, "images")
	cfg := ev.EdgeConfig(t, "edge-1", "")
	cfg.Images = config.ImagesConfig{
		Listen:   "127.0.0.1:0",
		Upstream: []config.ImageUpstream{{Prefix: "docker.io", Mirrors: []string{up.URL}}},
	}
	open := func() *edge.Edge {
		e, err := edge.Open(context.Background(), cfg, nil)
		if err != nil {
			t.Fatal(err)
		}
		if e.ImagesURL() == "" || e.ImagesURL() == e.URL() {
			t.Fatalf("image cache URL %q", e.ImagesURL())
		}
		return e
	}
	get := func(url string) (int, []byte, http.Header) {
		res, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b, res.Header
	}
	e := open()
	for _, path := range []string{"/v2/docker.io/app/manifests/v1", "/v2/app/manifests/v1?ns=docker.io"} {
		if st, b, _ := get(e.ImagesURL() + path); st != 200 || string(b) != string(manifest) {
			t.Fatalf("%s: %d %s", path, st, b)
		}
	}
	if st, b, _ := get(e.ImagesURL() + "/v2/docker.io/app/blobs/" + bd.String()); st != 200 || string(b) != string(blob) {
		t.Fatalf("blob: %d %s", st, b)
	}
	if st, _, _ := get(e.URL() + "/v2/"); st == 200 {
		t.Fatal("the device API serves the registry")
	}
	if st, b, _ := get(e.URL() + "/metrics"); st != 200 || !strings.Contains(string(b), `canopy_imagecache_requests_total{kind="blob",result="miss"} 1`) {
		t.Fatalf("edge /metrics lacks the image cache's: %d", st)
	}
	if err := e.Close(context.Background()); err != nil {
		t.Fatal(err)
	}
	up.Close()

	e = open()
	defer e.Close(context.Background())
	st, b, h := get(e.ImagesURL() + "/v2/docker.io/app/manifests/v1")
	if st != 200 || string(b) != string(manifest) || h.Get("Canopy-Stale") != "true" {
		t.Fatalf("offline manifest: %d %v", st, h)
	}
	if st, b, _ := get(e.ImagesURL() + "/v2/docker.io/app/blobs/" + bd.String()); st != 200 || string(b) != string(blob) {
		t.Fatalf("offline blob: %d", st)
	}
}

// TestImageCacheAuth: with [images] auth, the edge's registry issues pull
// tokens for device tokens of its event only.
func TestImageCacheAuth(t *testing.T) {
	ev := testutil.NewEvent(t, "imagesauth")
	cfg := ev.EdgeConfig(t, "edge-1", "")
	cfg.Images = config.ImagesConfig{
		Listen:   "127.0.0.1:0",
		Auth:     true,
		Upstream: []config.ImageUpstream{{Mirrors: []string{"http://127.0.0.1:1"}}},
	}
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	get := func(path, user, pass, bearer string) (int, []byte) {
		req, _ := http.NewRequest(http.MethodGet, e.ImagesURL()+path, nil)
		if pass != "" {
			req.SetBasicAuth(user, pass)
		}
		if bearer != "" {
			req.Header.Set("Authorization", "Bearer "+bearer)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, b
	}
	if st, _ := get("/v2/", "", "", ""); st != http.StatusUnauthorized {
		t.Fatalf("no token: %d", st)
	}
	other := testutil.NewEvent(t, "otherevent")
	if st, b := get("/v2/token", "x", other.ValidToken(t, auth.RoleDoor), ""); st != http.StatusUnauthorized {
		t.Fatalf("another event's device token: %d %s", st, b)
	}
	st, b := get("/v2/token", "x", ev.ValidToken(t, auth.RoleDoor), "")
	var tok struct {
		Token string `json:"token"`
	}
	if st != http.StatusOK || json.Unmarshal(b, &tok) != nil || tok.Token == "" {
		t.Fatalf("token: %d %s", st, b)
	}
	if st, b := get("/v2/", "", "", tok.Token); st != http.StatusOK {
		t.Fatalf("with token: %d %s", st, b)
	}
}

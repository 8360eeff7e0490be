package cli_test

import (
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/opencontainers/go-digest"
)

// imageUpstream serves one image, app:v1 (a manifest, a config, a layer).
func imageUpstream(t *testing.T) (*httptest.Server, digest.Digest, *atomic.Int64) {
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	layer := []byte(strings.Repeat("layer", 1000))
	m := []byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",` +
		`"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"` + digest.FromBytes(cfg).String() + `","size":` + strconv.Itoa(len(cfg)) + `},` +
		`"layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar","digest":"` + digest.FromBytes(layer).String() + `","size":` + strconv.Itoa(len(layer)) + `}]}`)
	md := digest.FromBytes(m)
	var blobGets atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/v2/app/manifests/v1", "/v2/app/manifests/" + md.String():
			w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
			w.Write(m)
		case "/v2/app/blobs/" + digest.FromBytes(cfg).String():
			blobGets.Add(1)
			w.Write(cfg)
		case "/v2/app/blobs/" + digest.FromBytes(layer).String():
			blobGets.Add(1)
			w.Write(layer)
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(srv.Close)
	return srv, md, &blobGets
}

func TestImagesPrefetchLsRm(t *testing.T) {
	up, md, blobGets := imageUpstream(t)
	dir := t.TempDir()
	conf := filepath.Join(dir, "canopy.toml")
	if err := os.WriteFile(conf, []byte("[[images.upstream]]\nmirrors = [\""+up.URL+"\"]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	list := filepath.Join(dir, "images.txt")
	if err := os.WriteFile(list, []byte("# before the event\napp:v1\napp@"+md.String()+"  # same image\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	r := runCLI("images", "prefetch", "--config", conf, "--dir", dir, list)
	if r.code != 0 || !strings.Contains(r.stdout, "[####################] 2/2") || strings.Count(r.stdout, "pinned "+md.String()) != 2 {
		t.Fatalf("prefetch: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if n := blobGets.Load(); n != 2 {
		t.Fatalf("upstream sent %d blobs, want 2 (each once)", n)
	}
	up.Close() // the rest works offline
	r = runCLI("images", "ls", "--config", conf, "--dir", dir)
	if r.code != 0 || !strings.Contains(r.stdout, "app") || !strings.Contains(r.stdout, md.String()) || !strings.Contains(r.stdout, "true    true") {
		t.Fatalf("ls: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI("images", "rm", "--config", conf, "--dir", dir, "app:v1")
	if r.code != 0 || !strings.Contains(r.stdout, "removed app:v1") {
		t.Fatalf("rm: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	r = runCLI("images", "ls", "--config", conf, "--dir", dir)
	if strings.Contains(r.stdout, md.String()) || !strings.Contains(r.stdout, "store: 0 B") {
		t.Fatalf("ls after rm:\n%s", r.stdout)
	}
	// Errors: a bad list line, a missing image, no FILE.
	bad := filepath.Join(dir, "bad.txt")
	os.WriteFile(bad, []byte("app:v1 extra\n"), 0o600)
	if r = runCLI("images", "prefetch", "--config", conf, "--dir", dir, bad); r.code != 1 || !strings.Contains(r.stderr, "bad.txt:1: one image per line") {
		t.Fatalf("bad list: %d %s", r.code, r.stderr)
	}
	if r = runCLI("images", "prefetch", "--config", conf, "--dir", dir, list); r.code != 1 || !strings.Contains(r.stdout, "FAILED") {
		t.Fatalf("prefetch offline of an uncached image: %d\n%s\n%s", r.code, r.stdout, r.stderr)
	}
	if r = runCLI("images", "rm", "--config", conf, "--dir", dir, "app:v1"); r.code != 1 || !strings.Contains(r.stderr, "not cached") {
		t.Fatalf("rm of an uncached image: %d %s", r.code, r.stderr)
	}
	if r = runCLI("images", "prefetch", "--dir", dir); r.code != 2 {
		t.Fatalf("prefetch without FILE: %d", r.code)
	}
}

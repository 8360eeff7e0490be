package imagecache

import (
	"strings"
	"testing"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// FuzzParseRoute: any path gives a route or a 4xx spec error, and an
// accepted name never escapes the store (no "..", no empty or absolute
// component).
func FuzzParseRoute(f *testing.F) {
	for _, s := range []string{
		"/v2/", "/v2/library/alpine/manifests/latest", "/v2/a/b/blobs/sha256:" + strings.Repeat("a", 64),
		"/v2/a/tags/list", "/v2/a/../b/manifests/x", "/v2/a/referrers/sha256:" + strings.Repeat("0", 64),
		"/v2/a/blobs/uploads/", "/v2/a/manifests/sha512:" + strings.Repeat("b", 128), "/v2//manifests/",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, path string) {
		r, err := parseRoute(path)
		if err != nil {
			if err.Status < 400 || err.Status >= 500 || err.Code == "" || err.Message == "" {
				t.Fatalf("bad error for %q: %+v", path, err)
			}
			return
		}
		if r.kind == routeBase {
			return
		}
		for _, comp := range strings.Split(r.name, "/") {
			if comp == "" || comp == "." || comp == ".." || strings.HasPrefix(comp, "_") {
				t.Fatalf("name %q accepted from %q", r.name, path)
			}
		}
		if r.digest != "" && r.digest.Validate() != nil {
			t.Fatalf("invalid digest %q accepted", r.digest)
		}
		if r.tag != "" && (strings.ContainsAny(r.tag, "/\\") || strings.HasPrefix(r.tag, ".")) {
			t.Fatalf("tag %q accepted", r.tag)
		}
	})
}

// FuzzParseManifest: any bytes give a manifest description or an error,
// never a panic; accepted descriptors have valid digests.
func FuzzParseManifest(f *testing.F) {
	f.Add([]byte(`{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json","config":{"mediaType":"x","digest":"sha256:`+strings.Repeat("a", 64)+`","size":1},"layers":[]}`), "")
	f.Add([]byte(`{"schemaVersion":2,"manifests":[{"digest":"sha256:`+strings.Repeat("a", 64)+`","size":3}]}`), MediaTypeDockerManifestList)
	f.Add([]byte(`{"schemaVersion":1}`), ocispec.MediaTypeImageIndex)
	f.Add([]byte(`[]`), "text/plain")
	f.Fuzz(func(t *testing.T, b []byte, contentType string) {
		info, err := parseManifest(b, contentType)
		if err != nil {
			return
		}
		if info.MediaType == "" {
			t.Fatal("accepted manifest without a media type")
		}
		for _, d := range info.Refs {
			if d.Digest.Validate() != nil || d.Size < 0 {
				t.Fatalf("bad descriptor accepted: %+v", d)
			}
		}
	})
}

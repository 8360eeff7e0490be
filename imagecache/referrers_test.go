package imagecache

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// addReferrer stores an artifact manifest whose subject is img's manifest
// and returns its descriptor as a referrers list names it.
func (reg *testRegistry) addReferrer(t *testing.T, img *testImage, artifactType, note string) ocispec.Descriptor {
	t.Helper()
	layer := reg.addBlob([]byte("signature " + note))
	empty := reg.addBlob([]byte("{}"))
	m := map[string]any{
		"schemaVersion": 2, "mediaType": ocispec.MediaTypeImageManifest, "artifactType": artifactType,
		"config":      map[string]any{"mediaType": ocispec.MediaTypeEmptyJSON, "digest": empty.Digest, "size": empty.Size},
		"layers":      []any{layer},
		"subject":     map[string]any{"mediaType": ocispec.MediaTypeImageManifest, "digest": img.manifest, "size": len(img.body)},
		"annotations": map[string]string{"note": note},
	}
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	d := reg.addManifest(img.repo, body, ocispec.MediaTypeImageManifest)
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, ArtifactType: artifactType, Digest: d, Size: int64(len(body)), Annotations: map[string]string{"note": note}}
}

func getReferrers(t *testing.T, url string, wantStatus int) (ocispec.Index, response) {
	t.Helper()
	r := do(t, "GET", url, nil)
	if r.err != nil || r.status != wantStatus {
		t.Fatalf("GET %s: %d %v (%s), want %d", url, r.status, r.err, r.body, wantStatus)
	}
	var ix ocispec.Index
	if wantStatus == 200 {
		if ct := r.header.Get("Content-Type"); ct != ocispec.MediaTypeImageIndex {
			t.Fatalf("referrers Content-Type %q", ct)
		}
		if err := json.Unmarshal(r.body, &ix); err != nil || ix.SchemaVersion != 2 || ix.MediaType != ocispec.MediaTypeImageIndex || ix.Manifests == nil {
			t.Fatalf("referrers body %s: not an image index with a manifests array (%v)", r.body, err)
		}
	}
	return ix, r
}

func digests(ds []ocispec.Descriptor) string {
	var s []string
	for _, d := range ds {
		s = append(s, d.ArtifactType+"="+d.Digest.String())
	}
	return strings.Join(s, ",")
}

func TestReferrersFromUpstreamAPI(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "app", "v1", 1, 100, 20)
	sig := reg.addReferrer(t, img, "application/vnd.example.sig", "a")
	sbom := reg.addReferrer(t, img, "application/vnd.example.sbom", "b")
	sig2 := reg.addReferrer(t, img, "application/vnd.example.sig", "c")
	reg.referrers = map[digest.Digest][]ocispec.Descriptor{img.manifest: {sig, sbom, sig2}}
	reg.referrersPage = 2 // the cache follows the Link header
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) { c.TagDeadline = 200 * time.Millisecond })
	base := url + "/v2/app/referrers/" + img.manifest.String()

	ix, r := getReferrers(t, base, 200)
	if got, want := digests(ix.Manifests), digests([]ocispec.Descriptor{sig, sbom, sig2}); got != want {
		t.Fatalf("referrers %s, want %s", got, want)
	}
	if ix.Manifests[0].Annotations["note"] != "a" || r.header.Get(HeaderFiltersApplied) != "" {
		t.Fatalf("annotations or filter header wrong: %+v %v", ix.Manifests[0], r.header)
	}
	ix, r = getReferrers(t, base+"?artifactType=application/vnd.example.sig", 200)
	if got, want := digests(ix.Manifests), digests([]ocispec.Descriptor{sig, sig2}); got != want || r.header.Get(HeaderFiltersApplied) != "artifactType" {
		t.Fatalf("filtered referrers %s (%v), want %s with OCI-Filters-Applied", got, r.header, want)
	}
	// An unknown subject has no referrers: 200 with an empty list.
	ix, _ = getReferrers(t, url+"/v2/app/referrers/"+digest.FromString("other").String(), 200)
	if len(ix.Manifests) != 0 {
		t.Fatalf("unknown subject has referrers %s", digests(ix.Manifests))
	}
	// With the upstream hung, the cached list is served within the deadline, marked stale.
	reg.setHang(true)
	start := time.Now()
	ix, r = getReferrers(t, base+"?artifactType=application/vnd.example.sbom", 200)
	if el := time.Since(start); el > time.Second {
		t.Fatalf("cached referrers took %v with the upstream hung", el)
	}
	if got := digests(ix.Manifests); got != digests([]ocispec.Descriptor{sbom}) || r.header.Get(HeaderStale) != "true" {
		t.Fatalf("stale referrers %s (%v)", got, r.header)
	}
}

func TestReferrersFallbackTagAndRestartOffline(t *testing.T) {
	reg := newTestRegistry(t) // no referrers API: 404
	img := reg.addImage(t, "team/app", "v1", 1, 100, 21)
	sig := reg.addReferrer(t, img, "application/vnd.example.sig", "x")
	fix := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{sig}}
	fix.SchemaVersion = 2
	fallback, _ := json.Marshal(fix)
	reg.addManifest("team/app", fallback, ocispec.MediaTypeImageIndex, "sha256-"+img.manifest.Encoded())
	dir := t.TempDir()
	c, url := testCache(t, dir, []string{reg.srv.URL}, nil)
	base := url + "/v2/team/app/referrers/" + img.manifest.String()
	ix, _ := getReferrers(t, base, 200)
	if got := digests(ix.Manifests); got != digests([]ocispec.Descriptor{sig}) {
		t.Fatalf("referrers from the fallback tag: %s", got)
	}
	if reg.count("GET", "/v2/team/app/manifests/sha256-"+img.manifest.Encoded()) != 1 {
		t.Fatalf("fallback tag not fetched once")
	}
	// The fallback tag itself is served as a manifest too.
	if r := do(t, "GET", url+"/v2/team/app/manifests/sha256-"+img.manifest.Encoded(), nil); r.status != 200 || string(r.body) != string(fallback) {
		t.Fatalf("fallback tag: %d %s", r.status, r.body)
	}
	// A restart with the upstream gone still serves the list.
	c.Close()
	reg.close()
	_, url2 := testCache(t, dir, []string{reg.srv.URL}, nil)
	ix, r := getReferrers(t, url2+"/v2/team/app/referrers/"+img.manifest.String()+"?artifactType=application/vnd.example.sig", 200)
	if got := digests(ix.Manifests); got != digests([]ocispec.Descriptor{sig}) || r.header.Get(HeaderStale) != "true" || r.header.Get(HeaderFiltersApplied) != "artifactType" {
		t.Fatalf("offline referrers after restart: %s %v", got, r.header)
	}
	ix, _ = getReferrers(t, url2+"/v2/team/app/referrers/"+img.manifest.String()+"?artifactType=application/other", 200)
	if len(ix.Manifests) != 0 {
		t.Fatalf("filter kept %s", digests(ix.Manifests))
	}
	// Bad digests get the spec's 400.
	wantError(t, do(t, "GET", url2+"/v2/team/app/referrers/sha256:nothex", nil), 400, CodeDigestInvalid)
	wantError(t, do(t, "GET", url2+"/v2/team/app/referrers/latest", nil), 400, CodeDigestInvalid)
}

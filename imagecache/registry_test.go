package imagecache

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// testRegistry is a small upstream registry for tests: it serves manifests
// and blobs the test builds, counts requests, and can corrupt blobs, hang,
// or demand a bearer token (anonymous or with basic credentials).
type testRegistry struct {
	srv *httptest.Server

	mu        sync.Mutex
	manifests map[string]map[string]testManifest // repo → tag or digest
	blobs     map[digest.Digest][]byte
	counts    map[string]int // "GET /v2/..." → requests
	corrupt   map[digest.Digest]bool
	gates     map[digest.Digest]chan struct{} // blob bodies wait for these
	breakOnce map[digest.Digest]bool          // the first GET breaks half-way
	ranges    []string                        // Range headers of blob GETs
	hang      bool
	// referrers, when non-nil, is served by the referrers API (in pages of
	// referrersPage descriptors if set); nil: the API answers 404.
	referrers     map[digest.Digest][]ocispec.Descriptor
	referrersPage int
	stop          chan struct{} // ends hung handlers
	// token auth: when set, /v2/ requests need "Bearer <token>".
	token          string
	user, password string // the token endpoint's basic credentials, if set
}

type testManifest struct {
	body      []byte
	mediaType string
}

func newTestRegistry(t *testing.T) *testRegistry {
	t.Helper()
	reg := &testRegistry{
		manifests: map[string]map[string]testManifest{},
		blobs:     map[digest.Digest][]byte{},
		counts:    map[string]int{},
		corrupt:   map[digest.Digest]bool{},
		gates:     map[digest.Digest]chan struct{}{},
		breakOnce: map[digest.Digest]bool{},
		stop:      make(chan struct{}),
	}
	reg.srv = httptest.NewServer(reg)
	t.Cleanup(reg.close)
	return reg
}

var stopOnce sync.Map

func (reg *testRegistry) close() {
	if _, loaded := stopOnce.LoadOrStore(reg, true); !loaded {
		close(reg.stop)
	}
	reg.srv.Close()
}

func (reg *testRegistry) count(method, path string) int {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return reg.counts[method+" "+path]
}

func (reg *testRegistry) setHang(h bool) {
	reg.mu.Lock()
	reg.hang = h
	reg.mu.Unlock()
}

func (reg *testRegistry) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	reg.mu.Lock()
	reg.counts[r.Method+" "+r.URL.Path]++
	hang, token := reg.hang, reg.token
	reg.mu.Unlock()
	if hang {
		select {
		case <-reg.stop:
		case <-r.Context().Done():
		}
		return
	}
	if r.URL.Path == "/token" {
		if reg.user != "" {
			if u, p, ok := r.BasicAuth(); !ok || u != reg.user || p != reg.password {
				http.Error(w, "bad credentials", http.StatusUnauthorized)
				return
			}
		}
		if !strings.HasPrefix(r.URL.Query().Get("scope"), "repository:") || r.URL.Query().Get("service") != "test-registry" {
			http.Error(w, "bad scope or service", http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"token": token, "expires_in": 300})
		return
	}
	if token != "" && r.Header.Get("Authorization") != "Bearer "+token {
		w.Header().Set("Www-Authenticate", fmt.Sprintf(`Bearer realm="%s/token",service="test-registry",scope="repository:x:pull"`, reg.srv.URL))
		http.Error(w, `{"errors":[{"code":"UNAUTHORIZED"}]}`, http.StatusUnauthorized)
		return
	}
	rest := strings.TrimPrefix(r.URL.Path, "/v2/")
	switch {
	case r.URL.Path == "/v2/":
		w.WriteHeader(http.StatusOK)
	case strings.Contains(rest, "/manifests/"):
		i := strings.LastIndex(rest, "/manifests/")
		repo, ref := rest[:i], rest[i+len("/manifests/"):]
		reg.mu.Lock()
		m, ok := reg.manifests[repo][ref]
		reg.mu.Unlock()
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Content-Length", strconv.Itoa(len(m.body)))
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
		if r.Method == http.MethodGet {
			_, _ = w.Write(m.body)
		}
	case strings.Contains(rest, "/blobs/"):
		d := digest.Digest(rest[strings.LastIndex(rest, "/blobs/")+len("/blobs/"):])
		reg.mu.Lock()
		b, ok := reg.blobs[d]
		corrupt, gate := reg.corrupt[d], reg.gates[d]
		reg.mu.Unlock()
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		if corrupt {
			b = append([]byte(nil), b...)
			b[len(b)/2] ^= 0xff
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(b)))
		w.Header().Set("Docker-Content-Digest", d.String())
		if r.Method != http.MethodGet {
			return
		}
		reg.mu.Lock()
		breakNow := reg.breakOnce[d]
		delete(reg.breakOnce, d)
		rng := r.Header.Get("Range")
		if rng != "" {
			reg.ranges = append(reg.ranges, rng)
		}
		reg.mu.Unlock()
		if breakNow {
			_, _ = w.Write(b[:len(b)/2])
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler) // the connection drops mid-body
		}
		if from, ok := strings.CutPrefix(rng, "bytes="); ok && strings.HasSuffix(from, "-") {
			n, err := strconv.Atoi(strings.TrimSuffix(from, "-"))
			if err != nil || n >= len(b) {
				w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
				return
			}
			w.Header().Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", n, len(b)-1, len(b)))
			w.Header().Set("Content-Length", strconv.Itoa(len(b)-n))
			w.WriteHeader(http.StatusPartialContent)
			_, _ = w.Write(b[n:])
			return
		}
		if gate == nil {
			_, _ = w.Write(b)
			return
		}
		// Send half, then wait for the test to let the rest go.
		_, _ = w.Write(b[:len(b)/2])
		w.(http.Flusher).Flush()
		select {
		case <-gate:
		case <-reg.stop:
			return
		}
		_, _ = w.Write(b[len(b)/2:])
	case strings.Contains(rest, "/referrers/"):
		i := strings.LastIndex(rest, "/referrers/")
		repo, subject := rest[:i], digest.Digest(rest[i+len("/referrers/"):])
		reg.mu.Lock()
		refs, served, page := reg.referrers[subject], reg.referrers != nil, reg.referrersPage
		reg.mu.Unlock()
		if !served {
			http.NotFound(w, r)
			return
		}
		if page > 0 {
			from, _ := strconv.Atoi(r.URL.Query().Get("page"))
			refs = refs[min(from, len(refs)):]
			if len(refs) > page {
				refs = refs[:page]
				w.Header().Set("Link", fmt.Sprintf(`<%s/v2/%s/referrers/%s?page=%d>; rel="next"`, reg.srv.URL, repo, subject, from+page))
			}
		}
		if refs == nil {
			refs = []ocispec.Descriptor{}
		}
		w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
		_ = json.NewEncoder(w).Encode(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: refs})
	case strings.HasSuffix(rest, "/tags/list"):
		repo := strings.TrimSuffix(rest, "/tags/list")
		reg.mu.Lock()
		var tags []string
		for ref := range reg.manifests[repo] {
			if !strings.Contains(ref, ":") {
				tags = append(tags, ref)
			}
		}
		reg.mu.Unlock()
		if tags == nil {
			http.Error(w, `{"errors":[{"code":"NAME_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		sort.Strings(tags)
		_ = json.NewEncoder(w).Encode(map[string]any{"name": repo, "tags": tags})
	default:
		http.NotFound(w, r)
	}
}

// testImage is an image built for a test.
type testImage struct {
	repo, tag string
	manifest  digest.Digest // the image manifest
	body      []byte        // its bytes
	config    digest.Digest
	layers    []digest.Digest
	index     digest.Digest // an index over the manifest, tagged tag+"-index"
	indexBody []byte
}

func (img *testImage) blobDigests() []digest.Digest {
	return append([]digest.Digest{img.config}, img.layers...)
}

func (reg *testRegistry) addBlob(b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	reg.mu.Lock()
	reg.blobs[d] = b
	reg.mu.Unlock()
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: d, Size: int64(len(b))}
}

func (reg *testRegistry) addManifest(repo string, body []byte, mediaType string, tags ...string) digest.Digest {
	d := digest.FromBytes(body)
	reg.mu.Lock()
	defer reg.mu.Unlock()
	if reg.manifests[repo] == nil {
		reg.manifests[repo] = map[string]testManifest{}
	}
	for _, ref := range append(tags, d.String()) {
		reg.manifests[repo][ref] = testManifest{body: body, mediaType: mediaType}
	}
	return d
}

// addImage builds an image of nLayers random layers of layerSize bytes
// (seeded by seed), with an OCI manifest tagged tag and an index over it
// in Docker's list media type tagged tag+"-index".
func (reg *testRegistry) addImage(t *testing.T, repo, tag string, nLayers, layerSize int, seed uint64) *testImage {
	t.Helper()
	rng := rand.New(rand.NewPCG(seed, seed+1))
	img := &testImage{repo: repo, tag: tag}
	cfgBody, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{Architecture: runtime.GOARCH, OS: "linux"}, RootFS: ocispec.RootFS{Type: "layers"}})
	cfg := reg.addBlob(cfgBody)
	cfg.MediaType = ocispec.MediaTypeImageConfig
	img.config = cfg.Digest
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg}
	m.SchemaVersion = 2
	for i := 0; i < nLayers; i++ {
		b := make([]byte, layerSize)
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		l := reg.addBlob(b)
		img.layers = append(img.layers, l.Digest)
		m.Layers = append(m.Layers, l)
	}
	body, err := json.MarshalIndent(m, "", "   ") // odd indentation: bytes must be served as-is
	if err != nil {
		t.Fatal(err)
	}
	img.body = body
	img.manifest = reg.addManifest(repo, body, ocispec.MediaTypeImageManifest, tag)
	ix := map[string]any{
		"schemaVersion": 2,
		"mediaType":     MediaTypeDockerManifestList,
		"manifests": []map[string]any{{
			"mediaType": ocispec.MediaTypeImageManifest, "digest": img.manifest, "size": len(body),
			"platform": map[string]string{"architecture": runtime.GOARCH, "os": "linux"},
		}},
	}
	img.indexBody, _ = json.Marshal(ix)
	img.index = reg.addManifest(repo, img.indexBody, MediaTypeDockerManifestList, tag+"-index")
	return img
}

// blob returns the bytes of blob d.
func (reg *testRegistry) blob(d digest.Digest) []byte {
	reg.mu.Lock()
	defer reg.mu.Unlock()
	return reg.blobs[d]
}

var _ = context.Background

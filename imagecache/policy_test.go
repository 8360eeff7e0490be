package imagecache

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// signer signs a payload as cosign does with one key.
type signer func(payload []byte) []byte

func ecdsaSigner(t *testing.T, k *ecdsa.PrivateKey) signer {
	return func(p []byte) []byte {
		h := sha256.Sum256(p)
		sig, err := ecdsa.SignASN1(rand.Reader, k, h[:])
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
}

// addSignature stores a cosign signature manifest for subject at its
// sha256-<hex>.sig tag: one simple-signing layer whose payload names
// named (usually the subject itself), signed by sign.
func (reg *testRegistry) addSignature(t *testing.T, repo string, subject, named digest.Digest, sign signer) {
	t.Helper()
	payload, err := json.Marshal(map[string]any{
		"critical": map[string]any{
			"identity": map[string]string{"docker-reference": "example/" + repo},
			"image":    map[string]string{"docker-manifest-digest": named.String()},
			"type":     "cosign container image signature",
		},
		"optional": nil,
	})
	if err != nil {
		t.Fatal(err)
	}
	layer := reg.addBlob(payload)
	layer.MediaType = MediaTypeSimpleSigning
	layer.Annotations = map[string]string{AnnotationCosignSignature: base64.StdEncoding.EncodeToString(sign(payload))}
	cfg := reg.addBlob([]byte("{}"))
	cfg.MediaType = "application/vnd.oci.image.config.v1+json"
	m := ocispec.Manifest{MediaType: ocispec.MediaTypeImageManifest, Config: cfg, Layers: []ocispec.Descriptor{layer}}
	m.SchemaVersion = 2
	body, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	reg.addManifest(repo, body, ocispec.MediaTypeImageManifest, signatureTag(subject))
}

func pemPublic(t *testing.T, k crypto.PublicKey) []byte {
	t.Helper()
	der, err := x509.MarshalPKIXPublicKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der})
}

func TestSignaturePolicy(t *testing.T) {
	reg := newTestRegistry(t)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edPub, edPriv, _ := ed25519.GenerateKey(rand.Reader)

	good := reg.addImage(t, "team/good", "v1", 1, 64, 1)
	reg.addSignature(t, "team/good", good.manifest, good.manifest, ecdsaSigner(t, key))
	reg.addSignature(t, "team/good", good.index, good.index, ecdsaSigner(t, key))
	nosig := reg.addImage(t, "team/nosig", "v1", 1, 64, 2)
	wrong := reg.addImage(t, "team/wrongkey", "v1", 1, 64, 3)
	reg.addSignature(t, "team/wrongkey", wrong.manifest, wrong.manifest, ecdsaSigner(t, other))
	mism := reg.addImage(t, "team/mismatch", "v1", 1, 64, 4)
	reg.addSignature(t, "team/mismatch", mism.manifest, good.manifest, ecdsaSigner(t, key))
	ed := reg.addImage(t, "edteam/app", "v1", 1, 64, 5)
	reg.addSignature(t, "edteam/app", ed.manifest, ed.manifest, func(p []byte) []byte { return ed25519.Sign(edPriv, p) })
	free := reg.addImage(t, "teamfree/app", "v1", 1, 64, 6)
	multi := reg.addImage(t, "team/multi", "v1", 1, 64, 7) // only its index is signed
	reg.addSignature(t, "team/multi", multi.index, multi.index, ecdsaSigner(t, key))

	// Keys go through their PEM files, as the edge loads them.
	dir := t.TempDir()
	ecFile, edFile := filepath.Join(dir, "cosign.pub"), filepath.Join(dir, "ed.pub")
	if err := os.WriteFile(ecFile, pemPublic(t, &key.PublicKey), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(edFile, pemPublic(t, edPub), 0o644); err != nil {
		t.Fatal(err)
	}
	ecKey, err := LoadPublicKey(ecFile)
	if err != nil {
		t.Fatal(err)
	}
	edKey, err := LoadPublicKey(edFile)
	if err != nil {
		t.Fatal(err)
	}
	policies := []Policy{{Prefix: "team", Key: ecKey}, {Prefix: "edteam/app", Key: edKey}}
	store := t.TempDir()
	_, url := testCache(t, store, []string{reg.srv.URL}, func(c *Config) { c.Policies = policies })

	okManifest := func(name, ref string, want []byte) {
		t.Helper()
		for _, m := range []string{http.MethodGet, http.MethodHead} {
			r := do(t, m, url+"/v2/"+name+"/manifests/"+ref, nil)
			if r.status != http.StatusOK {
				t.Fatalf("%s %s:%s: %d %s", m, name, ref, r.status, r.body)
			}
			if m == http.MethodGet && string(r.body) != string(want) {
				t.Fatalf("%s:%s: body differs from upstream's", name, ref)
			}
		}
	}
	deny := func(name, ref, reason string) {
		t.Helper()
		r := do(t, http.MethodGet, url+"/v2/"+name+"/manifests/"+ref, nil)
		wantError(t, r, http.StatusForbidden, CodeDenied)
		if !strings.Contains(string(r.body), reason) {
			t.Fatalf("%s:%s: %s, want reason %q", name, ref, r.body, reason)
		}
		if r := do(t, http.MethodHead, url+"/v2/"+name+"/manifests/"+ref, nil); r.status != http.StatusForbidden {
			t.Fatalf("HEAD %s:%s: %d, want 403", name, ref, r.status)
		}
	}

	okManifest("team/good", "v1", good.body)
	okManifest("team/good", good.manifest.String(), good.body)
	okManifest("edteam/app", "v1", ed.body)
	okManifest("teamfree/app", "v1", free.body) // "team" matches whole components only
	okManifest("team/good", "v1-index", good.indexBody)
	// A signed index carries its children: once it is verified, its child
	// (unsigned itself) is served by digest.
	deny("team/multi", multi.manifest.String(), "no signature")
	okManifest("team/multi", "v1-index", multi.indexBody)
	okManifest("team/multi", multi.manifest.String(), multi.body)
	// Signature tags themselves are served, so clients can verify.
	if r := do(t, http.MethodGet, url+"/v2/team/good/manifests/"+signatureTag(good.manifest), nil); r.status != http.StatusOK {
		t.Fatalf("signature tag: %d %s", r.status, r.body)
	}

	deny("team/nosig", "v1", "no signature")
	deny("team/nosig", nosig.manifest.String(), "no signature")
	deny("team/wrongkey", "v1", "bad signature")
	deny("team/mismatch", "v1", "digest mismatch")
	// The Ed25519 key does not verify an ECDSA signature and vice versa:
	// sign edteam's image with the ECDSA key instead.
	reg.addSignature(t, "edteam/app", ed.manifest, ed.manifest, ecdsaSigner(t, key))
	if r := do(t, http.MethodGet, url+"/v2/edteam/app/manifests/v1", nil); r.status != http.StatusOK {
		t.Fatalf("verdict for a verified digest is kept: %d %s", r.status, r.body)
	}

	// Verdicts are cached per digest: another pull does not look up the
	// signature again.
	sigPath := "/v2/team/good/manifests/" + signatureTag(good.manifest)
	before := reg.count(http.MethodGet, sigPath)
	okManifest("team/good", good.manifest.String(), good.body)
	if after := reg.count(http.MethodGet, sigPath); after != before {
		t.Fatalf("signature fetched again (%d → %d)", before, after)
	}

	// A restart with the upstream down verifies from the cached signature.
	reg.close()
	_, url2 := testCache(t, store, []string{reg.srv.URL}, func(c *Config) { c.Policies = policies })
	if r := do(t, http.MethodGet, url2+"/v2/team/good/manifests/"+good.manifest.String(), nil); r.status != http.StatusOK {
		t.Fatalf("offline, cached signature: %d %s", r.status, r.body)
	}
	r := do(t, http.MethodGet, url2+"/v2/team/nosig/manifests/"+nosig.manifest.String(), nil)
	wantError(t, r, http.StatusForbidden, CodeDenied)
}

func TestPolicyConfigErrors(t *testing.T) {
	p384, _ := ecdsa.GenerateKey(elliptic.P384(), rand.Reader)
	if _, err := ParsePublicKey(pemPublic(t, &p384.PublicKey)); err == nil || !strings.Contains(err.Error(), "P-256") {
		t.Fatalf("P-384 key: %v", err)
	}
	if _, err := ParsePublicKey([]byte("not pem")); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Fatalf("garbage: %v", err)
	}
	if _, err := ParsePublicKey(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: []byte{1}})); err == nil || !strings.Contains(err.Error(), "PUBLIC KEY") {
		t.Fatalf("private key block: %v", err)
	}
	if _, err := LoadPublicKey(filepath.Join(t.TempDir(), "missing.pub")); err == nil {
		t.Fatal("missing key file accepted")
	}
	pub, _, _ := ed25519.GenerateKey(rand.Reader)
	for _, p := range []Policy{{Prefix: "", Key: pub}, {Prefix: "a/", Key: pub}, {Prefix: "a", Key: &p384.PublicKey}, {Prefix: "a"}} {
		if _, err := New(Config{Dir: t.TempDir(), Policies: []Policy{p}}); err == nil {
			t.Errorf("policy %+v accepted", p)
		}
	}
}

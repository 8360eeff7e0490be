package imagecache

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
)

// Cosign's signature format, as this cache checks it.
const (
	// MediaTypeSimpleSigning is the media type of a cosign signature
	// manifest's layers: the signed payload.
	MediaTypeSimpleSigning = "application/vnd.dev.cosign.simplesigning.v1+json"
	// AnnotationCosignSignature is the layer annotation holding the
	// base64 signature over the payload's bytes.
	AnnotationCosignSignature = "dev.cosignproject.cosign/signature"
)

// maxSignaturePayload bounds one simple-signing payload; maxSignatureLayers
// bounds how many signatures of one manifest are tried.
const (
	maxSignaturePayload = 1 << 20
	maxSignatureLayers  = 64
)

// failedVerdictTTL is how long a refused verification is remembered before
// the signature is looked up again (a verified digest is remembered for the
// cache's lifetime: its bytes and the pinned key never change).
const failedVerdictTTL = 10 * time.Second

// Policy requires a cosign signature made with a pinned key for the
// manifests of some repositories.
type Policy struct {
	// Prefix matches repository names (as clients name them, including
	// the upstream's prefix) equal to it or starting with it and "/".
	Prefix string
	// Key is the pinned public key: *ecdsa.PublicKey on P-256 or
	// ed25519.PublicKey (see ParsePublicKey).
	Key crypto.PublicKey
}

// LoadPublicKey reads a PEM public key file (see ParsePublicKey).
func LoadPublicKey(path string) (crypto.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("imagecache: public key: %w", err)
	}
	k, err := ParsePublicKey(b)
	if err != nil {
		return nil, fmt.Errorf("imagecache: public key %s: %w", path, err)
	}
	return k, nil
}

// ParsePublicKey parses a PEM "PUBLIC KEY" block (PKIX, as cosign writes
// cosign.pub) holding an ECDSA P-256 or an Ed25519 key.
func ParsePublicKey(b []byte) (crypto.PublicKey, error) {
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, errors.New("no PEM block")
	}
	if blk.Type != "PUBLIC KEY" {
		return nil, fmt.Errorf("PEM block %q: want \"PUBLIC KEY\"", blk.Type)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, err
	}
	if err := checkKey(k); err != nil {
		return nil, err
	}
	return k, nil
}

func checkKey(k crypto.PublicKey) error {
	switch k := k.(type) {
	case *ecdsa.PublicKey:
		if k.Curve != elliptic.P256() {
			return fmt.Errorf("ECDSA key on %s: want P-256", k.Curve.Params().Name)
		}
		return nil
	case ed25519.PublicKey:
		if len(k) != ed25519.PublicKeySize {
			return fmt.Errorf("Ed25519 key of %d bytes", len(k))
		}
		return nil
	default:
		return fmt.Errorf("unsupported key type %T: want ECDSA P-256 or Ed25519", k)
	}
}

// verifySignature checks sig over payload with key (ECDSA: ASN.1 signature
// over SHA-256 of the payload, as cosign makes it; Ed25519: over the
// payload itself).
func verifySignature(key crypto.PublicKey, payload, sig []byte) bool {
	switch k := key.(type) {
	case *ecdsa.PublicKey:
		h := sha256.Sum256(payload)
		return ecdsa.VerifyASN1(k, h[:], sig)
	case ed25519.PublicKey:
		return ed25519.Verify(k, payload, sig)
	}
	return false
}

// policyFor returns the index of the policy for a full repository name
// (longest prefix), or -1.
func (c *Cache) policyFor(name string) int {
	best := -1
	for i, p := range c.cfg.Policies {
		if name == p.Prefix || strings.HasPrefix(name, p.Prefix+"/") {
			if best < 0 || len(p.Prefix) > len(c.cfg.Policies[best].Prefix) {
				best = i
			}
		}
	}
	return best
}

// fullName is the repository name with its upstream's prefix.
func fullName(up *upstream, repo string) string {
	if up.Prefix == "" {
		return repo
	}
	return up.Prefix + "/" + repo
}

// signatureTag is cosign's tag for the signatures of manifest d.
func signatureTag(d digest.Digest) string {
	return d.Algorithm().String() + "-" + d.Encoded() + ".sig"
}

// isSignatureTag reports whether a tag is one of cosign's attached-artifact
// tags (signatures, attestations, SBOMs), which are served without a
// signature of their own so that clients can verify images.
func isSignatureTag(tag string) bool {
	alg, rest, ok := strings.Cut(tag, "-")
	if !ok || (alg != "sha256" && alg != "sha512") {
		return false
	}
	for _, ext := range []string{".sig", ".att", ".sbom"} {
		if hex, ok := strings.CutSuffix(rest, ext); ok {
			return digest.NewDigestFromEncoded(digest.Algorithm(alg), hex).Validate() == nil
		}
	}
	return false
}

// verdict is a remembered verification result.
type verdict struct {
	err *Error // nil: verified
	at  time.Time
}

func verdictKey(policy int, d digest.Digest) string {
	return fmt.Sprintf("%d %s", policy, d)
}

// checkPolicy returns nil when manifest d (body) of repo may be served:
// no policy covers the repository, the tag is a signature tag, or a cosign
// signature made with the policy's key names d. Otherwise a 403 DENIED.
func (c *Cache) checkPolicy(ctx context.Context, up *upstream, repo string, rt route, d digest.Digest, body []byte) *Error {
	pi := c.policyFor(fullName(up, repo))
	if pi < 0 || (rt.tag != "" && isSignatureTag(rt.tag)) {
		return nil
	}
	key := verdictKey(pi, d)
	c.mu.Lock()
	v, ok := c.verdicts[key]
	c.mu.Unlock()
	if ok && (v.err == nil || c.cfg.Now().Sub(v.at) < failedVerdictTTL) {
		return v.err
	}
	res, _, _ := c.group.Do("v "+key, func() (any, error) {
		verr := c.verify(ctx, up, repo, pi, d)
		now := c.cfg.Now()
		c.mu.Lock()
		c.verdicts[key] = verdict{err: verr, at: now}
		if verr == nil {
			// A verified index pins its children's digests: they are
			// served under its signature.
			if info, err := parseManifest(body, ""); err == nil && info.Index {
				for _, ch := range info.Refs {
					c.verdicts[verdictKey(pi, ch.Digest)] = verdict{at: now}
				}
			}
		}
		c.mu.Unlock()
		return verr, nil
	})
	verr, _ := res.(*Error)
	if verr != nil {
		c.m.denied.Inc()
		c.log.Warn("manifest refused by signature policy", "repo", fullName(up, repo), "digest", d, "reason", verr.Message)
	}
	return verr
}

func denied(format string, args ...any) *Error {
	return errorf(http.StatusForbidden, CodeDenied, format, args...)
}

// verify looks up cosign's signature manifest for d and checks its
// simple-signing layers with policy pi's key.
func (c *Cache) verify(ctx context.Context, up *upstream, repo string, pi int, d digest.Digest) *Error {
	name := fullName(up, repo)
	tag := signatureTag(d)
	if !anchoredTag(tag) {
		return denied("manifest %s of %s: no signature (no cosign signature tag for this digest algorithm)", d, name)
	}
	body, err := c.signatureManifest(ctx, up, repo, tag)
	if errors.Is(err, ErrNotFound) {
		return denied("manifest %s of %s: no signature: the policy for %q requires a cosign signature and there is no tag %s", d, name, c.cfg.Policies[pi].Prefix, tag)
	}
	if err != nil {
		return denied("manifest %s of %s: no signature: signature tag %s could not be fetched: %v", d, name, tag, err)
	}
	var m struct {
		Layers []struct {
			MediaType   string            `json:"mediaType"`
			Digest      digest.Digest     `json:"digest"`
			Size        int64             `json:"size"`
			Annotations map[string]string `json:"annotations"`
		} `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return denied("manifest %s of %s: bad signature: signature manifest %s is not valid JSON: %v", d, name, tag, err)
	}
	key := c.cfg.Policies[pi].Key
	tried, mismatch := 0, ""
	var problems []string
	for _, l := range m.Layers {
		if l.MediaType != MediaTypeSimpleSigning {
			continue
		}
		if tried++; tried > maxSignatureLayers {
			break
		}
		sig, err := base64.StdEncoding.DecodeString(l.Annotations[AnnotationCosignSignature])
		if err != nil || len(sig) == 0 {
			problems = append(problems, fmt.Sprintf("layer %s has no valid base64 %s annotation", l.Digest, AnnotationCosignSignature))
			continue
		}
		if l.Size < 0 || l.Size > maxSignaturePayload {
			problems = append(problems, fmt.Sprintf("payload %s of %d bytes (limit %d)", l.Digest, l.Size, maxSignaturePayload))
			continue
		}
		payload, err := c.signaturePayload(ctx, up, repo, l.Digest, l.Size)
		if err != nil {
			problems = append(problems, fmt.Sprintf("payload %s: %v", l.Digest, err))
			continue
		}
		if !verifySignature(key, payload, sig) {
			problems = append(problems, fmt.Sprintf("signature on payload %s does not verify with the pinned key", l.Digest))
			continue
		}
		var p struct {
			Critical struct {
				Image struct {
					DockerManifestDigest string `json:"docker-manifest-digest"`
				} `json:"image"`
			} `json:"critical"`
		}
		if err := json.Unmarshal(payload, &p); err != nil {
			problems = append(problems, fmt.Sprintf("payload %s is not valid JSON: %v", l.Digest, err))
			continue
		}
		if got := p.Critical.Image.DockerManifestDigest; got != d.String() {
			mismatch = got
			continue
		}
		return nil
	}
	switch {
	case mismatch != "":
		return denied("manifest %s of %s: digest mismatch: the signed payload names %q, not this manifest", d, name, mismatch)
	case tried == 0:
		return denied("manifest %s of %s: no signature: signature manifest %s has no %s layer", d, name, tag, MediaTypeSimpleSigning)
	default:
		return denied("manifest %s of %s: bad signature: %s", d, name, strings.Join(problems, "; "))
	}
}

// signatureManifest returns the manifest of a signature tag: upstream's
// current one (within TagDeadline when it is cached), else the cached one.
func (c *Cache) signatureManifest(ctx context.Context, up *upstream, repo, tag string) ([]byte, error) {
	rec, cached := c.store.tag(up.key, repo, tag)
	fctx := ctx
	if cached {
		var cancel context.CancelFunc
		fctx, cancel = context.WithTimeout(ctx, c.cfg.TagDeadline)
		defer cancel()
	}
	m, err := c.fetchManifest(fctx, up, repo, tag, "")
	if err == nil {
		return m.body, nil
	}
	if cached && !errors.Is(err, ErrNotFound) {
		if body, _, serr := c.store.manifest(rec.Digest); serr == nil {
			return body, nil
		}
	}
	return nil, err
}

// signaturePayload returns the bytes of payload blob d, fetching and
// storing it if needed.
func (c *Cache) signaturePayload(ctx context.Context, up *upstream, repo string, d digest.Digest, size int64) ([]byte, error) {
	if err := d.Validate(); err != nil {
		return nil, err
	}
	if !c.store.has(d) {
		f, err := c.joinFlight(up, repo, d)
		if err != nil && !errors.Is(err, errStored) {
			return nil, err
		}
		if err == nil {
			var ferr error
			werr := f.wait(ctx, func() bool { ferr = f.err; return f.done })
			f.leave()
			if werr != nil {
				return nil, werr
			}
			if ferr != nil {
				return nil, ferr
			}
		}
	}
	file, n, err := c.store.openBlob(d)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	if n != size || n > maxSignaturePayload {
		return nil, fmt.Errorf("stored payload has %d bytes, descriptor says %d", n, size)
	}
	return io.ReadAll(io.LimitReader(file, maxSignaturePayload))
}

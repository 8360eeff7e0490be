package imagecache

import (
	"encoding/json"
	"fmt"
	"mime"
	"strings"

	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// Docker's manifest media types, served alongside the OCI ones.
const (
	MediaTypeDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	MediaTypeDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
)

// MaxManifestSize is the largest manifest the cache accepts from upstream
// (the distribution registry's limit).
const MaxManifestSize = 4 << 20

// manifestAccept is the Accept header sent upstream for manifests.
var manifestAccept = strings.Join([]string{
	ocispec.MediaTypeImageIndex,
	ocispec.MediaTypeImageManifest,
	MediaTypeDockerManifestList,
	MediaTypeDockerManifest,
}, ", ")

// manifestInfo is what the cache needs to know about a manifest.
type manifestInfo struct {
	MediaType string
	// Refs are the descriptors it points to: config, layers and subject for
	// an image manifest; child manifests for an index.
	Refs []ocispec.Descriptor
	// Index reports whether Refs are manifests (an index or list).
	Index bool
}

// parseManifest decodes a manifest or index in one of the four supported
// media types. contentType (from the upstream response) wins over the
// mediaType field when both are present, as the spec says; they must agree
// when both are set.
func parseManifest(b []byte, contentType string) (manifestInfo, error) {
	if len(b) > MaxManifestSize {
		return manifestInfo{}, fmt.Errorf("manifest of %d bytes: %w (%d bytes)", len(b), ErrTooLarge, MaxManifestSize)
	}
	var probe struct {
		specs.Versioned
		MediaType string              `json:"mediaType"`
		Config    json.RawMessage     `json:"config"`
		Manifests []json.RawMessage   `json:"manifests"`
		Layers    []json.RawMessage   `json:"layers"`
		Subject   *ocispec.Descriptor `json:"subject"`
	}
	if err := json.Unmarshal(b, &probe); err != nil {
		return manifestInfo{}, fmt.Errorf("manifest is not valid JSON: %v", err)
	}
	if probe.SchemaVersion != 2 {
		return manifestInfo{}, fmt.Errorf("manifest schemaVersion %d: want 2", probe.SchemaVersion)
	}
	mt := probe.MediaType
	if contentType != "" {
		ct, _, err := mime.ParseMediaType(contentType)
		if err == nil && ct != "application/json" && ct != "text/plain" && ct != "application/octet-stream" {
			if mt != "" && mt != ct {
				return manifestInfo{}, fmt.Errorf("manifest mediaType %q disagrees with Content-Type %q", mt, ct)
			}
			mt = ct
		}
	}
	if mt == "" {
		// An OCI manifest may omit mediaType; tell manifest from index by shape.
		switch {
		case probe.Manifests != nil:
			mt = ocispec.MediaTypeImageIndex
		case probe.Config != nil:
			mt = ocispec.MediaTypeImageManifest
		default:
			return manifestInfo{}, fmt.Errorf("manifest has no mediaType and is neither an image manifest nor an index")
		}
	}
	info := manifestInfo{MediaType: mt}
	switch mt {
	case ocispec.MediaTypeImageManifest, MediaTypeDockerManifest:
		var m ocispec.Manifest
		if err := json.Unmarshal(b, &m); err != nil {
			return manifestInfo{}, fmt.Errorf("image manifest: %v", err)
		}
		if probe.Config == nil {
			return manifestInfo{}, fmt.Errorf("image manifest has no config")
		}
		info.Refs = append(info.Refs, m.Config)
		info.Refs = append(info.Refs, m.Layers...)
	case ocispec.MediaTypeImageIndex, MediaTypeDockerManifestList:
		var ix ocispec.Index
		if err := json.Unmarshal(b, &ix); err != nil {
			return manifestInfo{}, fmt.Errorf("image index: %v", err)
		}
		info.Index = true
		info.Refs = append(info.Refs, ix.Manifests...)
	default:
		return manifestInfo{}, fmt.Errorf("unsupported manifest media type %q", mt)
	}
	for _, d := range info.Refs {
		if err := d.Digest.Validate(); err != nil {
			return manifestInfo{}, fmt.Errorf("descriptor digest %q: %v", d.Digest, err)
		}
		if d.Size < 0 {
			return manifestInfo{}, fmt.Errorf("descriptor %s has negative size %d", d.Digest, d.Size)
		}
	}
	if probe.Subject != nil {
		if err := probe.Subject.Digest.Validate(); err != nil {
			return manifestInfo{}, fmt.Errorf("subject digest %q: %v", probe.Subject.Digest, err)
		}
	}
	return info, nil
}

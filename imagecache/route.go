package imagecache

import (
	"net/http"
	"regexp"
	"strings"

	"github.com/distribution/reference"
	"github.com/opencontainers/go-digest"
)

// Route kinds.
const (
	routeBase      = "base"
	routeManifest  = "manifest"
	routeBlob      = "blob"
	routeTags      = "tags"
	routeReferrers = "referrers"
)

// route is a parsed /v2/ request path.
type route struct {
	kind   string
	name   string        // repository name as the client wrote it
	tag    string        // manifests by tag
	digest digest.Digest // manifests by digest, blobs, referrers
}

// parseRoute parses the path of a /v2/ request. Names, tags and digests are
// validated with the grammar of the distribution spec, so a name can never
// carry "..", an empty component or an absolute path.
func parseRoute(path string) (route, *Error) {
	if path == "/v2" || path == "/v2/" {
		return route{kind: routeBase}, nil
	}
	rest, ok := strings.CutPrefix(path, "/v2/")
	if !ok {
		return route{}, errorf(http.StatusNotFound, CodeNameUnknown, "not a registry path: %q", path)
	}
	var r route
	var ref string
	switch {
	case strings.HasSuffix(rest, "/tags/list"):
		r.kind, r.name = routeTags, strings.TrimSuffix(rest, "/tags/list")
	case strings.Contains(rest, "/manifests/"):
		i := strings.LastIndex(rest, "/manifests/")
		r.kind, r.name, ref = routeManifest, rest[:i], rest[i+len("/manifests/"):]
	case strings.Contains(rest, "/blobs/"):
		i := strings.LastIndex(rest, "/blobs/")
		r.kind, r.name, ref = routeBlob, rest[:i], rest[i+len("/blobs/"):]
		if ref == "uploads" || strings.HasPrefix(ref, "uploads/") || strings.Contains(r.name, "/blobs/uploads") {
			return route{}, errorf(http.StatusMethodNotAllowed, CodeUnsupported, "this registry is a read-only pull-through cache: pushes are not supported")
		}
	case strings.Contains(rest, "/referrers/"):
		i := strings.LastIndex(rest, "/referrers/")
		r.kind, r.name, ref = routeReferrers, rest[:i], rest[i+len("/referrers/"):]
	default:
		return route{}, errorf(http.StatusNotFound, CodeNameUnknown, "unknown registry endpoint %q", path)
	}
	if err := validName(r.name); err != nil {
		return route{}, err
	}
	switch r.kind {
	case routeManifest:
		if strings.Contains(ref, ":") {
			d, err := parseDigest(ref)
			if err != nil {
				return route{}, err
			}
			r.digest = d
		} else {
			if !anchoredTag(ref) {
				return route{}, errorf(http.StatusBadRequest, CodeManifestInvalid, "reference %q is neither a valid tag nor a digest", ref)
			}
			r.tag = ref
		}
	case routeBlob, routeReferrers:
		d, err := parseDigest(ref)
		if err != nil {
			return route{}, err
		}
		r.digest = d
	}
	return r, nil
}

// validName checks a repository name against the spec's grammar and length.
func validName(name string) *Error {
	if name == "" {
		return errorf(http.StatusBadRequest, CodeNameInvalid, "empty repository name")
	}
	if len(name) > reference.RepositoryNameTotalLengthMax {
		return errorf(http.StatusBadRequest, CodeNameInvalid, "repository name longer than %d characters", reference.RepositoryNameTotalLengthMax)
	}
	if !specName.MatchString(name) {
		return errorf(http.StatusBadRequest, CodeNameInvalid, "invalid repository name %q: want lowercase path components separated by '/' (distribution spec)", name)
	}
	if _, err := reference.WithName(name); err != nil {
		return errorf(http.StatusBadRequest, CodeNameInvalid, "invalid repository name %q: %v", name, err)
	}
	return nil
}

// specName is the repository-name grammar of the distribution spec
// ("<name>" in its "Pulling" section).
var specName = regexp.MustCompile(`^[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*(/[a-z0-9]+((\.|_|__|-+)[a-z0-9]+)*)*$`)

func anchoredTag(tag string) bool {
	return reference.TagRegexp.FindString(tag) == tag && tag != ""
}

// parseDigest accepts sha256 and sha512 digests in canonical form.
func parseDigest(s string) (digest.Digest, *Error) {
	d, err := digest.Parse(s)
	if err != nil {
		return "", errorf(http.StatusBadRequest, CodeDigestInvalid, "invalid digest %q: %v", s, err)
	}
	if d.Algorithm() != digest.SHA256 && d.Algorithm() != digest.SHA512 {
		return "", errorf(http.StatusBadRequest, CodeDigestInvalid, "unsupported digest algorithm %q", d.Algorithm())
	}
	return d, nil
}

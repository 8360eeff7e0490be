package imagecache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// HeaderFiltersApplied names the filters a referrers response applied.
const HeaderFiltersApplied = "OCI-Filters-Applied"

// maxReferrersSize bounds one page of an upstream referrers list.
const maxReferrersSize = 4 << 20

// referrersRecord is a subject's referrers as last learned from upstream.
type referrersRecord struct {
	Manifests []ocispec.Descriptor `json:"manifests"`
	Fetched   time.Time            `json:"fetched"`
}

func (s *store) referrersPath(ns, repo string, subject digest.Digest) string {
	return filepath.Join(s.tagDir(ns, repo), "_referrers", subject.Algorithm().String()+"-"+subject.Encoded()+".json")
}

func (s *store) referrers(ns, repo string, subject digest.Digest) (referrersRecord, bool) {
	b, err := os.ReadFile(s.referrersPath(ns, repo, subject))
	if err != nil {
		return referrersRecord{}, false
	}
	var rec referrersRecord
	if json.Unmarshal(b, &rec) != nil {
		return referrersRecord{}, false
	}
	return rec, true
}

func (s *store) setReferrers(ns, repo string, subject digest.Digest, rec referrersRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	p := s.referrersPath(ns, repo, subject)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	return s.writeFile(p, b)
}

// fallbackTag is the referrers tag schema's tag for a subject:
// "<alg>-<hex>" (truncated to the tag grammar's 128 characters).
func fallbackTag(subject digest.Digest) string {
	t := subject.Algorithm().String() + "-" + subject.Encoded()
	if len(t) > 128 {
		t = t[:128]
	}
	return t
}

// fetchReferrers asks upstream for a subject's referrers: its referrers API
// (following pagination), or — when upstream does not serve it — the
// referrers tag schema's fallback tag. No fallback tag means no referrers.
func (c *Cache) fetchReferrers(ctx context.Context, up *upstream, repo string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	var all []ocispec.Descriptor
	path := "/referrers/" + subject.String()
	for page := 0; page < maxTagPages && path != ""; page++ {
		resp, err := up.get(ctx, http.MethodGet, repo, path, http.Header{"Accept": {ocispec.MediaTypeImageIndex}}, c.cfg.UpstreamTimeout)
		if errors.Is(err, ErrNotFound) && page == 0 {
			return c.fetchFallbackReferrers(ctx, up, repo, subject)
		}
		if err != nil {
			return nil, err
		}
		var ix ocispec.Index
		err = json.NewDecoder(io.LimitReader(resp.Body, maxReferrersSize)).Decode(&ix)
		link := resp.Header.Get("Link")
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: referrers list: %v", ErrUnavailable, err)
		}
		all = append(all, ix.Manifests...)
		path = nextPath(link, repo, "/referrers/")
	}
	return validReferrers(all)
}

func (c *Cache) fetchFallbackReferrers(ctx context.Context, up *upstream, repo string, subject digest.Digest) ([]ocispec.Descriptor, error) {
	m, err := c.fetchManifest(ctx, up, repo, fallbackTag(subject), "")
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var ix ocispec.Index
	if err := json.Unmarshal(m.body, &ix); err != nil {
		return nil, fmt.Errorf("%w: referrers tag %s: %v", errBadManifest, fallbackTag(subject), err)
	}
	if m.mediaType != ocispec.MediaTypeImageIndex {
		return nil, fmt.Errorf("%w: referrers tag %s is a %s, not an image index", errBadManifest, fallbackTag(subject), m.mediaType)
	}
	return validReferrers(ix.Manifests)
}

// validReferrers checks the descriptors of a referrers list.
func validReferrers(ds []ocispec.Descriptor) ([]ocispec.Descriptor, error) {
	for _, d := range ds {
		if err := d.Digest.Validate(); err != nil {
			return nil, fmt.Errorf("%w: referrer digest %q: %v", errBadManifest, d.Digest, err)
		}
		if d.Size < 0 {
			return nil, fmt.Errorf("%w: referrer %s has negative size", errBadManifest, d.Digest)
		}
	}
	return ds, nil
}

// nextPath extracts the path after /v2/<repo> from a Link header's next
// URL, if it continues the same endpoint (kind is e.g. "/referrers/").
func nextPath(link, repo, kind string) string {
	if link == "" || !strings.Contains(link, `rel="next"`) {
		return ""
	}
	start, end := strings.Index(link, "<"), strings.Index(link, ">")
	if start < 0 || end < start {
		return ""
	}
	s := link[start+1 : end]
	if i := strings.Index(s, "/v2/"); i >= 0 {
		s = s[i:]
	}
	rest, ok := strings.CutPrefix(s, "/v2/"+repo)
	if !ok || !strings.HasPrefix(rest, kind) {
		return ""
	}
	return rest
}

// serveReferrers serves GET /v2/<name>/referrers/<digest>[?artifactType=]:
// the upstream's current list when it answers in time (TagDeadline when a
// list is cached), otherwise the cached list, marked stale. A subject whose
// referrers were never learned while upstream is unreachable gets the
// spec's answer for a subject without referrers, an empty list, also marked
// stale: the referrers API never answers 404 for an unknown subject.
func (c *Cache) serveReferrers(w http.ResponseWriter, r *http.Request, rt route, up *upstream, repo string) {
	cachedRec, cached := c.store.referrers(up.key, repo, rt.digest)
	ch := c.group.DoChan("r "+up.key+" "+repo+"@"+rt.digest.String(), func() (any, error) {
		ctx, cancel := context.WithCancel(c.ctx)
		defer cancel()
		ds, err := c.fetchReferrers(ctx, up, repo, rt.digest)
		if err != nil {
			return nil, err
		}
		if ds == nil {
			ds = []ocispec.Descriptor{}
		}
		if err := c.store.setReferrers(up.key, repo, rt.digest, referrersRecord{Manifests: ds, Fetched: c.cfg.Now().UTC()}); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrStore, err)
		}
		return ds, nil
	})
	deadline := c.cfg.UpstreamTimeout * time.Duration(len(up.mirrors)+1)
	if cached {
		deadline = c.cfg.TagDeadline
	}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	var ds []ocispec.Descriptor
	var ferr error
	select {
	case res := <-ch:
		if res.Err == nil {
			ds = res.Val.([]ocispec.Descriptor)
		} else {
			ferr = res.Err
		}
	case <-timer.C:
		ferr = fmt.Errorf("%w: no answer within %v", ErrUnavailable, deadline)
	case <-r.Context().Done():
		return
	}
	if ds == nil {
		if errors.Is(ferr, ErrStore) {
			writeError(w, r, c.upstreamError(ferr, CodeManifestUnknown, "referrers of "+rt.digest.String()))
			return
		}
		if cached {
			ds = cachedRec.Manifests
		} else {
			c.log.Info("no referrers known and upstream unavailable", "subject", rt.digest, "err", ferr)
		}
		w.Header().Set(HeaderStale, "true")
		w.Header().Set(HeaderCache, "hit")
	} else {
		w.Header().Set(HeaderCache, "miss")
	}
	out := []ocispec.Descriptor{}
	at := r.URL.Query().Get("artifactType")
	for _, d := range ds {
		if at == "" || d.ArtifactType == at {
			out = append(out, d)
		}
	}
	if at != "" {
		w.Header().Set(HeaderFiltersApplied, "artifactType")
	}
	ix := ocispec.Index{MediaType: ocispec.MediaTypeImageIndex, Manifests: out}
	ix.SchemaVersion = 2
	body, err := json.Marshal(ix)
	if err != nil {
		writeError(w, r, errorf(http.StatusInternalServerError, CodeUnavailable, "referrers: %v", err))
		return
	}
	w.Header().Set("Content-Type", ocispec.MediaTypeImageIndex)
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method != http.MethodHead {
		_, _ = w.Write(body)
	}
}

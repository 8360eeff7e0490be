// Package imagecache is a pull-through cache of OCI registries (the pull side
// of the OCI distribution spec v1.1) that keeps serving cached images when
// the uplink is down or slow.
//
// Blobs and manifests are stored on disk by their verified digest; tags
// remember what they pointed to. A pull by tag asks upstream with a short
// deadline and otherwise serves the cached tag, marked stale. Concurrent
// pulls of one blob share one upstream fetch.
package imagecache

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// Response headers set by the cache.
const (
	// HeaderStale is "true" on a manifest served from a cached tag because
	// upstream did not answer within the tag deadline.
	HeaderStale = "Canopy-Stale"
	// HeaderCache is "hit" when served from disk, "miss" when fetched.
	HeaderCache = "Canopy-Cache"
)

// Defaults for Config.
const (
	DefaultTagDeadline     = 500 * time.Millisecond
	DefaultUpstreamTimeout = 10 * time.Second
)

// Config configures a Cache.
type Config struct {
	// Dir holds the store; it is created if missing.
	Dir string
	// MaxBytes is the store's size budget; least recently used blobs are
	// evicted beyond it (pinned blobs and manifests never). 0: no limit.
	MaxBytes int64
	// TagDeadline bounds the freshness check of a cached tag
	// (DefaultTagDeadline if zero).
	TagDeadline time.Duration
	// UpstreamTimeout bounds each mirror's wait for response headers, and
	// any stall of a blob transfer, for content not cached
	// (DefaultUpstreamTimeout if zero).
	UpstreamTimeout time.Duration
	// Upstreams, chosen by the longest matching prefix.
	Upstreams []Upstream
	// Transport for upstream requests (http.DefaultTransport's clone if nil).
	Transport http.RoundTripper
	// Logger (silent if nil).
	Logger *slog.Logger
	// Now is the clock (time.Now if nil).
	Now func() time.Time
	// Metrics, if set, receives the cache's metrics.
	Metrics prometheus.Registerer
	// Policies require cosign signatures for some repositories' manifests
	// (the longest matching prefix applies).
	Policies []Policy
	// Auth, if set, requires local clients to pull with a bearer token the
	// cache issues at /v2/token.
	Auth *LocalAuth
}

// Cache is the registry cache; it is an http.Handler for /v2/.
type Cache struct {
	cfg   Config
	store *store
	ups   []*upstream // longest prefix first
	log   *slog.Logger
	group singleflight.Group
	m     *metrics

	ctx    context.Context // ends on Close; background fetches use it
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu       sync.Mutex
	flights  map[digest.Digest]*flight
	verdicts map[string]verdict   // signature checks, by policy and digest
	tokens   map[string]time.Time // local bearer tokens → expiry
	closed   bool
}

// New opens the store in cfg.Dir and returns a cache ready to serve. It
// needs no uplink.
func New(cfg Config) (*Cache, error) {
	if cfg.Dir == "" {
		return nil, errors.New("imagecache: no store directory")
	}
	if cfg.MaxBytes < 0 {
		return nil, fmt.Errorf("imagecache: negative size budget %d", cfg.MaxBytes)
	}
	if cfg.TagDeadline <= 0 {
		cfg.TagDeadline = DefaultTagDeadline
	}
	if cfg.UpstreamTimeout <= 0 {
		cfg.UpstreamTimeout = DefaultUpstreamTimeout
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Transport == nil {
		t := http.DefaultTransport.(*http.Transport).Clone()
		t.ResponseHeaderTimeout = 0 // bounded per request by the cache
		cfg.Transport = t
	}
	c := &Cache{cfg: cfg, log: cfg.Logger, flights: map[digest.Digest]*flight{},
		verdicts: map[string]verdict{}, tokens: map[string]time.Time{}}
	for i, p := range cfg.Policies {
		if p.Prefix == "" || strings.HasPrefix(p.Prefix, "/") || strings.HasSuffix(p.Prefix, "/") || strings.ContainsAny(p.Prefix, " \t\n@") {
			return nil, fmt.Errorf("imagecache: policy %d: prefix %q: want a repository name or a leading part of one", i, p.Prefix)
		}
		if err := checkKey(p.Key); err != nil {
			return nil, fmt.Errorf("imagecache: policy %q: %w", p.Prefix, err)
		}
	}
	if cfg.Auth != nil {
		if cfg.Auth.Verify == nil {
			return nil, errors.New("imagecache: local auth without a credential check")
		}
		if cfg.Auth.TTL <= 0 {
			c.cfg.Auth = &LocalAuth{Verify: cfg.Auth.Verify, TTL: DefaultTokenTTL}
		}
	}
	seen := map[string]bool{}
	for _, u := range cfg.Upstreams {
		if seen[u.Prefix] {
			return nil, fmt.Errorf("imagecache: two upstreams with prefix %q", u.Prefix)
		}
		seen[u.Prefix] = true
		up, err := newUpstream(u, cfg.Transport)
		if err != nil {
			return nil, fmt.Errorf("imagecache: %w", err)
		}
		up.observe = c.observeUpstream
		c.ups = append(c.ups, up)
	}
	sort.SliceStable(c.ups, func(i, j int) bool { return len(c.ups[i].Prefix) > len(c.ups[j].Prefix) })
	st, err := openStore(cfg.Dir, cfg.MaxBytes, cfg.Now)
	if err != nil {
		return nil, fmt.Errorf("imagecache: %w", err)
	}
	c.store = st
	c.m = newMetrics(cfg.Metrics, st)
	c.ctx, c.cancel = context.WithCancel(context.Background())
	return c, nil
}

func (c *Cache) observeUpstream(d time.Duration, err error) {
	c.m.upstreamTimes.Observe(d.Seconds())
	if err != nil && !errors.Is(err, ErrNotFound) {
		c.m.upstreamErrs.Inc()
	}
}

// Close stops background fetches and waits for them.
func (c *Cache) Close() error {
	c.mu.Lock()
	c.closed = true
	c.mu.Unlock()
	c.cancel()
	c.wg.Wait()
	return nil
}

// Usage reports the bytes stored and how many blobs were evicted.
func (c *Cache) Usage() (bytes, evictions int64) { return c.store.usage() }

// resolve picks the upstream for a repository name: by containerd's ns
// parameter if one matches, else by the longest prefix.
func (c *Cache) resolve(name, ns string) (*upstream, string, *Error) {
	if ns != "" {
		for _, u := range c.ups {
			if u.Prefix == ns {
				return u, name, nil
			}
		}
	}
	for _, u := range c.ups {
		if u.Prefix == "" {
			return u, name, nil
		}
		if rest, ok := strings.CutPrefix(name, u.Prefix+"/"); ok && rest != "" {
			return u, rest, nil
		}
	}
	return nil, "", errorf(http.StatusNotFound, CodeNameUnknown, "no upstream is configured for repository %q", name)
}

// ServeHTTP implements the pull side of the distribution spec.
func (c *Cache) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	if c.cfg.Auth != nil {
		if r.URL.Path == TokenPath {
			c.serveToken(w, r)
			return
		}
		if !c.authorized(w, r) {
			return
		}
	}
	rt, rerr := parseRoute(r.URL.Path)
	if rerr != nil {
		writeError(w, r, rerr)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		writeError(w, r, errorf(http.StatusMethodNotAllowed, CodeUnsupported, "method %s: this registry is a read-only pull-through cache", r.Method))
		return
	}
	if rt.kind == routeBase {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
		return
	}
	up, repo, rerr := c.resolve(rt.name, r.URL.Query().Get("ns"))
	if rerr != nil {
		writeError(w, r, rerr)
		return
	}
	rw := &recorder{ResponseWriter: w, status: http.StatusOK}
	defer c.count(rt.kind, rw)
	w = rw
	switch rt.kind {
	case routeManifest:
		c.serveManifest(w, r, rt, up, repo)
	case routeBlob:
		c.serveBlob(w, r, rt, up, repo)
	case routeTags:
		c.serveTags(w, r, rt, up, repo)
	case routeReferrers:
		c.serveReferrers(w, r, rt, up, repo)
	}
}

// recorder notes a response's status and body size for the metrics.
type recorder struct {
	http.ResponseWriter
	status int
	n      int64
}

func (r *recorder) WriteHeader(status int) {
	r.status = status
	r.ResponseWriter.WriteHeader(status)
}

func (r *recorder) Write(b []byte) (int, error) {
	n, err := r.ResponseWriter.Write(b)
	r.n += int64(n)
	return n, err
}

func (r *recorder) Flush() {
	if f, ok := r.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *Cache) count(kind string, rw *recorder) {
	h := rw.Header()
	result := h.Get(HeaderCache)
	switch {
	case rw.status >= 400:
		result = "error"
	case h.Get(HeaderStale) == "true":
		result = "stale"
	case result == "":
		result = "miss"
	}
	c.m.requests.WithLabelValues(kind, result).Inc()
	if kind == routeBlob && rw.n > 0 {
		src := "upstream"
		if h.Get(HeaderCache) == "hit" {
			src = "disk"
		}
		c.m.bytes.WithLabelValues(src).Add(float64(rw.n))
	}
}

// fetchedManifest is a manifest fetched (and stored) from upstream.
type fetchedManifest struct {
	body      []byte
	mediaType string
	digest    digest.Digest
}

// fetchManifest gets a manifest by tag or digest from upstream, checks it
// and stores it (and the tag).
func (c *Cache) fetchManifest(ctx context.Context, up *upstream, repo, tag string, want digest.Digest) (*fetchedManifest, error) {
	ref := tag
	if want != "" {
		ref = want.String()
	}
	hdr := http.Header{"Accept": {manifestAccept}}
	resp, err := up.get(ctx, http.MethodGet, repo, "/manifests/"+ref, hdr, c.cfg.UpstreamTimeout)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.ContentLength > MaxManifestSize {
		return nil, fmt.Errorf("manifest of %d bytes: %w", resp.ContentLength, ErrTooLarge)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, MaxManifestSize+1))
	if err != nil {
		return nil, fmt.Errorf("%w: read manifest: %v", ErrUnavailable, err)
	}
	if len(body) > MaxManifestSize {
		return nil, fmt.Errorf("manifest over %d bytes: %w", MaxManifestSize, ErrTooLarge)
	}
	d := digest.SHA256.FromBytes(body)
	if want != "" {
		if got := want.Algorithm().FromBytes(body); got != want {
			return nil, fmt.Errorf("%w: manifest %s hashes to %s", ErrDigestMismatch, want, got)
		}
		d = want
	} else if hd := resp.Header.Get("Docker-Content-Digest"); hd != "" {
		if pd, err := digest.Parse(hd); err == nil && pd.Algorithm().Available() && pd.Algorithm().FromBytes(body) != pd {
			return nil, fmt.Errorf("%w: upstream says %s", ErrDigestMismatch, pd)
		}
	}
	info, err := parseManifest(body, resp.Header.Get("Content-Type"))
	if err != nil {
		return nil, fmt.Errorf("%w: %v", errBadManifest, err)
	}
	if err := c.store.putManifest(d, body, info.MediaType); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	}
	if tag != "" {
		rec := tagRecord{Digest: d, MediaType: info.MediaType, Fetched: c.cfg.Now().UTC()}
		if err := c.store.setTag(up.key, repo, tag, rec); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrStore, err)
		}
	}
	return &fetchedManifest{body: body, mediaType: info.MediaType, digest: d}, nil
}

var errBadManifest = errors.New("upstream manifest is invalid")

func (c *Cache) serveManifest(w http.ResponseWriter, r *http.Request, rt route, up *upstream, repo string) {
	// Every manifest passes the signature policy before it is served.
	// (Its lookups use the cache's context: a verdict is shared and kept.)
	serve := func(w http.ResponseWriter, r *http.Request, body []byte, mt string, d digest.Digest) {
		if perr := c.checkPolicy(c.ctx, up, repo, rt, d, body); perr != nil {
			w.Header().Del(HeaderCache)
			w.Header().Del(HeaderStale)
			writeError(w, r, perr)
			return
		}
		writeManifest(w, r, body, mt, d)
	}
	if rt.digest != "" {
		body, mt, err := c.store.manifest(rt.digest)
		if err == nil {
			w.Header().Set(HeaderCache, "hit")
			serve(w, r, body, mt, rt.digest)
			return
		}
		v, err, _ := c.group.Do("m "+rt.digest.String(), func() (any, error) {
			ctx, cancel := context.WithCancel(c.ctx)
			defer cancel()
			return c.fetchManifest(ctx, up, repo, "", rt.digest)
		})
		if err != nil {
			writeError(w, r, c.upstreamError(err, CodeManifestUnknown, "manifest "+rt.digest.String()))
			return
		}
		m := v.(*fetchedManifest)
		w.Header().Set(HeaderCache, "miss")
		serve(w, r, m.body, m.mediaType, m.digest)
		return
	}
	// By tag: ask upstream; a cached tag waits only TagDeadline.
	rec, cached := c.store.tag(up.key, repo, rt.tag)
	ch := c.group.DoChan("t "+up.key+" "+repo+":"+rt.tag, func() (any, error) {
		ctx, cancel := context.WithCancel(c.ctx)
		defer cancel()
		return c.fetchManifest(ctx, up, repo, rt.tag, "")
	})
	var res singleflight.Result
	if cached {
		timer := time.NewTimer(c.cfg.TagDeadline)
		defer timer.Stop()
		select {
		case res = <-ch:
		case <-timer.C:
			res.Err = fmt.Errorf("%w: no answer within %v", ErrUnavailable, c.cfg.TagDeadline)
		case <-r.Context().Done():
			return
		}
	} else {
		select {
		case res = <-ch:
		case <-r.Context().Done():
			return
		}
	}
	if res.Err == nil {
		m := res.Val.(*fetchedManifest)
		w.Header().Set(HeaderCache, "miss")
		serve(w, r, m.body, m.mediaType, m.digest)
		return
	}
	if cached {
		if body, mt, err := c.store.manifest(rec.Digest); err == nil {
			c.log.Info("serving cached tag", "repo", rt.name, "tag", rt.tag, "err", res.Err)
			w.Header().Set(HeaderCache, "hit")
			w.Header().Set(HeaderStale, "true")
			w.Header().Set("Warning", `110 canopy "Response is Stale"`)
			serve(w, r, body, mt, rec.Digest)
			return
		}
	}
	writeError(w, r, c.upstreamError(res.Err, CodeManifestUnknown, "manifest "+rt.name+":"+rt.tag))
}

// upstreamError maps a failed upstream fetch to the spec's error: the
// content is unknown to this cache (404), whatever the reason.
func (c *Cache) upstreamError(err error, code, what string) *Error {
	if errors.Is(err, ErrStore) {
		return errorf(http.StatusServiceUnavailable, CodeUnavailable, "%s: %v", what, err)
	}
	var why string
	switch {
	case errors.Is(err, ErrNotFound):
		why = "not found upstream"
	case errors.Is(err, ErrDigestMismatch):
		why = "upstream sent content that does not match its digest"
	case errors.Is(err, ErrTooLarge), errors.Is(err, errBadManifest):
		why = err.Error()
	default:
		why = "not cached and upstream unavailable: " + err.Error()
	}
	return errorf(http.StatusNotFound, code, "%s: %s", what, why)
}

func writeManifest(w http.ResponseWriter, r *http.Request, body []byte, mt string, d digest.Digest) {
	h := w.Header()
	h.Set("Content-Type", mt)
	h.Set("Docker-Content-Digest", d.String())
	h.Set("Etag", `"`+d.String()+`"`)
	h.Set("Content-Length", strconv.Itoa(len(body)))
	if r.Method == http.MethodHead {
		return
	}
	_, _ = w.Write(body)
}

func (c *Cache) serveBlob(w http.ResponseWriter, r *http.Request, rt route, up *upstream, repo string) {
	h := w.Header()
	h.Set("Docker-Content-Digest", rt.digest.String())
	h.Set("Etag", `"`+rt.digest.String()+`"`)
	if f, _, err := c.store.openBlob(rt.digest); err == nil {
		h.Set(HeaderCache, "hit")
		serveFile(w, r, f)
		return
	}
	if r.Method == http.MethodHead {
		ctx, cancel := context.WithCancel(r.Context())
		defer cancel()
		resp, err := up.get(ctx, http.MethodHead, repo, "/blobs/"+rt.digest.String(), nil, c.cfg.UpstreamTimeout)
		if err != nil {
			writeError(w, r, c.upstreamError(err, CodeBlobUnknown, "blob "+rt.digest.String()))
			return
		}
		resp.Body.Close()
		if resp.ContentLength >= 0 {
			h.Set(HeaderCache, "miss")
			h.Set("Content-Type", "application/octet-stream")
			h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
			h.Set("Accept-Ranges", "bytes")
			return
		}
	}
	f, err := c.joinFlight(up, repo, rt.digest)
	if errors.Is(err, errStored) {
		c.serveStoredBlob(w, r, rt.digest)
		return
	}
	if err != nil {
		writeError(w, r, c.upstreamError(err, CodeBlobUnknown, "blob "+rt.digest.String()))
		return
	}
	defer f.leave()
	var size int64
	var ferr error
	if err := f.wait(r.Context(), func() bool {
		size, ferr = f.size, f.err
		return f.started
	}); err != nil {
		return
	}
	if ferr != nil {
		writeError(w, r, c.upstreamError(ferr, CodeBlobUnknown, "blob "+rt.digest.String()))
		return
	}
	if size < 0 || r.Header.Get("Range") != "" || r.Method == http.MethodHead {
		// Ranges (and unknown sizes) are served from the finished blob.
		if err := f.wait(r.Context(), func() bool { ferr = f.err; return f.done }); err != nil {
			return
		}
		if ferr != nil {
			writeError(w, r, c.upstreamError(ferr, CodeBlobUnknown, "blob "+rt.digest.String()))
			return
		}
		h.Set(HeaderCache, "miss")
		c.serveStoredBlob(w, r, rt.digest)
		return
	}
	h.Set(HeaderCache, "miss")
	h.Set("Content-Type", "application/octet-stream")
	h.Set("Content-Length", strconv.FormatInt(size, 10))
	h.Set("Accept-Ranges", "bytes")
	w.WriteHeader(http.StatusOK)
	if err := f.stream(r.Context(), w); err != nil {
		// Headers are gone: break the connection so the client sees a
		// failed transfer, never a complete wrong blob.
		panic(http.ErrAbortHandler)
	}
}

// serveStoredBlob serves a stored blob (with Range and HEAD).
func (c *Cache) serveStoredBlob(w http.ResponseWriter, r *http.Request, d digest.Digest) {
	f, _, err := c.store.openBlob(d)
	if errors.Is(err, errNotCached) {
		writeError(w, r, errorf(http.StatusNotFound, CodeBlobUnknown, "blob %s: evicted meanwhile", d))
		return
	}
	if err != nil {
		writeError(w, r, errorf(http.StatusServiceUnavailable, CodeUnavailable, "blob %s: %s: %v", d, ErrStore, err))
		return
	}
	serveFile(w, r, f)
}

// serveFile serves an open blob (with Range and HEAD) and closes it.
func serveFile(w http.ResponseWriter, r *http.Request, f *os.File) {
	defer f.Close()
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Cache-Control", "max-age=31536000, immutable")
	http.ServeContent(w, r, "", time.Time{}, f)
}

// maxTagPages bounds how many pages of an upstream tag list are followed.
const maxTagPages = 100

func (c *Cache) fetchTags(ctx context.Context, up *upstream, repo string) ([]string, error) {
	var all []string
	path := "/tags/list"
	for page := 0; page < maxTagPages && path != ""; page++ {
		resp, err := up.get(ctx, http.MethodGet, repo, path, nil, c.cfg.UpstreamTimeout)
		if err != nil {
			return nil, err
		}
		var list struct {
			Tags []string `json:"tags"`
		}
		err = json.NewDecoder(io.LimitReader(resp.Body, 16<<20)).Decode(&list)
		link := resp.Header.Get("Link")
		resp.Body.Close()
		if err != nil {
			return nil, fmt.Errorf("%w: tag list: %v", ErrUnavailable, err)
		}
		all = append(all, list.Tags...)
		path = nextLink(link, repo)
	}
	sort.Strings(all)
	return all, nil
}

// nextLink extracts the path after /v2/<repo> from a Link: <...>; rel="next".
func nextLink(link, repo string) string {
	if link == "" || !strings.Contains(link, `rel="next"`) {
		return ""
	}
	start, end := strings.Index(link, "<"), strings.Index(link, ">")
	if start < 0 || end < start {
		return ""
	}
	u, err := url.Parse(link[start+1 : end])
	if err != nil {
		return ""
	}
	rest, ok := strings.CutPrefix(u.Path, "/v2/"+repo)
	if !ok || !strings.HasPrefix(rest, "/tags/list") {
		return ""
	}
	if u.RawQuery != "" {
		rest += "?" + u.RawQuery
	}
	return rest
}

func (c *Cache) serveTags(w http.ResponseWriter, r *http.Request, rt route, up *upstream, repo string) {
	q := r.URL.Query()
	n := -1
	if s := q.Get("n"); s != "" {
		v, err := strconv.Atoi(s)
		if err != nil || v < 0 {
			writeError(w, r, errorf(http.StatusBadRequest, CodeUnsupported, "n=%q: want a non-negative integer", s))
			return
		}
		n = v
	}
	last := q.Get("last")
	cachedTags, cached := c.store.tagList(up.key, repo)
	ch := c.group.DoChan("l "+up.key+" "+repo, func() (any, error) {
		ctx, cancel := context.WithCancel(c.ctx)
		defer cancel()
		tags, err := c.fetchTags(ctx, up, repo)
		if err == nil {
			err = c.store.setTagList(up.key, repo, tags)
		}
		return tags, err
	})
	deadline := c.cfg.UpstreamTimeout * time.Duration(len(up.mirrors))
	if cached {
		deadline = c.cfg.TagDeadline
	}
	timer := time.NewTimer(deadline)
	defer timer.Stop()
	var tags []string
	select {
	case res := <-ch:
		if res.Err == nil {
			tags = res.Val.([]string)
		} else if !cached {
			writeError(w, r, errorf(http.StatusNotFound, CodeNameUnknown, "repository %s: %s", rt.name, c.upstreamError(res.Err, CodeNameUnknown, "tags").Message))
			return
		}
	case <-timer.C:
		if !cached {
			writeError(w, r, errorf(http.StatusNotFound, CodeNameUnknown, "repository %s: not cached and upstream did not answer", rt.name))
			return
		}
	case <-r.Context().Done():
		return
	}
	if tags == nil {
		tags = cachedTags
		w.Header().Set(HeaderStale, "true")
	}
	sort.Strings(tags)
	page := tags
	if last != "" {
		i := sort.SearchStrings(page, last)
		if i < len(page) && page[i] == last {
			i++
		}
		page = page[i:]
	}
	more := false
	if n >= 0 && n < len(page) {
		page, more = page[:n], true
	}
	if more && n > 0 {
		next := url.Values{"n": {strconv.Itoa(n)}, "last": {page[len(page)-1]}}
		w.Header().Set("Link", fmt.Sprintf(`</v2/%s/tags/list?%s>; rel="next"`, rt.name, next.Encode()))
	}
	if page == nil {
		page = []string{}
	}
	var buf bytes.Buffer
	_ = json.NewEncoder(&buf).Encode(struct {
		Name string   `json:"name"`
		Tags []string `json:"tags"`
	}{rt.name, page})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(buf.Len()))
	if r.Method != http.MethodHead {
		_, _ = w.Write(buf.Bytes())
	}
}

// Interface guards.
var _ http.Handler = (*Cache)(nil)

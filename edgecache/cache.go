// Package edgecache is the edge's caching reverse proxy: an RFC 9111 shared
// cache (with RFC 5861 stale extensions, CDN-Cache-Control and
// Cache-Status) in front of a site's ordered origins, storing responses in
// a bounded on-disk Store.
package edgecache

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/sync/singleflight"
)

// TTLRule overrides the freshness lifetime of stored responses whose path
// starts with Prefix.
type TTLRule struct {
	Prefix string
	TTL    time.Duration
}

// Config configures one site's cache.
type Config struct {
	// Name identifies the cache in Cache-Status (default "canopy").
	Name string
	// Origins are tried in order (scheme://host[:port], no path).
	Origins []*url.URL
	Store   *Store
	// Now is the clock (default time.Now).
	Now func() time.Time
	// DialTimeout, ResponseHeaderTimeout bound each origin attempt;
	// BodyIdleTimeout bounds the wait for each read of a body.
	DialTimeout, ResponseHeaderTimeout, BodyIdleTimeout time.Duration
	// FailBackoff is how long an origin that failed is skipped for new
	// requests (while another one is available).
	FailBackoff time.Duration
	TTL         []TTLRule
	Logger      *slog.Logger
	// Metrics records the site's traffic (default: unregistered).
	Metrics *Metrics
	// StripHeaders are request headers removed before a request is keyed
	// or sent upstream (client addresses, cookies of a static site).
	StripHeaders []string
	// StripQuery are query parameters removed likewise: exact names, or
	// a name prefix ending in "*" ("utm_*"), matched case-insensitively.
	StripQuery []string
	// Uplinks are the outbound paths to the origins, in order of
	// preference (none: the system's routing). Requests use the first
	// healthy one; a connection error or timeout through an uplink moves
	// to the next at once, and a HEAD probe of the first origin through
	// each uplink every ProbeInterval (default 2s) brings it back.
	Uplinks       []Uplink
	ProbeInterval time.Duration
}

// Handler is one site's caching reverse proxy.
type Handler struct {
	cfg   Config
	name  string
	store *Store
	now   func() time.Time
	proxy *httputil.ReverseProxy
	up    *failover
	group singleflight.Group
	bg    sync.WaitGroup
	log   *slog.Logger
	m     *Metrics
	strip *stripper
	// keyPrefix starts the site's cache keys ("name ").
	keyPrefix string
	// The site's counters, resolved once.
	hitCount, hotHitCount, missCount, coalescedCount prometheus.Counter
	cacheBytes, upstreamBytes                        prometheus.Counter

	upstreamRequests atomic.Int64
}

type ctxKey struct{}

// New builds a site's handler.
func New(cfg Config) (*Handler, error) {
	if len(cfg.Origins) == 0 {
		return nil, errors.New("edgecache: no origins")
	}
	for _, o := range cfg.Origins {
		if (o.Scheme != "http" && o.Scheme != "https") || o.Host == "" || (o.Path != "" && o.Path != "/") {
			return nil, fmt.Errorf("edgecache: origin %q: want http(s)://host[:port]", o.String())
		}
	}
	if cfg.Store == nil {
		return nil, errors.New("edgecache: no store")
	}
	if cfg.Name == "" {
		cfg.Name = "canopy"
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 500 * time.Millisecond
	}
	if cfg.ResponseHeaderTimeout <= 0 {
		cfg.ResponseHeaderTimeout = 10 * time.Second
	}
	if cfg.BodyIdleTimeout <= 0 {
		cfg.BodyIdleTimeout = 30 * time.Second
	}
	if cfg.FailBackoff <= 0 {
		cfg.FailBackoff = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil, nil)
	}
	strip, err := newStripper(cfg.StripHeaders, cfg.StripQuery)
	if err != nil {
		return nil, err
	}
	h := &Handler{cfg: cfg, name: cfg.Name, store: cfg.Store, now: cfg.Now, log: cfg.Logger, m: cfg.Metrics, strip: strip,
		keyPrefix:      cfg.Name + " ",
		hitCount:       cfg.Metrics.hits.WithLabelValues(cfg.Name),
		hotHitCount:    cfg.Metrics.hotHits.WithLabelValues(cfg.Name),
		missCount:      cfg.Metrics.misses.WithLabelValues(cfg.Name),
		coalescedCount: cfg.Metrics.coalesced.WithLabelValues(cfg.Name),
		cacheBytes:     cfg.Metrics.bytes.WithLabelValues(cfg.Name, "cache"),
		upstreamBytes:  cfg.Metrics.bytes.WithLabelValues(cfg.Name, "upstream"),
	}
	h.up = &failover{
		failovers: cfg.Metrics.failovers.WithLabelValues(cfg.Name),
		origins:   cfg.Origins,
		downUntil: make([]time.Time, len(cfg.Origins)),
		now:       cfg.Now,
		backoff:   cfg.FailBackoff,
		count:     &h.upstreamRequests,
		rt:        newTransport(cfg, nil),
	}
	if len(cfg.Uplinks) > 0 {
		if h.up.ups, err = newUplinks(cfg); err != nil {
			return nil, err
		}
		go h.up.ups.run()
	}
	h.proxy = &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(cfg.Origins[0])
			pr.Out.Host = ""
			pr.Out.Header.Add("Surrogate-Capability", SurrogateToken+`="Surrogate/1.0"`)
		},
		Transport:      h.up,
		ModifyResponse: h.modifyResponse,
		ErrorHandler:   h.proxyError,
		ErrorLog:       slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelDebug),
	}
	return h, nil
}

// UplinkHealth reports each configured uplink's health (true: up), in
// configured order.
func (h *Handler) UplinkHealth() []bool {
	if h.up.ups == nil {
		return nil
	}
	return h.up.ups.healthy()
}

// UpstreamRequests counts requests sent to origins (every attempt).
func (h *Handler) UpstreamRequests() int64 { return h.upstreamRequests.Load() }

// Close waits for background fills and revalidations to end (or ctx).
func (h *Handler) Close(ctx context.Context) error {
	if h.up.ups != nil {
		h.up.ups.close() // stop probing; fills keep their connections
	}
	done := make(chan struct{})
	go func() { h.bg.Wait(); close(done) }()
	select {
	case <-done:
		h.up.rt.CloseIdleConnections()
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// passState is the request context of a pass-through exchange.
type passState struct{ req *http.Request }

func (h *Handler) modifyResponse(resp *http.Response) error {
	switch st := resp.Request.Context().Value(ctxKey{}).(type) {
	case *fill:
		resp.Body = &watchBody{rc: resp.Body, f: st, idle: h.cfg.BodyIdleTimeout}
		st.watch()
	case *passState:
		fwd := "uri-miss"
		switch {
		case st.req.Method != http.MethodGet && st.req.Method != http.MethodHead:
			fwd = "method"
		case requestDirectives(st.req.Header).Has("no-store"):
			fwd = "request"
		}
		resp.Header.Del("Surrogate-Control") // meant for us, not downstream
		resp.Header.Del("Surrogate-Key")
		resp.Header.Add("Cache-Status", fmt.Sprintf("%s; fwd=%s; fwd-status=%d", h.name, fwd, resp.StatusCode))
		if unsafeMethod(st.req.Method) && resp.StatusCode < 400 {
			h.invalidateAfter(st.req, resp.Header)
		}
	}
	return nil
}

func (h *Handler) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if f, ok := r.Context().Value(ctxKey{}).(*fill); ok {
		f.fail(err)
		return
	}
	status := http.StatusBadGateway
	if errors.Is(err, context.DeadlineExceeded) || isTimeout(err) {
		status = http.StatusGatewayTimeout
	}
	w.Header().Set("Cache-Status", fmt.Sprintf("%s; fwd=uri-miss; detail=%q", h.name, "upstream error"))
	http.Error(w, "upstream unavailable: "+err.Error(), status)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func unsafeMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return false
	}
	return true
}

// primaryKey is the cache key of a request's target.
func (h *Handler) primaryKey(r *http.Request) string { return h.keyPrefix + r.URL.RequestURI() }

// invalidateAfter drops the stored responses for a request's target and
// for same-origin Location and Content-Location (RFC 9111 §4.4).
func (h *Handler) invalidateAfter(r *http.Request, resp http.Header) {
	h.store.invalidate(h.primaryKey(r))
	for _, name := range []string{"Location", "Content-Location"} {
		v := resp.Get(name)
		if v == "" {
			continue
		}
		u, err := r.URL.Parse(v)
		if err != nil || (u.Host != "" && !strings.EqualFold(u.Host, r.Host) && u.Host != r.URL.Host) {
			continue
		}
		h.store.invalidate(h.keyPrefix + u.RequestURI())
	}
}

// ServeHTTP answers from the cache where RFC 9111 allows, else from the
// origins. The site's stripped headers and query parameters are removed
// first, so they are neither part of the cache key nor sent upstream.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	r = h.strip.apply(r)
	switch r.Method {
	case http.MethodGet:
		h.serveGet(w, r)
	case http.MethodHead:
		if o, hot := h.lookup(r); o != nil && o.Status != http.StatusPartialContent {
			if d := h.decide(o, r); d.use {
				h.countUse(d, hot != nil)
				h.serveObject(w, r, o, hot, d.status)
				return
			}
		}
		h.pass(w, r)
	default:
		h.pass(w, r)
	}
}

func (h *Handler) pass(w http.ResponseWriter, r *http.Request) {
	ctx := context.WithValue(r.Context(), ctxKey{}, &passState{req: r})
	h.proxy.ServeHTTP(&countingWriter{ResponseWriter: w, c: h.upstreamBytes}, r.WithContext(ctx))
}

// countingWriter counts the body bytes of a passed-through response.
type countingWriter struct {
	http.ResponseWriter
	c prometheus.Counter
}

func (cw *countingWriter) Write(p []byte) (int, error) {
	n, err := cw.ResponseWriter.Write(p)
	cw.c.Add(float64(n))
	return n, err
}

// Unwrap gives http.ResponseController (flushing) the real writer.
func (cw *countingWriter) Unwrap() http.ResponseWriter { return cw.ResponseWriter }

// lookup returns the newest stored variant the request selects, with its
// body when that is in the hot tier.
func (h *Handler) lookup(r *http.Request) (*object, []byte) {
	return h.store.find(h.primaryKey(r), func(o *object) bool { return matchesVary(o, r.Header) })
}

// decision is what to do with a stored response.
type decision struct {
	use         bool   // serve it without contacting the origin
	background  bool   // ...and revalidate in the background
	status      string // Cache-Status parameters when used ("": a fresh hit)
	mayStaleErr bool   // it may be served if the origin fails
	stale       string // why a stale response is used ("" when fresh)
}

func (h *Handler) decide(o *object, r *http.Request) decision {
	now := h.now()
	reqCC := requestDirectives(r.Header)
	respCC := o.prepared().cc
	age := currentAge(o, now)
	life := h.lifetime(o)
	ttl := life - age
	staleness := -ttl
	var d decision
	noStale := respCC.Has("must-revalidate") || respCC.Has("proxy-revalidate") || respCC.Has("s-maxage")
	if sie, ok := respCC.Seconds("stale-if-error"); ok && !noStale && staleness <= sie {
		d.mayStaleErr = true
	}
	if sie, ok := reqCC.Seconds("stale-if-error"); ok && !noStale && staleness <= sie {
		d.mayStaleErr = true
	}
	if respCC.Has("no-cache") || reqCC.Has("no-cache") {
		return d
	}
	fresh := ttl > 0
	if ma, ok := reqCC.Seconds("max-age"); ok && age > ma {
		fresh = false
	} else if reqCC.Has("max-age") && !ok {
		fresh = false
	}
	if mf, ok := reqCC.Seconds("min-fresh"); ok && ttl < mf {
		fresh = false
	}
	if fresh {
		d.use = true
		return d
	}
	if noStale {
		return d
	}
	if reqCC.Has("max-stale") {
		ms, ok := reqCC.Seconds("max-stale")
		if !ok && reqCC["max-stale"] == "" || ok && staleness <= ms {
			d.use, d.stale = true, "max-stale"
			d.status = fmt.Sprintf("hit; ttl=%d; detail=max-stale", int64(ttl/time.Second))
			return d
		}
	}
	if swr, ok := respCC.Seconds("stale-while-revalidate"); ok && staleness <= swr && !reqCC.Has("max-age") && !reqCC.Has("min-fresh") {
		d.use, d.background, d.stale = true, true, "stale-while-revalidate"
		d.status = fmt.Sprintf("hit; ttl=%d; fwd=stale; detail=stale-while-revalidate", int64(ttl/time.Second))
	}
	return d
}

// lifetime is the freshness lifetime, with the site's TTL overrides.
func (h *Handler) lifetime(o *object) time.Duration {
	path := strings.TrimPrefix(o.URL, h.keyPrefix)
	for _, rule := range h.cfg.TTL {
		if strings.HasPrefix(path, rule.Prefix) {
			return rule.TTL
		}
	}
	return freshnessLifetime(o)
}

func (h *Handler) serveGet(w http.ResponseWriter, r *http.Request) {
	reqCC := requestDirectives(r.Header)
	stored, hot := h.lookup(r)
	var prefix *object
	if stored != nil && stored.Status == http.StatusPartialContent && !partialCovers(stored, r) {
		// A stored part that cannot answer this request: a miss, which
		// asks only for the rest when the part is the start of it.
		if part, _, ok := parseContentRange(stored.Header.Get("Content-Range")); ok && part.Start == 0 &&
			r.Header.Get("Range") == "" && h.decide(stored, r).use {
			prefix = stored
		}
		stored = nil
	}
	var d decision
	if stored != nil {
		d = h.decide(stored, r)
		if d.use {
			h.countUse(d, hot != nil)
			if d.background {
				h.revalidateBackground(r, stored)
			}
			h.serveObject(w, r, stored, hot, d.status)
			return
		}
	}
	if reqCC.Has("only-if-cached") {
		w.Header().Set("Cache-Status", h.name+"; fwd=miss; detail=only-if-cached")
		http.Error(w, "not in cache", http.StatusGatewayTimeout)
		return
	}
	fwd := "uri-miss"
	if stored != nil {
		fwd = "stale"
	} else if len(h.store.variants(h.primaryKey(r))) > 0 {
		fwd = "vary-miss"
	}
	if !h.store.writable(h.now()) {
		// The disk is full: proxy uncached (stale-if-error is lost).
		h.pass(w, r)
		return
	}
	h.missCount.Inc()
	f, collapsed, ref := h.coalescedFill(r, stored, prefix, !reqCC.Has("no-store"))
	if collapsed {
		h.coalescedCount.Inc()
	}
	if ref {
		defer f.release()
	}
	if err := f.waitReady(r.Context()); err != nil {
		return // the client went away
	}
	extra := ""
	if collapsed {
		extra = "; collapsed"
	}
	switch {
	case f.uncombined:
		h.pass(w, r) // the rest of a stored part came back unusable
	case f.err != nil:
		if stored != nil && d.mayStaleErr {
			h.m.stale.WithLabelValues(h.name, "stale-if-error").Inc()
			h.serveObject(w, r, stored, nil, fmt.Sprintf("hit; fwd=%s; detail=stale-if-error", fwd))
			return
		}
		status := http.StatusBadGateway
		if errors.Is(f.err, context.DeadlineExceeded) || isTimeout(f.err) {
			status = http.StatusGatewayTimeout
		}
		w.Header().Set("Cache-Status", fmt.Sprintf("%s; fwd=%s; detail=%q", h.name, fwd, "upstream error"))
		http.Error(w, "upstream unavailable", status)
	case f.validated != nil:
		h.serveObject(w, r, f.validated, nil, fmt.Sprintf("fwd=%s; fwd-status=304%s", fwd, extra))
	case f.status >= 500 && stored != nil && d.mayStaleErr:
		h.m.stale.WithLabelValues(h.name, "stale-if-error").Inc()
		h.serveObject(w, r, stored, nil, fmt.Sprintf("hit; fwd=%s; fwd-status=%d; detail=stale-if-error", fwd, f.status))
	case !f.shareable && !f.claimed.CompareAndSwap(false, true):
		h.pass(w, r) // not ours to share: fetch our own
	case f.shareable && !matchesVary(f.obj, r.Header):
		h.pass(w, r)
	default:
		stored := ""
		if f.shareable {
			stored = "; stored"
		}
		h.serveFill(w, r, f, ref, fmt.Sprintf("fwd=%s; fwd-status=%d%s%s", fwd, f.status, stored, extra))
	}
}

// countUse counts a stored response used without the origin (hot: its
// body is in memory).
func (h *Handler) countUse(d decision, hot bool) {
	switch {
	case d.stale != "":
		h.m.stale.WithLabelValues(h.name, d.stale).Inc()
	case hot:
		h.hitCount.Inc()
		h.hotHitCount.Inc()
	default:
		h.hitCount.Inc()
	}
}

// coalescedFill starts (or joins) the upstream fetch for the request's
// Vary-aware key. It returns once the fill exists; collapsed is true when
// another request started it. The request that started it holds a
// reference on the fill's body (ref), which it must release.
func (h *Handler) coalescedFill(r *http.Request, validate, prefix *object, mayStore bool) (f *fill, collapsed, ref bool) {
	key := h.flightKey(r, mayStore)
	mine := false
	v, _, _ := h.group.Do(key, func() (any, error) {
		mine = true
		f := h.startFill(r, validate, prefix, mayStore, true)
		// Later requests join this fill until its headers are in.
		<-f.ready
		return f, nil
	})
	return v.(*fill), !mine, mine
}

func (h *Handler) flightKey(r *http.Request, mayStore bool) string {
	var b strings.Builder
	b.WriteString(h.primaryKey(r))
	if !mayStore {
		b.WriteString("\x00nostore")
	}
	seen := map[string]bool{}
	for _, o := range h.store.variants(h.primaryKey(r)) {
		for name := range o.Vary {
			if !seen[name] {
				seen[name] = true
				b.WriteString("\x00" + name + "=" + normalizeValue(r.Header, name))
			}
		}
	}
	return b.String()
}

// revalidateBackground refreshes a stored response without a waiting
// client; concurrent calls for one key make one request.
func (h *Handler) revalidateBackground(r *http.Request, stored *object) {
	key := "bg\x00" + h.flightKey(r, true)
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		h.group.Do(key, func() (any, error) {
			f := h.startFill(r, stored, nil, true, false)
			<-f.ready
			f.drain()
			return nil, nil
		})
	}()
}

// conditionalHeaders are a client's own preconditions; the cache answers
// them itself and never forwards them on a fill.
var conditionalHeaders = []string{"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since", "If-Range", "Range"}

// startFill starts fetching r's target from the origins in the
// background. With validate set, the request is conditional on it.
// With reader set the caller holds a reference on the body.
func (h *Handler) startFill(r *http.Request, validate, prefix *object, mayStore, reader bool) *fill {
	f := newFill(h, r, validate, mayStore)
	if reader {
		f.refs++
	}
	out := r.Clone(context.WithValue(f.ctx, ctxKey{}, f))
	out.Body = http.NoBody
	out.ContentLength = 0
	for _, name := range conditionalHeaders {
		out.Header.Del(name)
	}
	if validate != nil {
		if et := validate.Header.Get("ETag"); et != "" {
			out.Header.Set("If-None-Match", et)
		}
		if lm := validate.Header.Get("Last-Modified"); lm != "" {
			out.Header.Set("If-Modified-Since", lm)
		}
	}
	if prefix != nil {
		// Ask for the rest of a stored part (RFC 9111 §3.4), conditional
		// on its strong validator when it has one.
		part, _, _ := parseContentRange(prefix.Header.Get("Content-Range"))
		out.Header.Set("Range", fmt.Sprintf("bytes=%d-", part.Length))
		if et := prefix.Header.Get("ETag"); strings.HasPrefix(et, `"`) {
			out.Header.Set("If-Range", et)
		}
		f.prefix = prefix
	}
	f.reqHeader = out.Header.Clone()
	f.reqHeader.Del("Range")
	f.reqHeader.Del("If-Range")
	f.reqTime = h.now()
	h.bg.Add(1)
	go func() {
		defer h.bg.Done()
		defer f.finish()
		h.proxy.ServeHTTP(&fillWriter{f: f, hdr: http.Header{}}, out)
	}()
	return f
}

// serveObject answers from a stored response: from hot, its body in
// memory, or else from its file. status is the Cache-Status parameters
// ("": a fresh hit).
func (h *Handler) serveObject(w http.ResponseWriter, r *http.Request, o *object, hot []byte, status string) {
	var file *os.File
	if hot == nil {
		var err error
		if file, o, err = h.openStored(r, o); err != nil {
			// Evicted between lookup and open: fetch it again.
			h.pass(w, r)
			return
		}
		defer file.Close()
	}
	now := h.now()
	h.store.touch(o, now)
	age := currentAge(o, now)
	var ageV, cacheStatus []string
	if status == "" {
		ageV, cacheStatus = h.hitHead(o, int64(age/time.Second), int64((h.lifetime(o)-age)/time.Second))
	} else {
		ageV = []string{strconv.FormatInt(int64(age/time.Second), 10)}
		cacheStatus = withStatus(o.prepared().cacheStatus, h.name+"; "+status)
	}
	if hot == nil && h.store.hotCandidate(o) {
		hot = h.store.loadHot(o, file)
		if hot == nil {
			h.pass(w, r) // the body file could not be read
			return
		}
	}
	var b body = memBody(hot)
	if hot == nil {
		b = fileBody{file}
	}
	if o.Status == http.StatusPartialContent {
		h.servePart(w, r, o, b, ageV, cacheStatus)
		return
	}
	h.respond(w, r, &reply{status: o.Status, header: o.Header, o: o, size: o.Size, body: b,
		age: ageV, cacheStatus: cacheStatus, sent: h.cacheBytes})
}

// openStored opens o's body or, when o was replaced by a newer response
// since the lookup, that one's.
func (h *Handler) openStored(r *http.Request, o *object) (*os.File, *object, error) {
	file, err := h.store.open(o)
	for tries := 0; err != nil && tries < 3; tries++ {
		o2, _ := h.lookup(r)
		if o2 == nil || o2 == o {
			break
		}
		o = o2
		file, err = h.store.open(o)
	}
	return file, o, err
}

// partialCovers reports whether a stored partial response can answer the
// request: a single range, within the stored part, If-Range holding.
func partialCovers(o *object, r *http.Request) bool {
	_, ok := partWanted(o, r)
	return ok
}

// partWanted is the range of the stored part's representation the request
// asks for, when the part holds all of it.
func partWanted(o *object, r *http.Request) (ByteRange, bool) {
	part, total, ok := parseContentRange(o.Header.Get("Content-Range"))
	rg := r.Header.Get("Range")
	if !ok || rg == "" || !ifRangeHolds(r, o.Header) || r.Method != http.MethodGet {
		return ByteRange{}, false
	}
	ranges, err := ParseRange(rg, total)
	if err != nil || len(ranges) != 1 {
		return ByteRange{}, false
	}
	want := ranges[0]
	if want.Start < part.Start || want.Start+want.Length > part.Start+part.Length {
		return ByteRange{}, false
	}
	return want, true
}

// servePart answers a range request from a stored partial response.
func (h *Handler) servePart(w http.ResponseWriter, r *http.Request, o *object, b body, ageV, cacheStatus []string) {
	want, ok := partWanted(o, r)
	part, total, _ := parseContentRange(o.Header.Get("Content-Range"))
	if !ok {
		h.pass(w, r)
		return
	}
	out := w.Header()
	writeHead(out, o, nil)
	delete(out, "Content-Range")
	out["Age"] = ageV
	out["Cache-Status"] = cacheStatus
	out.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", want.Start, want.Start+want.Length-1, total))
	out.Set("Content-Length", strconv.FormatInt(want.Length, 10))
	w.WriteHeader(http.StatusPartialContent)
	n, _ := b.send(w, want.Start-part.Start, want.Length)
	h.cacheBytes.Add(float64(n))
}

// serveFill streams a fill's response as it arrives.
func (h *Handler) serveFill(w http.ResponseWriter, r *http.Request, f *fill, hasRef bool, status string) {
	if !hasRef {
		if !f.acquire() {
			// Already over: serve what it stored, or fetch our own.
			if o := f.stored(); o != nil {
				h.serveObject(w, r, o, nil, status)
			} else {
				h.pass(w, r)
			}
			return
		}
		defer f.release()
	}
	if f.firstBytes(r.Context()) {
		// Nothing could be buffered (a full disk): proxy it uncached.
		h.pass(w, r)
		return
	}
	size := int64(-1)
	if cl := f.header.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			size = n
		}
	}
	h.respond(w, r, &reply{status: f.status, header: f.header, size: size, body: fillBody{f, r.Context()},
		cacheStatus: withStatus(f.header["Cache-Status"], h.name+"; "+status), sent: h.upstreamBytes})
	if f.shareable {
		// Hold the response's end until the object is committed, so the
		// client's next request is a hit.
		ctx, cancel := context.WithTimeout(r.Context(), time.Second)
		f.waitFinished(ctx)
		cancel()
	}
}

// coalesceMin is the smallest body from memory whose response is sent in
// one write (see Listener): a smaller one fits net/http's buffer anyway.
const coalesceMin = 3 << 10

// reply is a response respond writes.
type reply struct {
	status int
	header http.Header // the stored or upstream header
	o      *object     // the stored object (nil: a fill's response)
	size   int64       // the body's size (-1: unknown)
	body   body
	// age and cacheStatus are the Age (nil: none) and Cache-Status values.
	age, cacheStatus []string
	sent             prometheus.Counter // counts the body bytes sent
}

// respond writes a response (from the store or a fill), answering the
// client's own conditional and range requests.
func (h *Handler) respond(w http.ResponseWriter, r *http.Request, rp *reply) {
	out := w.Header()
	writeHead(out, rp.o, rp.header)
	if rp.age != nil {
		out["Age"] = rp.age
	}
	out["Cache-Status"] = rp.cacheStatus
	status, hdr, size := rp.status, rp.header, rp.size
	if status == http.StatusOK && notModified(r, hdr) {
		for _, k := range []string{"Content-Type", "Content-Encoding", "Content-Range", "Transfer-Encoding"} {
			delete(out, k)
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	start, length := int64(0), size
	if rg := r.Header.Get("Range"); rg != "" && status == http.StatusOK && size >= 0 && ifRangeHolds(r, hdr) {
		ranges, err := ParseRange(rg, size)
		switch {
		case errors.Is(err, ErrRangeUnsatisfiable):
			out.Set("Content-Range", fmt.Sprintf("bytes */%d", size))
			delete(out, "Content-Type")
			w.WriteHeader(http.StatusRequestedRangeNotSatisfiable)
			return
		case err == nil && len(ranges) == 1:
			start, length = ranges[0].Start, ranges[0].Length
			out.Set("Content-Range", fmt.Sprintf("bytes %d-%d/%d", start, start+length-1, size))
			status = http.StatusPartialContent
		}
	}
	if length >= 0 && status != http.StatusNoContent && status != http.StatusNotModified {
		if rp.o != nil && length == rp.o.Size {
			out["Content-Length"] = rp.o.prepared().length
		} else {
			out["Content-Length"] = []string{strconv.FormatInt(length, 10)}
		}
	}
	if _, inMemory := rp.body.(memBody); inMemory && length > coalesceMin && r.Method != http.MethodHead {
		coalesce(r) // head and body in one write
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead || status == http.StatusNoContent || status == http.StatusNotModified {
		return
	}
	n, err := rp.body.send(w, start, length)
	rp.sent.Add(float64(n))
	if errors.Is(err, errBodyBroken) {
		// The body ended early (the upstream broke off): make the client
		// see a truncated response, not a short complete one.
		panic(http.ErrAbortHandler)
	}
}

// notModified evaluates If-None-Match (weak comparison) or, without it,
// If-Modified-Since against a response's validators.
func notModified(r *http.Request, hdr http.Header) bool {
	if inm := r.Header.Values("If-None-Match"); len(inm) > 0 {
		et := strings.TrimPrefix(hdr.Get("ETag"), "W/")
		if et == "" {
			return false
		}
		for _, v := range inm {
			for _, c := range strings.Split(v, ",") {
				c = strings.TrimSpace(c)
				if c == "*" || strings.TrimPrefix(c, "W/") == et {
					return true
				}
			}
		}
		return false
	}
	ims, ok := dateOf(r.Header, "If-Modified-Since")
	if !ok {
		return false
	}
	lm, ok := dateOf(hdr, "Last-Modified")
	if !ok {
		lm, ok = dateOf(hdr, "Date")
	}
	return ok && !lm.After(ims)
}

// ifRangeHolds evaluates If-Range (RFC 9110 §13.1.5): a strong ETag match
// or an exact Last-Modified date.
func ifRangeHolds(r *http.Request, hdr http.Header) bool {
	v := r.Header.Get("If-Range")
	if v == "" {
		return true
	}
	if strings.HasPrefix(v, "\"") {
		et := hdr.Get("ETag")
		return et != "" && !strings.HasPrefix(et, "W/") && et == v
	}
	t, err := http.ParseTime(v)
	lm, ok := dateOf(hdr, "Last-Modified")
	return err == nil && ok && t.Equal(lm)
}

// failover is the origins' transport: each request goes to the first
// origin not recently failed, and on a connection error, timeout or
// 502/503/504 moves on to the next (for requests without a body).
type failover struct {
	origins   []*url.URL
	rt        *http.Transport
	now       func() time.Time
	backoff   time.Duration
	count     *atomic.Int64
	failovers prometheus.Counter
	ups       *uplinks // nil: no uplinks configured
	mu        sync.Mutex
	downUntil []time.Time
}

// send sends out through the healthy uplinks in order (or the plain
// transport without uplinks): a connection error or timeout through one
// marks it down and, when the request may be retried, moves to the next.
func (fo *failover) send(out *http.Request, retryable bool) (*http.Response, error) {
	if fo.ups == nil {
		fo.count.Add(1)
		return fo.rt.RoundTrip(out)
	}
	order := fo.ups.order()
	var lastErr error
	for n, s := range order {
		fo.count.Add(1)
		resp, err := fo.ups.roundTrip(s, out, retryable)
		if err == nil {
			return resp, nil
		}
		lastErr = err
		if out.Context().Err() != nil {
			return nil, err
		}
		fo.ups.set(s, false)
		if !retryable || n == len(order)-1 {
			break
		}
		s.failovers.Inc()
		out = out.Clone(out.Context())
	}
	return nil, lastErr
}

func (fo *failover) order() []int {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	now := fo.now()
	var up, down []int
	for i := range fo.origins {
		if now.Before(fo.downUntil[i]) {
			down = append(down, i)
		} else {
			up = append(up, i)
		}
	}
	return append(up, down...)
}

func (fo *failover) mark(i int, failed bool) {
	fo.mu.Lock()
	defer fo.mu.Unlock()
	if failed {
		fo.downUntil[i] = fo.now().Add(fo.backoff)
	} else {
		fo.downUntil[i] = time.Time{}
	}
}

func (fo *failover) RoundTrip(req *http.Request) (*http.Response, error) {
	order := fo.order()
	retryable := req.Body == nil || req.Body == http.NoBody
	var lastErr error
	for n, i := range order {
		out := req.Clone(req.Context())
		out.URL.Scheme, out.URL.Host = fo.origins[i].Scheme, fo.origins[i].Host
		out.Host = ""
		resp, err := fo.send(out, retryable)
		last := n == len(order)-1
		if err == nil {
			switch resp.StatusCode {
			case http.StatusBadGateway, http.StatusServiceUnavailable, http.StatusGatewayTimeout:
				if !last && retryable {
					resp.Body.Close()
					fo.mark(i, true)
					fo.failovers.Inc()
					continue
				}
			default:
				fo.mark(i, false)
			}
			return resp, nil
		}
		lastErr = err
		if req.Context().Err() != nil {
			return nil, err
		}
		fo.mark(i, true)
		if !retryable || last {
			break
		}
		fo.failovers.Inc()
	}
	return nil, lastErr
}

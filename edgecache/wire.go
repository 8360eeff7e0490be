package edgecache

import (
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// derived is what serving a stored object needs, computed once when the
// object enters the store (stored objects are immutable), so that a hit
// parses nothing and copies no header.
type derived struct {
	cc     Directives    // the directives this cache obeys
	life   time.Duration // freshness lifetime, before a site's TTL rules
	fields []headerField // the header fields sent with it, values capped
	length []string      // Content-Length of the whole body
	// cacheStatus is the stored Cache-Status (members of caches before
	// us), to which ours is appended.
	cacheStatus []string
	hasType     bool // it has a Content-Type (else none is sniffed)
	// hit is the Age and Cache-Status of the last fresh hit, reused while
	// they stay the same (a second).
	hit atomic.Pointer[hitFields]
}

type headerField struct {
	name   string
	values []string
}

type hitFields struct {
	age, ttl          int64
	ageV, cacheStatus []string
}

// notForwarded are stored header fields a response from the store does
// not copy: framing (recomputed), surrogate fields (meant for us) and
// Cache-Status (ours is appended to it).
func notForwarded(name string) bool {
	switch name {
	case "Content-Length", "Surrogate-Control", "Surrogate-Key", "Cache-Status":
		return true
	}
	return false
}

// capped returns v with no room to grow, so that an append to a header
// value shared between responses copies it instead of writing into it.
func capped(v []string) []string { return v[:len(v):len(v)] }

// prepare computes o's derived fields; it runs before o is published in
// the store, and o's header is not changed afterwards.
func (o *object) prepare() { o.d = newDerived(o) }

func newDerived(o *object) *derived {
	d := &derived{cc: responseDirectives(o.Header)}
	d.life = lifetimeOf(o, d.cc)
	for k, v := range o.Header {
		if !notForwarded(k) {
			d.fields = append(d.fields, headerField{k, capped(v)})
		}
	}
	d.length = []string{strconv.FormatInt(o.Size, 10)}
	d.cacheStatus = capped(o.Header["Cache-Status"])
	_, d.hasType = o.Header["Content-Type"]
	return d
}

// prepared returns o's derived fields (computed now for an object that
// was never stored).
func (o *object) prepared() *derived {
	if o.d != nil {
		return o.d
	}
	return newDerived(o)
}

// withStatus is a stored Cache-Status with our member appended.
func withStatus(stored []string, member string) []string {
	out := make([]string, 0, len(stored)+1)
	return capped(append(append(out, stored...), member))
}

// hitHead is the Age and Cache-Status of a fresh hit on o, shared with the
// previous hit on o when they are the same.
func (h *Handler) hitHead(o *object, age, ttl int64) (ageV, cacheStatus []string) {
	d := o.prepared()
	if hf := d.hit.Load(); hf != nil && hf.age == age && hf.ttl == ttl {
		return hf.ageV, hf.cacheStatus
	}
	hf := &hitFields{age: age, ttl: ttl, ageV: capped([]string{strconv.FormatInt(age, 10)}),
		cacheStatus: withStatus(d.cacheStatus, h.name+"; hit; ttl="+strconv.FormatInt(ttl, 10))}
	d.hit.Store(hf)
	return hf.ageV, hf.cacheStatus
}

// writeHead puts a response's header fields into out: a stored object's
// precomputed ones, or (o nil) a copy of hdr's.
func writeHead(out http.Header, o *object, hdr http.Header) {
	if o != nil {
		d := o.prepared()
		for _, f := range d.fields {
			out[f.name] = f.values
		}
		if !d.hasType {
			out["Content-Type"] = nil // no sniffing
		}
		return
	}
	for k, v := range hdr {
		if !notForwarded(k) {
			out[k] = append([]string(nil), v...)
		}
	}
	if _, ok := out["Content-Type"]; !ok {
		out["Content-Type"] = nil
	}
}

// copyBufs are the buffers bodies are copied through.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

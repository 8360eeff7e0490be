package edgecache

import (
	"context"
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// fill is one upstream fetch whose body goes to a file as it arrives;
// any number of clients stream from that file, waiting for bytes not yet
// written, while the fetch runs independently of them.
type fill struct {
	h        *Handler
	url      string
	validate *object
	prefix   *object // a stored part whose rest this fill asked for
	mayStore bool
	ctx      context.Context
	cancel   context.CancelFunc

	reqHeader http.Header
	reqTime   time.Time

	ready     chan struct{}
	readyOnce sync.Once
	// Set before ready closes.
	err       error
	status    int
	header    http.Header
	validated *object
	obj       *object
	shareable bool
	// uncombined: the origin answered the request for the rest of a
	// stored part with a 206 that cannot be joined to it.
	uncombined bool
	claimed    atomic.Bool

	mu       sync.Mutex
	changed  chan struct{} // closed and replaced on every write and at the end
	file     *os.File
	written  int64
	finished bool
	complete bool
	refs     int
	done     *object // the committed object
	diskErr  error   // the body could not be buffered (a full disk)
	sawEOF   atomic.Bool
	idle     *time.Timer
}

func newFill(h *Handler, r *http.Request, validate *object, mayStore bool) *fill {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	return &fill{h: h, url: h.primaryKey(r), validate: validate, mayStore: mayStore, ctx: ctx, cancel: cancel,
		ready: make(chan struct{}), changed: make(chan struct{}), refs: 1}
}

func (f *fill) markReady() { f.readyOnce.Do(func() { close(f.ready) }) }

func (f *fill) waitReady(ctx context.Context) error {
	select {
	case <-f.ready:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// fail records an upstream error before any response.
func (f *fill) fail(err error) {
	select {
	case <-f.ready:
		return
	default:
	}
	f.err = err
	f.markReady()
}

// watch starts the body idle watchdog: a body that stops arriving for the
// idle timeout ends the fill.
func (f *fill) watch() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.idle = time.AfterFunc(f.h.cfg.BodyIdleTimeout, f.cancel)
}

// start records the response head (from the fill's ResponseWriter).
func (f *fill) start(code int, hdr http.Header) {
	now := f.h.now()
	if code == http.StatusNotModified && f.validate != nil {
		f.validated = f.merge304(hdr, now)
		f.markReady()
		return
	}
	var head *os.File // the stored part to put before the rest
	if f.prefix != nil && code == http.StatusPartialContent {
		if !combinable(f.prefix.Header, hdr) {
			f.uncombined = true
			f.markReady()
			return
		}
		if src, err := f.h.store.open(f.prefix); err == nil {
			head = src
			defer src.Close()
			_, total, _ := parseContentRange(hdr.Get("Content-Range"))
			hdr.Del("Content-Range")
			hdr.Set("Content-Length", strconv.FormatInt(total, 10))
			code = http.StatusOK
		} else {
			f.uncombined = true // the part was evicted meanwhile
			f.markReady()
			return
		}
	}
	f.status, f.header = code, hdr
	o := &object{URL: f.url, Status: code, Header: hdr, RequestTime: f.reqTime, ResponseTime: now,
		InitialAge: initialAge(hdr, f.reqTime, now), Vary: map[string]string{}}
	for _, name := range varyNames(hdr) {
		o.Vary[name] = normalizeValue(f.reqHeader, name)
	}
	o.Key = variantKey(o)
	f.obj = o
	f.shareable = f.mayStore && storable(f.reqHeader, requestDirectives(f.reqHeader), code, hdr)
	file, err := f.h.store.tempFile()
	if err != nil {
		f.h.log.Warn("edgecache: cannot buffer a response; proxying it uncached", "err", err)
		f.mu.Lock()
		f.diskErr = err
		f.mu.Unlock()
		f.h.store.writeFailed(now)
		file = nil
	}
	f.file = file
	if head != nil && file != nil {
		n, err := io.Copy(file, head)
		f.written = n
		if err != nil {
			f.diskErr = err
			f.h.store.writeFailed(now)
		}
	}
	f.markReady()
}

// combinable reports whether a 206 answering a request for the rest of a
// stored part (which starts at 0) completes it: it starts where the part
// ends, runs to the end, has the same complete length, and both carry the
// same strong ETag (RFC 9111 §3.4).
func combinable(stored, rest http.Header) bool {
	part, total, ok1 := parseContentRange(stored.Get("Content-Range"))
	r, rtotal, ok2 := parseContentRange(rest.Get("Content-Range"))
	et := stored.Get("ETag")
	return ok1 && ok2 && total == rtotal && r.Start == part.Start+part.Length && r.Start+r.Length == total &&
		strings.HasPrefix(et, `"`) && rest.Get("ETag") == et
}

func variantKey(o *object) string {
	k := o.URL
	names := make([]string, 0, len(o.Vary))
	for n := range o.Vary {
		names = append(names, n)
	}
	sortStrings(names)
	for _, n := range names {
		k += "\x00" + n + "=" + o.Vary[n]
	}
	return k
}

// merge304 updates the stored response with a 304's header fields
// (RFC 9111 §4.3.4) and stores the result.
func (f *fill) merge304(hdr http.Header, now time.Time) *object {
	o := *f.validate
	o.Header = f.validate.Header.Clone()
	for k, v := range hdr {
		switch k {
		case "Content-Length", "Content-Encoding", "Content-Range", "Transfer-Encoding", "Content-Md5", "Etag":
			// Framing and the fields the stored body depends on (RFC 9111
			// §3.2); ETag selected this response and stays with it.
			continue
		}
		o.Header[k] = append([]string(nil), v...)
	}
	o.RequestTime, o.ResponseTime = f.reqTime, now
	o.InitialAge = initialAge(hdr, f.reqTime, now)
	if !f.h.store.update(&o) {
		return f.validate
	}
	return &o
}

func (f *fill) write(p []byte) (int, error) {
	if f.file == nil {
		return 0, errors.New("edgecache: no body file")
	}
	n, err := f.file.Write(p)
	f.mu.Lock()
	if err != nil && f.diskErr == nil {
		f.diskErr = err
		f.h.store.writeFailed(f.h.now())
		f.h.log.Warn("edgecache: cannot buffer a response; proxying it uncached", "err", err)
	}
	f.written += int64(n)
	if f.idle != nil {
		f.idle.Reset(f.h.cfg.BodyIdleTimeout)
	}
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	return n, err
}

// finish runs when the upstream exchange is over: store the object if it
// is complete and shareable.
func (f *fill) finish() {
	if f.err == nil && f.status == 0 && f.validated == nil {
		f.err = errors.New("edgecache: upstream gave no response")
	}
	f.markReady()
	f.mu.Lock()
	if f.idle != nil {
		f.idle.Stop()
	}
	complete := f.sawEOF.Load()
	if cl := f.header.Get("Content-Length"); cl != "" && complete {
		if n, err := strconv.ParseInt(cl, 10, 64); err != nil || n != f.written {
			complete = false
		}
	}
	if complete && f.status == http.StatusPartialContent {
		part, _, ok := parseContentRange(f.header.Get("Content-Range"))
		complete = ok && part.Length == f.written
	}
	store := complete && f.shareable && f.file != nil
	written := f.written
	f.mu.Unlock()
	// Commit before readers see the end, so that a client's next request
	// finds the object stored.
	var done *object
	if f.file != nil {
		path := f.file.Name()
		if store {
			f.obj.Size = written
			if err := f.h.store.commit(f.obj, path); err != nil {
				f.h.log.Warn("edgecache: not stored", "err", err)
			} else {
				done = f.obj
			}
		} else {
			os.Remove(path)
		}
	}
	f.mu.Lock()
	f.finished, f.complete, f.done = true, complete, done
	close(f.changed)
	f.changed = make(chan struct{})
	f.mu.Unlock()
	f.cancel()
	f.release()
}

// stored is the object the fill committed, if any.
func (f *fill) stored() *object {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.done
}

// acquire takes a reference on the body file; false if it is gone.
func (f *fill) acquire() bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.refs == 0 || f.file == nil {
		return false
	}
	f.refs++
	return true
}

func (f *fill) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.refs--
	if f.refs == 0 && f.file != nil {
		f.file.Close()
	}
}

// firstBytes waits until the body has bytes, has ended, or cannot be
// buffered; it reports whether the body is unusable because nothing of it
// could be buffered (then the caller proxies the request itself).
func (f *fill) firstBytes(ctx context.Context) (unbuffered bool) {
	for {
		f.mu.Lock()
		written, finished, diskErr, ch := f.written, f.finished, f.diskErr, f.changed
		f.mu.Unlock()
		switch {
		case written > 0:
			return false
		case diskErr != nil || f.file == nil:
			return true
		case finished:
			return false
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return false
		}
	}
}

// drain waits for the fill to end (background revalidation).
func (f *fill) drain() { f.waitFinished(context.Background()) }

// waitFinished waits for the fill to end (or ctx).
func (f *fill) waitFinished(ctx context.Context) {
	for {
		f.mu.Lock()
		done, ch := f.finished, f.changed
		f.mu.Unlock()
		if done {
			return
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return
		}
	}
}

// readAt reads the body at off, waiting for bytes not yet written. It
// returns io.EOF at the end of a complete body and io.ErrUnexpectedEOF
// at the end of a broken one.
func (f *fill) readAt(ctx context.Context, p []byte, off int64) (int, error) {
	for {
		f.mu.Lock()
		written, finished, complete, ch := f.written, f.finished, f.complete, f.changed
		f.mu.Unlock()
		if off < written {
			n := int(min(int64(len(p)), written-off))
			return f.file.ReadAt(p[:n], off)
		}
		if finished {
			if complete {
				return 0, io.EOF
			}
			return 0, io.ErrUnexpectedEOF
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return 0, ctx.Err()
		}
	}
}

// fillWriter is the ResponseWriter the reverse proxy writes a fill to.
type fillWriter struct {
	f     *fill
	hdr   http.Header
	wrote bool
}

func (w *fillWriter) Header() http.Header { return w.hdr }

func (w *fillWriter) WriteHeader(code int) {
	if w.wrote || code < 200 {
		return
	}
	w.wrote = true
	w.f.start(code, w.hdr.Clone())
}

func (w *fillWriter) Write(p []byte) (int, error) {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	return w.f.write(p)
}

func (w *fillWriter) Flush() {}

// watchBody marks a clean end of the upstream body.
type watchBody struct {
	rc   io.ReadCloser
	f    *fill
	idle time.Duration
}

func (b *watchBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err == io.EOF {
		b.f.sawEOF.Store(true)
	}
	return n, err
}

func (b *watchBody) Close() error { return b.rc.Close() }

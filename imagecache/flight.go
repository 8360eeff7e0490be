package imagecache

import (
	"context"
	"errors"
	"fmt"
	"hash"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// A flight is one upstream fetch of a blob, shared by every client that
// asks for the blob while it runs. The fetcher appends to a temporary file;
// readers follow it with ReadAt. Readers never see the last byte before the
// digest is verified, so a client can never complete a download of content
// that turns out not to match.
type flight struct {
	d    digest.Digest
	file *os.File

	mu      sync.Mutex
	cond    *sync.Cond
	size    int64 // -1 until upstream says
	written int64
	started bool // size known (or failed)
	done    bool
	err     error
	refs    int // readers plus the fetcher; the file closes at zero
}

// joinFlight returns the flight fetching d, starting one if none runs. The
// caller must call leave.
func (c *Cache) joinFlight(up *upstream, repo string, d digest.Digest) (*flight, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if f := c.flights[d]; f != nil {
		f.mu.Lock()
		f.refs++
		f.mu.Unlock()
		return f, nil
	}
	if c.closed {
		return nil, fmt.Errorf("%w: cache closing", ErrUnavailable)
	}
	// A flight commits its blob before it leaves c.flights, so a blob
	// missed by the caller's look-up is either in flight or stored now.
	if c.store.has(d) {
		return nil, errStored
	}
	tmp, err := c.store.newTemp()
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrStore, err)
	}
	f := &flight{d: d, file: tmp, size: -1, refs: 2}
	f.cond = sync.NewCond(&f.mu)
	c.flights[d] = f
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		err := c.fetch(f, up, repo)
		if err == nil {
			if err = c.store.commit(f.file, d, f.written); err != nil {
				err = fmt.Errorf("%w: %v", ErrStore, err)
				_ = os.Remove(f.file.Name())
			}
		} else {
			_ = os.Remove(f.file.Name())
		}
		c.mu.Lock()
		delete(c.flights, d)
		c.mu.Unlock()
		f.finish(err)
		f.leave()
		if err != nil {
			c.log.Warn("blob fetch failed", "digest", d.String(), "err", err)
		}
	}()
	return f, nil
}

func (f *flight) finish(err error) {
	f.mu.Lock()
	f.done, f.started, f.err = true, true, err
	f.cond.Broadcast()
	f.mu.Unlock()
}

func (f *flight) leave() {
	f.mu.Lock()
	f.refs--
	last := f.refs == 0
	f.mu.Unlock()
	if last {
		f.file.Close()
	}
}

// wait blocks until pred holds or ctx ends.
func (f *flight) wait(ctx context.Context, pred func() bool) error {
	stop := context.AfterFunc(ctx, func() {
		f.mu.Lock()
		f.cond.Broadcast()
		f.mu.Unlock()
	})
	defer stop()
	f.mu.Lock()
	defer f.mu.Unlock()
	for !pred() {
		if ctx.Err() != nil {
			return ctx.Err()
		}
		f.cond.Wait()
	}
	return nil
}

// fetch copies the blob from upstream into f.file, verifying its digest as
// it goes. A broken transfer resumes with a Range request where it stopped.
func (c *Cache) fetch(f *flight, up *upstream, repo string) error {
	h := f.d.Algorithm().Hash()
	buf := make([]byte, 256<<10)
	var lastErr error
	ok := false
	for attempt := 0; attempt < 3; attempt++ {
		hdr := http.Header{}
		if f.written > 0 {
			hdr.Set("Range", "bytes="+strconv.FormatInt(f.written, 10)+"-")
		}
		ctx, cancel := context.WithCancel(c.ctx)
		resp, err := up.get(ctx, http.MethodGet, repo, "/blobs/"+f.d.String(), hdr, c.cfg.UpstreamTimeout)
		if err != nil {
			cancel()
			if errors.Is(err, ErrNotFound) || f.written == 0 {
				return err
			}
			lastErr = err
			continue
		}
		if err := f.begin(resp); err != nil {
			resp.Body.Close()
			cancel()
			return err
		}
		if resp.StatusCode == http.StatusOK && f.written > 0 {
			// The mirror ignored the Range: skip what we already have.
			if _, err := io.CopyN(io.Discard, resp.Body, f.written); err != nil {
				resp.Body.Close()
				cancel()
				lastErr = err
				continue
			}
		}
		err = c.copyBody(ctx, cancel, f, h, resp.Body, buf)
		resp.Body.Close()
		cancel()
		if err == nil {
			ok = true
			break
		}
		if errors.Is(err, ErrDigestMismatch) || errors.Is(err, ErrStore) || c.ctx.Err() != nil {
			return err
		}
		lastErr = err
	}
	if !ok {
		return fmt.Errorf("%w: %v", ErrUnavailable, lastErr)
	}
	if f.size >= 0 && f.written != f.size {
		return fmt.Errorf("%w: got %d of %d bytes", ErrDigestMismatch, f.written, f.size)
	}
	if got := digest.NewDigest(f.d.Algorithm(), h); got != f.d {
		return fmt.Errorf("%w: upstream sent %s", ErrDigestMismatch, got)
	}
	return nil
}

// begin records the blob's size from the first response.
func (f *flight) begin(resp *http.Response) error {
	size := int64(-1)
	if resp.StatusCode == http.StatusOK && resp.ContentLength >= 0 {
		size = resp.ContentLength
	}
	if resp.StatusCode == http.StatusPartialContent {
		if cr := resp.Header.Get("Content-Range"); cr != "" {
			var a, b, n int64
			if _, err := fmt.Sscanf(cr, "bytes %d-%d/%d", &a, &b, &n); err == nil {
				if a != f.written {
					return fmt.Errorf("%w: upstream resumed at %d, not %d", ErrUnavailable, a, f.written)
				}
				size = n
			}
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.size < 0 && size >= 0 {
		f.size = size
	} else if size >= 0 && size != f.size {
		return fmt.Errorf("%w: upstream size changed from %d to %d", ErrDigestMismatch, f.size, size)
	}
	f.started = true
	f.cond.Broadcast()
	return nil
}

// copyBody appends body to the flight's file, with an idle deadline: a
// transfer that stalls for UpstreamTimeout is abandoned.
func (c *Cache) copyBody(ctx context.Context, cancel context.CancelFunc, f *flight, h hash.Hash, body io.Reader, buf []byte) error {
	idle := time.AfterFunc(c.cfg.UpstreamTimeout, cancel)
	defer idle.Stop()
	for {
		n, rerr := body.Read(buf)
		idle.Reset(c.cfg.UpstreamTimeout)
		if n > 0 {
			if f.size >= 0 && f.written+int64(n) > f.size {
				return fmt.Errorf("%w: upstream sent more than %d bytes", ErrDigestMismatch, f.size)
			}
			if _, err := f.file.Write(buf[:n]); err != nil {
				return fmt.Errorf("%w: %v", ErrStore, err)
			}
			h.Write(buf[:n])
			f.mu.Lock()
			f.written += int64(n)
			f.cond.Broadcast()
			f.mu.Unlock()
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			if ctx.Err() != nil && c.ctx.Err() == nil {
				return fmt.Errorf("upstream stalled for %v", c.cfg.UpstreamTimeout)
			}
			return rerr
		}
	}
}

// stream copies the flight to w from offset 0 as the fetch writes it.
// It returns an error (and the caller aborts the response) if the fetch
// fails, including when the digest does not match.
func (f *flight) stream(ctx context.Context, w io.Writer) error {
	buf := make([]byte, 256<<10)
	var off int64
	for {
		var avail int64
		var done bool
		var ferr error
		err := f.wait(ctx, func() bool {
			avail, done, ferr = f.written, f.done, f.err
			if !done && f.size >= 0 {
				avail = min(avail, f.size-1) // hold back the last byte until verified
			}
			return done || avail > off
		})
		if err != nil {
			return err
		}
		if ferr != nil {
			return ferr
		}
		for off < avail {
			n, err := f.file.ReadAt(buf[:min(int64(len(buf)), avail-off)], off)
			if n > 0 {
				if _, werr := w.Write(buf[:n]); werr != nil {
					return werr
				}
				off += int64(n)
			}
			if err != nil && err != io.EOF {
				return err
			}
		}
		if done {
			return nil
		}
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
	}
}

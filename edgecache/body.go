package edgecache

import (
	"context"
	"errors"
	"io"
	"os"
)

// body is a response body respond sends all or part of.
type body interface {
	// send writes length bytes from start (length -1: to the end) to w.
	// The error wraps errBodyBroken when the body ended early.
	send(w io.Writer, start, length int64) (int64, error)
}

// errBodyBroken: a body ended before its length (an upstream broke off,
// a stored file was cut short).
var errBodyBroken = errors.New("edgecache: body ended early")

// memBody is a body in memory (the hot tier).
type memBody []byte

func (b memBody) send(w io.Writer, start, length int64) (int64, error) {
	if length < 0 || start+length > int64(len(b)) {
		length = int64(len(b)) - start
	}
	n, err := w.Write(b[start : start+length])
	return int64(n), err
}

// fileBody is a stored body file. It is copied with io.Copy straight to
// the ResponseWriter, so that on a plain TCP connection net/http hands it
// to sendfile.
type fileBody struct{ f *os.File }

func (b fileBody) send(w io.Writer, start, length int64) (int64, error) {
	if _, err := b.f.Seek(start, io.SeekStart); err != nil {
		return 0, errors.Join(errBodyBroken, err)
	}
	var src io.Reader = b.f
	if length >= 0 {
		src = io.LimitReader(b.f, length)
	}
	n, err := io.Copy(w, src)
	if length >= 0 && n < length {
		// A failed write (the client left) or a short file: either way
		// the response cannot be completed.
		return n, errors.Join(errBodyBroken, err)
	}
	return n, err
}

// fillBody is the body of a fill, read as it arrives.
type fillBody struct {
	f   *fill
	ctx context.Context
}

func (b fillBody) send(w io.Writer, start, length int64) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	buf := *bp
	off, end := start, int64(-1)
	if length >= 0 {
		end = start + length
	}
	for end < 0 || off < end {
		p := buf
		if end >= 0 && int64(len(p)) > end-off {
			p = p[:end-off]
		}
		n, err := b.f.readAt(b.ctx, p, off)
		if n > 0 {
			if _, werr := w.Write(p[:n]); werr != nil {
				return off - start, werr
			}
			off += int64(n)
		}
		if err == io.EOF && end < 0 {
			return off - start, nil
		}
		if err != nil && (err != io.EOF || n == 0) {
			return off - start, errors.Join(errBodyBroken, err)
		}
	}
	return off - start, nil
}

package edgecache

import (
	"context"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"sync"
)

// Listener wraps the cache's listener (under tls.NewListener, when
// serving HTTPS) so that a hit served from memory over HTTP/1.x leaves in
// one writev of head and body: net/http writes a response through a
// 4 KiB buffer, so a 16 KiB body takes two writes, two packets and two
// wake-ups of the client. Serve it with http.Server.ConnContext set to
// ConnContext; without that the connections behave as plain ones.
func Listener(ln net.Listener) net.Listener { return coalescingListener{ln} }

// ConnContext is the http.Server.ConnContext that lets the cache reach a
// connection accepted by Listener.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if cc, ok := c.(*coalescingConn); ok {
		return context.WithValue(ctx, connKey{}, cc)
	}
	return ctx
}

type connKey struct{}

type coalescingListener struct{ net.Listener }

func (l coalescingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &coalescingConn{Conn: c}, nil
}

// holdMax bounds a held write: net/http's 4 KiB buffer, as a TLS record.
const holdMax = 8 << 10

// coalescingConn can hold one write back and send it with the next in a
// single writev. A held write goes out at the latest before the next
// read, ReadFrom, CloseWrite or Close, so nothing waits on the client.
type coalescingConn struct {
	net.Conn
	mu   sync.Mutex
	hold bool   // hold the next write
	held []byte // the write held back (its buffer is reused)
}

// holdNext asks that the next write be held for the one after it; the
// caller is about to write a complete response from memory.
func (c *coalescingConn) holdNext() {
	c.mu.Lock()
	c.hold = true
	c.mu.Unlock()
}

func (c *coalescingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.held) > 0 {
		bufs := net.Buffers{c.held, p}
		held := int64(len(c.held))
		c.held = c.held[:0]
		n, err := bufs.WriteTo(c.Conn)
		return int(max(0, n-held)), err
	}
	if c.hold && len(p) <= holdMax {
		c.hold = false
		c.held = append(c.held[:0], p...)
		return len(p), nil
	}
	c.hold = false
	return c.Conn.Write(p)
}

// flush sends a held write.
func (c *coalescingConn) flush() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.hold = false
	if len(c.held) == 0 {
		return nil
	}
	_, err := c.Conn.Write(c.held)
	c.held = c.held[:0]
	return err
}

func (c *coalescingConn) Read(p []byte) (int, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	return c.Conn.Read(p)
}

// ReadFrom keeps sendfile for bodies served from files (net/http looks
// for it on the connection).
func (c *coalescingConn) ReadFrom(r io.Reader) (int64, error) {
	if err := c.flush(); err != nil {
		return 0, err
	}
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

func (c *coalescingConn) CloseWrite() error {
	if err := c.flush(); err != nil {
		return err
	}
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func (c *coalescingConn) Close() error {
	c.flush()
	return c.Conn.Close()
}

// coalesce asks the connection of an HTTP/1.x request, when it came
// through Listener, to send the response's first write with its second.
func coalesce(r *http.Request) {
	if r.ProtoMajor != 1 {
		return // HTTP/2 frames its own writes, from another goroutine
	}
	if c, ok := r.Context().Value(connKey{}).(*coalescingConn); ok {
		c.holdNext()
	}
}

package simulate

import (
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"time"
)

// linkDialTimeout bounds connecting to a link's target.
const linkDialTimeout = 5 * time.Second

// Link is a network link that can be cut: a TCP proxy on 127.0.0.1 that
// forwards every connection to a target address. Cut drops every open
// connection and refuses new ones (they are accepted and closed at once, as
// when the far end is down), until Restore. It is safe for concurrent use.
type Link struct {
	target string
	ln     net.Listener

	mu     sync.Mutex
	cut    bool
	closed bool
	conns  map[net.Conn]struct{}
	cuts   int
	wg     sync.WaitGroup
}

// NewLink listens on a free port of 127.0.0.1 and forwards to target
// (host:port). The caller must Close it.
func NewLink(target string) (*Link, error) {
	if _, _, err := net.SplitHostPort(target); err != nil {
		return nil, fmt.Errorf("simulate: link target %q: %v", target, err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("simulate: link: %w", err)
	}
	l := &Link{target: target, ln: ln, conns: map[net.Conn]struct{}{}}
	l.wg.Add(1)
	go l.accept()
	return l, nil
}

// Addr is the address the link listens on.
func (l *Link) Addr() string { return l.ln.Addr().String() }

// URL is "http://" and Addr.
func (l *Link) URL() string { return "http://" + l.Addr() }

// Cut drops every connection through the link and refuses new ones.
func (l *Link) Cut() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if !l.cut {
		l.cuts++
	}
	l.cut = true
	for c := range l.conns {
		c.Close()
	}
}

// Restore lets connections through again.
func (l *Link) Restore() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.cut = false
}

// IsCut reports whether the link is cut.
func (l *Link) IsCut() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cut
}

// Cuts counts the times the link was cut.
func (l *Link) Cuts() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cuts
}

// Close stops listening, drops every connection and waits for the link's
// goroutines.
func (l *Link) Close() error {
	l.mu.Lock()
	l.closed = true
	for c := range l.conns {
		c.Close()
	}
	l.mu.Unlock()
	err := l.ln.Close()
	l.wg.Wait()
	return err
}

// track registers c unless the link is cut or closed.
func (l *Link) track(cs ...net.Conn) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.cut || l.closed {
		return false
	}
	for _, c := range cs {
		l.conns[c] = struct{}{}
	}
	return true
}

func (l *Link) untrack(cs ...net.Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, c := range cs {
		delete(l.conns, c)
	}
}

func (l *Link) accept() {
	defer l.wg.Done()
	for {
		in, err := l.ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue // a failed accept (e.g. too many files) is the client's failure to connect
		}
		if l.IsCut() {
			in.Close()
			continue
		}
		l.wg.Add(1)
		go l.forward(in)
	}
}

// forward copies both ways between in and a new connection to the target,
// closing both when either direction ends or the link is cut.
func (l *Link) forward(in net.Conn) {
	defer l.wg.Done()
	out, err := net.DialTimeout("tcp", l.target, linkDialTimeout)
	if err != nil {
		in.Close()
		return
	}
	if !l.track(in, out) {
		in.Close()
		out.Close()
		return
	}
	done := make(chan struct{}, 2)
	pipe := func(dst, src net.Conn) {
		io.Copy(dst, src)
		done <- struct{}{}
	}
	go pipe(out, in)
	go pipe(in, out)
	<-done
	in.Close()
	out.Close()
	<-done
	l.untrack(in, out)
}

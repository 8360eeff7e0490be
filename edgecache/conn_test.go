package edgecache

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"time"

	"canopy/edgecache/localtls"
)

// serveCoalescing serves h like the edge does: Listener, ConnContext,
// and (with tlsCfg) TLS over it. It returns the listener's address.
func serveCoalescing(t *testing.T, h http.Handler, tlsCfg *tls.Config) string {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := Listener(raw)
	if tlsCfg != nil {
		ln = tls.NewListener(ln, tlsCfg)
	}
	srv := &http.Server{Handler: h, ConnContext: ConnContext}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return raw.Addr().String()
}

// sizedOrigin serves /N with N bytes of a pattern that shows misplaced
// or lost bytes.
func sizedOrigin(t *testing.T) *origin {
	return newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		n, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/"))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write(pattern(n))
	})
}

func pattern(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i*7%26)
	}
	return b
}

var coalesceSizes = []int{1 << 10, 5 << 10, 16 << 10, 64 << 10, 100 << 10} // 100 KiB: from the file

func newSizedCache(t *testing.T) *Handler {
	t.Helper()
	o := sizedOrigin(t)
	st, err := OpenStore(t.TempDir(), 8<<20)
	if err != nil {
		t.Fatal(err)
	}
	u, _ := url.Parse(o.URL)
	h, err := New(Config{Origins: []*url.URL{u}, Store: st})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Close(ctx)
	})
	return h
}

// TestCoalescedPipelined sends every request of a keep-alive connection
// before reading any answer: each response, misses and hits from memory
// and from files alike, arrives whole and in order, none held back.
func TestCoalescedPipelined(t *testing.T) {
	h := newSizedCache(t)
	addr := serveCoalescing(t, h, nil)
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second)) // a held write would stall here
	br := bufio.NewReader(c)
	for round := range 4 { // miss, first hit (to memory), hits from memory
		var reqs bytes.Buffer
		for _, n := range coalesceSizes {
			fmt.Fprintf(&reqs, "GET /%d HTTP/1.1\r\nHost: shop.example\r\n\r\n", n)
		}
		if _, err := c.Write(reqs.Bytes()); err != nil {
			t.Fatal(err)
		}
		for _, n := range coalesceSizes {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("round %d, /%d: %v", round, n, err)
			}
			body, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			if err != nil || !bytes.Equal(body, pattern(n)) {
				t.Fatalf("round %d, /%d: %d bytes (%v), want the %d-byte pattern", round, n, len(body), err, n)
			}
			if round > 0 && !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
				t.Errorf("round %d, /%d: Cache-Status %q", round, n, resp.Header.Get("Cache-Status"))
			}
		}
		if round == 0 {
			waitFor(t, "stored", func() bool { return h.store.Len() == len(coalesceSizes) })
		}
	}
	if n, _ := h.store.Hot(); n != len(coalesceSizes)-1 {
		t.Errorf("%d bodies in memory, want all but the 100 KiB one", n)
	}
}

// TestCoalescedTLS: the same over TLS with HTTP/1.1, and over HTTP/2.
func TestCoalescedTLS(t *testing.T) {
	h := newSizedCache(t)
	ca, err := localtls.InitCA(t.TempDir(), "test CA", time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.NewIssuer([]string{"shop.example"}, time.Hour, nil)
	if err != nil {
		t.Fatal(err)
	}
	addr := serveCoalescing(t, h, localtls.ServerConfig(is.GetCertificate))
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, h2 := range []bool{false, true} {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, addr)
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots},
			ForceAttemptHTTP2: h2,
			MaxConnsPerHost:   1,
		}
		if !h2 {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
		}
		c := &http.Client{Transport: tr, Timeout: 10 * time.Second}
		for round := range 3 {
			for _, n := range coalesceSizes {
				resp, err := c.Get(fmt.Sprintf("https://shop.example/%d", n))
				if err != nil {
					t.Fatal(err)
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || !bytes.Equal(body, pattern(n)) || (resp.ProtoMajor == 2) != h2 {
					t.Fatalf("h2 %v round %d /%d: %s, %d bytes (%v)", h2, round, n, resp.Proto, len(body), err)
				}
			}
		}
		tr.CloseIdleConnections()
	}
}

// TestCoalescingConn: a held write leaves with the next one, or before
// the next read; order is kept.
func TestCoalescingConn(t *testing.T) {
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ln := Listener(raw)
	peer, err := net.Dial("tcp", raw.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	peer.SetDeadline(time.Now().Add(5 * time.Second))
	nc, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	c := nc.(*coalescingConn)
	c.holdNext()
	if n, err := c.Write([]byte("head,")); n != 5 || err != nil {
		t.Fatalf("held write: %d %v", n, err)
	}
	if n, err := c.Write([]byte("body;")); n != 5 || err != nil {
		t.Fatalf("write after a held one: %d %v", n, err)
	}
	c.holdNext()
	c.Write([]byte("alone;"))
	go peer.Write([]byte("x"))
	if _, err := c.Read(make([]byte, 1)); err != nil { // sends "alone;" first
		t.Fatal(err)
	}
	c.holdNext()
	c.Write([]byte("last"))
	c.Close()
	got, err := io.ReadAll(peer)
	if err != nil || string(got) != "head,body;alone;last" {
		t.Fatalf("peer read %q (%v)", got, err)
	}
	if c.hold || len(c.held) != 0 {
		t.Error("state left behind")
	}
}

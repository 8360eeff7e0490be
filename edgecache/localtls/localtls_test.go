package localtls

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"canopy/edgecache"
)

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) Add(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

func TestInitCAFiles(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := InitCA(dir, "Test market CA", time.Now(), 30*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(filepath.Join(dir, CAKeyFile))
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("key file: %v mode %v, want 0600", err, fi.Mode().Perm())
	}
	pemBytes, _ := os.ReadFile(filepath.Join(dir, CACertFile))
	der, _ := os.ReadFile(filepath.Join(dir, CADERFile))
	blk, _ := pem.Decode(pemBytes)
	if blk == nil || string(blk.Bytes) != string(der) || string(der) != string(ca.Cert.Raw) {
		t.Fatal("ca.pem and ca.der are not the same root certificate")
	}
	root, err := x509.ParseCertificate(der)
	if err != nil || !root.IsCA {
		t.Fatalf("root: %v IsCA %v", err, root != nil && root.IsCA)
	}
	if _, err := InitCA(dir, "again", time.Now(), time.Hour); !errors.Is(err, ErrCAExists) {
		t.Fatalf("second init: %v, want ErrCAExists", err)
	}
	loaded, err := LoadCA(dir)
	if err != nil || !loaded.Cert.Equal(ca.Cert) {
		t.Fatalf("LoadCA: %v", err)
	}
	if _, err := LoadCA(t.TempDir()); err == nil {
		t.Fatal("LoadCA of an empty directory: no error")
	}
	if _, err := ca.Issue("a.example", time.Now(), 25*time.Hour); err == nil {
		t.Fatal("a 25 h leaf was issued")
	}
}

// startTLSCache serves two sites from one edge cache over TLS.
func startTLSCache(t *testing.T, getCert func(*tls.ClientHelloInfo) (*tls.Certificate, error), names ...string) *httptest.Server {
	t.Helper()
	st, err := edgecache.OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	handlers := map[string]*edgecache.Handler{}
	for _, name := range names {
		o := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Cache-Control", "max-age=60")
			fmt.Fprintf(w, "site %s", name)
		}))
		t.Cleanup(o.Close)
		u, _ := url.Parse(o.URL)
		h, err := edgecache.New(edgecache.Config{Name: name, Origins: []*url.URL{u}, Store: st})
		if err != nil {
			t.Fatal(err)
		}
		handlers[name] = h
	}
	sites := edgecache.NewSites(handlers)
	srv := httptest.NewUnstartedServer(sites)
	srv.TLS = &tls.Config{GetCertificate: getCert, MinVersion: tls.VersionTLS12}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // refused handshakes are expected
	srv.StartTLS()
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		sites.Close(ctx)
	})
	return srv
}

// client dials addr for every host name, verifying against roots on the
// clock now (nil: time.Now).
func client(addr string, roots *x509.CertPool, now ...func() time.Time) *http.Client {
	cfg := &tls.Config{RootCAs: roots}
	if len(now) > 0 {
		cfg.Time = now[0]
	}
	return &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, addr)
		},
		TLSClientConfig:   cfg,
		DisableKeepAlives: true,
	}, Timeout: 5 * time.Second}
}

func fetch(t *testing.T, c *http.Client, u string) (*http.Response, string) {
	t.Helper()
	resp, err := c.Get(u)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

func TestIssuerServesSitesBySNI(t *testing.T) {
	clk := &clock{t: time.Now()}
	ca, err := InitCA(t.TempDir(), "Test market CA", clk.Now(), 7*24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.NewIssuer([]string{"shop.example", "stream.example"}, 0, clk.Now)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTLSCache(t, is.GetCertificate, "shop.example", "stream.example")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c := client(srv.Listener.Addr().String(), roots, clk.Now)

	first := map[string]*x509.Certificate{}
	for _, name := range []string{"shop.example", "stream.example"} {
		resp, body := fetch(t, c, "https://"+name+"/")
		if body != "site "+name {
			t.Errorf("%s answered %q", name, body)
		}
		leaf := resp.TLS.PeerCertificates[0]
		if err := leaf.VerifyHostname(name); err != nil {
			t.Errorf("certificate for %s: %v", name, err)
		}
		if life := leaf.NotAfter.Sub(clk.Now()); life <= 0 || life > 24*time.Hour {
			t.Errorf("%s: certificate expires in %v, want within 24 h", name, life)
		}
		if leaf.NotAfter.Sub(leaf.NotBefore) > MaxLeafLifetime {
			t.Errorf("%s: validity %v longer than 24 h", name, leaf.NotAfter.Sub(leaf.NotBefore))
		}
		first[name] = leaf
	}
	// Cached: the same certificate again while it is young.
	resp, _ := fetch(t, c, "https://shop.example/")
	if !resp.TLS.PeerCertificates[0].Equal(first["shop.example"]) {
		t.Error("a young certificate was re-issued")
	}
	// Rotated before expiry, without a restart.
	clk.Add(20 * time.Hour)
	resp, _ = fetch(t, c, "https://shop.example/")
	leaf := resp.TLS.PeerCertificates[0]
	if leaf.Equal(first["shop.example"]) || !leaf.NotAfter.After(first["shop.example"].NotAfter) {
		t.Error("the certificate was not renewed 4 h before it expires")
	}
	// An unknown name gets no certificate.
	if _, err := c.Get("https://other.example/"); err == nil {
		t.Error("a certificate was served for a name that is no site")
	}
	// SNI picks the site: a Host naming the other site is misdirected.
	req, _ := http.NewRequest(http.MethodGet, "https://shop.example/", nil)
	req.Host = "stream.example"
	resp, err = c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMisdirectedRequest {
		t.Errorf("Host stream.example over a shop.example connection: status %d, want 421", resp.StatusCode)
	}
}

// writePair writes a certificate for name (issued by ca) to certFile and
// keyFile.
func writePair(t *testing.T, ca *CA, name, certFile, keyFile string, mtime time.Time) *x509.Certificate {
	t.Helper()
	c, err := ca.Issue(name, time.Now(), time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	certPEM := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Certificate[0]})
	kder, err := x509.MarshalPKCS8PrivateKey(c.PrivateKey)
	if err != nil {
		t.Fatal(err)
	}
	keyPEM := pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder})
	for p, b := range map[string][]byte{certFile: certPEM, keyFile: keyPEM} {
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
		// Set the mtime explicitly: two writes within a coarse
		// filesystem timestamp would otherwise look unchanged.
		if err := os.Chtimes(p, mtime, mtime); err != nil {
			t.Fatal(err)
		}
	}
	return c.Leaf
}

func TestFileCertReloads(t *testing.T) {
	ca, err := InitCA(t.TempDir(), "Operator CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, "site.crt"), filepath.Join(dir, "site.key")
	base := time.Now().Add(-time.Hour)
	old := writePair(t, ca, "shop.example", certFile, keyFile, base)
	fc, err := LoadFileCert(certFile, keyFile, 10*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	srv := startTLSCache(t, fc.GetCertificate, "shop.example")
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c := client(srv.Listener.Addr().String(), roots)
	resp, body := fetch(t, c, "https://shop.example/")
	if body != "site shop.example" || !resp.TLS.PeerCertificates[0].Equal(old) {
		t.Fatalf("first: %q, served the operator's certificate: %v", body, resp.TLS.PeerCertificates[0].Equal(old))
	}

	// A broken replacement keeps the old certificate and reports why.
	if err := os.WriteFile(certFile, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	os.Chtimes(certFile, base.Add(time.Minute), base.Add(time.Minute))
	waitServed(t, c, func(*x509.Certificate) bool { return fc.Err() != nil }, "the broken file to be noticed")
	resp, _ = fetch(t, c, "https://shop.example/")
	if !resp.TLS.PeerCertificates[0].Equal(old) {
		t.Fatal("a broken file replaced the certificate")
	}

	renewed := writePair(t, ca, "shop.example", certFile, keyFile, base.Add(2*time.Minute))
	waitServed(t, c, func(leaf *x509.Certificate) bool { return leaf.Equal(renewed) }, "the renewed certificate")
	if fc.Err() != nil {
		t.Errorf("after a good reload: %v", fc.Err())
	}
	if _, err := LoadFileCert(filepath.Join(dir, "missing.crt"), keyFile, 0); err == nil {
		t.Error("LoadFileCert of a missing file: no error")
	}
}

// waitServed connects until cond holds for the served leaf, or fails after
// a deadline.
func waitServed(t *testing.T, c *http.Client, cond func(*x509.Certificate) bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		resp, _ := fetch(t, c, "https://shop.example/")
		if cond(resp.TLS.PeerCertificates[0]) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		runtimeGosched()
	}
}

func runtimeGosched() { runtime.Gosched() }

// TestServerConfigSpeaksHTTP2 serves the cache the way the edge does
// (tls.NewListener with ServerConfig, http.Server.Serve): a client that
// offers h2 gets HTTP/2, one that offers only HTTP/1.1 gets that, and
// both see the second request answered from the cache.
func TestServerConfigSpeaksHTTP2(t *testing.T) {
	ca, err := InitCA(t.TempDir(), "Test market CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.NewIssuer([]string{"shop.example"}, 0, nil)
	if err != nil {
		t.Fatal(err)
	}
	tlsSrv := startTLSCache(t, is.GetCertificate, "shop.example") // only for its handler
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: tlsSrv.Config.Handler, ErrorLog: log.New(io.Discard, "", 0)}
	go srv.Serve(tls.NewListener(ln, ServerConfig(is.GetCertificate)))
	t.Cleanup(func() { srv.Close() })
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	for _, tc := range []struct {
		protos []string
		major  int
	}{{nil, 2}, {[]string{"http/1.1"}, 1}} {
		tr := &http.Transport{
			DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, network, ln.Addr().String())
			},
			TLSClientConfig:   &tls.Config{RootCAs: roots, NextProtos: tc.protos},
			ForceAttemptHTTP2: true,
		}
		if tc.protos != nil {
			tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{} // HTTP/1.1 only
		}
		c := &http.Client{Transport: tr, Timeout: 5 * time.Second}
		for i := range 2 {
			resp, body := fetch(t, c, "https://shop.example/")
			if resp.ProtoMajor != tc.major || body != "site shop.example" {
				t.Fatalf("client offering %v: %s, %q; want HTTP/%d", tc.protos, resp.Proto, body, tc.major)
			}
			if i == 1 && !strings.HasPrefix(resp.Header.Get("Cache-Status"), "shop.example; hit") {
				t.Errorf("HTTP/%d: second request's Cache-Status %q, want a hit", tc.major, resp.Header.Get("Cache-Status"))
			}
		}
		tr.CloseIdleConnections()
	}
}

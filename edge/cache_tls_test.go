package edge_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"canopy/config"
	"canopy/edge"
	"canopy/edgecache/localtls"
	"canopy/internal/testutil"
)

// TestEdgeCacheTLS: with [tls] ca_dir, the edge cache serves HTTPS and
// each site by its SNI name with a leaf from the event CA.
func TestEdgeCacheTLS(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "query %q", r.URL.RawQuery)
	}))
	defer origin.Close()
	caDir := t.TempDir()
	ca, err := localtls.InitCA(caDir, "edge test CA", time.Now(), 24*time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	ev := testutil.NewEvent(t, "tls")
	cfg := ev.EdgeConfig(t, "edge-1", "")
	cfg.Cache = config.CacheConfig{
		Listen: "127.0.0.1:0", Dir: t.TempDir(), MaxBytes: 1 << 20,
		Site: []config.CacheSite{
			{Name: "shop.example", Origins: []string{origin.URL}, StripQuery: []string{"utm_*"}},
			{Name: "stream.example", Origins: []string{origin.URL}, StripQuery: []string{}}, // strips none
		},
	}
	cfg.TLS = config.TLSConfig{CADir: caDir}
	e, err := edge.Open(context.Background(), cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	u, err := url.Parse(e.CacheURL())
	if err != nil || u.Scheme != "https" {
		t.Fatalf("CacheURL %q, want https", e.CacheURL())
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.Cert)
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return (&net.Dialer{}).DialContext(ctx, network, u.Host)
		},
		TLSClientConfig: &tls.Config{RootCAs: roots},
	}}
	defer c.CloseIdleConnections()
	for _, name := range []string{"shop.example", "stream.example"} {
		res, err := c.Get("https://" + name + "/p?utm_source=x&id=1")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		b, _ := io.ReadAll(res.Body)
		res.Body.Close()
		if err := res.TLS.PeerCertificates[0].VerifyHostname(name); err != nil {
			t.Errorf("%s: %v", name, err)
		}
		want := `query "utm_source=x&id=1"`
		if name == "shop.example" {
			want = `query "id=1"`
		}
		if string(b) != want {
			t.Errorf("%s: origin saw %s, want %s", name, b, want)
		}
	}
}

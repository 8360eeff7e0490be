// Package localtls provides the edge cache's TLS certificates: an event CA
// that issues short-lived leaf certificates per site name on demand, or
// operator-supplied certificate files reloaded when they change.
package localtls

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"
)

// Files in a CA directory.
const (
	CAKeyFile  = "ca.key" // the CA's private key (PKCS #8 PEM, mode 0600)
	CACertFile = "ca.pem" // the root certificate for staff devices (PEM)
	CADERFile  = "ca.der" // the same root certificate in DER, for phones
)

// MaxLeafLifetime bounds a leaf certificate's validity.
const MaxLeafLifetime = 24 * time.Hour

// ErrCAExists is returned by InitCA when the directory already holds a CA.
var ErrCAExists = errors.New("localtls: the directory already holds a CA")

// CA is an event certificate authority.
type CA struct {
	Cert *x509.Certificate
	key  crypto.Signer
}

// InitCA creates a CA in dir (made 0700 if missing): an ECDSA P-256 key
// and a self-signed root certificate named name, valid from now for
// validFor. It refuses a directory that already holds a CA key.
func InitCA(dir, name string, now time.Time, validFor time.Duration) (*CA, error) {
	if validFor <= 0 {
		return nil, fmt.Errorf("localtls: CA validity %v: want a positive duration", validFor)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("localtls: %w", err)
	}
	keyPath := filepath.Join(dir, CAKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		return nil, fmt.Errorf("%w: %s", ErrCAExists, keyPath)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("localtls: generate CA key: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Canopy event CA"}},
		NotBefore:             now.Add(-5 * time.Minute),
		NotAfter:              now.Add(validFor),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, fmt.Errorf("localtls: create CA certificate: %w", err)
	}
	pk, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("localtls: %w", err)
	}
	// O_EXCL: two concurrent inits cannot both write a key.
	f, err := os.OpenFile(keyPath, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return nil, fmt.Errorf("%w: %s", ErrCAExists, keyPath)
		}
		return nil, fmt.Errorf("localtls: %w", err)
	}
	if err := pem.Encode(f, &pem.Block{Type: "PRIVATE KEY", Bytes: pk}); err != nil {
		f.Close()
		return nil, fmt.Errorf("localtls: write CA key: %w", err)
	}
	if err := f.Close(); err != nil {
		return nil, fmt.Errorf("localtls: write CA key: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, CACertFile), pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		return nil, fmt.Errorf("localtls: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, CADERFile), der, 0o644); err != nil {
		return nil, fmt.Errorf("localtls: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("localtls: %w", err)
	}
	return &CA{Cert: cert, key: key}, nil
}

// LoadCA reads the CA InitCA wrote in dir.
func LoadCA(dir string) (*CA, error) {
	kb, err := os.ReadFile(filepath.Join(dir, CAKeyFile))
	if err != nil {
		return nil, fmt.Errorf("localtls: CA key: %w (create one with canopy tls init)", err)
	}
	cb, err := os.ReadFile(filepath.Join(dir, CACertFile))
	if err != nil {
		return nil, fmt.Errorf("localtls: CA certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(cb, kb)
	if err != nil {
		return nil, fmt.Errorf("localtls: CA in %s: %w", dir, err)
	}
	cert, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("localtls: CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("localtls: %s is not a CA certificate", filepath.Join(dir, CACertFile))
	}
	signer, ok := pair.PrivateKey.(crypto.Signer)
	if !ok {
		return nil, fmt.Errorf("localtls: CA key in %s cannot sign", dir)
	}
	return &CA{Cert: cert, key: signer}, nil
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic("localtls: crypto/rand failed: " + err.Error())
	}
	return n
}

// Issue signs a leaf certificate for a host name, valid from now for
// lifetime (at most MaxLeafLifetime, and never past the CA's own expiry).
func (ca *CA) Issue(name string, now time.Time, lifetime time.Duration) (*tls.Certificate, error) {
	if lifetime <= 0 || lifetime > MaxLeafLifetime {
		return nil, fmt.Errorf("localtls: leaf lifetime %v: want 0..%v", lifetime, MaxLeafLifetime)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("localtls: generate leaf key: %w", err)
	}
	notAfter := now.Add(lifetime)
	if notAfter.After(ca.Cert.NotAfter) {
		notAfter = ca.Cert.NotAfter
	}
	if !notAfter.After(now) {
		return nil, fmt.Errorf("localtls: the CA expired at %v", ca.Cert.NotAfter)
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: name},
		DNSNames:     []string{name},
		NotBefore:    now.Add(-time.Minute),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	if notAfter.Sub(tmpl.NotBefore) > MaxLeafLifetime {
		tmpl.NotBefore = notAfter.Add(-MaxLeafLifetime)
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, &key.PublicKey, ca.key)
	if err != nil {
		return nil, fmt.Errorf("localtls: issue %q: %w", name, err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("localtls: %w", err)
	}
	return &tls.Certificate{Certificate: [][]byte{der, ca.Cert.Raw}, PrivateKey: key, Leaf: leaf}, nil
}

// ServerConfig is the edge cache listener's TLS configuration: the
// certificate for each handshake from get (an Issuer's or a FileCert's
// GetCertificate), TLS 1.2 or later, and HTTP/2 offered before HTTP/1.1
// by ALPN. An http.Server serving a listener made with tls.NewListener
// and this configuration speaks both.
func ServerConfig(get func(*tls.ClientHelloInfo) (*tls.Certificate, error)) *tls.Config {
	return &tls.Config{GetCertificate: get, MinVersion: tls.VersionTLS12, NextProtos: []string{"h2", "http/1.1"}}
}

// Issuer hands out leaf certificates for a fixed set of site names by
// SNI, issuing each on first use and again once two thirds of its
// lifetime have passed. It is safe for concurrent use.
type Issuer struct {
	ca       *CA
	names    map[string]bool
	now      func() time.Time
	lifetime time.Duration
	mu       sync.Mutex
	certs    map[string]*tls.Certificate
}

// NewIssuer serves leaf certificates for names (case-insensitive), valid
// for lifetime (0: MaxLeafLifetime), on the clock now (nil: time.Now).
func (ca *CA) NewIssuer(names []string, lifetime time.Duration, now func() time.Time) (*Issuer, error) {
	if lifetime == 0 {
		lifetime = MaxLeafLifetime
	}
	if lifetime < 0 || lifetime > MaxLeafLifetime {
		return nil, fmt.Errorf("localtls: leaf lifetime %v: want 0..%v", lifetime, MaxLeafLifetime)
	}
	if now == nil {
		now = time.Now
	}
	is := &Issuer{ca: ca, names: map[string]bool{}, now: now, lifetime: lifetime, certs: map[string]*tls.Certificate{}}
	for _, n := range names {
		is.names[strings.ToLower(n)] = true
	}
	return is, nil
}

// GetCertificate implements tls.Config.GetCertificate: the leaf for the
// site the client names by SNI.
func (is *Issuer) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if name == "" {
		return nil, errors.New("localtls: the client sent no server name (SNI); connect by a site's name")
	}
	if !is.names[name] {
		return nil, fmt.Errorf("localtls: no site is named %q", name)
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	now := is.now()
	if c := is.certs[name]; c != nil {
		renewAt := c.Leaf.NotAfter.Add(-is.lifetime / 3)
		if now.Before(renewAt) && !now.Before(c.Leaf.NotBefore) {
			return c, nil
		}
	}
	c, err := is.ca.Issue(name, now, is.lifetime)
	if err != nil {
		return nil, err
	}
	is.certs[name] = c
	return c, nil
}

// FileCert serves an operator-supplied certificate and key, reloading
// them when either file's modification time or size changes (checked at
// most once per interval, on a handshake). A reload that fails keeps the
// previous certificate. It is safe for concurrent use.
type FileCert struct {
	certFile, keyFile string
	interval          time.Duration
	now               func() time.Time
	mu                sync.Mutex
	cert              *tls.Certificate
	stamp             string
	checked           time.Time
	lastErr           error
}

// LoadFileCert loads certFile and keyFile (PEM) and watches them, checking
// at most once per interval (0: every handshake).
func LoadFileCert(certFile, keyFile string, interval time.Duration) (*FileCert, error) {
	fc := &FileCert{certFile: certFile, keyFile: keyFile, interval: interval, now: time.Now}
	if err := fc.reload(); err != nil {
		return nil, err
	}
	return fc, nil
}

func (fc *FileCert) fileStamp() (string, error) {
	var b strings.Builder
	for _, p := range []string{fc.certFile, fc.keyFile} {
		fi, err := os.Stat(p)
		if err != nil {
			return "", fmt.Errorf("localtls: %w", err)
		}
		fmt.Fprintf(&b, "%d/%d;", fi.ModTime().UnixNano(), fi.Size())
	}
	return b.String(), nil
}

// reload reads the files; fc.mu is held or fc is not shared yet.
func (fc *FileCert) reload() error {
	stamp, err := fc.fileStamp()
	if err != nil {
		return err
	}
	pair, err := tls.LoadX509KeyPair(fc.certFile, fc.keyFile)
	if err != nil {
		return fmt.Errorf("localtls: certificate %s with key %s: %w", fc.certFile, fc.keyFile, err)
	}
	fc.cert, fc.stamp = &pair, stamp
	return nil
}

// GetCertificate implements tls.Config.GetCertificate.
func (fc *FileCert) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	now := fc.now()
	if now.Sub(fc.checked) >= fc.interval {
		fc.checked = now
		if stamp, err := fc.fileStamp(); err != nil {
			fc.lastErr = err
		} else if stamp != fc.stamp {
			fc.lastErr = fc.reload()
		}
	}
	return fc.cert, nil
}

// Err is the last reload's error (nil after a good reload).
func (fc *FileCert) Err() error {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	return fc.lastErr
}

package imagecache

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"time"
)

// Local auth: the registry token flow, answered by the cache itself.
const (
	// TokenPath is where local clients get a bearer token.
	TokenPath = "/v2/token"
	// TokenService is the service named in the cache's challenge.
	TokenService = "canopy-images"
	// DefaultTokenTTL is how long an issued token is good for.
	DefaultTokenTTL = 5 * time.Minute
	// maxTokens bounds the tokens kept at once (expired ones are swept
	// first); beyond it the oldest-expiring are dropped.
	maxTokens = 100000
)

// CodeUnauthorized is the spec's error code for a request without valid
// credentials.
const CodeUnauthorized = "UNAUTHORIZED"

// LocalAuth makes local clients pull with short-lived bearer tokens the
// cache issues at /v2/token in exchange for HTTP basic credentials.
type LocalAuth struct {
	// Verify checks the basic-auth password of a token request (on the
	// edge: a device token of the event); the username is not checked.
	Verify func(password string) error
	// TTL of an issued token (DefaultTokenTTL if zero).
	TTL time.Duration
}

// challenge answers 401 with the Bearer challenge pointing at /v2/token.
func (c *Cache) challenge(w http.ResponseWriter, r *http.Request, why string) {
	c.m.unauthorized.Inc()
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	w.Header().Set("WWW-Authenticate", fmt.Sprintf(`Bearer realm="%s://%s%s",service="%s"`, scheme, r.Host, TokenPath, TokenService))
	writeError(w, r, errorf(http.StatusUnauthorized, CodeUnauthorized, "%s: get a token from %s with HTTP basic credentials (password: a device token of the event)", why, TokenPath))
}

// authorized checks a request's bearer token; on failure it has answered.
func (c *Cache) authorized(w http.ResponseWriter, r *http.Request) bool {
	h := r.Header.Get("Authorization")
	scheme, tok, _ := strings.Cut(h, " ")
	if h == "" {
		c.challenge(w, r, "authentication required")
		return false
	}
	if !strings.EqualFold(scheme, "Bearer") || tok == "" {
		c.challenge(w, r, "want a Bearer token")
		return false
	}
	now := c.cfg.Now()
	c.mu.Lock()
	exp, ok := c.tokens[tok]
	if ok && !now.Before(exp) {
		delete(c.tokens, tok)
	}
	c.mu.Unlock()
	switch {
	case !ok:
		c.challenge(w, r, "unknown token")
		return false
	case !now.Before(exp):
		c.challenge(w, r, "token expired")
		return false
	}
	return true
}

// serveToken issues a token for valid basic credentials.
func (c *Cache) serveToken(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		writeError(w, r, errorf(http.StatusMethodNotAllowed, CodeUnsupported, "method %s: get a token with GET %s", r.Method, TokenPath))
		return
	}
	_, pass, ok := r.BasicAuth()
	if !ok || pass == "" {
		c.m.unauthorized.Inc()
		w.Header().Set("WWW-Authenticate", `Basic realm="`+TokenService+`"`)
		writeError(w, r, errorf(http.StatusUnauthorized, CodeUnauthorized, "token request without HTTP basic credentials: send any username and a device token of the event as the password"))
		return
	}
	if err := c.cfg.Auth.Verify(pass); err != nil {
		c.m.unauthorized.Inc()
		w.Header().Set("WWW-Authenticate", `Basic realm="`+TokenService+`"`)
		writeError(w, r, errorf(http.StatusUnauthorized, CodeUnauthorized, "credentials refused: %v", err))
		return
	}
	var raw [32]byte
	if _, err := rand.Read(raw[:]); err != nil {
		writeError(w, r, errorf(http.StatusServiceUnavailable, CodeUnavailable, "token: %v", err))
		return
	}
	tok := base64.RawURLEncoding.EncodeToString(raw[:])
	now := c.cfg.Now()
	ttl := c.cfg.Auth.TTL
	c.mu.Lock()
	if len(c.tokens) >= maxTokens {
		c.sweepTokens(now)
	}
	c.tokens[tok] = now.Add(ttl)
	c.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	_ = json.NewEncoder(w).Encode(struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
		IssuedAt    string `json:"issued_at"`
	}{tok, tok, int(ttl / time.Second), now.UTC().Format(time.RFC3339)})
}

// sweepTokens drops expired tokens, and if still full, the ones expiring
// first. c.mu is held.
func (c *Cache) sweepTokens(now time.Time) {
	for t, exp := range c.tokens {
		if !now.Before(exp) {
			delete(c.tokens, t)
		}
	}
	for len(c.tokens) >= maxTokens {
		var first string
		var firstExp time.Time
		for t, exp := range c.tokens {
			if first == "" || exp.Before(firstExp) {
				first, firstExp = t, exp
			}
		}
		delete(c.tokens, first)
	}
}

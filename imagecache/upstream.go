package imagecache

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"
)

// Upstream is one upstream registry: the repository prefix it serves and
// its mirrors, tried in order.
type Upstream struct {
	// Prefix selects this upstream for repository names that start with it
	// (followed by "/"), which is stripped before asking upstream; or for a
	// containerd request whose ns parameter equals it. Empty: every name no
	// other upstream claims, unchanged.
	Prefix string
	// Mirrors are base URLs ("https://registry-1.docker.io"), tried in order.
	Mirrors []string
	// Username and Password are sent as basic credentials, to the registry
	// when it asks for Basic auth or to its token endpoint for Bearer.
	Username string
	Password string
	// Token is a static bearer token (instead of Username/Password).
	Token string
}

// upstream is an Upstream in use.
type upstream struct {
	Upstream
	key     string // directory under tags/ for this upstream
	mirrors []*url.URL
	client  *http.Client
	observe func(time.Duration, error) // metrics; may be nil

	mu     sync.Mutex
	tokens map[string]bearer // by mirror host and scope
}

type bearer struct {
	token   string
	expires time.Time
}

func newUpstream(u Upstream, rt http.RoundTripper) (*upstream, error) {
	if u.Prefix != "" {
		if err := validName(strings.ToLower(u.Prefix)); err != nil && !validHostPrefix(u.Prefix) {
			return nil, fmt.Errorf("upstream prefix %q: want a registry host or a repository path", u.Prefix)
		}
	}
	if len(u.Mirrors) == 0 {
		return nil, fmt.Errorf("upstream %q: no mirrors", u.Prefix)
	}
	if u.Token != "" && (u.Username != "" || u.Password != "") {
		return nil, fmt.Errorf("upstream %q: set either token or username/password, not both", u.Prefix)
	}
	up := &upstream{Upstream: u, key: "_", tokens: map[string]bearer{}}
	if u.Prefix != "" {
		up.key = url.PathEscape(strings.ReplaceAll(u.Prefix, "/", "_"))
	}
	for _, m := range u.Mirrors {
		pu, err := url.Parse(strings.TrimSuffix(m, "/"))
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" {
			return nil, fmt.Errorf("upstream %q: mirror %q: want an http:// or https:// URL", u.Prefix, m)
		}
		up.mirrors = append(up.mirrors, pu)
	}
	up.client = &http.Client{Transport: rt}
	return up, nil
}

// validHostPrefix accepts a registry host with an optional port, such as
// "docker.io" or "localhost:5000".
func validHostPrefix(p string) bool {
	if p == "" || strings.ContainsAny(p, "/\\ ") || strings.Contains(p, "..") {
		return false
	}
	for _, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == ':') {
			return false
		}
	}
	return true
}

// repoFor maps the repository name asked of this upstream to the one sent
// to mirror m (Docker Hub keeps official images under library/).
func repoFor(m *url.URL, repo string) string {
	if !strings.Contains(repo, "/") && (m.Host == "registry-1.docker.io" || m.Host == "index.docker.io") {
		return "library/" + repo
	}
	return repo
}

// get asks each mirror in turn for /v2/<repo>/<path> until one answers 200
// or 206. Each mirror has headerTimeout to send its response headers (the
// body is not bounded by it). A 404 from every mirror that answered is
// ErrNotFound; otherwise the failure wraps ErrUnavailable.
func (u *upstream) get(ctx context.Context, method, repo, path string, hdr http.Header, headerTimeout time.Duration) (resp *http.Response, err error) {
	if u.observe != nil {
		start := time.Now()
		defer func() { u.observe(time.Since(start), err) }()
	}
	var errs []error
	notFound := 0
	for _, m := range u.mirrors {
		resp, err := u.try(ctx, m, method, repo, path, hdr, headerTimeout)
		if err == nil {
			return resp, nil
		}
		if errors.Is(err, ErrNotFound) {
			notFound++
		}
		errs = append(errs, fmt.Errorf("%s: %w", m.Host, err))
		if ctx.Err() != nil {
			break
		}
	}
	if notFound > 0 && notFound == len(errs) {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, errors.Join(errs...))
	}
	return nil, fmt.Errorf("%w: %v", ErrUnavailable, errors.Join(errs...))
}

func (u *upstream) try(ctx context.Context, m *url.URL, method, repo, path string, hdr http.Header, headerTimeout time.Duration) (*http.Response, error) {
	ctx, cancel := context.WithCancel(ctx)
	timer := time.AfterFunc(headerTimeout, cancel)
	repo = repoFor(m, repo)
	target := m.String() + "/v2/" + repo + path
	scope := "repository:" + repo + ":pull"
	for attempt := 0; ; attempt++ {
		req, err := http.NewRequestWithContext(ctx, method, target, nil)
		if err != nil {
			cancel()
			return nil, err
		}
		for k, v := range hdr {
			req.Header[k] = v
		}
		u.authorize(req, m, scope)
		resp, err := u.client.Do(req)
		if err != nil {
			cancel()
			if !timer.Stop() {
				return nil, fmt.Errorf("no response within %v", headerTimeout)
			}
			return nil, err
		}
		switch {
		case resp.StatusCode == http.StatusOK || resp.StatusCode == http.StatusPartialContent:
			if !timer.Stop() {
				resp.Body.Close()
				cancel()
				return nil, fmt.Errorf("no response within %v", headerTimeout)
			}
			resp.Body = &cancelBody{ReadCloser: resp.Body, cancel: cancel}
			return resp, nil
		case resp.StatusCode == http.StatusUnauthorized && attempt == 0:
			challenge := resp.Header.Get("Www-Authenticate")
			drain(resp)
			if err := u.answer(ctx, m, scope, challenge); err != nil {
				timer.Stop()
				cancel()
				return nil, fmt.Errorf("authenticate: %w", err)
			}
			continue
		default:
			drain(resp)
			timer.Stop()
			cancel()
			if resp.StatusCode == http.StatusNotFound {
				return nil, ErrNotFound
			}
			return nil, fmt.Errorf("HTTP %s", resp.Status)
		}
	}
}

type cancelBody struct {
	io.ReadCloser
	cancel context.CancelFunc
}

func (b *cancelBody) Close() error {
	err := b.ReadCloser.Close()
	b.cancel()
	return err
}

func drain(resp *http.Response) {
	_, _ = io.CopyN(io.Discard, resp.Body, 64<<10)
	resp.Body.Close()
}

func (u *upstream) authorize(req *http.Request, m *url.URL, scope string) {
	if u.Token != "" {
		req.Header.Set("Authorization", "Bearer "+u.Token)
		return
	}
	u.mu.Lock()
	b, ok := u.tokens[m.Host+" "+scope]
	u.mu.Unlock()
	switch {
	case ok && b.token == "":
		req.SetBasicAuth(u.Username, u.Password)
	case ok && time.Now().Before(b.expires):
		req.Header.Set("Authorization", "Bearer "+b.token)
	}
}

// answer meets a WWW-Authenticate challenge: Basic with the configured
// credentials, or Bearer by asking the token endpoint it names (anonymously
// unless credentials are configured).
func (u *upstream) answer(ctx context.Context, m *url.URL, scope, challenge string) error {
	scheme, params := parseChallenge(challenge)
	key := m.Host + " " + scope
	switch strings.ToLower(scheme) {
	case "basic":
		if u.Username == "" {
			return errors.New("registry wants basic credentials and none are configured")
		}
		u.mu.Lock()
		u.tokens[key] = bearer{}
		u.mu.Unlock()
		return nil
	case "bearer":
	default:
		return fmt.Errorf("unsupported challenge %q", challenge)
	}
	realm, err := url.Parse(params["realm"])
	if err != nil || (realm.Scheme != "http" && realm.Scheme != "https") {
		return fmt.Errorf("bearer challenge without a usable realm: %q", challenge)
	}
	q := realm.Query()
	if s := params["service"]; s != "" {
		q.Set("service", s)
	}
	if s := params["scope"]; s != "" {
		q.Set("scope", s)
	} else {
		q.Set("scope", scope)
	}
	realm.RawQuery = q.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, realm.String(), nil)
	if err != nil {
		return err
	}
	if u.Username != "" {
		req.SetBasicAuth(u.Username, u.Password)
	}
	resp, err := u.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("token endpoint: HTTP %s", resp.Status)
	}
	var tok struct {
		Token       string `json:"token"`
		AccessToken string `json:"access_token"`
		ExpiresIn   int    `json:"expires_in"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&tok); err != nil {
		return fmt.Errorf("token endpoint: %v", err)
	}
	t := tok.Token
	if t == "" {
		t = tok.AccessToken
	}
	if t == "" {
		return errors.New("token endpoint returned no token")
	}
	ttl := time.Duration(tok.ExpiresIn) * time.Second
	if ttl < time.Minute {
		ttl = time.Minute // the spec's default lifetime
	}
	u.mu.Lock()
	u.tokens[key] = bearer{token: t, expires: time.Now().Add(ttl - 10*time.Second)}
	u.mu.Unlock()
	return nil
}

// parseChallenge splits `Bearer realm="x",service="y"` into its scheme and
// parameters.
func parseChallenge(h string) (string, map[string]string) {
	scheme, rest, _ := strings.Cut(strings.TrimSpace(h), " ")
	params := map[string]string{}
	for rest = strings.TrimSpace(rest); rest != ""; {
		k, v, ok := strings.Cut(rest, "=")
		if !ok {
			break
		}
		k = strings.ToLower(strings.TrimSpace(k))
		v = strings.TrimSpace(v)
		if strings.HasPrefix(v, `"`) {
			end := strings.Index(v[1:], `"`)
			if end < 0 {
				params[k] = v[1:]
				break
			}
			params[k] = v[1 : end+1]
			rest = strings.TrimLeft(v[end+2:], " ,")
		} else {
			val, after, _ := strings.Cut(v, ",")
			params[k] = strings.TrimSpace(val)
			rest = strings.TrimSpace(after)
		}
	}
	return scheme, params
}

package imagecache

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestLocalAuth(t *testing.T) {
	reg := newTestRegistry(t)
	img := reg.addImage(t, "lib/app", "v1", 1, 64, 1)
	var mu sync.Mutex
	now := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) {
		c.Now = clock
		c.Auth = &LocalAuth{Verify: func(p string) error {
			if p != "device-token" {
				return errors.New("not a device token of this event")
			}
			return nil
		}}
	})
	manifest := url + "/v2/lib/app/manifests/v1"

	// No token: the challenge names the token endpoint.
	for _, u := range []string{url + "/v2/", manifest, url + "/v2/lib/app/blobs/" + img.config.String()} {
		r := do(t, http.MethodGet, u, nil)
		wantError(t, r, http.StatusUnauthorized, CodeUnauthorized)
		want := `Bearer realm="` + url + `/v2/token",service="canopy-images"`
		if got := r.header.Get("Www-Authenticate"); got != want {
			t.Fatalf("challenge %q, want %q", got, want)
		}
	}
	if reg.count(http.MethodGet, "/v2/lib/app/manifests/v1") != 0 {
		t.Fatal("an unauthorized request reached upstream")
	}

	// The token endpoint wants basic credentials with a valid device token.
	token := func(user, pass string) response {
		req, _ := http.NewRequest(http.MethodGet, url+"/v2/token?service=canopy-images&scope=repository:lib/app:pull", nil)
		if user != "" || pass != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		return response{status: resp.StatusCode, header: resp.Header, body: b, err: err}
	}
	wantError(t, token("", ""), http.StatusUnauthorized, CodeUnauthorized)
	r := token("x", "forged")
	wantError(t, r, http.StatusUnauthorized, CodeUnauthorized)
	if !strings.Contains(string(r.body), "not a device token") {
		t.Fatalf("refusal does not say why: %s", r.body)
	}
	r = token("anyone", "device-token")
	if r.status != http.StatusOK {
		t.Fatalf("token: %d %s", r.status, r.body)
	}
	var tok struct {
		Token     string `json:"token"`
		ExpiresIn int    `json:"expires_in"`
	}
	if err := json.Unmarshal(r.body, &tok); err != nil || len(tok.Token) != 43 || tok.ExpiresIn != 300 {
		t.Fatalf("token response %s (%v)", r.body, err)
	}
	if r2 := token("anyone", "device-token"); strings.Contains(string(r2.body), tok.Token) {
		t.Fatal("two token requests got the same token")
	}

	// Pulls with the token work.
	bearer := map[string]string{"Authorization": "Bearer " + tok.Token}
	if r := do(t, http.MethodGet, manifest, bearer); r.status != http.StatusOK || string(r.body) != string(img.body) {
		t.Fatalf("pull with token: %d %s", r.status, r.body)
	}
	if r := do(t, http.MethodGet, url+"/v2/lib/app/blobs/"+img.layers[0].String(), bearer); r.status != http.StatusOK || string(r.body) != string(reg.blob(img.layers[0])) {
		t.Fatalf("blob with token: %d", r.status)
	}
	for _, h := range []string{"Bearer not-a-token", "Basic " + tok.Token} {
		wantError(t, do(t, http.MethodGet, manifest, map[string]string{"Authorization": h}), http.StatusUnauthorized, CodeUnauthorized)
	}

	// Just before expiry it still works; at expiry it is refused.
	mu.Lock()
	now = now.Add(299 * time.Second)
	mu.Unlock()
	if r := do(t, http.MethodGet, manifest, bearer); r.status != http.StatusOK {
		t.Fatalf("token before expiry: %d %s", r.status, r.body)
	}
	mu.Lock()
	now = now.Add(time.Second)
	mu.Unlock()
	r = do(t, http.MethodGet, manifest, bearer)
	wantError(t, r, http.StatusUnauthorized, CodeUnauthorized)
	if !strings.Contains(string(r.body), "expired") {
		t.Fatalf("expired token: %s", r.body)
	}
	if r := do(t, http.MethodGet, manifest, bearer); !strings.Contains(string(r.body), "unknown token") {
		t.Fatalf("an expired token is forgotten: %s", r.body)
	}
}

func TestLocalAuthOff(t *testing.T) {
	_, url := testCache(t, t.TempDir(), []string{"http://127.0.0.1:1"}, nil)
	if r := do(t, http.MethodGet, url+"/v2/", nil); r.status != http.StatusOK {
		t.Fatalf("no auth configured: %d", r.status)
	}
	if r := do(t, http.MethodGet, url+"/v2/token", nil); r.status != http.StatusNotFound {
		t.Fatalf("/v2/token without auth: %d", r.status)
	}
	if _, err := New(Config{Dir: t.TempDir(), Auth: &LocalAuth{}}); err == nil {
		t.Fatal("auth without a credential check accepted")
	}
}

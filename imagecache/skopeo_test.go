package imagecache

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSkopeoPull copies images through the cache with a real client,
// skopeo, with the upstream up, hung, and stopped. It skips when skopeo is
// missing, except in CI (scripts/test.sh installs it).
func TestSkopeoPull(t *testing.T) {
	skopeo, err := exec.LookPath("skopeo")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("skopeo is not installed (scripts/test.sh installs it in CI)")
		}
		t.Skip("skopeo not installed")
	}
	reg := newTestRegistry(t)
	reg.token = "pull-token"
	img := reg.addImage(t, "team/app", "v1", 3, 64<<10, 20)
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) { c.UpstreamTimeout = time.Second })
	host := strings.TrimPrefix(url, "http://")

	copyImage := func(ref string) (string, time.Duration) {
		t.Helper()
		dst := filepath.Join(t.TempDir(), "img")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		start := time.Now()
		cmd := exec.CommandContext(ctx, skopeo, "--insecure-policy", "copy", "--src-tls-verify=false",
			"docker://"+host+"/"+ref, "dir:"+dst)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_RUNTIME_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo copy %s: %v\n%s", ref, err, out)
		}
		return dst, time.Since(start)
	}
	check := func(dst string) {
		t.Helper()
		m, err := os.ReadFile(filepath.Join(dst, "manifest.json"))
		if err != nil || !bytes.Equal(m, img.body) {
			t.Fatalf("manifest copied by skopeo differs (%v)", err)
		}
		for _, d := range img.blobDigests() {
			b, err := os.ReadFile(filepath.Join(dst, d.Encoded()))
			if err != nil || !bytes.Equal(b, reg.blob(d)) {
				t.Fatalf("blob %s copied by skopeo differs (%v)", d, err)
			}
		}
	}

	dst, _ := copyImage("team/app:v1")
	check(dst)

	// As users set it up: the cache as a mirror in registries.conf, the
	// image named by its upstream registry (whose name does not resolve).
	conf := filepath.Join(t.TempDir(), "registries.conf")
	if err := os.WriteFile(conf, []byte(`[[registry]]
prefix = "registry.canopy.test"
location = "registry.canopy.test"
[[registry.mirror]]
location = "`+host+`"
insecure = true
`), 0o600); err != nil {
		t.Fatal(err)
	}
	{
		mdst := filepath.Join(t.TempDir(), "img")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		cmd := exec.CommandContext(ctx, skopeo, "--insecure-policy", "--registries-conf", conf, "copy",
			"docker://registry.canopy.test/team/app:v1", "dir:"+mdst)
		cmd.Env = append(os.Environ(), "HOME="+t.TempDir(), "XDG_RUNTIME_DIR="+t.TempDir())
		out, err := cmd.CombinedOutput()
		cancel()
		if err != nil {
			t.Fatalf("skopeo copy through the registries.conf mirror: %v\n%s", err, out)
		}
		check(mdst)
	}
	dst, _ = copyImage("team/app:v1-index") // the Docker list: skopeo picks this platform
	check(dst)

	reg.setHang(true)
	dst, el := copyImage("team/app:v1")
	check(dst)
	t.Logf("skopeo copy with the upstream hung: %v", el)

	reg.close()
	dst, el = copyImage("team/app:v1")
	check(dst)
	t.Logf("skopeo copy with the upstream stopped: %v", el)
}

package imagecache

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestContainerdPull fetches an image through the cache with containerd's
// own client, ctr, configured the way users do it: a hosts.toml mirror for
// the upstream's name (which does not resolve). With the upstream up, hung
// (cached tags within a second or two) and stopped. It needs root and
// Debian's containerd; it skips without them, except in CI, where
// scripts/test.sh installs containerd and runs as root.
func TestContainerdPull(t *testing.T) {
	daemon, err1 := exec.LookPath("containerd")
	ctr, err2 := exec.LookPath("ctr")
	if err1 != nil || err2 != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("containerd and ctr must be installed and the test run as root (scripts/test.sh does both in CI)")
		}
		t.Skip("needs root and containerd")
	}
	reg := newTestRegistry(t)
	img := reg.addImage(t, "team/app", "v1", 3, 64<<10, 20)
	_, url := testCache(t, t.TempDir(), []string{reg.srv.URL}, func(c *Config) { c.UpstreamTimeout = time.Second })
	host := strings.TrimPrefix(url, "http://")

	// A containerd of our own: its own root, state, socket and no CRI.
	dir, err := os.MkdirTemp("", "ctrd") // short: a unix socket path is limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "c.sock")
	conf := filepath.Join(dir, "config.toml")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(`version = 2
root = %q
state = %q
disabled_plugins = ["io.containerd.grpc.v1.cri"]
[grpc]
  address = %q
`, filepath.Join(dir, "root"), filepath.Join(dir, "state"), sock)), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(daemon, "--config", conf)
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	run := func(timeout time.Duration, args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), timeout)
		defer cancel()
		out, err := exec.CommandContext(ctx, ctr, append([]string{"--address", sock, "--namespace", "canopy"}, args...)...).CombinedOutput()
		return string(out), err
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		if _, err := run(5*time.Second, "version"); err == nil {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("containerd did not come up:\n%s", logs.String())
		}
		time.Sleep(50 * time.Millisecond) // polling for the daemon's socket
	}

	hosts := filepath.Join(dir, "hosts.d")
	if err := os.MkdirAll(filepath.Join(hosts, "registry.canopy.test"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(hosts, "registry.canopy.test", "hosts.toml"), []byte(`server = "https://registry.canopy.test"

[host."http://`+host+`"]
  capabilities = ["pull", "resolve"]
`), 0o644); err != nil {
		t.Fatal(err)
	}
	ref := "registry.canopy.test/team/app:v1"
	fetch := func(what string) time.Duration {
		t.Helper()
		// Start from an empty content store each time.
		if out, err := run(time.Minute, "content", "ls", "-q"); err == nil {
			for _, d := range strings.Fields(out) {
				run(time.Minute, "content", "rm", d)
			}
		}
		start := time.Now()
		out, err := run(2*time.Minute, "content", "fetch", "--hosts-dir", hosts, ref)
		if err != nil {
			t.Fatalf("ctr content fetch (%s): %v\n%s", what, err, out)
		}
		el := time.Since(start)
		held, err := run(time.Minute, "content", "ls", "-q")
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range append(img.blobDigests(), img.manifest) {
			if !strings.Contains(held, d.String()) {
				t.Fatalf("ctr fetched (%s) but lacks %s:\n%s", what, d, held)
			}
		}
		return el
	}
	fetch("upstream up")
	reg.setHang(true)
	t.Logf("ctr fetch with the upstream hung: %v", fetch("upstream hung"))
	reg.close()
	t.Logf("ctr fetch with the upstream stopped: %v", fetch("upstream stopped"))
}

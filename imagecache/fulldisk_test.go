package imagecache

import (
	"os"
	"os/exec"
	"syscall"
	"testing"
	"time"
)

// TestFullDisk: on a full disk a blob fails cleanly (a broken transfer or
// 503 UNAVAILABLE), nothing partial is stored, and the cache keeps serving
// what fits. It mounts a 1 MiB tmpfs, so it needs root (CI runs as root).
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("the full-disk test needs root in CI")
		}
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", dir).CombinedOutput(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("cannot mount a tmpfs: %v %s", err, out)
		}
		t.Skipf("cannot mount a tmpfs: %v %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("umount", dir).Run() })

	reg := newTestRegistry(t)
	big := reg.addImage(t, "app", "big", 1, 2<<20, 30)
	small := reg.addImage(t, "app", "small", 1, 10<<10, 31)
	c, url := testCache(t, dir, []string{reg.srv.URL}, nil)
	l := big.layers[0]
	r := do(t, "GET", url+"/v2/app/blobs/"+l.String(), nil)
	if r.status == 200 && r.err == nil {
		t.Fatalf("a 2 MiB blob was served whole from a 1 MiB disk")
	}
	// The failed fetch's file is gone once its last reader closes it.
	freed := func() bool {
		c.mu.Lock()
		n := len(c.flights)
		c.mu.Unlock()
		var fs syscall.Statfs_t
		return n == 0 && syscall.Statfs(dir, &fs) == nil && int64(fs.Bavail)*int64(fs.Bsize) > 768<<10
	}
	waitFor(t, 5*time.Second, "the failed fetch to free the disk", freed)
	wantError(t, do(t, "GET", url+"/v2/app/blobs/"+l.String(), map[string]string{"Range": "bytes=0-9"}), 503, CodeUnavailable)
	if c.store.has(l) {
		t.Fatal("a partial blob is in the store")
	}
	if ents, _ := os.ReadDir(dir + "/tmp"); len(ents) != 0 {
		t.Fatalf("%d temporary files left on the full disk", len(ents))
	}
	waitFor(t, 5*time.Second, "the failed fetch to free the disk", freed)
	if err := pullImage(t, url, reg, small, nil); err != nil {
		t.Fatalf("after a full disk: %v", err)
	}
}

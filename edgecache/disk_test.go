package edgecache

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestFullDiskKeepsProxying puts the store on a real, full tmpfs: every
// request is still answered in full from the origin, uncached.
func TestFullDiskKeepsProxying(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestFullDiskKeepsProxying must run as root: it mounts a small tmpfs (CI runs as root)")
	}
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=256k"); err != nil {
		t.Fatalf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() { syscall.Unmount(dir, syscall.MNT_DETACH) })
	st, err := OpenStore(filepath.Join(dir, "store"), 64<<20)
	if err != nil {
		t.Fatal(err)
	}
	// Fill the disk.
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	chunk := make([]byte, 4096)
	for {
		if _, err := filler.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling the disk: %v", err)
			}
			break
		}
	}
	filler.Close()
	body := strings.Repeat("x", 100<<10)
	o := newOrigin(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=60")
		w.Write([]byte(body))
	})
	u, _ := url.Parse(o.URL)
	clk := &clock{t: time.Now()}
	h, err := New(Config{Origins: []*url.URL{u}, Store: st, Now: clk.Now})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		h.Close(ctx)
	})
	for i := 1; i <= 3; i++ {
		resp, got := get(t, srv.URL+"/big")
		if resp.StatusCode != 200 || got != body {
			t.Fatalf("request %d on a full disk: %d, %d bytes (want 200, %d)", i, resp.StatusCode, len(got), len(body))
		}
		// The first request tries to fill and then proxies; later ones
		// proxy at once.
		if o.hits.Load() != int64(i+1) {
			t.Fatalf("request %d: origin hits %d, want %d", i, o.hits.Load(), i+1)
		}
	}
	if st.Len() != 0 {
		t.Fatalf("%d objects stored on a full disk", st.Len())
	}
	// Space returns: caching resumes.
	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	clk.Add(diskBackoff)
	get(t, srv.URL+"/big")
	waitFor(t, "stored after space returned", func() bool { return st.Len() == 1 })
	resp, got := get(t, srv.URL+"/big")
	if got != body || !strings.Contains(resp.Header.Get("Cache-Status"), "hit") {
		t.Fatalf("after space returned: %d bytes, %q", len(got), resp.Header.Get("Cache-Status"))
	}
}

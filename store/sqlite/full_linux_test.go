package sqlite_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"canopy/store"
)

// TestFullDisk fills a real 2 MiB tmpfs, then grows it and commits again.
// It needs root to mount; CI runs as root.
func TestFullDisk(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Fatal("TestFullDisk must run as root: it mounts a 2 MiB tmpfs to fill the disk for real (run `go test` as root, as CI does)")
	}
	dir := filepath.Join(t.TempDir(), "tmpfs")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size=2m"); err != nil {
		t.Fatalf("mount a 2 MiB tmpfs on %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, 0); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	s := openAt(t, filepath.Join(dir, "canopy.db"))
	ctx := context.Background()
	c := newChain(1)

	committed, failed := fillUntilUnavailable(t, s, c, 16, 2000, 1000)
	if len(committed) == 0 {
		t.Fatal("the first batch already failed; the test learns nothing")
	}
	checkIntact(t, s, c.node(), committed)
	if _, err := s.View(ctx, "ev", "batches", failed.Views[0].Key); !errors.Is(err, store.ErrNotFound) {
		t.Fatalf("the failed batch's view row: %v, want ErrNotFound", err)
	}

	// Space returns: the very batch that failed now commits, on the same store.
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=64m"); err != nil {
		t.Fatalf("grow the tmpfs: %v", err)
	}
	if err := s.Commit(ctx, failed); err != nil {
		t.Fatalf("commit after space returned: %v", err)
	}
	second := c.batch(t, 16, 2000)
	if err := s.Commit(ctx, second); err != nil {
		t.Fatalf("second commit after space returned: %v", err)
	}
	checkIntact(t, s, c.node(), append(append(committed, failed.Entries...), second.Entries...))
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	re := openAt(t, s.Path())
	if seq, _, err := re.Head(ctx, "ev", c.node()); err != nil || seq != c.seq {
		t.Fatalf("after reopening, head = %d, %v; want %d", seq, err, c.seq)
	}
	if err := re.Check(ctx); err != nil {
		t.Fatal(err)
	}
}

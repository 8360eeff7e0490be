package edgecache

import (
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"
)

// putObject stores a body under url through a fill's temporary file.
func putObject(t testing.TB, st *Store, url, body string, hdr http.Header) *object {
	t.Helper()
	f, err := st.tempFile()
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(body)
	f.Close()
	o := &object{Key: url, URL: url, Status: 200, Size: int64(len(body)), ResponseTime: time.Now(), Header: hdr}
	if err := st.commit(o, f.Name()); err != nil {
		t.Fatal(err)
	}
	return o
}

// TestColdObjectsReadBack: beyond the warm bound the index keeps
// skeletons, and a lookup of a cold object reads its header back whole.
func TestColdObjectsReadBack(t *testing.T) {
	st, err := OpenStore(t.TempDir(), 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	st.warmMax = 2
	for i := range 5 {
		putObject(t, st, fmt.Sprintf("s /o%d", i), strings.Repeat("x", i+1),
			http.Header{"Cache-Control": {"max-age=60"}, "X-N": {fmt.Sprint(i)}, "Surrogate-Key": {fmt.Sprintf("t%d", i)}})
	}
	st.mu.Lock()
	warm, cold := st.warmLRU.Len(), 0
	for el := st.lru.Front(); el != nil; el = el.Next() {
		if o := el.Value.(*entry).obj; !o.whole() {
			cold++
			if o.Header.Get("X-N") != "" || o.Header.Get("Surrogate-Key") == "" {
				t.Errorf("skeleton %s header %v: want Surrogate-Key only", o.Key, o.Header)
			}
		}
	}
	st.mu.Unlock()
	if warm != 2 || cold != 3 {
		t.Fatalf("warm %d, cold %d: want 2 and 3", warm, cold)
	}
	o, _ := st.find("s /o0", func(*object) bool { return true })
	if o == nil || !o.whole() || o.Header.Get("X-N") != "0" || o.Size != 1 || o.prepared().cc["max-age"] != "60" {
		t.Fatalf("cold object read back as %+v", o)
	}
	if n, _ := st.Purge(Purge{Tag: "t1"}); n != 1 {
		t.Fatalf("purge by the tag of a cold object: %d purged, want 1", n)
	}
	if size, _ := st.Size(); size != 1+3+4+5 {
		t.Fatalf("size %d after the purge, want 13", size)
	}
	if st.warmLRU.Len() != 2 {
		t.Fatalf("%d warm entries, want at most 2", st.warmLRU.Len())
	}
}

// TestOpenKeepsNewestVersion: a crash between storing a new version of a
// key and removing the old one leaves both; opening keeps the newer.
func TestOpenKeepsNewestVersion(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	old := putObject(t, st, "s /a", "old", http.Header{"X-V": {"old"}})
	oldFiles := []string{st.path(old.name, ".meta"), filepath.Join(dir, "obj", old.bodyFile())}
	saved := map[string][]byte{}
	for _, p := range oldFiles {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		saved[p] = b
	}
	putObject(t, st, "s /a", "newer", http.Header{"X-V": {"new"}})
	for p, b := range saved { // as if the old files had not been removed yet
		if err := os.WriteFile(p, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	st2, err := OpenStore(dir, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	o, _ := st2.find("s /a", func(*object) bool { return true })
	if o == nil || o.Header.Get("X-V") != "new" {
		t.Fatalf("after reopening: %+v, want the newer version", o)
	}
	if size, _ := st2.Size(); size != 5 || st2.Len() != 1 {
		t.Fatalf("size %d, %d objects: want 5 and 1", size, st2.Len())
	}
	for _, p := range oldFiles {
		if _, err := os.Stat(p); !os.IsNotExist(err) {
			t.Errorf("%s of the old version still there (%v)", filepath.Base(p), err)
		}
	}
}

// TestConcurrentCommitsConsistent: commits of the same and of other keys,
// lookups, invalidations and evictions at once leave an index whose size
// is its objects' and a directory holding exactly their files, which a
// reopened store agrees with.
func TestConcurrentCommitsConsistent(t *testing.T) {
	dir := t.TempDir()
	st, err := OpenStore(dir, 40<<10)
	if err != nil {
		t.Fatal(err)
	}
	st.warmMax = 8
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 60 {
				u := fmt.Sprintf("s /k%d", i%7)
				switch (g + i) % 5 {
				case 0:
					st.invalidate(u)
				case 1:
					if o, _ := st.find(u, func(*object) bool { return true }); o != nil && !o.whole() {
						t.Errorf("find returned a skeleton of %s", u)
					}
				default:
					putObject(t, st, u, strings.Repeat("z", 1<<10+g*100+i), http.Header{"X-G": {fmt.Sprint(g)}})
				}
			}
		}()
	}
	wg.Wait()
	size, _ := st.Size()
	var sum int64
	want := map[string]bool{}
	st.mu.Lock()
	for el := st.lru.Front(); el != nil; el = el.Next() {
		o := el.Value.(*entry).obj
		sum += o.Size
		want[o.name+".meta"], want[o.bodyFile()] = true, true
	}
	st.mu.Unlock()
	if size != sum || size > 40<<10 {
		t.Fatalf("size %d, objects' sizes %d, budget %d", size, sum, 40<<10)
	}
	ents, _ := os.ReadDir(filepath.Join(dir, "obj"))
	for _, e := range ents {
		if !want[e.Name()] {
			t.Errorf("file %s belongs to no stored object", e.Name())
		}
		delete(want, e.Name())
	}
	if len(want) > 0 {
		t.Errorf("files missing: %v", want)
	}
	st2, err := OpenStore(dir, 40<<10)
	if err != nil {
		t.Fatal(err)
	}
	if s2, _ := st2.Size(); s2 != size || st2.Len() != st.Len() {
		t.Fatalf("reopened: %d bytes, %d objects; before: %d, %d", s2, st2.Len(), size, st.Len())
	}
}

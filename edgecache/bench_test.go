package edgecache

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// discardWriter is a ResponseWriter that keeps only the status and the
// body's length, reusing its header map between requests.
type discardWriter struct {
	hdr    http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header { return w.hdr }
func (w *discardWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
}
func (w *discardWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	w.n += len(p)
	return len(p), nil
}

func (w *discardWriter) reset() {
	clear(w.hdr)
	w.status, w.n = 0, 0
}

// benchHandler is a cache in front of an origin serving size-byte
// cacheable bodies.
func benchHandler(b *testing.B, size int) *Handler {
	b.Helper()
	body := strings.Repeat("x", size)
	org := newOrigin(b, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Write([]byte(body))
	})
	st, err := OpenStore(b.TempDir(), 256<<20)
	if err != nil {
		b.Fatal(err)
	}
	u, _ := url.Parse(org.URL)
	h, err := New(Config{Origins: []*url.URL{u}, Store: st})
	if err != nil {
		b.Fatal(err)
	}
	return h
}

// BenchmarkHit measures fresh hits on one object from the hot tier, from
// parallel clients, in the handler (no network).
func BenchmarkHit(b *testing.B) {
	for _, size := range []int{1 << 10, 16 << 10} {
		b.Run(fmt.Sprintf("%dk", size>>10), func(b *testing.B) {
			h := benchHandler(b, size)
			warm := &discardWriter{hdr: http.Header{}}
			for range 3 {
				warm.reset()
				h.ServeHTTP(warm, httptestRequest("/obj"))
			}
			if warm.n != size || !strings.Contains(warm.hdr.Get("Cache-Status"), "hit") {
				b.Fatalf("warm-up: %d bytes, Cache-Status %q", warm.n, warm.hdr.Get("Cache-Status"))
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.RunParallel(func(pb *testing.PB) {
				w := &discardWriter{hdr: http.Header{}}
				r := httptestRequest("/obj")
				for pb.Next() {
					w.reset()
					h.ServeHTTP(w, r)
					if w.n != size {
						b.Errorf("hit sent %d bytes, want %d", w.n, size)
						return
					}
				}
			})
		})
	}
}

// BenchmarkCommit measures storing filled bodies from parallel fills
// (the store's part of a miss).
func BenchmarkCommit(b *testing.B) {
	st, err := OpenStore(b.TempDir(), 1<<30)
	if err != nil {
		b.Fatal(err)
	}
	body := []byte(strings.Repeat("m", 1<<10))
	var seq atomic.Int64
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			f, err := st.tempFile()
			if err != nil {
				b.Error(err)
				return
			}
			f.Write(body)
			f.Close()
			u := fmt.Sprintf("canopy /miss/%d", seq.Add(1))
			o := &object{Key: u, URL: u, Status: 200, Size: int64(len(body)), ResponseTime: time.Now(),
				Header: http.Header{"Cache-Control": {"max-age=3600"}}}
			if err := st.commit(o, f.Name()); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	if n, _ := os.ReadDir(filepath.Join(st.dir, "tmp")); len(n) != 0 {
		b.Fatalf("%d temporary files left", len(n))
	}
}

func httptestRequest(path string) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://cache.test"+path, nil)
	r.RequestURI = path
	return r
}

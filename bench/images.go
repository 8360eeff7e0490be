package bench

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	_ "embed"
)

// ImagesOptions configures RunImages.
type ImagesOptions struct {
	// Dir holds the caches' stores (temporary directories are made inside).
	Dir string
	// Layers and LayerBytes shape the test image (random, incompressible).
	Layers     int
	LayerBytes int
	// Concurrency is the number of simultaneous cold pulls.
	Concurrency int
	// Rounds: each round runs every case on Canopy, then on docker-registry.
	Rounds int
	// Registry is the docker-registry binary ("" skips it).
	Registry string
	// HangTimeout bounds a pull while the uplink is hung.
	HangTimeout time.Duration
}

// ImagesResult is one measurement (a JSON line).
type ImagesResult struct {
	Bench  string `json:"bench"` // "images"
	Case   string `json:"case"`  // cold, warm, concurrent_cold, hung_tag
	System string `json:"system"`
	Stat   string `json:"stat"` // run or median
	Round  int    `json:"round,omitempty"`
	// Seconds is the pull's wall time (all pulls, for concurrent_cold).
	Seconds float64 `json:"seconds"`
	// MBPerSecond is image bytes pulled per second (10^6 bytes).
	MBPerSecond float64 `json:"mb_per_s,omitempty"`
	// ImageBytes is the image's size (manifest, config and layers).
	ImageBytes int64 `json:"image_bytes"`
	// UpstreamBytes and UpstreamBlobGets are what the upstream sent.
	UpstreamBytes    int64 `json:"upstream_bytes"`
	UpstreamBlobGets int64 `json:"upstream_blob_gets"`
	Pulls            int   `json:"pulls"`
	// TimedOut is set when a pull did not finish within the hang timeout.
	TimedOut bool   `json:"timed_out,omitempty"`
	Note     string `json:"note,omitempty"`
}

// ImagesRatio compares the medians of one case (a JSON line).
type ImagesRatio struct {
	Bench string `json:"bench"`
	Case  string `json:"case"`
	Stat  string `json:"stat"` // "ratio"
	// Speedup is docker-registry's seconds over Canopy's (above 1: Canopy
	// is faster).
	Speedup float64 `json:"speedup_registry_over_canopy"`
	// UpstreamBytes is docker-registry's upstream bytes over Canopy's.
	UpstreamBytes float64 `json:"upstream_bytes_registry_over_canopy"`
}

// DockerRegistryProxyConfig is the configuration docker-registry runs
// with, in proxy mode: ROOTDIR, ADDR and UPSTREAM are filled in.
//
//go:embed testdata/docker-registry-proxy.yml
var DockerRegistryProxyConfig string

// benchImage is the image served by the benchmark's upstream.
type benchImage struct {
	manifest []byte
	digest   string
	blobs    map[string][]byte // digest → bytes (config and layers)
	size     int64
}

func newBenchImage(layers, layerBytes int) *benchImage {
	rng := rand.NewChaCha8([32]byte{'c', 'a', 'n', 'o', 'p', 'y'})
	img := &benchImage{blobs: map[string][]byte{}}
	add := func(b []byte) string {
		s := sha256.Sum256(b)
		d := "sha256:" + hex.EncodeToString(s[:])
		img.blobs[d] = b
		img.size += int64(len(b))
		return d
	}
	cfg := []byte(`{"architecture":"amd64","os":"linux","rootfs":{"type":"layers","diff_ids":[]}}`)
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int    `json:"size"`
	}
	m := struct {
		SchemaVersion int    `json:"schemaVersion"`
		MediaType     string `json:"mediaType"`
		Config        desc   `json:"config"`
		Layers        []desc `json:"layers"`
	}{2, "application/vnd.oci.image.manifest.v1+json", desc{"application/vnd.oci.image.config.v1+json", add(cfg), len(cfg)}, nil}
	for i := 0; i < layers; i++ {
		b := make([]byte, layerBytes)
		_, _ = rng.Read(b)
		m.Layers = append(m.Layers, desc{"application/vnd.oci.image.layer.v1.tar+gzip", add(b), len(b)})
	}
	img.manifest, _ = json.Marshal(m)
	s := sha256.Sum256(img.manifest)
	img.digest = "sha256:" + hex.EncodeToString(s[:])
	img.size += int64(len(img.manifest))
	return img
}

// benchUpstream serves one image as repository bench/app, tag v1, counting
// what it sends; it can hang (accept requests, never answer).
type benchUpstream struct {
	img      *benchImage
	srv      *http.Server
	url      string
	bytes    atomic.Int64
	blobGets atomic.Int64

	mu      sync.Mutex
	hang    bool
	release chan struct{}
}

func startBenchUpstream(img *benchImage) (*benchUpstream, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	u := &benchUpstream{img: img, url: "http://" + ln.Addr().String(), release: make(chan struct{})}
	u.srv = &http.Server{Handler: u, ReadHeaderTimeout: 10 * time.Second}
	go func() { _ = u.srv.Serve(ln) }()
	return u, nil
}

func (u *benchUpstream) setHang(h bool) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.hang && !h {
		close(u.release)
		u.release = make(chan struct{})
	}
	u.hang = h
}

func (u *benchUpstream) reset() { u.bytes.Store(0); u.blobGets.Store(0) }

type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(b []byte) (int, error) {
	n, err := w.ResponseWriter.Write(b)
	w.n.Add(int64(n))
	return n, err
}

func (u *benchUpstream) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	u.mu.Lock()
	hang, release := u.hang, u.release
	u.mu.Unlock()
	if hang {
		select {
		case <-release:
		case <-r.Context().Done():
		}
		return
	}
	w = countingWriter{w, &u.bytes}
	w.Header().Set("Docker-Distribution-Api-Version", "registry/2.0")
	p := r.URL.Path
	switch {
	case p == "/v2/" || p == "/v2":
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, "{}")
	case p == "/v2/bench/app/manifests/v1" || p == "/v2/bench/app/manifests/"+u.img.digest:
		w.Header().Set("Content-Type", "application/vnd.oci.image.manifest.v1+json")
		w.Header().Set("Docker-Content-Digest", u.img.digest)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(u.img.manifest))
	case strings.HasPrefix(p, "/v2/bench/app/blobs/"):
		d := strings.TrimPrefix(p, "/v2/bench/app/blobs/")
		b, ok := u.img.blobs[d]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			_, _ = io.WriteString(w, `{"errors":[{"code":"BLOB_UNKNOWN","message":"unknown blob"}]}`)
			return
		}
		if r.Method == http.MethodGet {
			u.blobGets.Add(1)
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Docker-Content-Digest", d)
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(b))
	default:
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusNotFound)
		_, _ = io.WriteString(w, `{"errors":[{"code":"NAME_UNKNOWN","message":"unknown"}]}`)
	}
}

// cacheProc is a registry cache running as a child process.
type cacheProc struct {
	cmd  *exec.Cmd
	url  string
	done chan error
	log  bytes.Buffer
	once sync.Once
}

func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startCache starts system ("canopy" or "docker-registry") with a fresh
// store in dir, in front of upstream.
func startCache(ctx context.Context, system, dir, upstream string, o ImagesOptions) (*cacheProc, error) {
	addr, err := freeAddr()
	if err != nil {
		return nil, err
	}
	var cmd *exec.Cmd
	switch system {
	case "canopy":
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cmd = exec.CommandContext(ctx, exe, "images", "serve", "--dir", dir, "--listen", addr, "--upstream", upstream,
			"--tag-deadline", "500ms", "--upstream-timeout", "5s", "--log-level", "error")
	default:
		conf := strings.NewReplacer("ROOTDIR", filepath.Join(dir, "registry"), "ADDR", addr, "UPSTREAM", upstream).Replace(DockerRegistryProxyConfig)
		path := filepath.Join(dir, "config.yml")
		if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
			return nil, err
		}
		cmd = exec.CommandContext(ctx, o.Registry, "serve", path)
	}
	p := &cacheProc{cmd: cmd, url: "http://" + addr, done: make(chan error, 1)}
	cmd.Stdout, cmd.Stderr = &p.log, &p.log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", system, err)
	}
	go func() { p.done <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	client := &http.Client{Timeout: time.Second}
	for {
		resp, err := client.Get(p.url + "/v2/")
		if err == nil {
			resp.Body.Close()
			return p, nil
		}
		select {
		case err := <-p.done:
			return nil, fmt.Errorf("%s exited (%v): %s", system, err, p.log.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			p.stop()
			return nil, fmt.Errorf("%s did not answer within 15s: %s", system, p.log.String())
		}
	}
}

func (p *cacheProc) stop() {
	p.once.Do(func() {
		_ = p.cmd.Process.Kill()
		<-p.done
	})
}

// pull pulls bench/app:v1 like a client: the manifest by tag, then every
// blob at once, each verified against its digest. It returns the bytes.
func pull(ctx context.Context, client *http.Client, base string) (int64, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/bench/app/manifests/v1", nil)
	if err != nil {
		return 0, err
	}
	req.Header.Set("Accept", "application/vnd.oci.image.manifest.v1+json")
	resp, err := client.Do(req)
	if err != nil {
		return 0, err
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, 4<<20))
	resp.Body.Close()
	if err != nil {
		return 0, err
	}
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("manifest: %s: %s", resp.Status, body)
	}
	var m struct {
		Config struct{ Digest string }   `json:"config"`
		Layers []struct{ Digest string } `json:"layers"`
	}
	if err := json.Unmarshal(body, &m); err != nil {
		return 0, fmt.Errorf("manifest: %w", err)
	}
	ds := []string{m.Config.Digest}
	for _, l := range m.Layers {
		ds = append(ds, l.Digest)
	}
	total := atomic.Int64{}
	total.Add(int64(len(body)))
	errs := make([]error, len(ds))
	var wg sync.WaitGroup
	for i, d := range ds {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = func() error {
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, base+"/v2/bench/app/blobs/"+d, nil)
				if err != nil {
					return err
				}
				resp, err := client.Do(req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					return fmt.Errorf("blob %s: %s", d, resp.Status)
				}
				h := sha256.New()
				n, err := io.Copy(h, resp.Body)
				if err != nil {
					return fmt.Errorf("blob %s: %w", d, err)
				}
				if got := "sha256:" + hex.EncodeToString(h.Sum(nil)); got != d {
					return fmt.Errorf("blob %s: got %s", d, got)
				}
				total.Add(n)
				return nil
			}()
		}()
	}
	wg.Wait()
	return total.Load(), errors.Join(errs...)
}

func mbps(bytes int64, d time.Duration) float64 {
	if d <= 0 {
		return 0
	}
	return round(float64(bytes) / 1e6 / d.Seconds())
}

// RunImages compares Canopy's image cache with docker-registry in proxy
// mode, both in front of one local upstream: a cold and a warm pull, many
// concurrent cold pulls, and a pull by tag with the uplink hung. Runs
// alternate between the systems; JSON lines of every run, the medians and
// the ratios go to w.
func RunImages(ctx context.Context, w io.Writer, o ImagesOptions) error {
	if o.Layers < 1 || o.LayerBytes < 1 || o.Concurrency < 1 || o.Rounds < 1 {
		return fmt.Errorf("images bench: layers, layer bytes, concurrency and rounds must be positive")
	}
	if o.HangTimeout <= 0 {
		o.HangTimeout = 10 * time.Second
	}
	root, err := os.MkdirTemp(o.Dir, "canopy-bench-images-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	img := newBenchImage(o.Layers, o.LayerBytes)
	up, err := startBenchUpstream(img)
	if err != nil {
		return err
	}
	defer up.srv.Close()
	defer up.setHang(false)
	enc := json.NewEncoder(w)
	systems := []string{"canopy"}
	if o.Registry != "" {
		systems = append(systems, "docker-registry")
	}
	var all []ImagesResult
	emit := func(r ImagesResult) {
		r.Bench, r.ImageBytes = "images", img.size
		if r.Stat == "" {
			r.Stat = "run"
		}
		all = append(all, r)
		_ = enc.Encode(r)
	}
	n := 0
	for round := 1; round <= o.Rounds; round++ {
		order := systems
		if round%2 == 0 { // alternate which system goes first
			order = slices.Clone(systems)
			slices.Reverse(order)
		}
		for _, sys := range order {
			n++
			if err := imagesRound(ctx, sys, filepath.Join(root, fmt.Sprint(n)), up, img, o, round, emit); err != nil {
				return fmt.Errorf("%s round %d: %w", sys, round, err)
			}
		}
	}
	cases := []string{"cold", "warm", "concurrent_cold", "hung_tag"}
	meds := map[string]ImagesResult{}
	for _, c := range cases {
		for _, sys := range systems {
			m := imgMedian(all, c, sys)
			meds[c+" "+sys] = m
			_ = enc.Encode(m)
		}
	}
	if len(systems) == 2 {
		for _, c := range cases {
			a, b := meds[c+" canopy"], meds[c+" docker-registry"]
			r := ImagesRatio{Bench: "images", Case: c, Stat: "ratio"}
			if a.Seconds > 0 {
				r.Speedup = round(b.Seconds / a.Seconds)
			}
			if a.UpstreamBytes > 0 {
				r.UpstreamBytes = round(float64(b.UpstreamBytes) / float64(a.UpstreamBytes))
			}
			_ = enc.Encode(r)
		}
	}
	return nil
}

// imagesRound runs every case once on one system, as round n.
func imagesRound(ctx context.Context, sys, dir string, up *benchUpstream, img *benchImage, o ImagesOptions, n int, emit func(ImagesResult)) error {
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 64}}
	defer client.CloseIdleConnections()
	if err := os.MkdirAll(filepath.Join(dir, "a"), 0o755); err != nil {
		return err
	}
	p, err := startCache(ctx, sys, filepath.Join(dir, "a"), up.url, o)
	if err != nil {
		return err
	}
	defer p.stop()
	// Cold, then warm.
	for _, c := range []string{"cold", "warm"} {
		up.reset()
		start := time.Now()
		got, err := pull(ctx, client, p.url)
		el := time.Since(start)
		if err != nil {
			return fmt.Errorf("%s pull: %w", c, err)
		}
		emit(ImagesResult{Case: c, System: sys, Round: n, Seconds: round(el.Seconds()), MBPerSecond: mbps(got, el),
			UpstreamBytes: up.bytes.Load(), UpstreamBlobGets: up.blobGets.Load(), Pulls: 1})
	}
	// Pull by tag with the uplink hung (the image is cached).
	up.reset()
	up.setHang(true)
	hctx, cancel := context.WithTimeout(ctx, o.HangTimeout)
	start := time.Now()
	got, err := pull(hctx, client, p.url)
	el := time.Since(start)
	cancel()
	up.setHang(false)
	r := ImagesResult{Case: "hung_tag", System: sys, Round: n, Seconds: round(el.Seconds()), Pulls: 1}
	if err != nil {
		r.TimedOut = hctx.Err() != nil
		r.Note = err.Error()
		if len(r.Note) > 200 {
			r.Note = r.Note[:200]
		}
	} else {
		r.MBPerSecond = mbps(got, el)
	}
	emit(r)
	p.stop()
	client.CloseIdleConnections()

	// Concurrent cold pulls against a fresh store.
	if err := os.MkdirAll(filepath.Join(dir, "b"), 0o755); err != nil {
		return err
	}
	p2, err := startCache(ctx, sys, filepath.Join(dir, "b"), up.url, o)
	if err != nil {
		return err
	}
	defer p2.stop()
	up.reset()
	errs := make([]error, o.Concurrency)
	var total atomic.Int64
	var wg sync.WaitGroup
	start = time.Now()
	for i := range o.Concurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n, err := pull(ctx, client, p2.url)
			total.Add(n)
			errs[i] = err
		}()
	}
	wg.Wait()
	el = time.Since(start)
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("concurrent cold pulls: %w", err)
	}
	emit(ImagesResult{Case: "concurrent_cold", System: sys, Round: n, Seconds: round(el.Seconds()), MBPerSecond: mbps(total.Load(), el),
		UpstreamBytes: up.bytes.Load(), UpstreamBlobGets: up.blobGets.Load(), Pulls: o.Concurrency})
	return nil
}

// imgMedian is the median of one case's runs on one system, field by field.
func imgMedian(all []ImagesResult, c, sys string) ImagesResult {
	var rs []ImagesResult
	for _, r := range all {
		if r.Case == c && r.System == sys && r.Stat == "run" {
			rs = append(rs, r)
		}
	}
	if len(rs) == 0 {
		return ImagesResult{Bench: "images", Case: c, System: sys, Stat: "median"}
	}
	m := rs[0]
	m.Stat, m.Round, m.Note = "median", 0, ""
	m.Seconds = medianBy(rs, func(r ImagesResult) float64 { return r.Seconds })
	m.MBPerSecond = medianBy(rs, func(r ImagesResult) float64 { return r.MBPerSecond })
	m.UpstreamBytes = int64(medianBy(rs, func(r ImagesResult) float64 { return float64(r.UpstreamBytes) }))
	m.UpstreamBlobGets = int64(medianBy(rs, func(r ImagesResult) float64 { return float64(r.UpstreamBlobGets) }))
	m.TimedOut = false
	for _, r := range rs {
		m.TimedOut = m.TimedOut || r.TimedOut
	}
	return m
}

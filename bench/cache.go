package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	_ "embed"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"canopy/edgecache"
	"canopy/edgecache/localtls"
)

//go:embed testdata/nginx-cache.conf
var nginxCacheConf string

//go:embed testdata/nginx-cache-tls.conf
var nginxCacheTLSConf string

// benchTLSName is the name wrk sends by SNI (it sends the URL's host, an
// IP address here); Canopy's leaf is issued for it.
const benchTLSName = "127.0.0.1"

// CacheOptions configures RunCache.
type CacheOptions struct {
	Dir         string        // temporary directories are made inside and removed
	Rounds      int           // rounds of Canopy then nginx, alternated
	Duration    time.Duration // each wrk run
	Connections int           // wrk -c
	Threads     int           // wrk -t
	// CanopyCmd runs Canopy's edge cache as a child process like nginx:
	// the command and its leading arguments, to which "cache serve
	// --origin URL --dir DIR --listen ADDR" (and the --tls-* flags) is
	// appended. Empty: in this process.
	CanopyCmd []string
	Nginx     string // nginx binary (default "nginx" on PATH)
	Wrk       string // wrk binary (default "wrk" on PATH)
	// Plain and TLS choose the runs without and with TLS (neither: both).
	Plain, TLS bool
	// Workloads limits the runs to these workloads (hit-1k, hit-16k,
	// miss-1k; empty: all).
	Workloads []string
}

// CacheResult is one wrk run against one cache (a JSON line).
type CacheResult struct {
	Bench       string  `json:"bench"`
	Round       int     `json:"round,omitempty"`
	System      string  `json:"system"`
	Workload    string  `json:"workload"`
	TLS         bool    `json:"tls"`
	RequestsSec float64 `json:"requests_per_sec"`
	P99Ms       float64 `json:"p99_ms"`
	Requests    int64   `json:"requests"`
	Errors      int64   `json:"errors"`          // socket errors and non-2xx/3xx responses
	OriginReqs  int64   `json:"origin_requests"` // what reached the origin during the run
}

// CacheSummary compares the medians of one workload (a JSON line).
type CacheSummary struct {
	Bench        string  `json:"bench"`
	Workload     string  `json:"workload"`
	TLS          bool    `json:"tls"`
	CanopyRPS    float64 `json:"canopy_requests_per_sec"`
	NginxRPS     float64 `json:"nginx_requests_per_sec"`
	Ratio        float64 `json:"ratio_canopy_nginx"`
	CanopyP99Ms  float64 `json:"canopy_p99_ms"`
	NginxP99Ms   float64 `json:"nginx_p99_ms"`
	Target       float64 `json:"target_ratio,omitempty"`
	TargetMet    *bool   `json:"target_met,omitempty"`
	Rounds       int     `json:"rounds"`
	NginxVersion string  `json:"nginx_version"`
}

// cacheWorkload is what wrk asks for: one path again and again (hits),
// or a unique URL per request (misses).
type cacheWorkload struct {
	name, path string
	miss       bool
}

// cacheWorkloads: hits on one 1 KiB and one 16 KiB object, and misses on
// a unique 1 KiB URL per request.
var cacheWorkloads = []cacheWorkload{
	{"hit-1k", "/obj/1k", false},
	{"hit-16k", "/obj/16k", false},
	{"miss-1k", "/miss/", true},
}

// missScript makes every request of a run a unique URL: the run id (the
// script's argument), the thread and a counter.
const missScript = `local threads = 0
function setup(thread)
  threads = threads + 1
  thread:set("tid", threads)
end
function init(args)
  n = 0
  run = args[1] or "r"
end
function request()
  n = n + 1
  return wrk.format("GET", "/miss/" .. run .. "-" .. tid .. "-" .. n)
end
`

// benchOrigin serves cacheable objects of the sizes the workloads name
// and counts its requests.
type benchOrigin struct {
	srv  *http.Server
	ln   net.Listener
	reqs atomic.Int64
}

func startBenchOrigin() (*benchOrigin, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	o := &benchOrigin{ln: ln}
	k1, k16 := strings.Repeat("a", 1<<10), strings.Repeat("b", 16<<10)
	o.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.reqs.Add(1)
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("Content-Type", "application/octet-stream")
		switch {
		case r.URL.Path == "/obj/1k" || strings.HasPrefix(r.URL.Path, "/miss/"):
			io.WriteString(w, k1)
		case r.URL.Path == "/obj/16k":
			io.WriteString(w, k16)
		default:
			http.NotFound(w, r)
		}
	})}
	go o.srv.Serve(ln)
	return o, nil
}

// cacheServer is one system under test, listening on base (http://) and
// tlsBase (https://, when TLS runs are asked for).
type cacheServer struct {
	name          string
	base, tlsBase string
	stop          func() error
}

// benchTLS is what the TLS runs need: an event CA (its directory, for
// Canopy) and a leaf it issued for nginx.
type benchTLS struct {
	caDir      string
	ca         *localtls.CA
	leafPEM    []byte // certificate chain
	leafKeyPEM []byte
}

func newBenchTLS(dir string) (*benchTLS, error) {
	bt := &benchTLS{caDir: filepath.Join(dir, "ca")}
	ca, err := localtls.InitCA(bt.caDir, "canopy bench CA", time.Now(), 48*time.Hour)
	if err != nil {
		return nil, err
	}
	bt.ca = ca
	leaf, err := ca.Issue(benchTLSName, time.Now(), localtls.MaxLeafLifetime)
	if err != nil {
		return nil, err
	}
	for _, der := range leaf.Certificate {
		bt.leafPEM = append(bt.leafPEM, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})...)
	}
	key, err := x509.MarshalPKCS8PrivateKey(leaf.PrivateKey)
	if err != nil {
		return nil, err
	}
	bt.leafKeyPEM = pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: key})
	return bt, nil
}

// startChild runs a server process and waits until it accepts on every
// one of addrs.
func startChild(ctx context.Context, name string, addrs []string, logPath string, args ...string) (func() error, error) {
	logf, err := os.Create(logPath)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait(); logf.Close() }()
	stop := func() error {
		cmd.Process.Signal(os.Interrupt)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		addr := addrs[0]
		c, err := net.DialTimeout("tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			if addrs = addrs[1:]; len(addrs) == 0 {
				return stop, nil
			}
			continue
		}
		select {
		case err := <-exited:
			out, _ := os.ReadFile(logPath)
			return nil, fmt.Errorf("%s exited before listening (%v): %s", name, err, strings.TrimSpace(string(out)))
		case <-ctx.Done():
			stop()
			return nil, ctx.Err()
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			stop()
			return nil, fmt.Errorf("%s: not listening on %s after 10s", name, addr)
		}
	}
}

func startCanopyCache(ctx context.Context, o CacheOptions, dir, origin string, bt *benchTLS) (*cacheServer, error) {
	storeDir := filepath.Join(dir, "canopy")
	if len(o.CanopyCmd) > 0 {
		addrs, err := freeAddrs(bt != nil)
		if err != nil {
			return nil, err
		}
		args := append(slices.Clone(o.CanopyCmd), "cache", "serve", "--origin", origin, "--dir", storeDir, "--listen", addrs[0])
		if bt != nil {
			args = append(args, "--tls-listen", addrs[1], "--tls-ca", bt.caDir, "--tls-name", benchTLSName)
		}
		stop, err := startChild(ctx, "canopy", addrs, filepath.Join(dir, "canopy.log"), args...)
		if err != nil {
			return nil, err
		}
		return newCacheServer("canopy", addrs, stop), nil
	}
	if _, err := edgecache.SetGCPercent(0); err != nil { // as canopy cache serve
		return nil, err
	}
	st, err := edgecache.OpenStore(storeDir, 256<<20)
	if err != nil {
		return nil, err
	}
	u, _ := url.Parse(origin)
	h, err := edgecache.New(edgecache.Config{Origins: []*url.URL{u}, Store: st, ResponseHeaderTimeout: 10 * time.Second})
	if err != nil {
		return nil, err
	}
	var lns []net.Listener
	for range 1 + boolInt(bt != nil) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		lns = append(lns, edgecache.Listener(ln))
	}
	if bt != nil {
		is, err := bt.ca.NewIssuer([]string{benchTLSName}, 0, nil)
		if err != nil {
			return nil, err
		}
		lns[1] = tls.NewListener(lns[1], localtls.ServerConfig(is.GetCertificate))
	}
	srv := &http.Server{Handler: edgecache.Admin(st, []string{"canopy"}, h), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10,
		ConnContext: edgecache.ConnContext, ErrorLog: log.New(io.Discard, "", 0)} // the readiness probes' bare TLS connections
	var addrs []string
	for _, ln := range lns {
		go srv.Serve(ln)
		addrs = append(addrs, ln.Addr().String())
	}
	return newCacheServer("canopy", addrs, func() error {
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		return h.Close(sctx)
	}), nil
}

func newCacheServer(name string, addrs []string, stop func() error) *cacheServer {
	s := &cacheServer{name: name, base: "http://" + addrs[0], stop: stop}
	if len(addrs) > 1 {
		s.tlsBase = "https://" + addrs[1]
	}
	return s
}

// freeAddrs returns a free loopback address, and a second one with tls.
func freeAddrs(tls bool) ([]string, error) {
	var out []string
	for range 1 + boolInt(tls) {
		a, err := freeAddr()
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

func startNginxCache(ctx context.Context, o CacheOptions, dir, origin string, bt *benchTLS) (*cacheServer, error) {
	prefix := filepath.Join(dir, "nginx")
	for _, d := range []string{"tmp", "cache", "tls"} {
		if err := os.MkdirAll(filepath.Join(prefix, d), 0o700); err != nil {
			return nil, err
		}
	}
	addrs, err := freeAddrs(bt != nil)
	if err != nil {
		return nil, err
	}
	tlsConf := ""
	if bt != nil {
		tlsConf = strings.NewReplacer("@PREFIX@", prefix, "@LISTEN_TLS@", addrs[1]).Replace(nginxCacheTLSConf)
		for name, b := range map[string][]byte{"leaf.pem": bt.leafPEM, "leaf.key": bt.leafKeyPEM} {
			if err := os.WriteFile(filepath.Join(prefix, "tls", name), b, 0o600); err != nil {
				return nil, err
			}
		}
	}
	conf := strings.NewReplacer("@PREFIX@", prefix, "@LISTEN@", addrs[0], "@ORIGIN@", strings.TrimPrefix(origin, "http://")).Replace(nginxCacheConf)
	confPath := filepath.Join(prefix, "nginx.conf")
	for path, text := range map[string]string{confPath: conf, filepath.Join(prefix, "tls.conf"): tlsConf} {
		if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
			return nil, err
		}
	}
	// SIGINT is one of nginx's fast-shutdown signals.
	stop, err := startChild(ctx, "nginx", addrs, filepath.Join(dir, "nginx.log"), o.Nginx, "-p", prefix, "-c", confPath, "-e", "stderr")
	if err != nil {
		return nil, err
	}
	return newCacheServer("nginx", addrs, stop), nil
}

// warmHit fetches path until the cache answers it from storage, so the
// hit runs measure hits only.
func warmHit(ctx context.Context, base, path string) error {
	for range 5 {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return err
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("warm %s%s: status %d", base, path, resp.StatusCode)
		}
		if strings.Contains(resp.Header.Get("Cache-Status"), "hit") || resp.Header.Get("X-Cache-Status") == "HIT" {
			return nil
		}
	}
	return fmt.Errorf("warm %s%s: never answered from the cache", base, path)
}

var (
	rpsRe    = regexp.MustCompile(`Requests/sec:\s+([0-9.]+)`)
	p99Re    = regexp.MustCompile(`(?m)^\s*99(?:\.000)?%\s+([0-9.]+)(us|ms|s)\s*$`)
	totalRe  = regexp.MustCompile(`(\d+) requests in`)
	sockRe   = regexp.MustCompile(`Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)`)
	non2xxRe = regexp.MustCompile(`Non-2xx or 3xx responses: (\d+)`)
)

// parseWrk reads requests/s, p99 (from --latency), the request count and
// the errors from wrk's report.
func parseWrk(out string) (rps, p99ms float64, total, errs int64, err error) {
	m := rpsRe.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0, 0, fmt.Errorf("wrk: no Requests/sec in %q", out)
	}
	rps, _ = strconv.ParseFloat(m[1], 64)
	m = p99Re.FindStringSubmatch(out)
	if m == nil {
		return 0, 0, 0, 0, fmt.Errorf("wrk: no 99%% latency in %q (run with --latency)", out)
	}
	v, _ := strconv.ParseFloat(m[1], 64)
	switch m[2] {
	case "us":
		v /= 1000
	case "s":
		v *= 1000
	}
	p99ms = v
	if m := totalRe.FindStringSubmatch(out); m != nil {
		total, _ = strconv.ParseInt(m[1], 10, 64)
	}
	if m := sockRe.FindStringSubmatch(out); m != nil {
		for _, s := range m[1:] {
			n, _ := strconv.ParseInt(s, 10, 64)
			errs += n
		}
	}
	if m := non2xxRe.FindStringSubmatch(out); m != nil {
		n, _ := strconv.ParseInt(m[1], 10, 64)
		errs += n
	}
	return rps, p99ms, total, errs, nil
}

func runWrk(ctx context.Context, o CacheOptions, target string, script string, scriptArgs ...string) (string, error) {
	args := []string{"-t", strconv.Itoa(o.Threads), "-c", strconv.Itoa(o.Connections),
		"-d", fmt.Sprintf("%ds", max(1, int(o.Duration.Round(time.Second)/time.Second))), "--latency"}
	if script != "" {
		args = append(args, "-s", script)
	}
	args = append(args, target)
	if len(scriptArgs) > 0 {
		args = append(append(args, "--"), scriptArgs...)
	}
	out, err := exec.CommandContext(ctx, o.Wrk, args...).CombinedOutput()
	if err != nil {
		return "", fmt.Errorf("wrk %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}

// RunCache measures Canopy's edge cache and nginx proxy_cache in front of
// the same origin with wrk: hits on 1 KiB and 16 KiB objects and misses
// (a unique URL per request), over plain HTTP and over TLS (each cache's
// HTTPS listener with a leaf from an event CA), alternating Canopy and
// nginx for each run of a round. It writes every run and then, per
// workload and transport, the medians and the ratio canopy/nginx as JSON
// lines.
func RunCache(ctx context.Context, w io.Writer, o CacheOptions) error {
	if o.Rounds < 1 || o.Duration <= 0 || o.Connections < 1 || o.Threads < 1 || o.Threads > o.Connections {
		return fmt.Errorf("bench cache: want rounds >= 1, duration > 0, 1 <= threads <= connections (got %d, %v, %d, %d)",
			o.Rounds, o.Duration, o.Threads, o.Connections)
	}
	workloads, err := selectWorkloads(o.Workloads)
	if err != nil {
		return err
	}
	if !o.Plain && !o.TLS {
		o.Plain, o.TLS = true, true
	}
	if o.Nginx == "" {
		o.Nginx = "nginx"
	}
	if o.Wrk == "" {
		o.Wrk = "wrk"
	}
	if o.Nginx, err = exec.LookPath(o.Nginx); err != nil {
		return fmt.Errorf("bench cache: nginx not found (apt-get install -y nginx): %w", err)
	}
	if o.Wrk, err = exec.LookPath(o.Wrk); err != nil {
		return fmt.Errorf("bench cache: wrk not found (apt-get install -y wrk): %w", err)
	}
	version, _ := exec.CommandContext(ctx, o.Nginx, "-v").CombinedOutput()
	dir, err := os.MkdirTemp(o.Dir, "canopy-bench-cache-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	script := filepath.Join(dir, "miss.lua")
	if err := os.WriteFile(script, []byte(missScript), 0o600); err != nil {
		return err
	}
	var bt *benchTLS
	if o.TLS {
		if bt, err = newBenchTLS(dir); err != nil {
			return fmt.Errorf("bench cache: tls: %w", err)
		}
	}
	origin, err := startBenchOrigin()
	if err != nil {
		return err
	}
	defer origin.srv.Close()
	originURL := "http://" + origin.ln.Addr().String()

	canopy, err := startCanopyCache(ctx, o, dir, originURL, bt)
	if err != nil {
		return fmt.Errorf("bench cache: canopy: %w", err)
	}
	defer canopy.stop()
	nginx, err := startNginxCache(ctx, o, dir, originURL, bt)
	if err != nil {
		return fmt.Errorf("bench cache: %w", err)
	}
	defer nginx.stop()
	servers := []*cacheServer{canopy, nginx}
	// Both caches key on the target alone, so warming over HTTP serves
	// the HTTPS listener too.
	for _, s := range servers {
		for _, wl := range workloads {
			if !wl.miss {
				if err := warmHit(ctx, s.base, wl.path); err != nil {
					return fmt.Errorf("bench cache: %s: %w", s.name, err)
				}
			}
		}
	}
	var transports []bool
	if o.Plain {
		transports = append(transports, false)
	}
	if o.TLS {
		transports = append(transports, true)
	}
	enc := json.NewEncoder(w)
	var results []CacheResult
	for round := 1; round <= o.Rounds; round++ {
		for _, withTLS := range transports {
			for _, wl := range workloads {
				for _, s := range servers {
					r, err := runCacheWorkload(ctx, o, origin, s, wl, withTLS, script, round)
					if err != nil {
						return err
					}
					results = append(results, r)
					if err := enc.Encode(r); err != nil {
						return err
					}
				}
			}
		}
	}
	for _, s := range summarizeCache(results, o.Rounds, strings.TrimSpace(string(version))) {
		if err := enc.Encode(s); err != nil {
			return err
		}
	}
	return nil
}

// selectWorkloads returns the named workloads (all when none is named).
func selectWorkloads(names []string) ([]cacheWorkload, error) {
	if len(names) == 0 {
		return cacheWorkloads, nil
	}
	var out []cacheWorkload
	for _, wl := range cacheWorkloads {
		if slices.Contains(names, wl.name) {
			out = append(out, wl)
		}
	}
	for _, n := range names {
		if !slices.ContainsFunc(cacheWorkloads, func(wl cacheWorkload) bool { return wl.name == n }) {
			return nil, fmt.Errorf("bench cache: no workload %q (have hit-1k, hit-16k, miss-1k)", n)
		}
	}
	return out, nil
}

// runCacheWorkload is one wrk run of a workload against one cache.
func runCacheWorkload(ctx context.Context, o CacheOptions, origin *benchOrigin, s *cacheServer, wl cacheWorkload,
	withTLS bool, script string, round int) (CacheResult, error) {
	base, scheme := s.base, "http"
	if withTLS {
		base, scheme = s.tlsBase, "https"
	}
	before := origin.reqs.Load()
	var out string
	var err error
	if wl.miss {
		out, err = runWrk(ctx, o, base+"/", script, fmt.Sprintf("%s%s%d", s.name, scheme, round))
	} else {
		out, err = runWrk(ctx, o, base+wl.path, "")
	}
	if err != nil {
		return CacheResult{}, fmt.Errorf("bench cache: %s %s %s: %w", s.name, scheme, wl.name, err)
	}
	rps, p99, total, errs, err := parseWrk(out)
	if err != nil {
		return CacheResult{}, fmt.Errorf("bench cache: %s %s %s: %w", s.name, scheme, wl.name, err)
	}
	return CacheResult{Bench: "cache", Round: round, System: s.name, Workload: wl.name, TLS: withTLS, RequestsSec: rps, P99Ms: p99,
		Requests: total, Errors: errs, OriginReqs: origin.reqs.Load() - before}, nil
}

// summarizeCache gives the medians and the ratio of each workload run,
// without and with TLS; hits carry the 0.8x target.
func summarizeCache(results []CacheResult, rounds int, version string) []CacheSummary {
	var out []CacheSummary
	for _, withTLS := range []bool{false, true} {
		for _, wl := range cacheWorkloads {
			med := func(system string, f func(CacheResult) float64) float64 {
				var v []float64
				for _, r := range results {
					if r.System == system && r.Workload == wl.name && r.TLS == withTLS {
						v = append(v, f(r))
					}
				}
				return medianFloat(v)
			}
			rps := func(r CacheResult) float64 { return r.RequestsSec }
			p99 := func(r CacheResult) float64 { return r.P99Ms }
			s := CacheSummary{Bench: "cache-summary", Workload: wl.name, TLS: withTLS, Rounds: rounds, NginxVersion: version,
				CanopyRPS: med("canopy", rps), NginxRPS: med("nginx", rps), CanopyP99Ms: med("canopy", p99), NginxP99Ms: med("nginx", p99)}
			if s.CanopyRPS == 0 && s.NginxRPS == 0 {
				continue // not run
			}
			if s.NginxRPS > 0 {
				s.Ratio = float64(int(s.CanopyRPS/s.NginxRPS*1000)) / 1000
			}
			if !wl.miss {
				met := s.Ratio >= 0.8
				s.Target, s.TargetMet = 0.8, &met
			}
			out = append(out, s)
		}
	}
	return out
}

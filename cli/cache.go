package cli

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"canopy/config"
	"canopy/edgecache"
	"canopy/edgecache/localtls"
)

func init() {
	register(command{
		name:    "cache serve",
		summary: "run the edge cache alone in front of one origin (for tests and trials)",
		run:     runCacheServe,
	})
	register(command{
		name:    "cache purge",
		summary: "remove responses from the edge cache by URL, prefix, Surrogate-Key tag, or all",
		run:     runCachePurge,
	})
	register(command{
		name:    "cache warm",
		summary: "fetch a URL list or a sitemap through the edge cache before doors open",
		run:     runCacheWarm,
	})
}

func runCacheServe(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "cache serve", "--origin URL --dir DIR [--listen ADDR] [--max-bytes N] [--gc-percent N] [--tls-listen ADDR --tls-ca DIR [--tls-name NAME,...]]")
	origin := fs.String("origin", "", "origin base URL, http(s)://host[:port] (required)")
	listen := fs.String("listen", "127.0.0.1:8081", "listen address")
	dir := fs.String("dir", "", "store directory (required)")
	maxBytes := fs.Int64("max-bytes", 256<<20, "store size budget in bytes")
	tlsListen := fs.String("tls-listen", "", "also serve HTTPS (HTTP/2 and HTTP/1.1) on this address, with --tls-ca")
	tlsCA := fs.String("tls-ca", "", "event CA directory (canopy tls init) issuing the HTTPS leaf certificates")
	tlsNames := fs.String("tls-name", "localhost", "comma-separated names (SNI) the CA issues leaves for")
	gcPercent := fs.Int("gc-percent", 0, fmt.Sprintf("garbage collection target, 1..10000 (0: %d; the GOGC environment variable wins)", edgecache.DefaultGCPercent))
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if *origin == "" || *dir == "" {
		return usageErrorf("--origin and --dir are required")
	}
	if _, err := edgecache.SetGCPercent(*gcPercent); err != nil {
		return usageErrorf("--gc-percent: %v", err)
	}
	if (*tlsListen == "") != (*tlsCA == "") {
		return usageErrorf("--tls-listen and --tls-ca go together")
	}
	var tlsLn net.Listener
	if *tlsListen != "" {
		ca, err := localtls.LoadCA(*tlsCA)
		if err != nil {
			return err
		}
		is, err := ca.NewIssuer(strings.Split(*tlsNames, ","), 0, nil)
		if err != nil {
			return err
		}
		if tlsLn, err = net.Listen("tcp", *tlsListen); err != nil {
			return err
		}
		tlsLn = tls.NewListener(edgecache.Listener(tlsLn), localtls.ServerConfig(is.GetCertificate))
	}
	u, err := url.Parse(*origin)
	if err != nil {
		return usageErrorf("--origin %q: %v", *origin, err)
	}
	st, err := edgecache.OpenStore(*dir, *maxBytes)
	if err != nil {
		return err
	}
	h, err := edgecache.New(edgecache.Config{Origins: []*url.URL{u}, Store: st, ResponseHeaderTimeout: 10 * time.Second})
	if err != nil {
		return usageErrorf("%v", err)
	}
	ln, err := net.Listen("tcp", *listen)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: edgecache.Admin(st, []string{"canopy"}, h), ReadHeaderTimeout: 10 * time.Second, MaxHeaderBytes: 64 << 10,
		ConnContext: edgecache.ConnContext}
	done := make(chan error, 2)
	go func() { done <- srv.Serve(edgecache.Listener(ln)) }()
	fmt.Fprintf(e.stdout, "canopy cache serving http://%s in front of %s\n", ln.Addr(), u)
	if tlsLn != nil {
		go func() { done <- srv.Serve(tlsLn) }()
		fmt.Fprintf(e.stdout, "canopy cache serving https://%s (names %s)\n", tlsLn.Addr(), *tlsNames)
	}
	select {
	case <-ctx.Done():
	case err := <-done:
		return err
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	return h.Close(sctx)
}

// cacheTarget resolves the edge cache's base URL: --cache, else [cache]
// listen of the configuration (--config or CANOPY_CONFIG).
func cacheTarget(cacheURL, cfgPath string) (*url.URL, error) {
	if cacheURL == "" {
		if cfgPath == "" {
			cfgPath = os.Getenv("CANOPY_CONFIG")
		}
		if cfgPath == "" {
			return nil, usageErrorf("give --cache URL (the cache's listener) or --config with a [cache] table")
		}
		cfg, err := config.Load(cfgPath)
		if err != nil {
			return nil, err
		}
		if err := cfg.ApplyEnv(os.Getenv); err != nil {
			return nil, err
		}
		if cfg.Cache.Listen == "" {
			return nil, fmt.Errorf("%s: [cache] listen is not set", cfgPath)
		}
		host, port, err := net.SplitHostPort(cfg.Cache.Listen)
		if err != nil {
			return nil, fmt.Errorf("%s: cache.listen: %v", cfgPath, err)
		}
		if host == "" || net.ParseIP(host) != nil && net.ParseIP(host).IsUnspecified() {
			host = "127.0.0.1"
		}
		cacheURL = "http://" + net.JoinHostPort(host, port)
	}
	u, err := url.Parse(cacheURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, usageErrorf("--cache %q: want http(s)://host:port", cacheURL)
	}
	return u, nil
}

func runCachePurge(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "cache purge", "--url URL | --prefix /PATH | --tag TAG | --all [--site NAME] [--cache URL | --config FILE]")
	var p edgecache.Purge
	fs.StringVar(&p.URL, "url", "", "purge one URL (absolute, or /path?query)")
	fs.StringVar(&p.Prefix, "prefix", "", "purge every URL whose path starts with this /prefix")
	fs.StringVar(&p.Tag, "tag", "", "purge every response whose Surrogate-Key lists this tag")
	fs.BoolVar(&p.All, "all", false, "purge everything (flush)")
	fs.StringVar(&p.Site, "site", "", "only this site (default: all sites, or the URL's host)")
	cacheURL := fs.String("cache", "", "the edge cache's base URL (default from [cache] listen)")
	cfgPath := fs.String("config", "", "TOML configuration with the [cache] table (env CANOPY_CONFIG)")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	n := 0
	for _, set := range []bool{p.URL != "", p.Prefix != "", p.Tag != "", p.All} {
		if set {
			n++
		}
	}
	if n != 1 {
		return usageErrorf("give exactly one of --url, --prefix, --tag, --all")
	}
	base, err := cacheTarget(*cacheURL, *cfgPath)
	if err != nil {
		return err
	}
	body, _ := json.Marshal(p)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, base.JoinPath(edgecache.AdminPath).String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := (&http.Client{Timeout: 30 * time.Second}).Do(req)
	if err != nil {
		return fmt.Errorf("cache purge: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return fmt.Errorf("cache purge: %s: %s", resp.Status, strings.TrimSpace(string(b)))
	}
	var out struct {
		Purged int `json:"purged"`
	}
	if err := json.Unmarshal(b, &out); err != nil {
		return fmt.Errorf("cache purge: bad answer %q", b)
	}
	fmt.Fprintf(e.stdout, "purged %d stored responses\n", out.Purged)
	return nil
}

func runCacheWarm(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "cache warm", "--urls FILE | --sitemap URL [--cache URL | --config FILE] [--concurrency N]")
	list := fs.String("urls", "", "file listing absolute URLs, one per line (# comments)")
	sitemap := fs.String("sitemap", "", "sitemap (or sitemap index) URL whose <loc> URLs to fetch")
	cacheURL := fs.String("cache", "", "the edge cache's base URL (default from [cache] listen)")
	cfgPath := fs.String("config", "", "TOML configuration with the [cache] table (env CANOPY_CONFIG)")
	conc := fs.Int("concurrency", 4, "parallel fetches")
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	if (*list == "") == (*sitemap == "") {
		return usageErrorf("give one of --urls FILE or --sitemap URL")
	}
	if *conc < 1 || *conc > 64 {
		return usageErrorf("--concurrency %d: want 1..64", *conc)
	}
	base, err := cacheTarget(*cacheURL, *cfgPath)
	if err != nil {
		return err
	}
	client := &http.Client{Timeout: 5 * time.Minute}
	var urls []*url.URL
	if *list != "" {
		urls, err = readURLList(*list)
	} else {
		urls, err = readSitemap(ctx, client, *sitemap, 0)
	}
	if err != nil {
		return err
	}
	if len(urls) == 0 {
		return errors.New("cache warm: no URLs to fetch")
	}
	w := &warmer{e: e, base: base, client: client, total: len(urls), tty: isTerminal(e.stdout)}
	jobs := make(chan *url.URL)
	var wg sync.WaitGroup
	for range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for u := range jobs {
				w.fetch(ctx, u)
			}
		}()
	}
	for _, u := range urls {
		select {
		case jobs <- u:
		case <-ctx.Done():
		}
	}
	close(jobs)
	wg.Wait()
	if w.tty {
		fmt.Fprintln(e.stdout)
	}
	fmt.Fprintf(e.stdout, "warmed %d of %d URLs (%d were already cached), %s\n",
		w.done.Load()-int64(len(w.failed)), len(urls), w.hits.Load(), humanBytes(w.bytes.Load()))
	if len(w.failed) > 0 {
		return fmt.Errorf("cache warm: %d of %d URLs failed: %s", len(w.failed), len(urls), strings.Join(w.failed, ", "))
	}
	return ctx.Err()
}

// warmer fetches URLs through the cache and draws the progress bar.
type warmer struct {
	e      *env
	base   *url.URL
	client *http.Client
	total  int
	tty    bool

	done, hits, bytes atomic.Int64
	mu                sync.Mutex
	failed            []string
}

func (w *warmer) fetch(ctx context.Context, u *url.URL) {
	err := func() error {
		target := *w.base
		target.Path, target.RawQuery = u.Path, u.RawQuery
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, target.String(), nil)
		if err != nil {
			return err
		}
		req.Host = u.Host // the site
		resp, err := w.client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		w.bytes.Add(n)
		if err != nil {
			return err
		}
		if resp.StatusCode >= 400 {
			return fmt.Errorf("%s", resp.Status)
		}
		if cs := resp.Header.Get("Cache-Status"); strings.Contains(cs, "; hit") {
			w.hits.Add(1)
		}
		return nil
	}()
	w.mu.Lock()
	defer w.mu.Unlock()
	n := w.done.Add(1)
	if err != nil {
		w.failed = append(w.failed, u.String())
		if w.tty {
			fmt.Fprint(w.e.stdout, "\r\033[K")
		}
		fmt.Fprintf(w.e.stdout, "%s: FAILED: %v\n", u, err)
	}
	if w.tty {
		const width = 30
		filled := int(n) * width / w.total
		fmt.Fprintf(w.e.stdout, "\r[%s%s] %d/%d  %s  %d failed", strings.Repeat("#", filled), strings.Repeat(".", width-filled),
			n, w.total, humanBytes(w.bytes.Load()), len(w.failed))
	}
}

// isTerminal reports whether w is a character device (a terminal).
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func readURLList(path string) ([]*url.URL, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var out []*url.URL
	sc := bufio.NewScanner(file)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(s, "#") || s == "" {
			continue
		}
		u, err := parseWarmURL(s)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		out = append(out, u)
	}
	return out, sc.Err()
}

func parseWarmURL(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("%q: want an absolute http(s) URL", s)
	}
	return u, nil
}

// readSitemap fetches a sitemap (or, up to one level deep, a sitemap
// index) and returns its <loc> URLs.
func readSitemap(ctx context.Context, client *http.Client, src string, depth int) ([]*url.URL, error) {
	if _, err := parseWarmURL(src); err != nil {
		return nil, fmt.Errorf("sitemap %v", err)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, src, nil)
	if err != nil {
		return nil, err
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("sitemap: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("sitemap %s: %s", src, resp.Status)
	}
	var doc struct {
		XMLName xml.Name
		URLs    []struct {
			Loc string `xml:"loc"`
		} `xml:"url"`
		Sitemaps []struct {
			Loc string `xml:"loc"`
		} `xml:"sitemap"`
	}
	if err := xml.NewDecoder(io.LimitReader(resp.Body, 50<<20)).Decode(&doc); err != nil {
		return nil, fmt.Errorf("sitemap %s: %v", src, err)
	}
	var out []*url.URL
	for _, l := range doc.URLs {
		u, err := parseWarmURL(strings.TrimSpace(l.Loc))
		if err != nil {
			return nil, fmt.Errorf("sitemap %s: <loc> %v", src, err)
		}
		out = append(out, u)
	}
	for _, sm := range doc.Sitemaps {
		if depth > 0 {
			return nil, fmt.Errorf("sitemap %s: nested sitemap index", src)
		}
		more, err := readSitemap(ctx, client, strings.TrimSpace(sm.Loc), depth+1)
		if err != nil {
			return nil, err
		}
		out = append(out, more...)
	}
	return out, nil
}

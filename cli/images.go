package cli

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"canopy/config"
	"canopy/imagecache"
)

func init() {
	register(command{
		name:    "images prefetch",
		summary: "pin and warm the image cache with the images listed in FILE, before the event",
		run:     runImagesPrefetch,
	})
	register(command{
		name:    "images ls",
		summary: "list the image cache's tags (size, pinned, complete)",
		run:     runImagesLs,
	})
	register(command{
		name:    "images rm",
		summary: "remove images (NAME:TAG or NAME@DIGEST) from the image cache",
		run:     runImagesRm,
	})
}

// imageFlags are the flags the images commands share.
type imageFlags struct{ config, dir string }

func (f *imageFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&f.config, "config", "", "TOML configuration file with the [images] tables (env CANOPY_CONFIG)")
	fs.StringVar(&f.dir, "dir", "", "data directory (default canopy-data; env CANOPY_NODE_DIR); the store is [images] dir or DIR/images")
}

// open opens the image cache the edge with this configuration would use.
func (f *imageFlags) open() (*imagecache.Cache, error) {
	im, err := f.load()
	if err != nil {
		return nil, err
	}
	return openImageCache(im, nil)
}

// load reads the [images] tables (with the store directory resolved).
func (f *imageFlags) load() (config.ImagesConfig, error) {
	path := f.config
	if path == "" {
		path = os.Getenv("CANOPY_CONFIG")
	}
	cfg, err := config.Load(path)
	if err != nil {
		return config.ImagesConfig{}, err
	}
	if err := cfg.ApplyEnv(os.Getenv); err != nil {
		return config.ImagesConfig{}, err
	}
	if f.dir != "" {
		cfg.Node.Dir = f.dir
	}
	im := cfg.Images
	if im.Dir == "" {
		im.Dir = filepath.Join(cfg.Node.Dir, "images")
	}
	return im, nil
}

// openImageCache opens the cache configured by im.
func openImageCache(im config.ImagesConfig, log *slog.Logger) (*imagecache.Cache, error) {
	ups := make([]imagecache.Upstream, len(im.Upstream))
	for i, u := range im.Upstream {
		ups[i] = imagecache.Upstream{Prefix: u.Prefix, Mirrors: u.Mirrors, Username: u.Username, Password: u.Password, Token: u.Token}
	}
	return imagecache.New(imagecache.Config{
		Dir: im.Dir, MaxBytes: im.MaxBytes, TagDeadline: im.TagDeadline.Duration,
		UpstreamTimeout: im.UpstreamTimeout.Duration, Upstreams: ups, Logger: log,
	})
}

// splitImageRef splits "name:tag", "name@digest" or "name" (tag latest).
func splitImageRef(s string) (name, ref string, err error) {
	if name, d, ok := strings.Cut(s, "@"); ok {
		return name, d, nil
	}
	name, ref = s, "latest"
	if i := strings.LastIndex(s, ":"); i > strings.LastIndex(s, "/") {
		name, ref = s[:i], s[i+1:]
	}
	if name == "" || ref == "" {
		return "", "", fmt.Errorf("image reference %q: want NAME:TAG or NAME@DIGEST", s)
	}
	return name, ref, nil
}

func runImagesPrefetch(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "images prefetch", "[flags] FILE\n\nFILE lists one image per line (NAME:TAG or NAME@DIGEST; # comments).")
	var f imageFlags
	f.register(fs)
	var platforms string
	fs.StringVar(&platforms, "platform", "", "comma-separated platforms to keep from multi-platform images (e.g. linux/amd64,linux/arm64); default all")
	if err := parseFlags(fs, args, 1); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageErrorf("want one FILE listing the images")
	}
	refs, err := readImageList(fs.Arg(0))
	if err != nil {
		return err
	}
	var opt imagecache.PinOptions
	for _, p := range strings.Split(platforms, ",") {
		if p = strings.TrimSpace(p); p != "" {
			opt.Platforms = append(opt.Platforms, p)
		}
	}
	c, err := f.open()
	if err != nil {
		return err
	}
	defer c.Close()
	var failed []string
	for i, s := range refs {
		name, ref, _ := splitImageRef(s)
		blobs, bytes := 0, int64(0)
		opt.Progress = func(d ocispec.Descriptor) {
			blobs++
			bytes += d.Size
			progressLine(e.stdout, i+1, len(refs), s, blobs, bytes)
		}
		res, err := c.Pin(ctx, name, ref, opt)
		if err != nil {
			fmt.Fprintf(e.stdout, "\r[%d/%d] %s: FAILED: %v\n", i+1, len(refs), s, err)
			failed = append(failed, s)
			continue
		}
		progressLine(e.stdout, i+1, len(refs), s, res.Blobs, res.Bytes)
		fmt.Fprintf(e.stdout, " pinned %s\n", res.Digest)
	}
	if len(failed) > 0 {
		return fmt.Errorf("%d of %d images not prefetched: %s", len(failed), len(refs), strings.Join(failed, ", "))
	}
	return nil
}

// progressLine redraws one image's progress bar (blobs stored so far).
func progressLine(w io.Writer, n, of int, ref string, blobs int, bytes int64) {
	const width = 20
	filled := n * width / of
	fmt.Fprintf(w, "\r[%s%s] %d/%d %s  %d blobs  %s", strings.Repeat("#", filled), strings.Repeat(".", width-filled), n, of, ref, blobs, humanBytes(bytes))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d B", n)
}

func readImageList(path string) ([]string, error) {
	file, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer file.Close()
	var refs []string
	sc := bufio.NewScanner(file)
	for line := 1; sc.Scan(); line++ {
		s := strings.TrimSpace(sc.Text())
		if i := strings.Index(s, "#"); i >= 0 {
			s = strings.TrimSpace(s[:i])
		}
		if s == "" {
			continue
		}
		if strings.ContainsAny(s, " \t") {
			return nil, fmt.Errorf("%s:%d: one image per line, got %q", path, line, s)
		}
		if _, _, err := splitImageRef(s); err != nil {
			return nil, fmt.Errorf("%s:%d: %v", path, line, err)
		}
		refs = append(refs, s)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if len(refs) == 0 {
		return nil, fmt.Errorf("%s: no images listed", path)
	}
	return refs, nil
}

func runImagesLs(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "images ls", "[flags]")
	var f imageFlags
	f.register(fs)
	if err := parseFlags(fs, args, 0); err != nil {
		return err
	}
	c, err := f.open()
	if err != nil {
		return err
	}
	defer c.Close()
	imgs, err := c.List()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "UPSTREAM\tREPOSITORY\tTAG\tDIGEST\tSIZE\tPINNED\tCOMPLETE")
	for _, img := range imgs {
		up := img.Upstream
		if up == "" {
			up = "-"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%v\t%v\n", up, img.Repo, img.Tag, img.Digest, humanBytes(img.Bytes), img.Pinned, img.Complete)
	}
	bytes, _ := c.Usage()
	fmt.Fprintf(tw, "\nstore: %s\n", humanBytes(bytes))
	return tw.Flush()
}

func runImagesRm(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "images rm", "[flags] NAME:TAG|NAME@DIGEST...")
	var f imageFlags
	f.register(fs)
	if err := parseFlags(fs, args, 1<<20); err != nil {
		return err
	}
	if fs.NArg() == 0 {
		return usageErrorf("name at least one image")
	}
	c, err := f.open()
	if err != nil {
		return err
	}
	defer c.Close()
	var errs []error
	for _, s := range fs.Args() {
		name, ref, err := splitImageRef(s)
		if err == nil {
			var freed int64
			if freed, err = c.Remove(name, ref); err == nil {
				fmt.Fprintf(e.stdout, "removed %s (%s freed)\n", s, humanBytes(freed))
				continue
			}
		}
		errs = append(errs, fmt.Errorf("%s: %w", s, err))
	}
	return errors.Join(errs...)
}

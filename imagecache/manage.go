package imagecache

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// PinOptions narrows what Pin fetches.
type PinOptions struct {
	// Platforms ("linux/amd64", "linux/arm64/v8") to keep from an index;
	// empty: all of them.
	Platforms []string
	// Progress, if set, is called after each blob is stored.
	Progress func(d ocispec.Descriptor)
}

// PinResult says what Pin stored.
type PinResult struct {
	Digest    digest.Digest // the manifest or index the reference names
	Manifests int
	Blobs     int
	Bytes     int64 // blob bytes
}

// Pin fetches the image name:reference (a tag or a digest) — its manifests
// and blobs, for every platform or the ones asked for — and marks all of it
// as never evicted. With the uplink down it pins what is cached, failing if
// anything is missing.
func (c *Cache) Pin(ctx context.Context, name, ref string, opt PinOptions) (PinResult, error) {
	var res PinResult
	if err := validName(name); err != nil {
		return res, err
	}
	up, repo, rerr := c.resolve(name, "")
	if rerr != nil {
		return res, rerr
	}
	plats := map[string]bool{}
	for _, p := range opt.Platforms {
		parts := strings.Split(p, "/")
		if len(parts) < 2 || len(parts) > 3 || parts[0] == "" || parts[1] == "" {
			return res, fmt.Errorf("imagecache: platform %q: want os/arch[/variant]", p)
		}
		plats[p] = true
	}
	var root digest.Digest
	if strings.Contains(ref, ":") {
		d, err := parseDigest(ref)
		if err != nil {
			return res, err
		}
		root = d
	} else if !anchoredTag(ref) {
		return res, fmt.Errorf("imagecache: invalid tag %q", ref)
	} else {
		m, err := c.fetchManifest(ctx, up, repo, ref, "")
		if err != nil {
			rec, ok := c.store.tag(up.key, repo, ref)
			if !ok {
				return res, fmt.Errorf("imagecache: pin %s:%s: %w", name, ref, err)
			}
			root = rec.Digest
		} else {
			root = m.digest
		}
	}
	res.Digest = root
	var pins []digest.Digest
	var walk func(d digest.Digest) error
	walk = func(d digest.Digest) error {
		body, mt, err := c.store.manifest(d)
		if err != nil {
			m, ferr := c.fetchManifest(ctx, up, repo, "", d)
			if ferr != nil {
				return fmt.Errorf("imagecache: pin manifest %s: %w", d, ferr)
			}
			body, mt = m.body, m.mediaType
		}
		pins = append(pins, d)
		res.Manifests++
		info, err := parseManifest(body, mt)
		if err != nil {
			return fmt.Errorf("imagecache: pin manifest %s: %w", d, err)
		}
		for _, ref := range info.Refs {
			if info.Index {
				if len(plats) > 0 && (ref.Platform == nil || !plats[platformString(ref.Platform)] && !plats[ref.Platform.OS+"/"+ref.Platform.Architecture]) {
					continue
				}
				if err := walk(ref.Digest); err != nil {
					return err
				}
				continue
			}
			if err := c.warmBlob(ctx, up, repo, ref); err != nil {
				return err
			}
			pins = append(pins, ref.Digest)
			res.Blobs++
			res.Bytes += ref.Size
			if opt.Progress != nil {
				opt.Progress(ref)
			}
		}
		return nil
	}
	if err := walk(root); err != nil {
		return res, err
	}
	if err := c.store.pin(pins...); err != nil {
		return res, fmt.Errorf("%w: %v", ErrStore, err)
	}
	return res, nil
}

func platformString(p *ocispec.Platform) string {
	s := p.OS + "/" + p.Architecture
	if p.Variant != "" {
		s += "/" + p.Variant
	}
	return s
}

// warmBlob makes sure blob d is stored, fetching it if needed.
func (c *Cache) warmBlob(ctx context.Context, up *upstream, repo string, d ocispec.Descriptor) error {
	if c.store.has(d.Digest) {
		return nil
	}
	f, err := c.joinFlight(up, repo, d.Digest)
	if errors.Is(err, errStored) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("imagecache: blob %s: %w", d.Digest, err)
	}
	defer f.leave()
	var ferr error
	if err := f.wait(ctx, func() bool { ferr = f.err; return f.done }); err != nil {
		return err
	}
	if ferr != nil {
		return fmt.Errorf("imagecache: blob %s: %w", d.Digest, ferr)
	}
	return nil
}

// Image is one cached tag.
type Image struct {
	Upstream  string // the upstream's prefix ("" for the default one)
	Repo      string // the repository as asked of upstream
	Tag       string
	Digest    digest.Digest
	MediaType string
	Pinned    bool
	// Bytes are the stored bytes of its manifests and blobs; Complete says
	// whether every one of them is stored.
	Bytes    int64
	Complete bool
}

// List returns the cached tags, sorted.
func (c *Cache) List() ([]Image, error) {
	var out []Image
	for _, up := range c.ups {
		root := filepath.Join(c.store.dir, "tags", up.key)
		err := filepath.WalkDir(root, func(path string, de os.DirEntry, err error) error {
			if err != nil {
				if errors.Is(err, os.ErrNotExist) {
					return nil
				}
				return err
			}
			if de.IsDir() || filepath.Base(filepath.Dir(path)) != "_tags" {
				return nil
			}
			rel, _ := filepath.Rel(root, filepath.Dir(filepath.Dir(path)))
			repo, tag := filepath.ToSlash(rel), de.Name()
			rec, ok := c.store.tag(up.key, repo, tag)
			if !ok {
				return nil
			}
			img := Image{Upstream: up.Prefix, Repo: repo, Tag: tag, Digest: rec.Digest, MediaType: rec.MediaType}
			ds, complete := c.closure(rec.Digest)
			img.Complete = complete
			img.Pinned = true
			for _, d := range ds {
				img.Bytes += c.store.size(d)
				if !c.store.pinned(d) {
					img.Pinned = false
				}
			}
			out = append(out, img)
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("imagecache: list: %w", err)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.Upstream != b.Upstream {
			return a.Upstream < b.Upstream
		}
		if a.Repo != b.Repo {
			return a.Repo < b.Repo
		}
		return a.Tag < b.Tag
	})
	return out, nil
}

// closure lists the stored digests reachable from manifest d (d included),
// and whether everything it references is stored.
func (c *Cache) closure(d digest.Digest) ([]digest.Digest, bool) {
	var out []digest.Digest
	complete := true
	seen := map[digest.Digest]bool{}
	var walk func(d digest.Digest)
	walk = func(d digest.Digest) {
		if seen[d] {
			return
		}
		seen[d] = true
		body, mt, err := c.store.manifest(d)
		if err != nil {
			complete = false
			return
		}
		out = append(out, d)
		info, err := parseManifest(body, mt)
		if err != nil {
			return
		}
		for _, r := range info.Refs {
			if info.Index {
				walk(r.Digest)
				continue
			}
			if c.store.has(r.Digest) {
				out = append(out, r.Digest)
			} else {
				complete = false
			}
		}
	}
	walk(d)
	return out, complete
}

// Remove deletes the cached tag name:tag, or every cached tag of name
// pointing at name@digest, and then every manifest and blob no remaining
// tag or pin needs. It returns the bytes freed.
func (c *Cache) Remove(name, ref string) (int64, error) {
	if err := validName(name); err != nil {
		return 0, err
	}
	up, repo, rerr := c.resolve(name, "")
	if rerr != nil {
		return 0, rerr
	}
	tagDir := filepath.Join(c.store.tagDir(up.key, repo), "_tags")
	var victims []string
	var roots []digest.Digest
	if strings.Contains(ref, ":") {
		d, err := parseDigest(ref)
		if err != nil {
			return 0, err
		}
		roots = append(roots, d)
		ents, _ := os.ReadDir(tagDir)
		for _, e := range ents {
			if rec, ok := c.store.tag(up.key, repo, e.Name()); ok && rec.Digest == d {
				victims = append(victims, e.Name())
			}
		}
	} else {
		if !anchoredTag(ref) {
			return 0, fmt.Errorf("imagecache: invalid tag %q", ref)
		}
		rec, ok := c.store.tag(up.key, repo, ref)
		if !ok {
			return 0, fmt.Errorf("imagecache: %s:%s is not cached", name, ref)
		}
		victims = append(victims, ref)
		roots = append(roots, rec.Digest)
	}
	if len(victims) == 0 && !c.store.has(roots[0]) {
		return 0, fmt.Errorf("imagecache: %s@%s is not cached", name, ref)
	}
	for _, v := range victims {
		if err := os.Remove(filepath.Join(tagDir, v)); err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, fmt.Errorf("%w: %v", ErrStore, err)
		}
	}
	// What the removed image used, minus what every remaining tag uses.
	var drop []digest.Digest
	for _, r := range roots {
		ds, _ := c.closure(r)
		drop = append(drop, ds...)
	}
	keep := map[digest.Digest]bool{}
	imgs, err := c.List()
	if err != nil {
		return 0, err
	}
	for _, img := range imgs {
		ds, _ := c.closure(img.Digest)
		for _, d := range ds {
			keep[d] = true
		}
	}
	var gone []digest.Digest
	for _, d := range drop {
		if !keep[d] {
			gone = append(gone, d)
		}
	}
	freed, err := c.store.remove(gone...)
	if err != nil {
		return freed, fmt.Errorf("%w: %v", ErrStore, err)
	}
	return freed, nil
}

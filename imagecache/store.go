package imagecache

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/opencontainers/go-digest"
)

// The store keeps everything on disk, so a restart (with or without an
// uplink) serves what was cached before:
//
//	blobs/<alg>/<hex>            content, named by its verified digest
//	blobs/<alg>/<hex>.type       media type, for manifests
//	tags/<upstream>/<repo>/_tags/<tag>   tagRecord JSON
//	tags/<upstream>/<repo>/_list.json    the upstream's tag list
//	pins.json                    digests never evicted
//	tmp/                         fetches in flight (emptied on open)
//
// Files are written to a temporary name, synced and renamed into place, so a
// crash never leaves a partial file under a final name.
type store struct {
	dir    string
	budget int64 // bytes; 0 means no limit
	now    func() time.Time

	mu        sync.Mutex
	blobs     map[digest.Digest]*blobEntry
	total     int64
	pins      map[digest.Digest]bool
	evictions int64
}

type blobEntry struct {
	size     int64
	used     time.Time
	manifest bool
}

// tagRecord is what a tag pointed to when last fetched.
type tagRecord struct {
	Digest    digest.Digest `json:"digest"`
	MediaType string        `json:"mediaType"`
	Fetched   time.Time     `json:"fetched"`
}

var errNotCached = errors.New("not cached")

func openStore(dir string, budget int64, now func() time.Time) (*store, error) {
	s := &store{dir: dir, budget: budget, now: now, blobs: map[digest.Digest]*blobEntry{}, pins: map[digest.Digest]bool{}}
	for _, d := range []string{"blobs", "tags", "tmp"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	// Fetches interrupted by a crash or shutdown left only temporary files.
	tmps, err := os.ReadDir(filepath.Join(dir, "tmp"))
	if err != nil {
		return nil, fmt.Errorf("image store: %w", err)
	}
	for _, t := range tmps {
		_ = os.Remove(filepath.Join(dir, "tmp", t.Name()))
	}
	err = filepath.WalkDir(filepath.Join(dir, "blobs"), func(path string, de fs.DirEntry, err error) error {
		if err != nil || de.IsDir() || strings.HasSuffix(path, ".type") {
			return err
		}
		alg := filepath.Base(filepath.Dir(path))
		d := digest.NewDigestFromEncoded(digest.Algorithm(alg), de.Name())
		if d.Validate() != nil {
			return nil
		}
		fi, err := de.Info()
		if err != nil {
			return err
		}
		_, terr := os.Stat(path + ".type")
		s.blobs[d] = &blobEntry{size: fi.Size(), used: fi.ModTime(), manifest: terr == nil}
		s.total += fi.Size()
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("image store: scan blobs: %w", err)
	}
	b, err := os.ReadFile(filepath.Join(dir, "pins.json"))
	if err == nil {
		var pins []digest.Digest
		if err := json.Unmarshal(b, &pins); err != nil {
			return nil, fmt.Errorf("image store: pins.json: %w", err)
		}
		for _, p := range pins {
			s.pins[p] = true
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("image store: %w", err)
	}
	return s, nil
}

func (s *store) blobPath(d digest.Digest) string {
	return filepath.Join(s.dir, "blobs", string(d.Algorithm()), d.Encoded())
}

// touch records a use of d for LRU eviction (in memory, and as the file's
// modification time so the order survives a restart).
func (s *store) touch(d digest.Digest) {
	s.mu.Lock()
	e := s.blobs[d]
	now := s.now()
	persist := false
	if e != nil {
		persist = now.Sub(e.used) > time.Second
		e.used = now
	}
	s.mu.Unlock()
	if persist {
		_ = os.Chtimes(s.blobPath(d), now, now)
	}
}

// has reports whether blob d is stored.
func (s *store) has(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.blobs[d] != nil
}

// openBlob opens stored blob d.
func (s *store) openBlob(d digest.Digest) (*os.File, int64, error) {
	if !s.has(d) {
		return nil, 0, errNotCached
	}
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.forget(d) // removed by another process (canopy images rm)
			return nil, 0, errNotCached
		}
		return nil, 0, err
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, 0, err
	}
	s.touch(d)
	return f, fi.Size(), nil
}

// manifest returns stored manifest d and its media type.
func (s *store) manifest(d digest.Digest) ([]byte, string, error) {
	if !s.has(d) {
		return nil, "", errNotCached
	}
	b, err := os.ReadFile(s.blobPath(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			s.forget(d)
			return nil, "", errNotCached
		}
		return nil, "", err
	}
	mt, err := os.ReadFile(s.blobPath(d) + ".type")
	if err != nil {
		return nil, "", fmt.Errorf("manifest %s: media type: %w", d, err)
	}
	s.touch(d)
	return b, string(mt), nil
}

// putManifest stores manifest b, whose digest the caller verified.
func (s *store) putManifest(d digest.Digest, b []byte, mediaType string) error {
	if s.has(d) {
		return nil
	}
	p := s.blobPath(d)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := s.writeFile(p+".type", []byte(mediaType)); err != nil {
		return err
	}
	if err := s.writeFile(p, b); err != nil {
		return err
	}
	s.add(d, int64(len(b)), true)
	return nil
}

// newTemp creates a file for a fetch in flight.
func (s *store) newTemp() (*os.File, error) {
	return os.CreateTemp(filepath.Join(s.dir, "tmp"), "blob-*")
}

// commit syncs tmp (a blob of size bytes whose digest the caller verified)
// and renames it into place.
func (s *store) commit(tmp *os.File, d digest.Digest, size int64) error {
	if err := tmp.Sync(); err != nil {
		return err
	}
	p := s.blobPath(d)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return err
	}
	if err := os.Rename(tmp.Name(), p); err != nil {
		return err
	}
	syncDir(filepath.Dir(p))
	s.add(d, size, false)
	return nil
}

func (s *store) add(d digest.Digest, size int64, manifest bool) {
	s.mu.Lock()
	if s.blobs[d] == nil {
		s.blobs[d] = &blobEntry{size: size, used: s.now(), manifest: manifest}
		s.total += size
	}
	s.mu.Unlock()
	s.evict()
}

// evict removes least recently used blobs until the store fits its budget.
// Pinned blobs and manifests (small, and what offline tag pulls need) stay.
func (s *store) evict() {
	s.mu.Lock()
	if s.budget <= 0 || s.total <= s.budget {
		s.mu.Unlock()
		return
	}
	type cand struct {
		d digest.Digest
		e *blobEntry
	}
	var cands []cand
	for d, e := range s.blobs {
		if !e.manifest && !s.pins[d] {
			cands = append(cands, cand{d, e})
		}
	}
	sort.Slice(cands, func(i, j int) bool { return cands[i].e.used.Before(cands[j].e.used) })
	var victims []digest.Digest
	for _, c := range cands {
		if s.total <= s.budget {
			break
		}
		delete(s.blobs, c.d)
		s.total -= c.e.size
		s.evictions++
		victims = append(victims, c.d)
	}
	s.mu.Unlock()
	// A reader with the file open keeps reading it after removal.
	for _, d := range victims {
		_ = os.Remove(s.blobPath(d))
	}
}

// pin marks digests as never evicted, durably.
func (s *store) pin(ds ...digest.Digest) error {
	s.mu.Lock()
	for _, d := range ds {
		s.pins[d] = true
	}
	all := make([]digest.Digest, 0, len(s.pins))
	for d := range s.pins {
		all = append(all, d)
	}
	s.mu.Unlock()
	sort.Slice(all, func(i, j int) bool { return all[i] < all[j] })
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	return s.writeFile(filepath.Join(s.dir, "pins.json"), b)
}

// usage reports the bytes stored and the evictions so far.
func (s *store) usage() (total, evictions int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total, s.evictions
}

func (s *store) tagDir(ns, repo string) string {
	return filepath.Join(s.dir, "tags", ns, filepath.FromSlash(repo))
}

func (s *store) tag(ns, repo, tag string) (tagRecord, bool) {
	b, err := os.ReadFile(filepath.Join(s.tagDir(ns, repo), "_tags", tag))
	if err != nil {
		return tagRecord{}, false
	}
	var rec tagRecord
	if json.Unmarshal(b, &rec) != nil || rec.Digest.Validate() != nil || !s.has(rec.Digest) {
		return tagRecord{}, false
	}
	return rec, true
}

func (s *store) setTag(ns, repo, tag string, rec tagRecord) error {
	b, err := json.Marshal(rec)
	if err != nil {
		return err
	}
	dir := filepath.Join(s.tagDir(ns, repo), "_tags")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return s.writeFile(filepath.Join(dir, tag), b)
}

// tagList returns the upstream's tag list as last fetched, or failing that
// the tags this cache has seen.
func (s *store) tagList(ns, repo string) ([]string, bool) {
	if b, err := os.ReadFile(filepath.Join(s.tagDir(ns, repo), "_list.json")); err == nil {
		var tags []string
		if json.Unmarshal(b, &tags) == nil {
			return tags, true
		}
	}
	ents, err := os.ReadDir(filepath.Join(s.tagDir(ns, repo), "_tags"))
	if err != nil || len(ents) == 0 {
		return nil, false
	}
	tags := make([]string, 0, len(ents))
	for _, e := range ents {
		tags = append(tags, e.Name())
	}
	return tags, true
}

func (s *store) setTagList(ns, repo string, tags []string) error {
	b, err := json.Marshal(tags)
	if err != nil {
		return err
	}
	dir := s.tagDir(ns, repo)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	return s.writeFile(filepath.Join(dir, "_list.json"), b)
}

// writeFile writes b to path atomically (temporary file, sync, rename).
func (s *store) writeFile(path string, b []byte) error {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "w-*")
	if err != nil {
		return err
	}
	_, err = f.Write(b)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		_ = os.Remove(f.Name())
		return err
	}
	syncDir(filepath.Dir(path))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// forget drops d from the index after its file vanished.
func (s *store) forget(d digest.Digest) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.blobs[d]; e != nil {
		s.total -= e.size
		delete(s.blobs, d)
	}
}

// size is the stored size of d (0 if not stored).
func (s *store) size(d digest.Digest) int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if e := s.blobs[d]; e != nil {
		return e.size
	}
	return 0
}

func (s *store) pinned(d digest.Digest) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.pins[d]
}

// remove deletes blobs (and their pins), returning the bytes freed.
func (s *store) remove(ds ...digest.Digest) (int64, error) {
	var freed int64
	s.mu.Lock()
	unpinned := false
	for _, d := range ds {
		if e := s.blobs[d]; e != nil {
			freed += e.size
			s.total -= e.size
			delete(s.blobs, d)
		}
		if s.pins[d] {
			delete(s.pins, d)
			unpinned = true
		}
	}
	s.mu.Unlock()
	for _, d := range ds {
		if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return freed, err
		}
		_ = os.Remove(s.blobPath(d) + ".type")
	}
	if unpinned {
		return freed, s.pin()
	}
	return freed, nil
}

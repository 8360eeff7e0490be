package edgecache

import (
	"container/list"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// object is the stored metadata of one cached response. It is immutable
// once in the store: updates replace the whole object.
type object struct {
	// Key is the variant key: the URL plus the request's values of the
	// headers the response varies on.
	Key string `json:"key"`
	// URL is the primary key: the request's absolute URL.
	URL string `json:"url"`
	// Vary maps each (lower-case) header named by the response's Vary to
	// the request's normalized value. VaryAll is Vary: *.
	Vary    map[string]string `json:"vary,omitempty"`
	VaryAll bool              `json:"vary_all,omitempty"`
	Status  int               `json:"status"`
	Header  http.Header       `json:"header"`
	// RequestTime and ResponseTime bracket the upstream exchange;
	// InitialAge is the corrected initial age (RFC 9111 §4.2.3).
	RequestTime  time.Time     `json:"request_time"`
	ResponseTime time.Time     `json:"response_time"`
	InitialAge   time.Duration `json:"initial_age"`
	Size         int64         `json:"size"`
	// Body is the body file's name in obj/ (empty: <name>.body). Each
	// stored body gets a name of its own, so a reader that looked up an
	// object never opens the body of the response that replaced it.
	Body string `json:"body,omitempty"`

	name string   // metadata file name stem
	d    *derived // what serving needs, computed once when stored
}

// entry is one stored variant: its current object and, while it is in
// the hot tier, its body in memory. A 304's header update replaces obj
// and keeps the body (the same file); a replacement, purge or eviction
// drops the whole entry, so a hot body never outlives its object.
type entry struct {
	obj   *object
	hot   []byte        // the body in memory; nil: on disk only
	hotEl *list.Element // in Store.hotLRU while hot != nil
}

// bodyFile is the name of o's body file in obj/.
func (o *object) bodyFile() string {
	if o.Body != "" {
		return o.Body
	}
	return o.name + ".body"
}

// Store is a bounded on-disk store of responses: each object is a body
// file and a JSON metadata file under dir. The index is kept in memory and
// rebuilt from the files on open, so the store survives restarts. When the
// total size passes the budget the least recently used objects go.
//
// Small complete bodies that are served are also kept in memory, in a hot
// tier with a byte budget of its own and its own LRU order (see SetHot),
// so that their hits touch neither the disk nor the file system.
// Store is safe for concurrent use.
type Store struct {
	dir    string
	budget int64

	mu       sync.Mutex
	byKey    map[string]*list.Element // variant key → element holding *entry
	byURL    map[string]map[string]bool
	lru      *list.List // front = most recently used
	size     int64
	evicted  int64
	lastTick map[string]time.Time
	// The hot tier: bodies of at most hotMaxObject bytes, hotSize in all,
	// at most hotBudget; hotLRU holds *entry, front = most recently used.
	hotLRU       *list.List
	hotSize      int64
	hotMaxObject int64
	hotBudget    int64
	// noSpaceUntil: after a failed write, fills are not attempted (the
	// proxy passes requests through) until then.
	noSpaceUntil time.Time
}

// diskBackoff is how long the store is bypassed after a failed write.
const diskBackoff = 5 * time.Second

// writeFailed records that a body could not be written at now.
func (s *Store) writeFailed(now time.Time) {
	s.mu.Lock()
	s.noSpaceUntil = now.Add(diskBackoff)
	s.mu.Unlock()
}

// writable reports whether fills should be attempted at now.
func (s *Store) writable(now time.Time) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return !now.Before(s.noSpaceUntil)
}

// OpenStore opens (creating if needed) the store in dir with a size budget
// in bytes.
func OpenStore(dir string, budget int64) (*Store, error) {
	if budget <= 0 {
		return nil, fmt.Errorf("edgecache: store budget %d: want > 0 bytes", budget)
	}
	for _, d := range []string{dir, filepath.Join(dir, "obj"), filepath.Join(dir, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("edgecache: store: %w", err)
		}
	}
	s := &Store{dir: dir, budget: budget, byKey: map[string]*list.Element{}, byURL: map[string]map[string]bool{},
		lru: list.New(), lastTick: map[string]time.Time{},
		hotLRU: list.New(), hotMaxObject: DefaultHotMaxObject, hotBudget: DefaultHotBudget}
	// Leftovers of fills interrupted by a crash.
	if tmps, err := os.ReadDir(filepath.Join(dir, "tmp")); err == nil {
		for _, t := range tmps {
			os.Remove(filepath.Join(dir, "tmp", t.Name()))
		}
	}
	ents, err := os.ReadDir(filepath.Join(dir, "obj"))
	if err != nil {
		return nil, fmt.Errorf("edgecache: store: %w", err)
	}
	type loaded struct {
		o     *object
		mtime time.Time
	}
	var all []loaded
	var bodies []string
	for _, de := range ents {
		name, ok := strings.CutSuffix(de.Name(), ".meta")
		if !ok {
			if strings.HasSuffix(de.Name(), ".body") {
				bodies = append(bodies, de.Name())
			}
			continue
		}
		o, mtime, err := s.loadMeta(name)
		if err != nil {
			os.Remove(s.path(name, ".meta"))
			continue
		}
		all = append(all, loaded{o, mtime})
	}
	// Bodies no metadata names: replaced, or left by a crash.
	used := map[string]bool{}
	for _, l := range all {
		used[l.o.bodyFile()] = true
	}
	for _, b := range bodies {
		if !used[b] {
			os.Remove(filepath.Join(dir, "obj", b))
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	for _, l := range all {
		s.insertLocked(l.o)
	}
	s.evictLocked()
	return s, nil
}

func (s *Store) loadMeta(name string) (*object, time.Time, error) {
	b, err := os.ReadFile(s.path(name, ".meta"))
	if err != nil {
		return nil, time.Time{}, err
	}
	o := new(object)
	if err := json.Unmarshal(b, o); err != nil {
		return nil, time.Time{}, err
	}
	o.name = name
	if strings.ContainsAny(o.Body, `/\`) || o.Body == "." || o.Body == ".." {
		return nil, time.Time{}, errors.New("bad body file name")
	}
	fi, err := os.Stat(filepath.Join(s.dir, "obj", o.bodyFile()))
	if err != nil || fi.Size() != o.Size || o.Key == "" || nameOf(o.Key) != name {
		return nil, time.Time{}, errors.New("inconsistent object")
	}
	return o, fi.ModTime(), nil
}

func nameOf(key string) string {
	h := sha256.Sum256([]byte(key))
	return hex.EncodeToString(h[:])
}

func (s *Store) path(name, ext string) string { return filepath.Join(s.dir, "obj", name+ext) }

// Size is the bytes held; Evictions counts objects evicted since open.
func (s *Store) Size() (bytes, evictions int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.size, s.evicted
}

// Len is the number of objects held.
func (s *Store) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lru.Len()
}

func (s *Store) insertLocked(o *object) {
	o.prepare()
	if el, ok := s.byKey[o.Key]; ok {
		e := el.Value.(*entry)
		s.size -= e.obj.Size
		s.dropHotLocked(e)
		e.obj = o
		s.lru.MoveToFront(el)
	} else {
		s.byKey[o.Key] = s.lru.PushFront(&entry{obj: o})
		if s.byURL[o.URL] == nil {
			s.byURL[o.URL] = map[string]bool{}
		}
		s.byURL[o.URL][o.Key] = true
	}
	s.size += o.Size
}

func (s *Store) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	o := e.obj
	s.dropHotLocked(e)
	s.lru.Remove(el)
	delete(s.byKey, o.Key)
	delete(s.lastTick, o.Key)
	if m := s.byURL[o.URL]; m != nil {
		delete(m, o.Key)
		if len(m) == 0 {
			delete(s.byURL, o.URL)
		}
	}
	s.size -= o.Size
	// Open readers keep their descriptors: unlinking is safe.
	os.Remove(s.path(o.name, ".meta"))
	os.Remove(filepath.Join(s.dir, "obj", o.bodyFile()))
}

func (s *Store) evictLocked() {
	for s.size > s.budget && s.lru.Len() > 0 {
		s.removeLocked(s.lru.Back())
		s.evicted++
	}
}

// variants returns the stored objects for url, newest response first.
func (s *Store) variants(url string) []*object {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*object
	for k := range s.byURL[url] {
		out = append(out, s.byKey[k].Value.(*entry).obj)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ResponseTime.After(out[j].ResponseTime) })
	return out
}

// find returns the newest stored variant of url that match accepts, with
// its body when that is in the hot tier (else nil).
func (s *Store) find(url string, match func(*object) bool) (*object, []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var best *entry
	for k := range s.byURL[url] {
		e := s.byKey[k].Value.(*entry)
		if (best == nil || e.obj.ResponseTime.After(best.obj.ResponseTime)) && match(e.obj) {
			best = e
		}
	}
	if best == nil {
		return nil, nil
	}
	return best.obj, best.hot
}

// touch marks o as used now (for LRU, also across restarts at most once a
// minute per object).
func (s *Store) touch(o *object, now time.Time) {
	s.mu.Lock()
	el, ok := s.byKey[o.Key]
	if ok {
		s.lru.MoveToFront(el)
		if e := el.Value.(*entry); e.hotEl != nil {
			s.hotLRU.MoveToFront(e.hotEl)
		}
	}
	last := s.lastTick[o.Key]
	persist := ok && now.Sub(last) > time.Minute
	if persist {
		s.lastTick[o.Key] = now
	}
	s.mu.Unlock()
	if persist {
		os.Chtimes(filepath.Join(s.dir, "obj", o.bodyFile()), now, now)
	}
}

// tempFile creates a file for a body being filled.
func (s *Store) tempFile() (*os.File, error) {
	return os.CreateTemp(filepath.Join(s.dir, "tmp"), "fill-*")
}

// commit moves a filled body into the store under o (o.Size must be the
// body's size) and writes its metadata. An object larger than the whole
// budget is not stored.
func (s *Store) commit(o *object, bodyPath string) error {
	if o.Size > s.budget {
		os.Remove(bodyPath)
		return fmt.Errorf("edgecache: object of %d bytes exceeds the store budget", o.Size)
	}
	o.name = nameOf(o.Key)
	o.Body = fmt.Sprintf("%s-%x-%x.body", o.name, time.Now().UnixNano(), bodySeq.Add(1))
	meta, err := json.Marshal(o)
	if err != nil {
		return err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if el, ok := s.byKey[o.Key]; ok {
		s.removeLocked(el)
	}
	if err := os.Rename(bodyPath, filepath.Join(s.dir, "obj", o.Body)); err != nil {
		os.Remove(bodyPath)
		return fmt.Errorf("edgecache: store body: %w", err)
	}
	if err := writeFileAtomic(s.path(o.name, ".meta"), meta); err != nil {
		os.Remove(filepath.Join(s.dir, "obj", o.Body))
		return fmt.Errorf("edgecache: store metadata: %w", err)
	}
	s.insertLocked(o)
	s.evictLocked()
	return nil
}

// update replaces the metadata of a stored object (after a 304), keeping
// its body. It returns false if the object is gone.
func (s *Store) update(o *object) bool {
	meta, err := json.Marshal(o)
	if err != nil {
		return false
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.byKey[o.Key]
	if !ok || el.Value.(*entry).obj.bodyFile() != o.bodyFile() {
		return false // gone, or replaced by another response
	}
	e := el.Value.(*entry)
	o.name = e.obj.name
	if writeFileAtomic(s.path(o.name, ".meta"), meta) != nil {
		return false
	}
	// The body is the same file, so a hot copy of it stays valid; the
	// headers served with it are the new object's.
	o.prepare()
	e.obj = o
	s.lru.MoveToFront(el)
	return true
}

// invalidate removes every variant stored for url.
func (s *Store) invalidate(url string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := 0
	for k := range s.byURL[url] {
		s.removeLocked(s.byKey[k])
		n++
	}
	return n
}

// open opens a stored object's body.
func (s *Store) open(o *object) (*os.File, error) {
	return os.Open(filepath.Join(s.dir, "obj", o.bodyFile()))
}

// bodySeq makes body file names unique within a process.
var bodySeq atomic.Uint64

func writeFileAtomic(path string, b []byte) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, 0o600); err != nil {
		os.Remove(tmp)
		return err
	}
	return os.Rename(tmp, path)
}

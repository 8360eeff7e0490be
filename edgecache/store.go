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
	"slices"
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
//
// obj is the whole object while the entry is warm (among the warmMax
// most recently used); a cold entry holds a skeleton of it instead (see
// object.skeleton), and its header is read back from the metadata file
// when it is used. Only warm entries are hot.
type entry struct {
	obj    *object
	hot    []byte        // the body in memory; nil: on disk only
	hotEl  *list.Element // in Store.hotLRU while hot != nil
	warmEl *list.Element // in Store.warmLRU while obj is whole
}

// defaultWarmMax bounds the objects the index keeps whole (header, directives,
// header fields to send). The rest are skeletons of a few small
// allocations each, so that an index of many objects costs the garbage
// collector little (whole objects cost ~19 allocations, ~2 KiB each).
const defaultWarmMax = 16384

// whole reports whether o is a whole object rather than a skeleton.
func (o *object) whole() bool { return o.d != nil }

// skeleton is what the index keeps of a cold object: the fields lookups,
// eviction and purges use (key, URL, Vary, size, response time, file
// names, Surrogate-Key), without the header and derived fields.
func (o *object) skeleton() *object {
	sk := &object{Key: o.Key, URL: o.URL, VaryAll: o.VaryAll, Status: o.Status, ResponseTime: o.ResponseTime,
		Size: o.Size, Body: o.Body, name: o.name}
	if strings.HasPrefix(o.Key, o.URL) {
		sk.URL = o.Key[:len(o.URL)] // one string for both
	}
	if o.Body == o.name+".body" {
		sk.Body = "" // the same name (see bodyFile)
	}
	if len(o.Vary) > 0 {
		sk.Vary = o.Vary
	}
	if v := o.Header["Surrogate-Key"]; len(v) > 0 {
		sk.Header = http.Header{"Surrogate-Key": v}
	}
	return sk
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
//
// Each stored version of an object has files of its own (<stem>.meta and
// <stem>.body, the stem starting with the hash of the variant key), so
// files are written, renamed and removed outside the store's lock: the
// index changes under it, the files before (writes) or after (removals).
// A crash can leave two versions of a key, or a body without metadata;
// opening the store keeps the newest version and removes the rest.
// Store is safe for concurrent use.
type Store struct {
	dir    string
	budget int64

	mu    sync.Mutex
	byKey map[string]*list.Element // variant key → element holding *entry
	byURL map[string][]string      // URL → its variant keys
	lru   *list.List               // front = most recently used
	// warmLRU holds the entries whose object is whole (*entry, front =
	// most recently used), at most warmMax of them.
	warmLRU *list.List
	warmMax int
	// trash are files of removed objects, removed by unlockSweep once
	// the lock is released.
	trash    []string
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
	s := &Store{dir: dir, budget: budget, byKey: map[string]*list.Element{}, byURL: map[string][]string{},
		lru: list.New(), warmLRU: list.New(), warmMax: defaultWarmMax, lastTick: map[string]time.Time{},
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
	// Of several versions of one key (a crash between storing a new one
	// and removing the old), the newest response stays.
	newest := map[string]*object{}
	for _, l := range all {
		if n := newest[l.o.Key]; n == nil || l.o.ResponseTime.After(n.ResponseTime) ||
			l.o.ResponseTime.Equal(n.ResponseTime) && l.o.name > n.name {
			newest[l.o.Key] = l.o
		}
	}
	sort.Slice(all, func(i, j int) bool { return all[i].mtime.Before(all[j].mtime) })
	s.mu.Lock()
	for _, l := range all {
		if newest[l.o.Key] != l.o {
			s.trash = append(s.trash, s.path(l.o.name, ".meta"), filepath.Join(dir, "obj", l.o.bodyFile()))
			continue
		}
		s.insertLocked(l.o.skeleton())
	}
	s.evictLocked()
	s.unlockSweep()
	return s, nil
}

// unlockSweep releases the lock, then removes the files of the objects
// removed while it was held (metadata first, so that a crash leaves at
// worst a body that opening the store removes).
func (s *Store) unlockSweep() {
	trash := s.trash
	s.trash = nil
	s.mu.Unlock()
	for _, p := range trash {
		os.Remove(p)
	}
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
	if err != nil || fi.Size() != o.Size || o.Key == "" || !strings.HasPrefix(name, nameOf(o.Key)) {
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

// insertLocked puts o (not yet in the index) in the index: a whole
// object (prepared) makes the entry warm, a skeleton leaves it cold.
func (s *Store) insertLocked(o *object) {
	e := &entry{obj: o}
	s.byKey[o.Key] = s.lru.PushFront(e)
	s.byURL[o.URL] = append(s.byURL[o.URL], o.Key)
	s.size += o.Size
	if o.whole() {
		s.warmLocked(e)
	}
}

// warmLocked marks e (whose object is whole) as just used among the warm
// entries, turning the least recently used beyond warmMax cold.
func (s *Store) warmLocked(e *entry) {
	if e.warmEl != nil {
		s.warmLRU.MoveToFront(e.warmEl)
	} else {
		e.warmEl = s.warmLRU.PushFront(e)
	}
	for s.warmLRU.Len() > s.warmMax {
		s.coolLocked(s.warmLRU.Back().Value.(*entry))
	}
}

// coolLocked makes e cold: its object becomes a skeleton, its body
// leaves memory.
func (s *Store) coolLocked(e *entry) {
	if e.warmEl == nil {
		return
	}
	s.warmLRU.Remove(e.warmEl)
	e.warmEl = nil
	s.dropHotLocked(e)
	e.obj = e.obj.skeleton()
}

// removeLocked takes an entry out of the index; its files go to the
// trash (removed by unlockSweep: open readers keep their descriptors).
func (s *Store) removeLocked(el *list.Element) {
	e := el.Value.(*entry)
	o := e.obj
	s.dropHotLocked(e)
	if e.warmEl != nil {
		s.warmLRU.Remove(e.warmEl)
		e.warmEl = nil
	}
	s.lru.Remove(el)
	delete(s.byKey, o.Key)
	delete(s.lastTick, o.Key)
	keys := s.byURL[o.URL]
	for i, k := range keys {
		if k == o.Key {
			keys = append(keys[:i:i], keys[i+1:]...)
			break
		}
	}
	if len(keys) == 0 {
		delete(s.byURL, o.URL)
	} else {
		s.byURL[o.URL] = keys
	}
	s.size -= o.Size
	s.trash = append(s.trash, s.path(o.name, ".meta"), filepath.Join(s.dir, "obj", o.bodyFile()))
}

func (s *Store) evictLocked() {
	for s.size > s.budget && s.lru.Len() > 0 {
		s.removeLocked(s.lru.Back())
		s.evicted++
	}
}

// variants returns the stored objects for url, newest response first.
// They may be skeletons: only their key, URL, Vary and response time are
// for the caller to use.
func (s *Store) variants(url string) []*object {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []*object
	for _, k := range s.byURL[url] {
		out = append(out, s.byKey[k].Value.(*entry).obj)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ResponseTime.After(out[j].ResponseTime) })
	return out
}

// find returns the newest stored variant of url that match accepts (it
// is given the variant's skeleton: key, URL and Vary), whole, with its
// body when that is in the hot tier (else nil). A cold variant's header
// is read from its metadata file, outside the lock.
func (s *Store) find(url string, match func(*object) bool) (*object, []byte) {
	for range 3 {
		s.mu.Lock()
		var best *entry
		for _, k := range s.byURL[url] {
			e := s.byKey[k].Value.(*entry)
			if (best == nil || e.obj.ResponseTime.After(best.obj.ResponseTime)) && match(e.obj) {
				best = e
			}
		}
		if best == nil {
			s.mu.Unlock()
			return nil, nil
		}
		if best.obj.whole() {
			s.warmLocked(best)
			o, hot := best.obj, best.hot
			s.mu.Unlock()
			return o, hot
		}
		sk := best.obj
		s.mu.Unlock()
		o, err := s.readWhole(sk)
		if err != nil {
			continue // replaced or removed meanwhile: look again
		}
		s.mu.Lock()
		if el, ok := s.byKey[sk.Key]; ok && el.Value.(*entry).obj == sk {
			e := el.Value.(*entry)
			e.obj = o
			s.warmLocked(e)
		}
		s.mu.Unlock()
		return o, nil
	}
	return nil, nil
}

// readWhole reads back the whole object sk is the skeleton of.
func (s *Store) readWhole(sk *object) (*object, error) {
	b, err := os.ReadFile(s.path(sk.name, ".meta"))
	if err != nil {
		return nil, err
	}
	o := new(object)
	if err := json.Unmarshal(b, o); err != nil {
		return nil, err
	}
	o.name = sk.name
	if o.Key != sk.Key || o.bodyFile() != sk.bodyFile() {
		return nil, errors.New("edgecache: metadata does not match the index")
	}
	o.prepare()
	return o, nil
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
// budget is not stored. The files are written before the index takes the
// object, and the files of what it replaces or evicts removed after, all
// outside the store's lock.
func (s *Store) commit(o *object, bodyPath string) error {
	if o.Size > s.budget {
		os.Remove(bodyPath)
		return fmt.Errorf("edgecache: object of %d bytes exceeds the store budget", o.Size)
	}
	o.name = fmt.Sprintf("%s-%x-%x", nameOf(o.Key), time.Now().UnixNano(), bodySeq.Add(1))
	o.Body = o.name + ".body"
	meta, err := json.Marshal(o)
	if err != nil {
		os.Remove(bodyPath)
		return err
	}
	body := filepath.Join(s.dir, "obj", o.Body)
	if err := os.Rename(bodyPath, body); err != nil {
		os.Remove(bodyPath)
		return fmt.Errorf("edgecache: store body: %w", err)
	}
	tmp, err := s.writeTemp(meta)
	if err == nil {
		err = os.Rename(tmp, s.path(o.name, ".meta"))
	}
	if err != nil {
		os.Remove(tmp)
		os.Remove(body)
		return fmt.Errorf("edgecache: store metadata: %w", err)
	}
	o.prepare()
	s.mu.Lock()
	defer s.unlockSweep()
	if el, ok := s.byKey[o.Key]; ok {
		s.removeLocked(el)
	}
	s.insertLocked(o)
	s.evictLocked()
	return nil
}

// writeTemp writes b to a new file in tmp/ and returns its path.
func (s *Store) writeTemp(b []byte) (string, error) {
	f, err := os.CreateTemp(filepath.Join(s.dir, "tmp"), "meta-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(b)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// update replaces the metadata of a stored object (after a 304), keeping
// its body. It returns false if the object is gone.
func (s *Store) update(o *object) bool {
	meta, err := json.Marshal(o)
	if err != nil {
		return false
	}
	tmp, err := s.writeTemp(meta)
	if err != nil {
		return false
	}
	o.prepare()
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.byKey[o.Key]
	if !ok || el.Value.(*entry).obj.bodyFile() != o.bodyFile() {
		os.Remove(tmp)
		return false // gone, or replaced by another response
	}
	e := el.Value.(*entry)
	o.name = e.obj.name
	if os.Rename(tmp, s.path(o.name, ".meta")) != nil {
		os.Remove(tmp)
		return false
	}
	// The body is the same file, so a hot copy of it stays valid; the
	// headers served with it are the new object's.
	e.obj = o
	s.warmLocked(e)
	s.lru.MoveToFront(el)
	return true
}

// invalidate removes every variant stored for url.
func (s *Store) invalidate(url string) int {
	s.mu.Lock()
	defer s.unlockSweep()
	keys := slices.Clone(s.byURL[url])
	for _, k := range keys {
		s.removeLocked(s.byKey[k])
	}
	return len(keys)
}

// open opens a stored object's body.
func (s *Store) open(o *object) (*os.File, error) {
	return os.Open(filepath.Join(s.dir, "obj", o.bodyFile()))
}

// bodySeq makes body file names unique within a process.
var bodySeq atomic.Uint64

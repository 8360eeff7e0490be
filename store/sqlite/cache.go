package sqlite

import (
	"container/list"
	"sync"

	"canopy/store"
)

// viewCache keeps recently read or written view rows in memory, including
// rows known to be absent. Every write to the views goes through this
// Store, which updates the cache after the write commits, so the cache
// never serves a value the database no longer holds. A read that went to
// the database is cached only if no commit happened or was under way while
// it ran (a commit could have changed the row after the read saw it, and a
// read of the database just before a commit lands must not replace what a
// read just after it cached).
type viewCache struct {
	mu       sync.Mutex
	maxBytes int
	bytes    int
	lru      *list.List // of *cacheEntry, most recent first
	rows     map[cacheKey]*list.Element
	commits  uint64 // bumped by every commit that writes views
	holding  bool   // a write is committing: no read may be cached
}

type cacheKey struct {
	event, view, key string
}

type cacheEntry struct {
	k     cacheKey
	value []byte // nil: the row does not exist
}

func newViewCache(maxBytes int) *viewCache {
	return &viewCache{maxBytes: maxBytes, lru: list.New(), rows: map[cacheKey]*list.Element{}}
}

// get returns a cached row: (value, true) — value nil if known absent — or
// (nil, false) if the cache does not know.
func (c *viewCache) get(k cacheKey) ([]byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.rows[k]
	if !ok {
		return nil, false
	}
	c.lru.MoveToFront(el)
	return el.Value.(*cacheEntry).value, true
}

// generation returns the commit counter, to pass to fill after a read.
func (c *viewCache) generation() uint64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.commits
}

// fill caches rows read from the database, unless a commit happened since
// gen was taken.
func (c *viewCache) fill(gen uint64, k cacheKey, value []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.commits != gen || c.holding {
		return
	}
	c.put(k, value)
}

// viewWrite is what a write changes in the views: rows of an event, or all
// of the event's rows.
type viewWrite struct {
	event string
	rows  []store.ViewRow
	all   bool
}

// hold drops the rows w changes and stops reads from being cached until
// release; the writer calls it before its transaction commits.
func (c *viewCache) hold(w viewWrite) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.holding = true
	if w.all {
		for k, el := range c.rows {
			if k.event == w.event {
				c.remove(el)
			}
		}
		return
	}
	for _, r := range w.rows {
		if el, ok := c.rows[cacheKey{w.event, r.View, r.Key}]; ok {
			c.remove(el)
		}
	}
}

// committed records the rows a committed write wrote.
func (c *viewCache) committed(w viewWrite) {
	if w.all {
		return // read again on demand
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, r := range w.rows {
		c.put(cacheKey{w.event, r.View, r.Key}, r.Value)
	}
}

// release ends hold; reads that began before it are not cached.
func (c *viewCache) release() {
	c.mu.Lock()
	c.holding = false
	c.commits++
	c.mu.Unlock()
}

func (c *viewCache) put(k cacheKey, value []byte) {
	size := len(k.event) + len(k.view) + len(k.key) + len(value) + 64
	if size > c.maxBytes/16 {
		if el, ok := c.rows[k]; ok {
			c.remove(el) // too large to keep; make sure no stale copy stays
		}
		return
	}
	if el, ok := c.rows[k]; ok {
		e := el.Value.(*cacheEntry)
		c.bytes += len(value) - len(e.value)
		e.value = value
		c.lru.MoveToFront(el)
	} else {
		c.rows[k] = c.lru.PushFront(&cacheEntry{k: k, value: value})
		c.bytes += size
	}
	for c.bytes > c.maxBytes {
		c.remove(c.lru.Back())
	}
}

func (c *viewCache) remove(el *list.Element) {
	e := el.Value.(*cacheEntry)
	c.lru.Remove(el)
	delete(c.rows, e.k)
	c.bytes -= len(e.k.event) + len(e.k.view) + len(e.k.key) + len(e.value) + 64
}

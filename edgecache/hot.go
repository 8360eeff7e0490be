package edgecache

import (
	"fmt"
	"io"
	"os"
)

// The hot tier's defaults (see Store.SetHot).
const (
	DefaultHotMaxObject = 64 << 10
	DefaultHotBudget    = 64 << 20
)

// SetHot sets the hot tier's limits: bodies of at most maxObject bytes
// are kept in memory once served, up to budget bytes in all, the least
// recently used leaving first. A budget of 0 turns the tier off (and
// empties it); a negative value is an error.
func (s *Store) SetHot(maxObject, budget int64) error {
	if maxObject < 0 || budget < 0 {
		return fmt.Errorf("edgecache: hot tier limits %d, %d: want >= 0 bytes", maxObject, budget)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.hotMaxObject, s.hotBudget = maxObject, budget
	s.evictHotLocked()
	return nil
}

// Hot is the hot tier's size: bodies and bytes held in memory.
func (s *Store) Hot() (objects int, bytes int64) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hotLRU.Len(), s.hotSize
}

// hotCandidate reports whether o's body may go to the hot tier.
func (s *Store) hotCandidate(o *object) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return o.Status != 206 && o.Size <= s.hotMaxObject && o.Size <= s.hotBudget
}

// loadHot reads o's body from file (opened by the caller, at its start)
// and puts it in the hot tier if o is still stored. It returns the body
// (nil if it could not be read whole).
func (s *Store) loadHot(o *object, file *os.File) []byte {
	body := make([]byte, o.Size)
	if _, err := io.ReadFull(file, body); err != nil {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	el, ok := s.byKey[o.Key]
	if !ok {
		return body
	}
	e := el.Value.(*entry)
	if e.hot != nil || !e.obj.whole() || e.obj.bodyFile() != o.bodyFile() || o.Size > s.hotMaxObject || s.hotBudget == 0 {
		return body // already hot, cold or replaced meanwhile
	}
	e.hot = body
	e.hotEl = s.hotLRU.PushFront(e)
	s.hotSize += int64(len(body))
	s.evictHotLocked()
	return body
}

// dropHotLocked takes e's body out of memory.
func (s *Store) dropHotLocked(e *entry) {
	if e.hotEl == nil {
		return
	}
	s.hotLRU.Remove(e.hotEl)
	s.hotSize -= int64(len(e.hot))
	e.hot, e.hotEl = nil, nil
}

func (s *Store) evictHotLocked() {
	for s.hotSize > s.hotBudget && s.hotLRU.Len() > 0 {
		s.dropHotLocked(s.hotLRU.Back().Value.(*entry))
	}
}

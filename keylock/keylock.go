// Package keylock serializes work per key: one holder at a time for each
// key (an order, a ticket, a lot, an Idempotency-Key), waiting bounded by a
// context. A key's state is dropped when nobody holds or waits for it.
package keylock

import (
	"context"
	"sync"
)

// Map holds one lock per key. The zero Map is ready to use; it is safe for
// concurrent use.
type Map struct {
	mu sync.Mutex
	m  map[string]*entry
}

type entry struct {
	ch    chan struct{} // holds a token while the key is locked
	users int           // holders and waiters
}

// Lock waits until key is free or ctx ends. On success it returns the
// function that releases the key; calling it more than once is harmless.
func (k *Map) Lock(ctx context.Context, key string) (unlock func(), err error) {
	k.mu.Lock()
	if k.m == nil {
		k.m = map[string]*entry{}
	}
	e := k.m[key]
	if e == nil {
		e = &entry{ch: make(chan struct{}, 1)}
		k.m[key] = e
	}
	e.users++
	k.mu.Unlock()
	leave := func() {
		k.mu.Lock()
		if e.users--; e.users == 0 {
			delete(k.m, key)
		}
		k.mu.Unlock()
	}
	select {
	case e.ch <- struct{}{}:
		var once sync.Once
		return func() { once.Do(func() { <-e.ch; leave() }) }, nil
	case <-ctx.Done():
		leave()
		return nil, ctx.Err()
	}
}

// Len returns how many keys are held or waited for (for tests).
func (k *Map) Len() int {
	k.mu.Lock()
	defer k.mu.Unlock()
	return len(k.m)
}

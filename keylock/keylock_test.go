package keylock

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestOneHolderPerKey(t *testing.T) {
	var m Map
	var inside, max atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, err := m.Lock(context.Background(), "k")
			if err != nil {
				t.Error(err)
				return
			}
			n := inside.Add(1)
			for {
				old := max.Load()
				if n <= old || max.CompareAndSwap(old, n) {
					break
				}
			}
			inside.Add(-1)
			unlock()
			unlock() // harmless
		}()
	}
	wg.Wait()
	if max.Load() != 1 {
		t.Fatalf("%d holders of one key at once", max.Load())
	}
	if m.Len() != 0 {
		t.Fatalf("%d keys left after every holder left", m.Len())
	}
}

func TestOtherKeysDoNotWaitAndContextEndsAWait(t *testing.T) {
	var m Map
	unlock, err := m.Lock(context.Background(), "a")
	if err != nil {
		t.Fatal(err)
	}
	u2, err := m.Lock(context.Background(), "b") // another key: at once
	if err != nil {
		t.Fatal(err)
	}
	u2()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(ctx, "a"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("waiting on a held key past the deadline: %v", err)
	}
	unlock()
	if m.Len() != 0 {
		t.Fatalf("%d keys left", m.Len())
	}
}

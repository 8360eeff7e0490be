package ledger

import (
	"math"
	"sync"
	"testing"
	"time"
)

// stepClock returns the times it is given, in turn, then the last forever.
type stepClock struct {
	mu    sync.Mutex
	times []time.Time
}

func (c *stepClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	t := c.times[0]
	if len(c.times) > 1 {
		c.times = c.times[1:]
	}
	return t
}

func ms(n int64) time.Time { return time.UnixMilli(n) }

func TestHLCMonotonicWhenTheClockGoesBack(t *testing.T) {
	clock := &stepClock{times: []time.Time{ms(1000), ms(1000), ms(1005), ms(900), ms(900), ms(1005), ms(1006)}}
	s := NewHLCSource(clock)
	want := []HLC{{1000, 0}, {1000, 1}, {1005, 0}, {1005, 1}, {1005, 2}, {1005, 3}, {1006, 0}}
	for i, w := range want {
		if got := s.Now(); got != w {
			t.Fatalf("tick %d: %v, want %v", i, got, w)
		}
	}
}

func TestHLCObserveMovesForward(t *testing.T) {
	clock := &stepClock{times: []time.Time{ms(1000)}}
	s := NewHLCSource(clock)
	first := s.Now()
	remote := HLC{Wall: 5000, Logical: 3}
	s.Observe(remote)
	if got := s.Now(); got.Compare(remote) <= 0 || got != (HLC{5000, 4}) {
		t.Fatalf("after observing %v: %v", remote, got)
	}
	// Observing the past changes nothing.
	s.Observe(first)
	if got := s.Now(); got != (HLC{5000, 5}) {
		t.Fatalf("after observing the past: %v", got)
	}
}

// A remote timestamp with a spent logical counter does not make the clock
// wrap back to counter 0 in the same millisecond.
func TestHLCLogicalOverflow(t *testing.T) {
	s := NewHLCSource(&stepClock{times: []time.Time{ms(10)}})
	remote := HLC{Wall: 20, Logical: math.MaxUint32}
	s.Observe(remote)
	got := s.Now()
	if got.Compare(remote) <= 0 {
		t.Fatalf("Now() = %v after observing %v", got, remote)
	}
	if got != (HLC{21, 0}) {
		t.Fatalf("Now() = %v, want {21 0}", got)
	}
}

func TestHLCConcurrentStrictlyIncreasing(t *testing.T) {
	s := NewHLCSource(&stepClock{times: []time.Time{ms(42)}})
	const workers, each = 8, 500
	out := make(chan HLC, workers*each)
	var wg sync.WaitGroup
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range each {
				out <- s.Now()
			}
		}()
	}
	wg.Wait()
	close(out)
	seen := map[HLC]bool{}
	for h := range out {
		if seen[h] {
			t.Fatalf("timestamp %v issued twice", h)
		}
		seen[h] = true
	}
}

func TestHLCCompareAndString(t *testing.T) {
	a, b := HLC{1, 5}, HLC{2, 0}
	if a.Compare(b) != -1 || b.Compare(a) != 1 || a.Compare(a) != 0 || a.Compare(HLC{1, 6}) != -1 {
		t.Fatal("Compare orders wall time first, then the counter")
	}
	if got := (HLC{Wall: 1767261600123, Logical: 2}).String(); got != "2026-01-01T10:00:00.123Z+2" {
		t.Fatalf("String() = %q", got)
	}
}

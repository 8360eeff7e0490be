package ledger

import (
	"fmt"
	"math"
	"sync"
	"time"
)

// Clock is the one source of wall-clock time. Every clock read in Canopy goes
// through a Clock so tests and drills can run a node ahead or behind.
type Clock interface {
	Now() time.Time
}

// SystemClock reads the machine's clock shifted by Offset.
type SystemClock struct {
	Offset time.Duration
}

// Now returns the machine's time plus the offset.
func (c SystemClock) Now() time.Time { return time.Now().Add(c.Offset) }

// HLC is a hybrid logical clock timestamp: physical milliseconds since the
// Unix epoch and a logical counter that orders events within one millisecond.
type HLC struct {
	Wall    int64  `json:"wall"`
	Logical uint32 `json:"logical"`
}

// Compare returns -1, 0 or +1 as h is before, equal to or after o.
func (h HLC) Compare(o HLC) int {
	switch {
	case h.Wall < o.Wall:
		return -1
	case h.Wall > o.Wall:
		return 1
	case h.Logical < o.Logical:
		return -1
	case h.Logical > o.Logical:
		return 1
	}
	return 0
}

// Time returns the physical part as a time.
func (h HLC) Time() time.Time { return time.UnixMilli(h.Wall).UTC() }

// String formats the timestamp as RFC 3339 with milliseconds and the counter.
func (h HLC) String() string {
	return fmt.Sprintf("%s+%d", h.Time().Format("2006-01-02T15:04:05.000Z07:00"), h.Logical)
}

// HLCSource issues strictly increasing HLC timestamps from a Clock and folds
// in timestamps observed on entries from other nodes. It is safe for
// concurrent use.
type HLCSource struct {
	clock Clock
	mu    sync.Mutex
	last  HLC
}

// NewHLCSource returns a source reading clock.
func NewHLCSource(clock Clock) *HLCSource { return &HLCSource{clock: clock} }

// Now returns a timestamp after every one issued or observed so far.
func (s *HLCSource) Now() HLC {
	wall := s.clock.Now().UnixMilli()
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case wall > s.last.Wall:
		s.last = HLC{Wall: wall}
	case s.last.Logical == math.MaxUint32:
		// The counter is spent (an observed timestamp can carry any
		// value): move to the next millisecond rather than wrap around.
		s.last = HLC{Wall: s.last.Wall + 1}
	default:
		s.last.Logical++
	}
	return s.last
}

// Observe folds a timestamp seen on another entry into the clock, so the
// next Now sorts after it.
func (s *HLCSource) Observe(h HLC) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if h.Compare(s.last) > 0 {
		s.last = h
	}
}

package simulate

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"sync"
	"time"

	"canopy/checkin"
	"canopy/doorapi"
)

// ticket is one valid ticket and where the doors believe its holder is.
type ticket struct {
	id, token string
	doors     []string // doors it may use; empty: any
	home      int      // the door that scans it, when the book is split
	inside    bool
	door      string // the door it entered by, while inside
	busy      bool   // a door is scanning it
}

// ticketBook is the doors' shared model of the tickets, so that each scan's
// answer can be predicted exactly.
type ticketBook struct {
	mu                     sync.Mutex
	valid, vip             []*ticket
	expired, early, forged []*ticket
	baseline               checkin.Occupancy // occupancy before the run's scans
	// split: each valid ticket is scanned only by its home door.
	split bool
	// spare tickets are kept for InjectConflicts; injected counts those
	// it admitted at two doors (inside once the logs merge, by either door).
	spare    []*ticket
	injected int
}

// scanKind is what a door scan tries.
type scanKind int

const (
	scanIn        scanKind = iota // a valid ticket outside comes in: accepted
	scanOut                       // a valid ticket inside goes out: accepted
	scanDuplicate                 // a ticket inside is scanned in again: already_inside
	scanExpired
	scanEarly
	scanForged
	scanWrongDoor // a north-only ticket at another door: wrong_door
)

// opening is the first scans of every door, so each kind of answer shows
// up early; then the door picks at random by scanWeights.
var opening = []scanKind{scanIn, scanDuplicate, scanExpired, scanEarly, scanForged, scanOut, scanWrongDoor}

var scanWeights = []struct {
	kind   scanKind
	weight int
}{
	{scanIn, 40}, {scanOut, 20}, {scanDuplicate, 10}, {scanExpired, 7}, {scanEarly, 7}, {scanForged, 7}, {scanWrongDoor, 5},
}

func pickKind(rng *rand.Rand) scanKind {
	total := 0
	for _, w := range scanWeights {
		total += w.weight
	}
	n := rng.IntN(total)
	for _, w := range scanWeights {
		if n < w.weight {
			return w.kind
		}
		n -= w.weight
	}
	return scanIn
}

// scan is one planned scan and the answer the model predicts.
type scan struct {
	t         *ticket
	kind      scanKind
	direction string
	accept    bool
	reason    string
}

// plan picks a ticket for kind at door and marks it busy; a kind with no
// candidate falls back to a scan in (nil if every ticket is busy).
func (tb *ticketBook) plan(kind scanKind, di int, door string, rng *rand.Rand) *scan {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	anyOf := func(list []*ticket) *ticket { return list[rng.IntN(len(list))] }
	switch kind {
	case scanExpired:
		return &scan{t: anyOf(tb.expired), kind: kind, direction: checkin.In, reason: checkin.ReasonExpired}
	case scanEarly:
		return &scan{t: anyOf(tb.early), kind: kind, direction: checkin.In, reason: checkin.ReasonNotYetValid}
	case scanForged:
		return &scan{t: anyOf(tb.forged), kind: kind, direction: checkin.In, reason: checkin.ReasonInvalidSignature}
	case scanWrongDoor:
		t := anyOf(tb.vip)
		if len(t.doors) > 0 && !contains(t.doors, door) {
			return &scan{t: t, kind: kind, direction: checkin.In, reason: checkin.ReasonWrongDoor}
		}
		kind = scanIn
	}
	usable := func(t *ticket, inside bool) bool {
		return !t.busy && t.inside == inside && (len(t.doors) == 0 || contains(t.doors, door)) && (!tb.split || t.home == di)
	}
	find := func(inside bool) *ticket {
		pool := tb.valid
		if door == "north" && rng.IntN(4) == 0 {
			pool = tb.vip
		}
		for range 16 {
			if t := anyOf(pool); usable(t, inside) {
				return t
			}
		}
		for _, list := range [][]*ticket{tb.valid, tb.vip} {
			for _, t := range list {
				if usable(t, inside) {
					return t
				}
			}
		}
		return nil
	}
	var sc *scan
	switch kind {
	case scanOut, scanDuplicate:
		if t := find(true); t != nil {
			if kind == scanOut {
				sc = &scan{t: t, kind: kind, direction: checkin.Out, accept: true}
			} else {
				sc = &scan{t: t, kind: kind, direction: checkin.In, reason: checkin.ReasonAlreadyInside}
			}
		}
	}
	if sc == nil {
		t := find(false)
		if t == nil {
			return nil
		}
		sc = &scan{t: t, kind: scanIn, direction: checkin.In, accept: true}
	}
	sc.t.busy = true
	return sc
}

// settle updates the model from the edge's answer (also a wrong one, so
// one surprise does not cascade) and frees the ticket.
func (tb *ticketBook) settle(sc *scan, door string, accepted bool, reason string) {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	switch sc.kind {
	case scanIn, scanOut, scanDuplicate:
	default:
		return
	}
	switch {
	case accepted && sc.direction == checkin.In:
		sc.t.inside, sc.t.door = true, door
	case accepted && sc.direction == checkin.Out:
		sc.t.inside, sc.t.door = false, ""
	case reason == checkin.ReasonAlreadyInside:
		sc.t.inside = true
	case reason == checkin.ReasonNotInside:
		sc.t.inside, sc.t.door = false, ""
	}
	sc.t.busy = false
}

// inside counts the run's tickets inside, per door they entered by; the
// tickets InjectConflicts admitted twice count in the total only (which of
// the two admissions holds is decided when the logs merge).
func (tb *ticketBook) inside() checkin.Occupancy {
	tb.mu.Lock()
	defer tb.mu.Unlock()
	o := checkin.Occupancy{Inside: tb.injected, Doors: map[string]int{}}
	for _, list := range [][]*ticket{tb.valid, tb.vip} {
		for _, t := range list {
			if t.inside {
				o.Inside++
				o.Doors[t.door]++
			}
		}
	}
	return o
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// playDoor scans tickets at a quarter of the order rate (at least one a
// second) until ctx ends.
func (s *Sim) playDoor(ctx context.Context, di int, dev uint64) {
	door, token, edge := s.doors[di], s.doorTokens[di], s.doorEdges[di]
	name := "door-" + door
	rng := s.rng(dev)
	tick := pace(max(s.cfg.Rate/4, 1))
	defer tick.Stop()
	for n := 1; ; n++ {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		kind := pickKind(rng)
		if n <= len(opening) {
			kind = opening[n-1]
		}
		sc := s.tickets.plan(kind, di, door, rng)
		if sc == nil {
			continue
		}
		c := call{device: name, token: token, edge: edge, method: http.MethodPost, path: "/v1/checkins", idem: s.idem(name, n, "scan"),
			body: doorapi.CheckinRequest{Ticket: sc.t.token, Door: door, Direction: sc.direction}}
		var resp doorapi.CheckinResponse
		if !s.expect(ctx, c, http.StatusOK, &resp) {
			s.tickets.settle(sc, door, false, "")
			continue
		}
		s.tickets.settle(sc, door, resp.Accepted, resp.Reason)
		s.stats.update(func(sum *Summary) {
			switch {
			case !resp.Accepted:
				sum.Scans.Rejected[resp.Reason]++
			case sc.direction == checkin.In:
				sum.Scans.Accepted++
				sum.Scans.In++
			default:
				sum.Scans.Accepted++
				sum.Scans.Out++
			}
		})
		validTicket := sc.kind == scanIn || sc.kind == scanOut || sc.kind == scanDuplicate || sc.kind == scanWrongDoor
		switch {
		case resp.Accepted != sc.accept || resp.Reason != sc.reason:
			s.mismatch(c, "ticket %s %s: accepted %v reason %q, want accepted %v reason %q", sc.t.id, sc.direction, resp.Accepted, resp.Reason, sc.accept, sc.reason)
		case validTicket && (resp.Ticket == nil || resp.Ticket.ID != sc.t.id):
			s.mismatch(c, "ticket %s: the answer names ticket %+v", sc.t.id, resp.Ticket)
		case !validTicket && resp.Ticket != nil:
			s.mismatch(c, "a ticket that does not verify was answered as ticket %+v", resp.Ticket)
		}
	}
}

// monitor reads the edge's occupancy about once a second until ctx ends.
func (s *Sim) monitor(ctx context.Context) {
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		s.readOccupancy(ctx)
	}
}

func (s *Sim) readOccupancy(ctx context.Context) (checkin.Occupancy, bool) {
	occ, ok := s.readOccupancyAt(ctx, s.doorEdges[0])
	if ok {
		s.stats.update(func(sum *Summary) { sum.Occupancy = occ })
	}
	return occ, ok
}

// readOccupancyAt reads the occupancy edge knows.
func (s *Sim) readOccupancyAt(ctx context.Context, edge int) (checkin.Occupancy, bool) {
	var occ checkin.Occupancy
	c := call{device: "door-" + s.doors[0], token: s.doorTokens[0], edge: edge, method: http.MethodGet, path: "/v1/occupancy"}
	if !s.expect(ctx, c, http.StatusOK, &occ) {
		return occ, false
	}
	if occ.Doors == nil {
		occ.Doors = map[string]int{}
	}
	return occ, true
}

// finalChecks compares the occupancy of every edge, once every device has
// stopped, with the occupancy before the run plus the doors' model. With
// several edges it gives them Config.Settle to merge their logs first.
func (s *Sim) finalChecks() {
	ctx := context.Background()
	model := s.tickets.inside()
	s.tickets.mu.Lock()
	base, injected := s.tickets.baseline, s.tickets.injected
	s.tickets.mu.Unlock()
	c := call{device: "sim", method: http.MethodGet, path: "/v1/occupancy"}
	differs := func(occ checkin.Occupancy) string {
		if occ.Inside != base.Inside+model.Inside {
			return fmt.Sprintf("counts %d inside; %d before the run and %d let in since", occ.Inside, base.Inside, model.Inside)
		}
		for _, d := range s.doors {
			// A ticket admitted at two doors holds by one of them.
			if lo := base.Doors[d] + model.Doors[d]; occ.Doors[d] < lo || occ.Doors[d] > lo+injected {
				return fmt.Sprintf("counts %d inside by door %s; %d before the run and %d since (and %d admitted at two doors)", occ.Doors[d], d, base.Doors[d], model.Doors[d], injected)
			}
		}
		return ""
	}
	if _, ok := s.readOccupancy(ctx); !ok {
		return
	}
	deadline := time.Now().Add(s.settle)
	for e := range s.urls {
		for {
			occ, ok := s.readOccupancyAt(ctx, e)
			if !ok {
				return
			}
			why := differs(occ)
			if why == "" {
				break
			}
			if len(s.urls) == 1 || time.Now().After(deadline) {
				s.mismatch(c, "edge %d of %d (%s) %s", e+1, len(s.urls), s.urls[e], why)
				break
			}
			sleep(ctx, 100*time.Millisecond) // the edges are still merging their logs
		}
	}
}

package simulate

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"

	"canopy/api"
	"canopy/checkin"
	"canopy/doorapi"
)

// ErrNoSpareTickets is InjectConflicts' error once it has used up the
// tickets kept for it.
var ErrNoSpareTickets = errors.New("simulate: InjectConflicts has used up its spare tickets")

// Injected names the conflicts one InjectConflicts call wrote: a ticket
// admitted by two doors on two edges, and one Idempotency-Key accepted by
// two edges. Once the edges' logs merge, the reconciliation report lists
// "ticket:<Ticket>" as a double entry and "idempotency:<Key>" as a
// duplicate key.
type Injected struct {
	Ticket string   `json:"ticket"`
	Doors  []string `json:"doors"`
	Key    string   `json:"idempotency_key"`
	Edges  []int    `json:"edges"` // indexes into Config.Edges
}

// InjectConflicts writes, on the edges of the first two doors, what only a
// partition allows: both doors admit the same fresh ticket, and the
// organizer writes a note on each edge under the same Idempotency-Key. Call
// it while those edges cannot reach each other (directly or through a hub);
// otherwise the second edge already knows the first's facts and refuses.
// Both edges must accept every write; anything else is an error (also
// counted in Summary). It needs at least two edges, and returns an error
// once its spare tickets are used up.
func (s *Sim) InjectConflicts(ctx context.Context) (Injected, error) {
	if len(s.doors) < 2 || s.doorEdges[0] == s.doorEdges[1] {
		return Injected{}, errors.New("simulate: InjectConflicts needs two edges (Config.Edges)")
	}
	s.injectMu.Lock()
	defer s.injectMu.Unlock()
	s.tickets.mu.Lock()
	if len(s.tickets.spare) == 0 {
		s.tickets.mu.Unlock()
		return Injected{}, ErrNoSpareTickets
	}
	t := s.tickets.spare[0]
	s.tickets.spare = s.tickets.spare[1:]
	s.tickets.mu.Unlock()
	s.injection++
	n := s.injection
	in := Injected{Ticket: t.id, Doors: slices.Clone(s.doors[:2]), Key: fmt.Sprintf("sim-%s-partition-%d", s.run, n), Edges: slices.Clone(s.doorEdges[:2])}

	for di := range 2 {
		name := "door-" + s.doors[di]
		c := call{device: name, token: s.doorTokens[di], edge: s.doorEdges[di], method: http.MethodPost, path: "/v1/checkins",
			idem: s.idem(name, n, "partition-scan"), body: doorapi.CheckinRequest{Ticket: t.token, Door: s.doors[di], Direction: checkin.In}}
		var resp doorapi.CheckinResponse
		if !s.expect(ctx, c, http.StatusOK, &resp) {
			return in, fmt.Errorf("simulate: inject: %s at %s failed (see the errors)", c.name(), name)
		}
		if !resp.Accepted {
			s.mismatch(c, "partition ticket %s: rejected (%s) on edge %d; was the link really cut?", t.id, resp.Reason, s.doorEdges[di]+1)
			return in, fmt.Errorf("simulate: inject: door %s rejected the ticket (%s)", s.doors[di], resp.Reason)
		}
		s.stats.update(func(sum *Summary) { sum.Scans.Accepted++; sum.Scans.In++ })
	}
	s.tickets.mu.Lock()
	s.tickets.injected++
	s.tickets.mu.Unlock()
	for i, e := range in.Edges {
		c := call{device: "sim-organizer", token: s.organizer, edge: e, method: http.MethodPost, path: "/v1/log/notes", idem: in.Key,
			body: api.NoteRequest{Text: fmt.Sprintf("partition %d: written on edge %d (%d of 2)", n, e+1, i+1)}}
		if !s.expect(ctx, c, http.StatusCreated, nil) {
			return in, fmt.Errorf("simulate: inject: %s on edge %d failed (see the errors)", c.name(), e+1)
		}
	}
	s.stats.update(func(sum *Summary) { sum.Injected = append(sum.Injected, in) })
	return in, nil
}

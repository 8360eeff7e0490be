package simulate

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"net/http"
	"time"

	"canopy/auth"
	"canopy/checkin"
	"canopy/posapi"
)

// vendor is a stall with its catalog and tills.
type vendor struct {
	id, name string
	edge     int // the edge its tills talk to
	skus     []item
	tills    []till
}

type item struct {
	sku, name string
	price     int64 // minor units, tax included
	taxRate   int   // basis points
	stock     int64 // 0: not tracked
}

type till struct {
	name, token string
	rate        float64 // sales per second
}

// demoVendors is the event's three stalls.
func demoVendors() []vendor {
	return []vendor{
		{id: "v-tacos", name: "Taco Stand", skus: []item{
			{"taco-pastor", "Taco al pastor", 450, 700, 0},
			{"quesadilla", "Quesadilla", 600, 700, 0},
			{"horchata", "Horchata", 350, 700, 400},
		}},
		{id: "v-coffee", name: "Night Owl Coffee", skus: []item{
			{"espresso", "Espresso", 250, 700, 0},
			{"flat-white", "Flat white", 380, 700, 0},
			{"cinnamon-bun", "Cinnamon bun", 320, 700, 300},
		}},
		{id: "v-crafts", name: "Maker's Table", skus: []item{
			{"tote-bag", "Screen-printed tote", 1500, 1900, 200},
			{"enamel-pin", "Enamel pin", 800, 1900, 500},
			{"art-print", "Art print A3", 2500, 1900, 0},
		}},
	}
}

// Ticket counts of the run.
const (
	validTickets  = 300
	vipTickets    = 20
	badTickets    = 20 // of each kind: expired, not yet valid, forged
	spareTickets  = 16 // kept aside for InjectConflicts
	tillsPerStall = 2
	biddersPerLot = 3
)

// issue signs the run's device tokens and tickets with the event key.
func (s *Sim) issue() error {
	ev, key := s.cfg.Event, s.cfg.Key
	now := time.Now()
	nbf, exp := now.Add(-time.Minute), now.Add(7*24*time.Hour)
	token := func(role auth.Role, name, vendor string) (string, error) {
		t, err := auth.IssueDevice(key, auth.Device{Event: ev.Slug, Role: role, Name: name, Vendor: vendor, NotBefore: nbf, Expires: exp})
		if err != nil {
			return "", fmt.Errorf("simulate: %s token %s: %w", role, name, err)
		}
		return t, nil
	}
	var err error
	if s.organizer, err = token(auth.RoleOrganizer, "sim-organizer", ""); err != nil {
		return err
	}
	s.vendors = demoVendors()
	for vi := range s.vendors {
		v := &s.vendors[vi]
		v.edge = s.vendorEdge(vi)
		for i := 1; i <= tillsPerStall; i++ {
			name := fmt.Sprintf("till-%s-%d", v.id[2:], i)
			tok, err := token(auth.RolePOS, name, v.id)
			if err != nil {
				return err
			}
			v.tills = append(v.tills, till{name: name, token: tok})
		}
	}
	s.doors = []string{"north", "south"}
	for di, d := range s.doors {
		s.doorEdges = append(s.doorEdges, s.doorEdge(di))
		tok, err := token(auth.RoleDoor, "door-"+d, "")
		if err != nil {
			return err
		}
		s.doorTokens = append(s.doorTokens, tok)
	}
	if s.auctioneer, err = token(auth.RoleAuctioneer, "auctioneer", ""); err != nil {
		return err
	}
	for slot := range s.lots {
		s.lots[slot] = &lotSlot{}
		for i := range biddersPerLot {
			name := fmt.Sprintf("paddle-%d%02d", slot+1, i+1)
			tok, err := token(auth.RoleBidder, name, "")
			if err != nil {
				return err
			}
			s.paddles = append(s.paddles, paddle{name: name, token: tok, slot: slot})
		}
	}
	if s.tickets, err = issueTickets(ev, key, now); err != nil {
		return err
	}
	// With several edges each door scans its own share of the tickets:
	// whether a ticket is inside is then decided on one edge only.
	s.tickets.split = len(s.urls) > 1
	for i, t := range s.tickets.valid {
		t.home = i % len(s.doors)
	}
	return nil
}

// vendorEdge is the edge of vendor vi's tills: the first vendor shares the
// first edge with the auction, the others go round the other edges.
func (s *Sim) vendorEdge(vi int) int {
	n := len(s.urls)
	if n == 1 || vi == 0 {
		return 0
	}
	return 1 + (vi-1)%(n-1)
}

// doorEdge is the edge door di talks to.
func (s *Sim) doorEdge(di int) int { return di % len(s.urls) }

// issueTickets signs valid tickets (general admission with re-entry, and
// VIP tickets for the north door only), expired and not yet valid ones,
// and forged ones signed by a key that is not the event's.
func issueTickets(ev *auth.Event, key ed25519.PrivateKey, now time.Time) (*ticketBook, error) {
	_, forger, err := ed25519.GenerateKey(nil)
	if err != nil {
		return nil, fmt.Errorf("simulate: forger key: %w", err)
	}
	tb := &ticketBook{}
	sign := func(k ed25519.PrivateKey, typ string, doors []string, from, until time.Time) (*ticket, error) {
		t := auth.Ticket{ID: auth.NewTicketID(), Event: ev.Slug, Type: typ, Doors: doors, Reentry: true, ValidFrom: from, ValidUntil: until}
		tok, err := auth.IssueTicket(k, t)
		if err != nil {
			return nil, fmt.Errorf("simulate: ticket: %w", err)
		}
		return &ticket{id: t.ID, token: tok, doors: doors}, nil
	}
	add := func(list *[]*ticket, n int, k ed25519.PrivateKey, typ string, doors []string, from, until time.Time) error {
		for range n {
			t, err := sign(k, typ, doors, from, until)
			if err != nil {
				return err
			}
			*list = append(*list, t)
		}
		return nil
	}
	day := 24 * time.Hour
	for _, x := range []struct {
		list        *[]*ticket
		n           int
		k           ed25519.PrivateKey
		typ         string
		doors       []string
		from, until time.Time
	}{
		{&tb.valid, validTickets, key, "general", nil, now.Add(-time.Hour), now.Add(day)},
		{&tb.vip, vipTickets, key, "vip", []string{"north"}, now.Add(-time.Hour), now.Add(day)},
		{&tb.expired, badTickets, key, "general", nil, now.Add(-2 * day), now.Add(-day)},
		{&tb.early, badTickets, key, "general", nil, now.Add(day), now.Add(2 * day)},
		{&tb.forged, badTickets, forger, "general", nil, now.Add(-time.Hour), now.Add(day)},
		{&tb.spare, spareTickets, key, "general", nil, now.Add(-time.Hour), now.Add(day)},
	} {
		if err := add(x.list, x.n, x.k, x.typ, x.doors, x.from, x.until); err != nil {
			return nil, err
		}
	}
	return tb, nil
}

// setup creates the vendors, their catalogs and stock through the API as
// the organizer, and reads the occupancy the doors start from.
func (s *Sim) setup(ctx context.Context) error {
	active := true
	for _, v := range s.vendors {
		// A vendor is set up on its tills' edge, so they can sell at once.
		org := func(method, path string, body any) call {
			return call{device: "sim-organizer", token: s.organizer, edge: v.edge, method: method, path: path, body: body}
		}
		var vr posapi.VendorResponse
		c := org(http.MethodPut, "/v1/vendors/"+v.id, posapi.VendorRequest{Name: v.name, Active: &active})
		if !s.expect(ctx, c, http.StatusOK, &vr) || vr.Vendor.ID != v.id {
			return fmt.Errorf("simulate: set-up: %s failed (see the errors)", c.name())
		}
		for _, it := range v.skus {
			c := org(http.MethodPut, "/v1/catalog/"+it.sku, posapi.SKURequest{Vendor: v.id, Name: it.name, Price: it.price,
				TaxRate: it.taxRate, TaxInclusive: true, TrackStock: it.stock > 0, Active: &active})
			if !s.expect(ctx, c, http.StatusOK, nil) {
				return fmt.Errorf("simulate: set-up: %s failed (see the errors)", c.name())
			}
			if it.stock > 0 {
				n := it.stock
				c := org(http.MethodPut, "/v1/inventory/"+it.sku, posapi.StockSetRequest{OnHand: &n, Reason: "opening stock"})
				if !s.expect(ctx, c, http.StatusOK, nil) {
					return fmt.Errorf("simulate: set-up: %s failed (see the errors)", c.name())
				}
			}
		}
	}
	var occ checkin.Occupancy
	c := call{device: "door-" + s.doors[0], token: s.doorTokens[0], edge: s.doorEdges[0], method: http.MethodGet, path: "/v1/occupancy"}
	if !s.expect(ctx, c, http.StatusOK, &occ) {
		return fmt.Errorf("simulate: set-up: %s failed (see the errors)", c.name())
	}
	s.tickets.baseline = occ
	s.stats.update(func(sum *Summary) { sum.Occupancy = occ })
	return nil
}

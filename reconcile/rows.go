package reconcile

import (
	"encoding/json"
	"fmt"
	"strings"

	"canopy/auction"
	"canopy/checkin"
	"canopy/ledger"
	"canopy/pos"
	"canopy/revocation"
	"canopy/store"
	"canopy/views"
)

// Views are the views a report reads.
var Views = []string{views.IdempotencyView, checkin.View, pos.ViewSKUs, pos.ViewStock, pos.ViewOrders, auction.View, revocation.View}

// rowItems turns the view rows of Views into items; rows of other views are
// ignored.
func rowItems(rows []store.ViewRow) []Item {
	// Only SKUs whose catalog entry tracks stock can be oversold; the stock
	// view also counts sales of SKUs that don't.
	tracked := map[string]bool{}
	for _, r := range rows {
		if r.View != pos.ViewSKUs {
			continue
		}
		var sku pos.SKURow
		if json.Unmarshal(r.Value, &sku) == nil && sku.TrackStock {
			tracked[sku.SKU.SKU] = true
		}
	}
	var items []Item
	for _, r := range rows {
		var add []Item
		var err error
		switch r.View {
		case views.IdempotencyView:
			add, err = idempotencyItems(r)
		case checkin.View:
			add, err = checkinItems(r)
		case pos.ViewStock:
			add, err = stockItems(r, tracked)
		case pos.ViewOrders:
			add, err = orderItems(r)
		case auction.View:
			add, err = auctionItems(r)
		case revocation.View:
			add, err = revocationItems(r)
		default:
			continue
		}
		if err != nil {
			items = append(items, Item{
				Kind: KindUnreadableViewRow, Entity: r.View + ":" + r.Key, Entries: []EntryRef{},
				Detail: fmt.Sprintf("view %s row %q does not decode: %v", r.View, r.Key, err),
			})
			continue
		}
		items = append(items, add...)
	}
	return items
}

func idempotencyItems(r store.ViewRow) ([]Item, error) {
	var rec views.IdempotencyRecord
	if err := json.Unmarshal(r.Value, &rec); err != nil {
		return nil, err
	}
	if len(rec.Duplicates) == 0 {
		return nil, nil
	}
	refs := []EntryRef{refOf("winner", rec.Entry, rec.HLC)}
	var dups []string
	nodes := map[ledger.NodeID]bool{rec.Entry.Node: true}
	for _, d := range rec.Duplicates {
		refs = append(refs, refOf("duplicate", d.Entry, d.HLC))
		dups = append(dups, fmt.Sprintf("%s (%s at %s)", refString(d.Entry), d.Kind, d.HLC))
		nodes[d.Entry.Node] = true
	}
	return []Item{{
		Kind: KindDuplicateIdempotencyKey, Entity: "idempotency:" + r.Key, Entries: refs,
		Detail: fmt.Sprintf("Idempotency-Key %q was accepted %d times by %d node(s): %s (%s at %s) is the earliest and wins; kept as duplicates: %s",
			r.Key, 1+len(rec.Duplicates), len(nodes), refString(rec.Entry), rec.Kind, rec.HLC, strings.Join(dups, ", ")),
	}}, nil
}

// checkinItems lists a ticket's conflicts, each with the scan it conflicts
// with, found by replaying the accepted scans as the reducer does.
func checkinItems(r store.ViewRow) ([]Item, error) {
	var t checkin.Ticket
	if err := json.Unmarshal(r.Value, &t); err != nil {
		return nil, err
	}
	if len(t.Conflicts) == 0 {
		return nil, nil
	}
	// against[ref]: the accepted scan a conflicting scan is judged against.
	against := map[ledger.Ref]*checkin.ScanFact{}
	var holder, first, lastOut *checkin.ScanFact
	for i := range t.Accepted {
		a := &t.Accepted[i]
		switch a.Direction {
		case checkin.In:
			switch {
			case holder != nil:
				against[a.Entry] = holder
			case first != nil && !a.Reentry:
				against[a.Entry] = first
			default:
				holder = a
				if first == nil {
					first = a
				}
			}
		case checkin.Out:
			if holder == nil {
				against[a.Entry] = lastOut
				continue
			}
			holder, lastOut = nil, a
		}
	}
	var items []Item
	for _, c := range t.Conflicts {
		it := Item{Kind: KindCheckinConflict, Reason: c.Reason, Entity: checkin.TicketKey(t.ID)}
		if c.Reason == "double_entry" {
			it.Kind, it.Reason = KindDoubleEntry, ""
		}
		other := against[c.Entry]
		if other != nil {
			role := "admitted"
			if other.Direction == checkin.Out {
				role = "left"
			}
			it.Entries = append(it.Entries, refOf(role, other.Entry, other.HLC))
		}
		it.Entries = append(it.Entries, refOf("conflict", c.Entry, c.HLC))
		switch {
		case c.Reason == "double_entry" && other != nil:
			it.Detail = fmt.Sprintf("ticket %s was admitted at door %q by %s at %s and admitted again at door %q by %s at %s while inside; the first admission holds",
				t.ID, other.Door, refString(other.Entry), other.HLC, c.Door, refString(c.Entry), c.HLC)
		case c.Reason == checkin.ReasonNoReentry && other != nil:
			it.Detail = fmt.Sprintf("ticket %s, which does not allow re-entry, was first admitted at door %q by %s at %s and admitted again at door %q by %s at %s",
				t.ID, other.Door, refString(other.Entry), other.HLC, c.Door, refString(c.Entry), c.HLC)
		case c.Reason == checkin.ReasonNotInside:
			it.Detail = fmt.Sprintf("ticket %s was let out at door %q by %s at %s while not inside", t.ID, c.Door, refString(c.Entry), c.HLC)
		default:
			it.Detail = fmt.Sprintf("ticket %s: scan at door %q by %s at %s conflicts with the merged history (%s)", t.ID, c.Door, refString(c.Entry), c.HLC, c.Reason)
		}
		items = append(items, it)
	}
	return items, nil
}

func stockItems(r store.ViewRow, tracked map[string]bool) ([]Item, error) {
	var s pos.Stock
	if err := json.Unmarshal(r.Value, &s); err != nil {
		return nil, err
	}
	if !s.Oversold || !tracked[s.SKU] {
		return nil, nil
	}
	return []Item{{
		Kind: KindOversold, Entity: "sku:" + s.SKU, Entries: []EntryRef{refOf("last", s.Last.Entry, s.Last.HLC)},
		Detail: fmt.Sprintf("SKU %q is oversold: %d on hand (%d stocked, %d sold); sales accepted offline went below zero. Latest stock fact: %s at %s",
			s.SKU, s.OnHand, s.Adjusted, s.Sold, refString(s.Last.Entry), s.Last.HLC),
	}}, nil
}

func orderItems(r store.ViewRow) ([]Item, error) {
	var o pos.Order
	if err := json.Unmarshal(r.Value, &o); err != nil {
		return nil, err
	}
	var items []Item
	for _, c := range o.Conflicts {
		it := Item{Kind: KindOrderConflict, Reason: c.Reason, Entity: "order:" + o.ID}
		if o.Created != nil {
			role := "order"
			if c.Reason == "duplicate_order_id" {
				role = "winner"
			}
			it.Entries = append(it.Entries, refOf(role, o.Created.Entry, o.Created.HLC))
		}
		it.Entries = append(it.Entries, refOf("refused", c.Entry, c.HLC))
		what, _, _ := strings.Cut(c.Kind, "/")
		switch {
		case c.Reason == "duplicate_order_id" && o.Created != nil:
			it.Detail = fmt.Sprintf("order %s was created twice: %s at %s is the earliest and wins; %s at %s is refused",
				o.ID, refString(o.Created.Entry), o.Created.HLC, refString(c.Entry), c.HLC)
		case c.Reason == "overpayment":
			it.Detail = fmt.Sprintf("order %s: %s %s at %s pays more than was owed by a method that cannot give change; refused", o.ID, what, refString(c.Entry), c.HLC)
		default:
			it.Detail = fmt.Sprintf("order %s (now %s): %s %s at %s is refused by the merged history: %s", o.ID, o.State, what, refString(c.Entry), c.HLC, c.Reason)
		}
		items = append(items, it)
	}
	return items, nil
}

func auctionItems(r store.ViewRow) ([]Item, error) {
	var row auction.Row
	if err := json.Unmarshal(r.Value, &row); err != nil {
		return nil, err
	}
	if !row.IntentWon || row.High == nil {
		return nil, nil
	}
	h := row.High
	home := "(unknown)"
	currency := ""
	if row.Lot != nil {
		home, currency = row.Lot.Home, row.Lot.Currency
	}
	refs := []EntryRef{refOf("winning_intent", h.Entry, h.HLC)}
	if row.Closed != nil {
		refs = append(refs, refOf("closed", row.Closed.Entry, row.Closed.HLC))
	}
	return []Item{{
		Kind: KindIntentChangedWinner, Entity: auction.LotKey(row.ID), Entries: refs,
		Detail: fmt.Sprintf("lot %s: the high bid is an intent, %d %s by paddle %q, recorded by node %s (away from the home edge %s) as %s at %s",
			row.ID, h.Amount, currency, h.Paddle, h.Entry.Node, home, refString(h.Entry), h.HLC),
	}}, nil
}

func revocationItems(r store.ViewRow) ([]Item, error) {
	var row revocation.Row
	if err := json.Unmarshal(r.Value, &row); err != nil {
		return nil, err
	}
	if row.What != revocation.WhatNode {
		return nil, nil
	}
	reason := row.Reason
	if reason == "" {
		reason = "no reason given"
	}
	return []Item{{
		Kind: KindQuarantinedNode, Reason: ReasonRevoked, Entity: "node:" + row.ID,
		Entries: []EntryRef{refOf("revocation", row.Entry, row.HLC)},
		Detail:  fmt.Sprintf("node %s was revoked by device %q (%s at %s): %s; its entries are no longer accepted", row.ID, row.Device, refString(row.Entry), row.HLC, reason),
	}}, nil
}

// quarantineItem reports a node.quarantined entry; one whose body does not
// decode or validate is still listed, saying so.
func quarantineItem(s store.Stored) Item {
	ref := ledger.Ref{Node: s.Entry.Node, Seq: s.Entry.Seq, Hash: s.Hash}
	it := Item{Kind: KindQuarantinedNode, Entity: s.Entry.Key, Entries: []EntryRef{refOf("quarantine", ref, s.Entry.HLC)}}
	var q Quarantine
	err := json.Unmarshal(s.Entry.Body, &q)
	if err == nil {
		err = q.Validate()
	}
	if err != nil {
		it.Reason = "malformed"
		it.Detail = fmt.Sprintf("quarantine %s at %s (key %q) is malformed: %v", refString(ref), s.Entry.HLC, s.Entry.Key, err)
		return it
	}
	it.Entity, it.Reason = QuarantineKey(q.Node), q.Reason
	var ev []string
	for _, e := range q.Evidence {
		it.Entries = append(it.Entries, EntryRef{Role: "evidence", Node: e.Node, Seq: e.Seq, Hash: e.Hash})
		ev = append(ev, fmt.Sprintf("%s (hash %s)", refString(e), e.Hash))
	}
	it.Detail = fmt.Sprintf("node %s was quarantined by %s at %s: %s; evidence: %s", q.Node, s.Entry.Node, s.Entry.HLC, q.Reason, strings.Join(ev, " and "))
	return it
}

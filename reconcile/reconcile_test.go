package reconcile_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"pgregory.net/rapid"

	"canopy/auction"
	"canopy/checkin"
	"canopy/ledger"
	"canopy/pos"
	"canopy/reconcile"
	"canopy/revocation"
	"canopy/store"
	"canopy/store/sqlite"
	"canopy/viewset"
)

const event = "recon-market"

// t0 is the scenario's start (Unix ms); nothing here reads a clock.
const t0 int64 = 1_767_225_600_000

type author struct {
	key  ed25519.PrivateKey
	seq  uint64
	prev ledger.Hash
	out  []store.Stored
}

func newAuthor(name string) *author {
	seed := sha256.Sum256([]byte("reconcile test author " + name))
	return &author{key: ed25519.NewKeyFromSeed(seed[:])}
}

func (a *author) node() ledger.NodeID {
	return ledger.NodeIDOf(a.key.Public().(ed25519.PublicKey))
}

// add signs the author's next entry.
func (a *author) add(t testing.TB, wall int64, logical uint32, kind, key string, body any) store.Stored {
	t.Helper()
	b, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	a.seq++
	e := &ledger.Entry{Event: event, Seq: a.seq, Prev: a.prev, HLC: ledger.HLC{Wall: wall, Logical: logical}, Kind: kind, Key: key, Body: b}
	if err := e.Sign(a.key); err != nil {
		t.Fatal(err)
	}
	a.prev = e.Hash()
	s := store.Stored{Entry: e, Hash: a.prev}
	a.out = append(a.out, s)
	return s
}

func openStore(t testing.TB) *sqlite.Store {
	t.Helper()
	st, err := sqlite.Open(context.Background(), filepath.Join(t.TempDir(), "canopy.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// commit stores a batch as a node does: entries already held are dropped
// (per author, seq at or below the head), the rest folded into the views by
// viewset.All and committed with them.
func commit(t fataler, st store.Store, batch []store.Stored) {
	t.Helper()
	ctx := context.Background()
	heads := map[ledger.NodeID]uint64{}
	var fresh []store.Stored
	for _, s := range batch {
		h, ok := heads[s.Entry.Node]
		if !ok {
			var err error
			if h, _, err = st.Head(ctx, event, s.Entry.Node); err != nil {
				t.Fatal(err)
			}
		}
		if s.Entry.Seq <= h {
			continue
		}
		heads[s.Entry.Node] = s.Entry.Seq
		fresh = append(fresh, s)
	}
	if len(fresh) == 0 {
		return
	}
	read := func(ctx context.Context, keys []store.ViewKey) ([][]byte, error) {
		return st.ReadViews(ctx, event, keys)
	}
	rows, err := viewset.All().Apply(ctx, read, fresh)
	if err != nil {
		t.Fatal(err)
	}
	if err := st.Commit(ctx, &store.Batch{Event: event, Entries: fresh, Views: rows}); err != nil {
		t.Fatal(err)
	}
}

// fataler is what the helpers need of a *testing.T or a *rapid.T.
type fataler interface {
	Helper()
	Fatal(args ...any)
}

type scenario struct {
	a, b, c *author
	// the entries that should appear in items
	keyWinner, keyDup           store.Stored
	admitted, doubleIn          store.Stored
	noReentryFirst, noReentryIn store.Stored
	overpay                     store.Stored
	intent                      store.Stored
	orderCreated                store.Stored
	skewed                      store.Stored
	quarantine                  store.Stored
	evidence                    [2]ledger.Ref
}

// build writes, by three authors, one fact of every conflict kind.
func build(t testing.TB) *scenario {
	s := &scenario{a: newAuthor("a"), b: newAuthor("b"), c: newAuthor("c")}
	a, b, c := s.a, s.b, s.c
	c.add(t, t0+500, 0, "note.added/v1", "note:c", map[string]string{"text": "c is here"})

	// The same Idempotency-Key at two nodes.
	note := func(key, text string) map[string]string {
		return map[string]string{"idempotency_key": key, "request_hash": "rh-" + text, "text": text}
	}
	s.keyWinner = a.add(t, t0+1000, 0, "note.added/v1", "note:1", note("k-1", "from a"))
	s.keyDup = b.add(t, t0+1500, 0, "note.added/v1", "note:2", note("k-1", "from b"))
	a.add(t, t0+1600, 0, "note.added/v1", "note:3", note("k-2", "only a"))

	// The same ticket admitted at two doors.
	scan := func(ticket, door, dir string) checkin.Scan {
		return checkin.Scan{Ticket: ticket, Type: "GA", Door: door, Direction: dir, Device: "door-" + door, Accepted: true}
	}
	s.admitted = a.add(t, t0+2000, 0, checkin.KindScanned, checkin.TicketKey("t-1"), scan("t-1", "north", checkin.In))
	s.doubleIn = b.add(t, t0+2100, 0, checkin.KindScanned, checkin.TicketKey("t-1"), scan("t-1", "south", checkin.In))
	// A ticket without re-entry let in again after leaving.
	s.noReentryFirst = a.add(t, t0+2200, 0, checkin.KindScanned, checkin.TicketKey("t-2"), scan("t-2", "north", checkin.In))
	a.add(t, t0+2300, 0, checkin.KindScanned, checkin.TicketKey("t-2"), scan("t-2", "north", checkin.Out))
	s.noReentryIn = b.add(t, t0+2400, 0, checkin.KindScanned, checkin.TicketKey("t-2"), scan("t-2", "south", checkin.In))
	// A ticket scanned normally: no item.
	a.add(t, t0+2500, 0, checkin.KindScanned, checkin.TicketKey("t-3"), scan("t-3", "north", checkin.In))

	// One loaf in stock (bread tracks stock; cake does not, so selling it
	// without stock is no item), sold at two tills; two card payments on
	// one order.
	a.add(t, t0+2900, 0, pos.KindSKUSet, "sku:bread", pos.SKU{SKU: "bread", Vendor: "bakery", Name: "Bread", Price: 100, TrackStock: true, Active: true})
	a.add(t, t0+2950, 0, pos.KindSKUSet, "sku:cake", pos.SKU{SKU: "cake", Vendor: "bakery", Name: "Cake", Price: 100, Active: true})
	a.add(t, t0+3000, 0, pos.KindStockAdjusted, "sku:bread", pos.StockAdjusted{SKU: "bread", Delta: 1, Device: "org"})
	order := func(id string) pos.Created {
		lines, totals, err := pos.PriceLines([]pos.Line{{SKU: "bread", Name: "Bread", Qty: 1, UnitPrice: 100}}, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		return pos.Created{ID: id, Vendor: "bakery", Device: "till", Currency: "EUR", Lines: lines, Totals: totals}
	}
	s.orderCreated = a.add(t, t0+3100, 0, pos.KindOrderCreated, pos.OrderKey("o-1"), order("o-1"))
	b.add(t, t0+3200, 0, pos.KindOrderCreated, pos.OrderKey("o-2"), order("o-2"))
	cakeLines, cakeTotals, err := pos.PriceLines([]pos.Line{{SKU: "cake", Name: "Cake", Qty: 3, UnitPrice: 100}}, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	b.add(t, t0+3250, 0, pos.KindOrderCreated, pos.OrderKey("o-cake"), pos.Created{ID: "o-cake", Vendor: "bakery", Device: "till", Currency: "EUR", Lines: cakeLines, Totals: cakeTotals})
	pay := func(id string) pos.PaymentBody {
		return pos.PaymentBody{Order: "o-1", ID: id, Method: pos.MethodCard, Amount: 60, Tendered: 60, Device: "till"}
	}
	a.add(t, t0+3300, 0, pos.KindPaymentRecorded, pos.OrderKey("o-1"), pay("p-1"))
	s.overpay = b.add(t, t0+3400, 0, pos.KindPaymentRecorded, pos.OrderKey("o-1"), pay("p-2"))

	// An intent recorded away from the home edge takes the lot.
	a.add(t, t0+4000, 0, auction.KindOpened, auction.LotKey("lot-1"), auction.Lot{ID: "lot-1", Title: "Vase", Currency: "EUR", StartPrice: 100, Increment: 10, ClosesAt: t0 + 600_000, Home: a.node().String(), Device: "auctioneer"})
	a.add(t, t0+4100, 0, auction.KindBid, auction.LotKey("lot-1"), auction.Bid{Lot: "lot-1", ID: "b-1", Paddle: "p7", Amount: 100, Device: "floor"})
	s.intent = b.add(t, t0+4200, 0, auction.KindBid, auction.LotKey("lot-1"), auction.Bid{Lot: "lot-1", ID: "b-2", Paddle: "p9", Amount: 200, Intent: true, Device: "paddle-9"})

	// C's clock jumps two hours ahead.
	s.skewed = c.add(t, t0+2*3600_000, 0, "note.added/v1", "note:c2", map[string]string{"text": "c from the future"})

	// A quarantines a node that showed two histories.
	d := newAuthor("d")
	h1, h2 := sha256.Sum256([]byte("one")), sha256.Sum256([]byte("two"))
	s.evidence = [2]ledger.Ref{{Node: d.node(), Seq: 7, Hash: h1}, {Node: d.node(), Seq: 7, Hash: h2}}
	s.quarantine = a.add(t, t0+5000, 0, reconcile.KindNodeQuarantined, reconcile.QuarantineKey(d.node()),
		reconcile.Quarantine{Node: d.node(), Reason: "equivocation", Evidence: s.evidence[:]})
	return s
}

func (s *scenario) all() []store.Stored {
	var out []store.Stored
	for _, a := range []*author{s.a, s.b, s.c} {
		out = append(out, a.out...)
	}
	return out
}

func readReport(t testing.TB, st store.Store) reconcile.Report {
	t.Helper()
	rep, err := reconcile.Read(context.Background(), st, event, reconcile.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return rep
}

func refIs(r reconcile.EntryRef, s store.Stored) bool {
	return r.Node == s.Entry.Node && r.Seq == s.Entry.Seq && r.Hash == s.Hash && r.HLC != nil && *r.HLC == s.Entry.HLC
}

func itemsOf(rep reconcile.Report, kind string) []reconcile.Item {
	var out []reconcile.Item
	for _, it := range rep.Items {
		if it.Kind == kind {
			out = append(out, it)
		}
	}
	return out
}

func one(t *testing.T, rep reconcile.Report, kind string) reconcile.Item {
	t.Helper()
	its := itemsOf(rep, kind)
	if len(its) != 1 {
		t.Fatalf("%d %s items, want 1: %+v", len(its), kind, its)
	}
	if rep.Counts[kind] != 1 {
		t.Errorf("counts[%s] = %d, want 1", kind, rep.Counts[kind])
	}
	if its[0].Detail == "" {
		t.Errorf("%s item has no detail", kind)
	}
	return its[0]
}

func wantRefs(t *testing.T, it reconcile.Item, roles []string, entries ...store.Stored) {
	t.Helper()
	if len(it.Entries) != len(roles) {
		t.Fatalf("%s item names %d entries, want %d: %+v", it.Kind, len(it.Entries), len(roles), it.Entries)
	}
	for i, r := range it.Entries {
		if r.Role != roles[i] || (i < len(entries) && !refIs(r, entries[i])) {
			t.Errorf("%s item entry %d = %+v, want role %s of %s/%d", it.Kind, i, r, roles[i], entries[i].Entry.Node, entries[i].Entry.Seq)
		}
	}
}

func TestEveryKindOnce(t *testing.T) {
	s := build(t)
	st := openStore(t)
	commit(t, st, s.all())
	rep := readReport(t, st)

	if rep.Event != event || rep.Entries != len(s.all()) || len(rep.Heads) != 3 || rep.SkewThresholdMs != reconcile.DefaultSkewThreshold.Milliseconds() {
		t.Fatalf("report covers event %q, %d entries, heads %+v, threshold %d", rep.Event, rep.Entries, rep.Heads, rep.SkewThresholdMs)
	}
	for _, k := range reconcile.Kinds {
		want := 1
		if k == reconcile.KindUnreadableViewRow {
			want = 0
		}
		if got := rep.Counts[k]; got != want {
			t.Errorf("counts[%s] = %d, want %d", k, got, want)
		}
	}
	if len(rep.Items) != len(reconcile.Kinds)-1 {
		t.Errorf("%d items, want %d", len(rep.Items), len(reconcile.Kinds)-1)
	}

	it := one(t, rep, reconcile.KindDuplicateIdempotencyKey)
	wantRefs(t, it, []string{"winner", "duplicate"}, s.keyWinner, s.keyDup)
	if it.Entity != "idempotency:k-1" || !strings.Contains(it.Detail, "wins") {
		t.Errorf("duplicate key item %+v", it)
	}
	it = one(t, rep, reconcile.KindDoubleEntry)
	wantRefs(t, it, []string{"admitted", "conflict"}, s.admitted, s.doubleIn)
	if it.Entity != "ticket:t-1" || !strings.Contains(it.Detail, `"north"`) || !strings.Contains(it.Detail, `"south"`) {
		t.Errorf("double entry item %+v", it)
	}
	it = one(t, rep, reconcile.KindCheckinConflict)
	wantRefs(t, it, []string{"admitted", "conflict"}, s.noReentryFirst, s.noReentryIn)
	if it.Reason != checkin.ReasonNoReentry || it.Entity != "ticket:t-2" {
		t.Errorf("check-in conflict item %+v", it)
	}
	it = one(t, rep, reconcile.KindOversold)
	if it.Entity != "sku:bread" || !strings.Contains(it.Detail, "-1 on hand") || len(it.Entries) != 1 {
		t.Errorf("oversold item %+v", it)
	}
	it = one(t, rep, reconcile.KindOrderConflict)
	wantRefs(t, it, []string{"order", "refused"}, s.orderCreated, s.overpay)
	if it.Reason != "overpayment" || it.Entity != "order:o-1" {
		t.Errorf("order conflict item %+v", it)
	}
	it = one(t, rep, reconcile.KindIntentChangedWinner)
	wantRefs(t, it, []string{"winning_intent"}, s.intent)
	if it.Entity != "lot:lot-1" || !strings.Contains(it.Detail, `"p9"`) {
		t.Errorf("intent item %+v", it)
	}
	it = one(t, rep, reconcile.KindClockSkew)
	wantRefs(t, it, []string{"flagged", "reference"}, s.skewed, s.quarantine)
	if it.Reason != reconcile.ReasonAhead || it.Entity != "node:"+s.c.node().String() {
		t.Errorf("clock skew item %+v", it)
	}
	it = one(t, rep, reconcile.KindQuarantinedNode)
	wantRefs(t, it, []string{"quarantine", "evidence", "evidence"}, s.quarantine)
	for i, e := range s.evidence {
		if r := it.Entries[i+1]; r.Node != e.Node || r.Seq != e.Seq || r.Hash != e.Hash || r.HLC != nil {
			t.Errorf("evidence %d = %+v, want %+v", i, r, e)
		}
	}
	if it.Reason != "equivocation" || it.Entity != reconcile.QuarantineKey(s.evidence[0].Node) {
		t.Errorf("quarantine item %+v", it)
	}

	// The hash is the SHA-256 of the JSON without the hash, and the JSON
	// carries it.
	b, err := json.Marshal(rep)
	if err != nil {
		t.Fatal(err)
	}
	var back reconcile.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Digest != rep.Digest || back.Hash() != rep.Digest || len(rep.Digest) != 64 {
		t.Fatalf("hash %q, decoded %q, recomputed %q", rep.Digest, back.Digest, back.Hash())
	}
	stripped := bytes.Replace(b, []byte(`"hash":"`+rep.Digest+`"`), []byte(`"hash":""`), 1)
	sum := sha256.Sum256(stripped)
	if hex.EncodeToString(sum[:]) != rep.Digest {
		t.Fatal("the hash is not the SHA-256 of the JSON encoding without the hash")
	}
	// Items are in the documented order.
	for i := 1; i < len(rep.Items); i++ {
		if rep.Items[i-1].Kind > rep.Items[i].Kind {
			t.Fatalf("items out of order: %s before %s", rep.Items[i-1].Kind, rep.Items[i].Kind)
		}
	}
}

func TestNodeRevocationAndMalformedQuarantine(t *testing.T) {
	a := newAuthor("a")
	victim := newAuthor("victim").node().String()
	rev := a.add(t, t0, 0, revocation.Kind, revocation.Key(revocation.WhatNode, victim), revocation.Body{What: revocation.WhatNode, ID: victim, Reason: "stolen box", Device: "org"})
	a.add(t, t0+10, 0, revocation.Kind, revocation.Key(revocation.WhatTicket, "t-9"), revocation.Body{What: revocation.WhatTicket, ID: "t-9", Device: "org"})
	bad := a.add(t, t0+20, 0, reconcile.KindNodeQuarantined, "node:x", map[string]any{"node": victim, "reason": "equivocation", "evidence": []any{}})
	st := openStore(t)
	commit(t, st, a.out)
	rep := readReport(t, st)
	its := itemsOf(rep, reconcile.KindQuarantinedNode)
	if len(its) != 2 || len(rep.Items) != 2 {
		t.Fatalf("items %+v, want a revocation and a malformed quarantine", rep.Items)
	}
	for _, it := range its {
		switch it.Reason {
		case reconcile.ReasonRevoked:
			wantRefs(t, it, []string{"revocation"}, rev)
			if it.Entity != "node:"+victim || !strings.Contains(it.Detail, "stolen box") {
				t.Errorf("revocation item %+v", it)
			}
		case "malformed":
			wantRefs(t, it, []string{"quarantine"}, bad)
			if !strings.Contains(it.Detail, "want 2 pieces of evidence, got 0") {
				t.Errorf("malformed quarantine item %+v", it)
			}
		default:
			t.Errorf("unexpected item %+v", it)
		}
	}
}

func TestUnreadableRowIsListed(t *testing.T) {
	rows := []store.ViewRow{{View: pos.ViewStock, Key: "bread", Value: []byte("{not json")}, {View: "other.view", Key: "x", Value: []byte("{")}}
	rep := reconcile.Build(event, nil, rows, reconcile.Options{})
	if len(rep.Items) != 1 || rep.Items[0].Kind != reconcile.KindUnreadableViewRow || rep.Items[0].Entity != "pos.stock:bread" {
		t.Fatalf("items %+v, want one unreadable pos.stock row", rep.Items)
	}
}

func TestQuarantineValidate(t *testing.T) {
	d := newAuthor("d").node()
	other := newAuthor("o").node()
	ref := func(n ledger.NodeID, b byte) ledger.Ref { return ledger.Ref{Node: n, Seq: 3, Hash: ledger.Hash{b}} }
	cases := []struct {
		q    reconcile.Quarantine
		want string
	}{
		{reconcile.Quarantine{Node: d, Reason: "fork", Evidence: []ledger.Ref{ref(d, 1), ref(d, 2)}}, ""},
		{reconcile.Quarantine{Reason: "fork", Evidence: []ledger.Ref{ref(d, 1), ref(d, 2)}}, "no node"},
		{reconcile.Quarantine{Node: d, Evidence: []ledger.Ref{ref(d, 1), ref(d, 2)}}, "no reason"},
		{reconcile.Quarantine{Node: d, Reason: "fork", Evidence: []ledger.Ref{ref(d, 1)}}, "want 2 pieces"},
		{reconcile.Quarantine{Node: d, Reason: "fork", Evidence: []ledger.Ref{ref(d, 1), ref(d, 1)}}, "the same entry"},
		{reconcile.Quarantine{Node: d, Reason: "fork", Evidence: []ledger.Ref{ref(d, 1), ref(other, 2)}}, "not the quarantined node"},
		{reconcile.Quarantine{Node: d, Reason: "\xff", Evidence: []ledger.Ref{ref(d, 1), ref(d, 2)}}, "UTF-8"},
		{reconcile.Quarantine{Node: d, Reason: strings.Repeat("x", reconcile.MaxQuarantineReasonLen+1), Evidence: []ledger.Ref{ref(d, 1), ref(d, 2)}}, "longer than"},
	}
	for i, c := range cases {
		err := c.q.Validate()
		if (c.want == "") != (err == nil) || (err != nil && !strings.Contains(err.Error(), c.want)) {
			t.Errorf("case %d: error %v, want %q", i, err, c.want)
		}
	}
}

// meta builds an unsigned entry for the clock rules (they read only node,
// seq, hash and HLC).
func meta(node byte, seq uint64, wall int64, logical uint32) store.Stored {
	e := &ledger.Entry{Event: event, Node: ledger.NodeID{node}, Seq: seq, HLC: ledger.HLC{Wall: wall, Logical: logical}, Kind: "x/v1"}
	return store.Stored{Entry: e, Hash: sha256.Sum256([]byte(fmt.Sprint(node, seq)))}
}

func skewFlags(rep reconcile.Report) []string {
	var out []string
	for _, it := range itemsOf(rep, reconcile.KindClockSkew) {
		out = append(out, fmt.Sprintf("%s %d/%d", it.Reason, it.Entries[0].Node[0], it.Entries[0].Seq))
	}
	return out
}

func TestClockRules(t *testing.T) {
	const min = int64(60_000)
	cases := []struct {
		name    string
		entries []store.Stored
		want    string
	}{
		{"honest, busy", []store.Stored{meta(1, 1, t0, 0), meta(2, 1, t0+min, 0), meta(1, 2, t0+2*min, 0), meta(2, 2, t0+3*min, 0)}, ""},
		{"one node alone for long, close to its own previous", []store.Stored{meta(2, 1, t0, 0), meta(1, 1, t0+min, 0), meta(1, 2, t0+4*min, 0), meta(1, 3, t0+8*min, 0), meta(1, 4, t0+12*min, 0)}, ""},
		{"ahead by two hours: only the jump", []store.Stored{meta(2, 1, t0, 0), meta(1, 1, t0+min, 0), meta(2, 2, t0+2*min, 0), meta(1, 2, t0+120*min, 0), meta(1, 3, t0+121*min, 0)}, "ahead 1/2"},
		{"ahead from its first entry", []store.Stored{meta(2, 1, t0, 0), meta(2, 2, t0+min, 0), meta(1, 1, t0+180*min, 0)}, "ahead 1/1"},
		{"inherited time is not flagged", []store.Stored{meta(2, 1, t0, 0), meta(1, 1, t0+120*min, 0), meta(2, 2, t0+120*min, 1), meta(2, 3, t0+120*min, 2), meta(1, 2, t0+121*min, 0)}, "ahead 1/1"},
		{"quiet spell, then another clock agrees", []store.Stored{meta(2, 1, t0, 0), meta(1, 1, t0+min, 0), meta(1, 2, t0+60*min, 0), meta(2, 2, t0+61*min, 0)}, ""},
		{"quiet spell, nobody else since", []store.Stored{meta(2, 1, t0, 0), meta(1, 1, t0+min, 0), meta(1, 2, t0+60*min, 0)}, "ahead 1/2"},
		{"exactly the threshold is fine", []store.Stored{meta(2, 1, t0, 0), meta(1, 1, t0+5*min, 0)}, ""},
		{"HLC goes back", []store.Stored{meta(1, 1, t0+60*min, 0), meta(1, 2, t0, 0)}, "behind_own_previous 1/2"},
		{"HLC goes back a little", []store.Stored{meta(1, 1, t0+min, 0), meta(1, 2, t0, 0)}, ""},
		{"nothing to judge by", []store.Stored{meta(1, 1, t0, 0), meta(1, 2, t0+3*min, 0)}, ""},
	}
	for _, c := range cases {
		rep := reconcile.Build(event, c.entries, nil, reconcile.Options{})
		if got := strings.Join(skewFlags(rep), ", "); got != c.want {
			t.Errorf("%s: flagged %q, want %q", c.name, got, c.want)
		}
	}
	// A larger threshold forgives the two hours.
	rep := reconcile.Build(event, cases[2].entries, nil, reconcile.Options{SkewThreshold: 3 * time.Hour})
	if len(skewFlags(rep)) != 0 || rep.SkewThresholdMs != (3*time.Hour).Milliseconds() {
		t.Errorf("with a 3h threshold: %v, threshold %d", skewFlags(rep), rep.SkewThresholdMs)
	}
}

// TestBuildOrderIndependent: any permutation and duplication of the same
// entries, with random HLCs (ties, inherited times, jumps both ways) gives
// a byte-identical report.
func TestBuildOrderIndependent(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		var entries []store.Stored
		authors := rapid.IntRange(1, 4).Draw(rt, "authors")
		for a := 1; a <= authors; a++ {
			n := rapid.IntRange(1, 8).Draw(rt, "n")
			wall := t0 + rapid.Int64Range(0, 30*60_000).Draw(rt, "start")
			for s := 1; s <= n; s++ {
				// Mostly small steps, sometimes hours either way.
				wall += rapid.SampledFrom([]int64{0, 1, 1000, 60_000, 400_000, 7_200_000, -7_200_000}).Draw(rt, "step")
				entries = append(entries, meta(byte(a), uint64(s), wall, rapid.Uint32Range(0, 2).Draw(rt, "logical")))
			}
		}
		want, _ := json.Marshal(reconcile.Build(event, entries, nil, reconcile.Options{}))
		perm := rapid.Permutation(entries).Draw(rt, "perm")
		dups := rapid.SliceOfN(rapid.SampledFrom(entries), 0, 5).Draw(rt, "dups")
		got, _ := json.Marshal(reconcile.Build(event, append(perm, dups...), nil, reconcile.Options{}))
		if !bytes.Equal(got, want) {
			rt.Fatalf("report differs:\n%s\n%s", got, want)
		}
	})
}

// TestStoredReportOrderIndependent commits the scenario into a fresh store
// per run, interleaving authors at random (each author in seq order), in
// random batches, re-delivering some, and compares the report byte for byte.
func TestStoredReportOrderIndependent(t *testing.T) {
	s := build(t)
	ref := openStore(t)
	commit(t, ref, s.all())
	want, _ := json.Marshal(readReport(t, ref))
	rapid.Check(t, func(rt *rapid.T) {
		queues := [][]store.Stored{s.a.out, s.b.out, s.c.out}
		pos := make([]int, len(queues))
		var order []store.Stored
		for {
			var live []int
			for i, q := range queues {
				if pos[i] < len(q) {
					live = append(live, i)
				}
			}
			if len(live) == 0 {
				break
			}
			i := rapid.SampledFrom(live).Draw(rt, "author")
			order = append(order, queues[i][pos[i]])
			pos[i]++
		}
		st := openStore(t)
		for k := 0; k < len(order); {
			n := rapid.IntRange(1, 8).Draw(rt, "batch")
			end := min(len(order), k+n)
			back := rapid.IntRange(0, k).Draw(rt, "redeliver") // re-deliver some already held
			commit(rt, st, order[k-back:end])
			k = end
		}
		got, _ := json.Marshal(readReport(t, st))
		if !bytes.Equal(got, want) {
			rt.Fatalf("report differs:\n%s\n%s", got, want)
		}
	})
}

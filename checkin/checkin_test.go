package checkin_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"testing"

	"pgregory.net/rapid"

	"canopy/checkin"
	"canopy/ledger"
	"canopy/store"
	"canopy/views"
)

type author struct {
	key  ed25519.PrivateKey
	seq  uint64
	prev ledger.Hash
}

func (a *author) scan(t *rapid.T, wall int64, s checkin.Scan) store.Stored {
	b, _ := json.Marshal(s)
	a.seq++
	e := &ledger.Entry{Event: "ev", Seq: a.seq, Prev: a.prev, HLC: ledger.HLC{Wall: wall, Logical: uint32(a.seq)}, Kind: checkin.KindScanned, Key: checkin.TicketKey(s.Ticket), Body: b}
	if err := e.Sign(a.key); err != nil {
		t.Fatal(err)
	}
	a.prev = e.Hash()
	return store.Stored{Entry: e, Hash: a.prev}
}

type harness struct {
	set  *views.Set
	rows map[string][]byte
	seen map[ledger.Hash]bool
}

func newHarness() *harness {
	set, _ := views.NewSet(checkin.Reducer{})
	return &harness{set: set, rows: map[string][]byte{}, seen: map[ledger.Hash]bool{}}
}

func (h *harness) apply(t *rapid.T, s store.Stored) {
	if h.seen[s.Hash] {
		return
	}
	h.seen[s.Hash] = true
	out, err := h.set.Apply(context.Background(), views.ReadEach(func(_ context.Context, view, key string) ([]byte, error) {
		if v, ok := h.rows[key]; ok {
			return v, nil
		}
		return nil, store.ErrNotFound
	}), []store.Stored{s})
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range out {
		h.rows[r.Key] = r.Value
	}
}

func (h *harness) ticket(id string) *checkin.Ticket {
	b, ok := h.rows[id]
	if !ok {
		return nil
	}
	var t checkin.Ticket
	if err := json.Unmarshal(b, &t); err != nil {
		panic(err)
	}
	return &t
}

// TestOneEdgeNeverAdmitsTwice: an edge deciding scans with Decide over its
// own row never has a ticket inside twice, and answers with exact reasons.
func TestOneEdgeNeverAdmitsTwice(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		h := newHarness()
		a := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
		reentry := map[string]bool{"t1": true, "t2": false, "t3": rapid.Bool().Draw(t, "t3reentry")}
		inside := map[string]bool{}
		admitted := map[string]int{}
		for i, n := 0, rapid.IntRange(1, 60).Draw(t, "n"); i < n; i++ {
			id := rapid.SampledFrom([]string{"t1", "t2", "t3"}).Draw(t, "ticket")
			dir := rapid.SampledFrom([]string{checkin.In, checkin.Out}).Draw(t, "dir")
			door := rapid.SampledFrom([]string{"north", "south"}).Draw(t, "door")
			ok, reason := checkin.Decide(h.ticket(id), dir, reentry[id])
			// The model's answer.
			var wantOK bool
			var want string
			switch {
			case dir == checkin.In && inside[id]:
				want = checkin.ReasonAlreadyInside
			case dir == checkin.In && admitted[id] > 0 && !reentry[id]:
				want = checkin.ReasonNoReentry
			case dir == checkin.Out && !inside[id]:
				want = checkin.ReasonNotInside
			default:
				wantOK = true
			}
			if ok != wantOK || reason != want {
				t.Fatalf("scan %d %s %s: got (%v, %q), want (%v, %q)", i, id, dir, ok, reason, wantOK, want)
			}
			if ok {
				inside[id] = dir == checkin.In
				if dir == checkin.In {
					admitted[id]++
				}
			}
			h.apply(t, a.scan(t, int64(1000+i), checkin.Scan{Ticket: id, Door: door, Direction: dir, Reentry: reentry[id], Accepted: ok, Reason: reason}))
			row := h.ticket(id)
			if row.Inside != inside[id] || len(row.Conflicts) != 0 {
				t.Fatalf("row %+v disagrees with the model (inside %v)", row, inside[id])
			}
		}
	})
}

// TestPartitionedDoorsConvergeAndReport: two edges that could not see each
// other both admit a ticket; every arrival order gives the same row, the
// first admission by (hlc, node, seq) holds and the other is a conflict.
func TestPartitionedDoorsConvergeAndReport(t *testing.T) {
	rapid.Check(t, func(t *rapid.T) {
		a := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{1}, 32))}
		b := &author{key: ed25519.NewKeyFromSeed(bytes.Repeat([]byte{2}, 32))}
		wa := int64(rapid.IntRange(1000, 1005).Draw(t, "wa"))
		wb := int64(rapid.IntRange(1000, 1005).Draw(t, "wb"))
		es := []store.Stored{
			a.scan(t, wa, checkin.Scan{Ticket: "t", Door: "north", Direction: checkin.In, Accepted: true}),
			b.scan(t, wb, checkin.Scan{Ticket: "t", Door: "south", Direction: checkin.In, Accepted: true}),
			b.scan(t, wb+1, checkin.Scan{Ticket: "t", Door: "south", Direction: checkin.In, Accepted: false, Reason: checkin.ReasonAlreadyInside}),
		}
		var first []byte
		for round := 0; round < 3; round++ {
			h := newHarness()
			perm := rapid.Permutation(es).Draw(t, fmt.Sprintf("perm%d", round))
			perm = append(perm, perm[0]) // a duplicate delivery
			for _, s := range perm {
				h.apply(t, s)
			}
			row := h.rows["t"]
			if first == nil {
				first = row
			} else if !bytes.Equal(first, row) {
				t.Fatalf("arrival order changed the row:\n%s\n%s", first, row)
			}
			tk := h.ticket("t")
			if !tk.Inside || tk.Admissions != 1 || len(tk.Conflicts) != 1 || tk.Conflicts[0].Reason != "double_entry" || tk.Rejected != 1 {
				t.Fatalf("row %+v", tk)
			}
			winner := "north"
			if wb < wa || (wb == wa && bytes.Compare(es[1].Entry.Node[:], es[0].Entry.Node[:]) < 0) {
				winner = "south"
			}
			if tk.Door != winner {
				t.Fatalf("door %s holds, want %s (first by hlc, node, seq)", tk.Door, winner)
			}
		}
	})
}

func TestCount(t *testing.T) {
	o := checkin.Count([]checkin.Ticket{{Inside: true, Door: "n"}, {Inside: true, Door: "s"}, {Inside: true, Door: "n"}, {}})
	if o.Inside != 3 || o.Doors["n"] != 2 || o.Doors["s"] != 1 {
		t.Fatalf("%+v", o)
	}
}

package replica_test

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"path/filepath"
	"testing"

	"pgregory.net/rapid"

	"canopy/journal"
	"canopy/ledger"
	"canopy/store"
	"canopy/store/sqlite"
	"canopy/viewset"
)

// TestRandomDeliveryConverges: three nodes write conflicting facts while
// apart, then exchange entries in random chunks — out of order, duplicated,
// dropped, relayed through a third node, some deliveries starting past a
// gap (refused). Once everything has been delivered, every node holds the
// same entries and byte-identical views, and each node's stored views equal
// a rebuild from its entries.
func TestRandomDeliveryConverges(t *testing.T) {
	rapid.Check(t, func(rt *rapid.T) {
		ctx := context.Background()
		dir := t.TempDir()
		type node struct {
			st *sqlite.Store
			j  *journal.Journal
		}
		var nodes []node
		for i := 0; i < 3; i++ {
			st, err := sqlite.Open(ctx, filepath.Join(dir, fmt.Sprintf("n%d.db", i)))
			if err != nil {
				rt.Fatal(err)
			}
			key := ed25519.NewKeyFromSeed([]byte(fmt.Sprintf("canopy converge test node %06d", i)))
			j, err := journal.Open(ctx, journal.Config{Event: "ev", Key: key, Store: st, Views: viewset.All()})
			if err != nil {
				rt.Fatal(err)
			}
			nodes = append(nodes, node{st, j})
		}
		defer func() {
			for _, n := range nodes {
				n.j.Close(ctx)
				n.st.Close()
			}
		}()
		// Writes while apart: notes reusing Idempotency-Keys across nodes,
		// orders and payments on shared order ids, door scans of one ticket.
		for i, n := 0, rapid.IntRange(1, 30).Draw(rt, "writes"); i < n; i++ {
			w := nodes[rapid.IntRange(0, 2).Draw(rt, "writer")]
			var kind, key, body string
			switch rapid.IntRange(0, 3).Draw(rt, "what") {
			case 0:
				kind, key = "log.note/v1", "note"
				body = fmt.Sprintf(`{"idempotency_key":"k%d","request_hash":"h%d","text":"x"}`, rapid.IntRange(0, 4).Draw(rt, "idem"), i)
			case 1:
				id := rapid.SampledFrom([]string{"o1", "o2"}).Draw(rt, "order")
				kind, key = "order.created/v1", "order:"+id
				body = fmt.Sprintf(`{"id":%q,"vendor":"v","lines":[{"sku":"tea","qty":1,"unit_price":500,"amount":500}],"totals":{"items":500,"total":500}}`, id)
			case 2:
				id := rapid.SampledFrom([]string{"o1", "o2"}).Draw(rt, "order")
				kind, key = "payment.recorded/v1", "order:"+id
				body = fmt.Sprintf(`{"order":%q,"id":"p%d","method":"card","amount":300,"tendered":300}`, id, i)
			case 3:
				kind, key = "checkin.scanned/v1", "ticket:t1"
				body = `{"ticket":"t1","door":"d","direction":"in","accepted":true}`
			}
			if _, err := w.j.Append(ctx, kind, key, []byte(body)); err != nil {
				rt.Fatal(err)
			}
		}
		authors := make([]ledger.NodeID, 3)
		for i, n := range nodes {
			authors[i] = n.j.Node()
		}
		// Random deliveries, then a final round that delivers everything.
		deliver := func(from, to node, author ledger.NodeID, skip, count int) {
			head, _, err := to.st.Head(ctx, "ev", author)
			if err != nil {
				rt.Fatal(err)
			}
			start := uint64(max(1, int(head)+1-skip))
			es, err := from.st.Entries(ctx, "ev", author, start, ^uint64(0), count)
			if err != nil {
				rt.Fatal(err)
			}
			if _, err := to.j.Ingest(ctx, es); err != nil && !errors.Is(err, store.ErrConflict) {
				rt.Fatal(err)
			}
		}
		for i, n := 0, rapid.IntRange(0, 40).Draw(rt, "deliveries"); i < n; i++ {
			from := nodes[rapid.IntRange(0, 2).Draw(rt, "from")]
			to := nodes[rapid.IntRange(0, 2).Draw(rt, "to")]
			author := authors[rapid.IntRange(0, 2).Draw(rt, "author")] // relays: any author's entries
			if rapid.IntRange(0, 5).Draw(rt, "drop") == 0 {
				continue // the link dropped this delivery
			}
			// skip < 0 starts past the receiver's head: a gap, refused.
			deliver(from, to, author, rapid.IntRange(-2, 3).Draw(rt, "skip"), rapid.IntRange(1, 6).Draw(rt, "count"))
		}
		for round := 0; round < 2; round++ { // relays may need a second pass
			for _, from := range nodes {
				for _, to := range nodes {
					for _, a := range authors {
						deliver(from, to, a, 0, 0)
					}
				}
			}
		}
		want, err := viewset.All().Rebuild(ctx, nodes[0].st, "ev")
		if err != nil {
			rt.Fatal(err)
		}
		v0, _ := nodes[0].st.Vector(ctx, "ev")
		for i, n := range nodes {
			v, _ := n.st.Vector(ctx, "ev")
			if fmt.Sprint(v) != fmt.Sprint(v0) {
				rt.Fatalf("node %d holds %v, node 0 %v", i, v, v0)
			}
			if err := viewset.All().Verify(ctx, n.st, "ev"); err != nil {
				rt.Fatalf("node %d: stored views differ from a rebuild: %v", i, err)
			}
			got, err := viewset.All().Rebuild(ctx, n.st, "ev")
			if err != nil {
				rt.Fatal(err)
			}
			if len(got) != len(want) {
				rt.Fatalf("node %d has %d view rows, node 0 %d", i, len(got), len(want))
			}
			for k := range got {
				if got[k].Key != want[k].Key || string(got[k].Value) != string(want[k].Value) {
					rt.Fatalf("node %d view %s/%s differs from node 0", i, got[k].View, got[k].Key)
				}
			}
		}
	})
}

package hub_test

import (
	"context"
	"fmt"
	"sync"
	"testing"

	"canopy/auth"
	"canopy/hub"
	"canopy/internal/testutil"
	"canopy/ledger"
	"canopy/reconcile"
	"canopy/replica"
)

// TestWitnessForkRace: a forked node's two histories reach the hub on two
// streams at the same instant (two edges relaying them concurrently), both
// before the hub holds either. Whichever the hub stores first, the other is
// a fork: the hub must quarantine the node, exactly once, every time.
// Each trial is a new forked node, its two pushes released together.
//
// Before journal.Ingest compared an entry at a held seq with the held one
// (and answered a request with nothing to store only after the batch it
// conflicts with is durable), and before replica's findFork looked for a
// different entry at a held seq, the hub missed the fork in nearly every
// trial.
func TestWitnessForkRace(t *testing.T) {
	ev := testutil.NewEvent(t, "fork-race-market")
	slug := ev.Event.Slug
	h := openHub(t, hub.Config{Dir: hubDir(t, "hub-1", ev), Listen: "127.0.0.1:0"})
	defer closeHub(t, h)
	hubNode := h.Lookup(slug).Enrolment.Node
	base := h.EventURL(slug)

	const trials = 20
	missed := 0
	for trial := range trials {
		r := newRogue(t, ev)
		e1 := r.entry(t, 1, nil, auth.EnrolledKind, r.node.String(), auth.EnrolledBody(r.tok))
		a := r.entry(t, 2, e1, "test.note/v1", "k", fmt.Appendf(nil, `{"text":"a%d"}`, trial))
		b := r.entry(t, 2, e1, "test.note/v1", "k", fmt.Appendf(nil, `{"text":"b%d"}`, trial))
		start := make(chan struct{})
		var wg sync.WaitGroup
		prs := make([]replica.PushResponse, 2)
		errs := make([]error, 2)
		for i, es := range [][]*ledger.Entry{{e1, a}, {e1, b}} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				prs[i], errs[i] = r.pushErr(base, es)
			}()
		}
		close(start)
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
		n := quarantinesBy(t, h, slug, hubNode, r.node)
		switch {
		case n == 0:
			missed++
			t.Logf("trial %d: fork not detected (added %d and %d)", trial, prs[0].Added, prs[1].Added)
		case n > 1:
			t.Errorf("trial %d: node quarantined %d times", trial, n)
		}
	}
	if missed > 0 {
		t.Fatalf("the hub missed the fork in %d of %d trials", missed, trials)
	}
}

// quarantinesBy counts the node.quarantined entries the hub's node wrote
// about node.
func quarantinesBy(t *testing.T, h *hub.Hub, slug string, hubNode, node ledger.NodeID) int {
	t.Helper()
	ss, err := h.Store.EntriesByKey(context.Background(), slug, reconcile.QuarantineKey(node))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, s := range ss {
		if s.Entry.Kind == reconcile.KindNodeQuarantined && s.Entry.Node == hubNode {
			n++
		}
	}
	return n
}

package hub_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	fnote "github.com/transparency-dev/formats/note"
	sumnote "golang.org/x/mod/sumdb/note"

	"canopy/auth"
	"canopy/hub"
	"canopy/internal/testutil"
	"canopy/ledger"
	"canopy/receipt"
	"canopy/reconcile"
	"canopy/replica"
	"canopy/store"
	"canopy/witness"
)

// independentVerifier builds the hub's witness verifier with
// transparency-dev/formats and x/mod alone, from the hub's public key and
// the name documented in ledger/FORMAT.md.
func independentVerifier(t *testing.T, slug string, pub ed25519.PublicKey) sumnote.Verifier {
	t.Helper()
	name := "canopy/" + slug + "/" + ledger.NodeIDOf(pub).String() + "/witness"
	std, err := sumnote.NewEd25519VerifierKey(name, pub)
	if err != nil {
		t.Fatal(err)
	}
	vkey, err := fnote.VKeyToCosignatureV1(std)
	if err != nil {
		t.Fatal(err)
	}
	v, err := fnote.NewVerifierForCosignatureV1(vkey)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// waitFor polls cond until it holds or the deadline passes.
func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %s: %s", within, what)
		}
		time.Sleep(20 * time.Millisecond) // polling a condition, not synchronizing
	}
}

// TestWitnessCosignsEdgeCheckpoints: an edge's checkpoints reach the hub,
// which checks and cosigns them; the cosigned note flows back to the edge,
// verifies with independent code, and a receipt fetched afterwards carries
// it, which `verify receipt` reports and checks with the witness key.
func TestWitnessCosignsEdgeCheckpoints(t *testing.T) {
	ev := testutil.NewEvent(t, "witness-market")
	slug := ev.Event.Slug
	h := openHub(t, hub.Config{Dir: hubDir(t, "hub-1", ev), Listen: "127.0.0.1:0"})
	defer closeHub(t, h)
	hev := h.Lookup(slug)
	hubPub := hev.Enrolment.PublicKey
	v := independentVerifier(t, slug, hubPub)
	if got := hev.Witness.VerifierKey(); !strings.HasPrefix(got, v.Name()+"+") || !strings.Contains(got, fmt.Sprintf("+%08x+", v.KeyHash())) {
		t.Fatalf("witness verifier key %q, want name %s and key hash %08x", got, v.Name(), v.KeyHash())
	}

	org := ev.ValidToken(t, auth.RoleOrganizer)
	a := openEdge(t, ev, "edge-a", h.EventURL(slug))
	sell(t, a, org, "a", 1)
	node := a.Journal.Node()
	head, _, _ := a.Store.Head(context.Background(), slug, node)

	var cosigned store.Checkpoint
	waitFor(t, 15*time.Second, "the edge holds no checkpoint of its log cosigned by the hub", func() bool {
		cp, err := a.Store.LatestCheckpoint(context.Background(), slug, node)
		if err != nil || cp.Size < head {
			return false
		}
		if _, err := sumnote.Open(cp.Note, sumnote.VerifierList(v)); err != nil {
			return false
		}
		cosigned = cp
		return true
	})
	// The author's own signature is still there and the note still opens
	// as a checkpoint.
	if _, err := ledger.OpenCheckpoint(cosigned.Note, slug, a.Enrolment.PublicKey); err != nil {
		t.Fatalf("cosigned note: %v\n%s", err, cosigned.Note)
	}
	// A cosignature by another key does not verify (the check can fail).
	_, otherKey, _ := ed25519.GenerateKey(nil)
	if err := witness.VerifyCosignature(cosigned.Note, witness.VerifierKey(slug, otherKey.Public().(ed25519.PublicKey))); err == nil {
		t.Fatal("a cosignature verified with another witness's key")
	}

	// A receipt fetched now carries the cosigned checkpoint.
	var orders struct {
		Orders []struct {
			ID string `json:"id"`
		} `json:"orders"`
	}
	if err := json.Unmarshal(call(t, a.URL(), org, "GET", "/v1/orders", "", nil, http.StatusOK), &orders); err != nil || len(orders.Orders) != 1 {
		t.Fatalf("orders: %v %+v", err, orders)
	}
	doc := call(t, a.URL(), org, "GET", "/v1/receipts/"+orders.Orders[0].ID, "", nil, http.StatusOK)
	r, err := receipt.Verify(doc, ev.Event, receipt.Options{RequireProof: true, WitnessKeys: []string{hev.Witness.VerifierKey()}})
	if err != nil {
		t.Fatalf("receipt: %v\n%s", err, doc)
	}
	if len(r.Cosignatures) != 1 || !r.Cosignatures[0].Verified || r.Cosignatures[0].Node != hev.Enrolment.Node {
		t.Fatalf("receipt cosignatures %+v, want one verified by the hub", r.Cosignatures)
	}
	if _, err := sumnote.Open([]byte(r.Document.Checkpoint), sumnote.VerifierList(v)); err != nil {
		t.Fatalf("the receipt's checkpoint does not verify with the independent witness verifier: %v", err)
	}
	_, err = receipt.Verify(doc, ev.Event, receipt.Options{WitnessKeys: []string{witness.VerifierKey(slug, otherKey.Public().(ed25519.PublicKey))}})
	var f *receipt.Failure
	if !errorsAs(err, &f) || f.Check != receipt.CheckWitness {
		t.Fatalf("receipt with another witness key: %v, want a %q failure", err, receipt.CheckWitness)
	}
}

func errorsAs(err error, f **receipt.Failure) bool {
	if err == nil {
		return false
	}
	rf, ok := err.(*receipt.Failure)
	*f = rf
	return ok
}

// rogue is a node enrolled in the event that writes its log by hand.
type rogue struct {
	ev   *testutil.Event
	key  ed25519.PrivateKey
	tok  string
	node ledger.NodeID
}

func newRogue(t *testing.T, ev *testutil.Event) *rogue {
	t.Helper()
	key, tok, err := auth.EnrollNode(ev.Key, ev.Event, "rogue", auth.NodeEdge, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	return &rogue{ev: ev, key: key, tok: tok, node: ledger.NodeIDOf(key.Public().(ed25519.PublicKey))}
}

// entry signs the rogue's entry at seq after prev.
func (r *rogue) entry(t *testing.T, seq uint64, prev *ledger.Entry, kind, key string, body []byte) *ledger.Entry {
	t.Helper()
	e := &ledger.Entry{Event: r.ev.Event.Slug, Node: r.node, Seq: seq,
		HLC: ledger.HLC{Wall: time.Now().UnixMilli() + int64(seq)}, Kind: kind, Key: key, Body: body}
	if prev != nil {
		e.Prev = prev.Hash()
	}
	if err := e.Sign(r.key); err != nil {
		t.Fatal(err)
	}
	return e
}

// push sends entries and checkpoint notes to base's sync endpoint as the
// rogue.
func (r *rogue) push(t *testing.T, base string, es []*ledger.Entry, notes ...[]byte) replica.PushResponse {
	t.Helper()
	pr, err := r.pushErr(base, es, notes...)
	if err != nil {
		t.Fatal(err)
	}
	return pr
}

// pushErr is push for any goroutine: it returns what failed.
func (r *rogue) pushErr(base string, es []*ledger.Entry, notes ...[]byte) (replica.PushResponse, error) {
	var pr replica.PushResponse
	var buf bytes.Buffer
	sw, err := replica.NewStreamWriter(&buf)
	if err != nil {
		return pr, err
	}
	for _, e := range es {
		sw.Entry(e.Encode())
	}
	for _, n := range notes {
		sw.Checkpoint(r.node, n)
	}
	sw.End()
	sw.Flush()
	req, err := http.NewRequest("POST", base+"/v1/sync/push", bytes.NewReader(buf.Bytes()))
	if err != nil {
		return pr, err
	}
	req.Header.Set("Content-Type", replica.ContentType)
	replica.Sign(req, r.key, r.tok, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return pr, err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil || resp.StatusCode != http.StatusOK {
		return pr, fmt.Errorf("push: %d %v", resp.StatusCode, err)
	}
	return pr, nil
}

// quarantineOf returns the quarantine of node held by st, or nil.
func quarantineOf(t *testing.T, st store.Store, slug string, node ledger.NodeID) *witness.Quarantine {
	t.Helper()
	ss, err := st.EntriesByKey(context.Background(), slug, reconcile.QuarantineKey(node))
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range ss {
		if s.Entry.Kind == reconcile.KindNodeQuarantined {
			var q witness.Quarantine
			if err := json.Unmarshal(s.Entry.Body, &q); err != nil {
				t.Fatalf("quarantine body %s: %v", s.Entry.Body, err)
			}
			return &q
		}
	}
	return nil
}

// TestWitnessQuarantinesFork: a node signs two different entries at one
// seq; one reaches the hub through an edge, the other is pushed straight
// to the hub. The hub writes a node.quarantined fact carrying both entries,
// the fact reaches the edge, and the node's further pushes are refused.
func TestWitnessQuarantinesFork(t *testing.T) {
	ev := testutil.NewEvent(t, "fork-market")
	slug := ev.Event.Slug
	h := openHub(t, hub.Config{Dir: hubDir(t, "hub-1", ev), Listen: "127.0.0.1:0"})
	defer closeHub(t, h)
	a := openEdge(t, ev, "edge-a", h.EventURL(slug))
	r := newRogue(t, ev)

	e1 := r.entry(t, 1, nil, auth.EnrolledKind, r.node.String(), auth.EnrolledBody(r.tok))
	e2 := r.entry(t, 2, e1, "test.note/v1", "k", []byte(`{"text":"one"}`))
	e2b := r.entry(t, 2, e1, "test.note/v1", "k", []byte(`{"text":"another"}`))
	if pr := r.push(t, a.URL(), []*ledger.Entry{e1, e2}); pr.Refused != "" || pr.Added != 2 {
		t.Fatalf("push to the edge: %+v", pr)
	}
	waitFor(t, 10*time.Second, "the hub does not hold the rogue's entries from the edge", func() bool {
		v, _ := h.Store.Vector(context.Background(), slug)
		return v[r.node] == 2
	})
	if q := quarantineOf(t, h.Store, slug, r.node); q != nil {
		t.Fatalf("quarantined before any fork: %+v", q)
	}

	pr := r.push(t, h.EventURL(slug), []*ledger.Entry{e1, e2b})
	if pr.Refused == "" || !strings.Contains(pr.Refused, "two histories") {
		t.Fatalf("the fork was not refused: %+v", pr)
	}
	q := quarantineOf(t, h.Store, slug, r.node)
	if q == nil {
		t.Fatal("the hub wrote no quarantine")
	}
	if err := q.Quarantine.Validate(); err != nil {
		t.Fatalf("quarantine %+v: %v", q.Quarantine, err)
	}
	if q.Node != r.node || q.Reason != witness.ReasonFork || len(q.Entries) != 2 {
		t.Fatalf("quarantine %+v", q)
	}
	got := map[ledger.Hash]bool{}
	for _, enc := range q.Entries {
		e, err := ledger.Decode(enc)
		if err != nil || e.Verify(r.key.Public().(ed25519.PublicKey)) != nil {
			t.Fatalf("evidence entry does not decode and verify: %v", err)
		}
		got[e.Hash()] = true
	}
	if !got[e2.Hash()] || !got[e2b.Hash()] {
		t.Fatal("the evidence is not the two conflicting entries")
	}

	// The fact syncs to the edge like any entry, and the edge then refuses
	// the node too.
	waitFor(t, 10*time.Second, "the quarantine did not reach the edge", func() bool {
		return quarantineOf(t, a.Store, slug, r.node) != nil
	})
	e3 := r.entry(t, 3, e2, "test.note/v1", "k", []byte(`{"text":"three"}`))
	for _, base := range []string{h.EventURL(slug), a.URL()} {
		pr := r.push(t, base, []*ledger.Entry{e3})
		if pr.Added != 0 || !strings.Contains(pr.Refused, "quarantined") {
			t.Fatalf("push to %s after the quarantine: %+v, want refused as quarantined", base, pr)
		}
	}
	if v, _ := h.Store.Vector(context.Background(), slug); v[r.node] != 2 {
		t.Fatalf("the hub holds %d of the rogue's entries, want 2", v[r.node])
	}
	// The reconciliation report lists it.
	rep := reconcileReport(t, h.Store, slug)
	if !strings.Contains(rep, reconcile.KindQuarantinedNode) || !strings.Contains(rep, r.node.String()) {
		t.Fatalf("report lacks the quarantine: %s", rep)
	}
}

// TestWitnessQuarantinesInconsistentCheckpoint: a node's checkpoint over
// its held entries is cosigned; one it signs over a wrong root gets it
// quarantined.
func TestWitnessQuarantinesInconsistentCheckpoint(t *testing.T) {
	ev := testutil.NewEvent(t, "cp-market")
	slug := ev.Event.Slug
	h := openHub(t, hub.Config{Dir: hubDir(t, "hub-1", ev), Listen: "127.0.0.1:0"})
	defer closeHub(t, h)
	hev := h.Lookup(slug)
	r := newRogue(t, ev)
	es := []*ledger.Entry{r.entry(t, 1, nil, auth.EnrolledKind, r.node.String(), auth.EnrolledBody(r.tok))}
	for i := 2; i <= 3; i++ {
		es = append(es, r.entry(t, uint64(i), es[len(es)-1], "test.note/v1", "k", fmt.Appendf(nil, `{"n":%d}`, i)))
	}
	hashes := []ledger.Hash{es[0].Hash(), es[1].Hash(), es[2].Hash()}
	good, err := ledger.SignCheckpoint(r.key, slug, 3, ledger.RootOf(hashes))
	if err != nil {
		t.Fatal(err)
	}
	if pr := r.push(t, h.EventURL(slug), es, good); pr.Refused != "" || pr.Added != 3 {
		t.Fatalf("push: %+v", pr)
	}
	cp, err := h.Store.LatestCheckpoint(context.Background(), slug, r.node)
	if err != nil || cp.Size != 3 {
		t.Fatalf("hub's checkpoint of the node: %+v %v", cp, err)
	}
	if _, err := sumnote.Open(cp.Note, sumnote.VerifierList(independentVerifier(t, slug, hev.Enrolment.PublicKey))); err != nil {
		t.Fatalf("the stored checkpoint is not cosigned: %v\n%s", err, cp.Note)
	}
	if quarantineOf(t, h.Store, slug, r.node) != nil {
		t.Fatal("quarantined for a good checkpoint")
	}

	bad, err := ledger.SignCheckpoint(r.key, slug, 2, ledger.RootOf([]ledger.Hash{hashes[0], hashes[2]}))
	if err != nil {
		t.Fatal(err)
	}
	r.push(t, h.EventURL(slug), nil, bad)
	q := quarantineOf(t, h.Store, slug, r.node)
	if q == nil || q.Reason != witness.ReasonCheckpoint || q.Checkpoint != string(bad) || len(q.Entries) != 2 {
		t.Fatalf("quarantine %+v, want one for the inconsistent checkpoint", q)
	}
	if err := q.Quarantine.Validate(); err != nil {
		t.Fatalf("quarantine evidence: %v", err)
	}
	if pr := r.push(t, h.EventURL(slug), []*ledger.Entry{r.entry(t, 4, es[2], "test.note/v1", "k", []byte(`{}`))}); !strings.Contains(pr.Refused, "quarantined") {
		t.Fatalf("push after the quarantine: %+v", pr)
	}
}

// reconcileReport builds the reconciliation report of st's entries.
func reconcileReport(t *testing.T, st store.Store, slug string) string {
	t.Helper()
	var all []store.Stored
	if err := st.Scan(context.Background(), slug, func(s store.Stored) error {
		all = append(all, s)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(reconcile.Build(slug, all, nil, reconcile.Options{}))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

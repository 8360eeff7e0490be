package replica_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"canopy/auth"
	"canopy/edge"
	"canopy/internal/testutil"
	"canopy/ledger"
	"canopy/replica"
)

// author is an enrolled node that writes its log by hand, to push exactly
// the stream a test needs.
type author struct {
	key  ed25519.PrivateKey
	tok  string
	node ledger.NodeID
	log  []*ledger.Entry
}

// newAuthor enrols a node in ev and signs n entries of its log (the first
// is its enrolment).
func newAuthor(t *testing.T, ev *testutil.Event, name string, n int) *author {
	t.Helper()
	key, tok, err := auth.EnrollNode(ev.Key, ev.Event, name, auth.NodeEdge, time.Now().Add(-time.Hour), time.Now().Add(48*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a := &author{key: key, tok: tok, node: ledger.NodeIDOf(key.Public().(ed25519.PublicKey))}
	for seq := 1; seq <= n; seq++ {
		e := &ledger.Entry{Event: ev.Event.Slug, Seq: uint64(seq), HLC: ledger.HLC{Wall: time.Now().UnixMilli()},
			Kind: "test.note/v1", Key: fmt.Sprintf("k%d", seq), Body: fmt.Appendf(nil, `{"n":%d}`, seq)}
		if seq == 1 {
			e.Kind, e.Key, e.Body = auth.EnrolledKind, a.node.String(), auth.EnrolledBody(tok)
		} else {
			e.Prev = a.log[seq-2].Hash()
		}
		if err := e.Sign(key); err != nil {
			t.Fatal(err)
		}
		a.log = append(a.log, e)
	}
	return a
}

// checkpoint signs the author's checkpoint over its first size entries.
func (a *author) checkpoint(t *testing.T, slug string, size int) []byte {
	t.Helper()
	hs := make([]ledger.Hash, size)
	for i, e := range a.log[:size] {
		hs[i] = e.Hash()
	}
	note, err := ledger.SignCheckpoint(a.key, slug, uint64(size), ledger.RootOf(hs))
	if err != nil {
		t.Fatal(err)
	}
	return note
}

// push sends a checkpoint (if any) and then the encoded entries to base as
// the author, and returns the answer.
func (a *author) push(t *testing.T, base string, note []byte, encoded [][]byte) replica.PushResponse {
	t.Helper()
	var buf bytes.Buffer
	sw, err := replica.NewStreamWriter(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if note != nil {
		sw.Checkpoint(a.node, note)
	}
	for _, enc := range encoded {
		sw.Entry(enc)
	}
	sw.End()
	sw.Flush()
	req, _ := http.NewRequest("POST", base+"/v1/sync/push", bytes.NewReader(buf.Bytes()))
	req.Header.Set("Content-Type", replica.ContentType)
	replica.Sign(req, a.key, a.tok, nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var pr replica.PushResponse
	if err := json.NewDecoder(resp.Body).Decode(&pr); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("push: %d %v", resp.StatusCode, err)
	}
	return pr
}

func encodeAll(es []*ledger.Entry) [][]byte {
	out := make([][]byte, len(es))
	for i, e := range es {
		out[i] = e.Encode()
	}
	return out
}

// authenticated returns B's counts of entries authenticated by a
// checkpoint and by their own signatures.
func authenticated(t *testing.T, e *edge.Edge) (byCheckpoint, bySignature float64) {
	t.Helper()
	byCheckpoint, _ = scrape(t, e, "canopy_sync_authenticated_entries_total", `by="checkpoint"`)
	bySignature, _ = scrape(t, e, "canopy_sync_authenticated_entries_total", `by="signature"`)
	return byCheckpoint, bySignature
}

// TestCoveredPushes: a run of entries sent after a checkpoint covering it
// is authenticated by that checkpoint alone, on top of entries already
// held; entries beyond it are verified one by one; a changed byte in any
// covered entry (body or signature), a checkpoint over another root or one
// signed by another key gets the run refused as a bad signature, keeping
// the entries before a tampered one.
func TestCoveredPushes(t *testing.T) {
	ev := testutil.NewEvent(t, "covered")
	slug := ev.Event.Slug
	b, err := edge.Open(context.Background(), ev.EdgeConfig(t, "edge-b", ""), nil)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close(context.Background())
	const n = 100

	type want struct {
		held       uint64
		refused    bool
		checkpoint float64 // entries authenticated by the checkpoint
		signature  float64 // entries verified one by one
	}
	tamper := func(at int, fn func(enc []byte, e *ledger.Entry)) func(a *author) [][]byte {
		return func(a *author) [][]byte {
			encs := encodeAll(a.log)
			fn(encs[at], a.log[at])
			return encs
		}
	}
	cases := []struct {
		name  string
		held  int                      // entries pushed (uncovered) first
		cover func(a *author) []byte   // the checkpoint sent before the run
		run   func(a *author) [][]byte // the run (default: the log after held)
		want  want
	}{
		{name: "covered", cover: func(a *author) []byte { return a.checkpoint(t, slug, n) },
			want: want{held: n, checkpoint: n}},
		{name: "uncovered tail", cover: func(a *author) []byte { return a.checkpoint(t, slug, 80) },
			want: want{held: n, checkpoint: 80, signature: 20}},
		{name: "on top of held entries", held: 30, cover: func(a *author) []byte { return a.checkpoint(t, slug, n) },
			want: want{held: n, checkpoint: n - 30}},
		{name: "tampered body", cover: func(a *author) []byte { return a.checkpoint(t, slug, n) },
			run:  tamper(40, func(enc []byte, _ *ledger.Entry) { enc[len(enc)-ledger.SigSize-3] ^= 0x01 }),
			want: want{held: 40, refused: true, signature: 40}},
		{name: "tampered signature", cover: func(a *author) []byte { return a.checkpoint(t, slug, n) },
			run:  tamper(40, func(enc []byte, _ *ledger.Entry) { enc[len(enc)-1] ^= 0x80 }),
			want: want{held: 40, refused: true, signature: 40}},
		{name: "tampered prev", held: 10, cover: func(a *author) []byte { return a.checkpoint(t, slug, n) },
			run:  tamper(60, func(enc []byte, e *ledger.Entry) { enc[bytes.Index(enc, e.Prev[:])+5] ^= 0x01 }),
			want: want{held: 60, refused: true, signature: 50}},
		{name: "another root", cover: func(a *author) []byte {
			hs := make([]ledger.Hash, n)
			for i, e := range a.log {
				hs[i] = e.Hash()
			}
			hs[n-1][0] ^= 1
			note, err := ledger.SignCheckpoint(a.key, slug, n, ledger.RootOf(hs))
			if err != nil {
				t.Fatal(err)
			}
			return note
		}, want: want{held: 0, refused: true}},
		{name: "another key", cover: func(a *author) []byte {
			other := newAuthor(t, ev, "other", 1)
			hs := make([]ledger.Hash, n)
			for i, e := range a.log {
				hs[i] = e.Hash()
			}
			note, err := ledger.SignCheckpoint(other.key, slug, n, ledger.RootOf(hs))
			if err != nil {
				t.Fatal(err)
			}
			return note
		}, want: want{held: 0, refused: true}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			a := newAuthor(t, ev, fmt.Sprintf("author-%d", i), n)
			refusals := fmt.Sprintf("peer=%q,reason=%q,side=%q", "node:"+a.node.String(), replica.RefusedSignature, "received")
			if tc.held > 0 {
				if pr := a.push(t, b.URL(), nil, encodeAll(a.log[:tc.held])); pr.Refused != "" || pr.Added != tc.held {
					t.Fatalf("pushing the first %d: %+v", tc.held, pr)
				}
			}
			cp0, sig0 := authenticated(t, b)
			run := encodeAll(a.log)
			if tc.run != nil {
				run = tc.run(a)
			}
			pr := a.push(t, b.URL(), tc.cover(a), run[tc.held:])
			if got := pr.Vector[a.node]; got != tc.want.held {
				t.Errorf("B holds %d of the author's entries, want %d (%+v)", got, tc.want.held, pr)
			}
			if tc.want.refused != (pr.Refused != "") {
				t.Errorf("refused %q, want a refusal: %v", pr.Refused, tc.want.refused)
			}
			if tc.want.refused {
				if pr.RefusedReason != replica.RefusedSignature {
					t.Errorf("refused_reason %q, want %q", pr.RefusedReason, replica.RefusedSignature)
				}
				if k, _ := scrape(t, b, "canopy_sync_refused_entries_total", refusals); k != 1 {
					t.Errorf("B counted %v refusals {%s}, want 1", k, refusals)
				}
				t.Logf("refused: %s", pr.Refused)
			}
			cp1, sig1 := authenticated(t, b)
			if cp1-cp0 != tc.want.checkpoint || sig1-sig0 != tc.want.signature {
				t.Errorf("authenticated %v by checkpoint and %v by signature, want %v and %v",
					cp1-cp0, sig1-sig0, tc.want.checkpoint, tc.want.signature)
			}
		})
	}
	// A covered run stores its checkpoint.
	a := newAuthor(t, ev, "stored-checkpoint", n)
	if pr := a.push(t, b.URL(), a.checkpoint(t, slug, n), encodeAll(a.log)); pr.Refused != "" {
		t.Fatal(pr.Refused)
	}
	if cp, err := b.Store.LatestCheckpoint(context.Background(), slug, a.node); err != nil || cp.Size != n {
		t.Fatalf("B's checkpoint of the author: %+v, %v", cp, err)
	}
}

// TestCatchUpIsCovered: an edge catching up from a peer gets the peer's
// log authenticated by the peer's checkpoints, a third edge that hears of
// it only through the second (a relay) does too, and so does an edge the
// peer pushes its log to.
func TestCatchUpIsCovered(t *testing.T) {
	ev := testutil.NewEvent(t, "covered-relay")
	slug := ev.Event.Slug
	a := open(t, ev.EdgeConfig(t, "edge-a", ""))
	defer a.Close(context.Background())
	const n = 300
	for i := range n {
		if _, err := a.Journal.Append(context.Background(), "test.note/v1", fmt.Sprintf("k%d", i), []byte(`{"n":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	if cp, err := a.Journal.SignCheckpoint(context.Background()); err != nil || cp.Size != n+1 {
		t.Fatalf("A's checkpoint: %+v %v", cp, err)
	}
	cfgB := ev.EdgeConfig(t, "edge-b", "")
	cfgB.Sync.Peers = []string{a.URL()}
	b := open(t, cfgB)
	defer b.Close(context.Background())
	caughtUp := func(from, to *edge.Edge, who string) {
		t.Helper()
		waitSame(t, from.Store, to.Store, slug, 20*time.Second)
		if cp, _ := authenticated(t, to); cp < n+1 {
			t.Fatalf("%s authenticated %v entries by checkpoint, want A's %d", who, cp, n+1)
		}
	}
	caughtUp(a, b, "B")
	// C syncs with B alone; B relays A's log and A's checkpoint before it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		cp, err := b.Store.LatestCheckpoint(context.Background(), slug, a.Journal.Node())
		if err == nil && cp.Size == n+1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("B has not stored A's checkpoint: %+v %v", cp, err)
		}
		time.Sleep(5 * time.Millisecond) // polling a condition, not synchronizing
	}
	cfgC := ev.EdgeConfig(t, "edge-c", "")
	cfgC.Sync.Peers = []string{b.URL()}
	c := open(t, cfgC)
	defer c.Close(context.Background())
	caughtUp(b, c, "C (through B)")
	// D is sent A's log by A's pushes, not pulled.
	d := open(t, ev.EdgeConfig(t, "edge-d", ""))
	defer d.Close(context.Background())
	a.AddPeer([]string{d.URL()}, nil)
	caughtUp(a, d, "D (pushed to)")
	if v, _ := c.Store.Vector(context.Background(), slug); v[a.Journal.Node()] != n+1 {
		t.Fatalf("C holds %v", v)
	}
}

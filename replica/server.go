package replica

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/prometheus/client_golang/prometheus"

	"canopy/api"
	"canopy/auth"
	"canopy/journal"
	"canopy/ledger"
	"canopy/store"
)

// Node is what a sync endpoint serves: one event's store, and the journal
// that stores what others send.
type Node struct {
	Event   *auth.Event
	Journal *journal.Journal
	Store   store.Store
	Clock   ledger.Clock
	Logger  *slog.Logger
	// Heartbeat is how often an idle follow stream sends an end frame
	// (default 10 s), so both sides notice a dead link.
	Heartbeat time.Duration
	// Stopping, when closed, ends follow streams (the daemon closes it as
	// it shuts down, since http.Server.Shutdown waits for open streams).
	Stopping <-chan struct{}
	// Witness, if set (a hub's), cosigns the checkpoints received and is
	// told of authors showing two histories.
	Witness Witness
	// CheckpointPoll is how often a stream looks for a checkpoint this node
	// signed of its own log (default 1 s): signing commits no entry, so it
	// wakes nothing.
	CheckpointPoll time.Duration
	cpMu           sync.Mutex
	cpCh           chan struct{} // closed when a received checkpoint is stored
	// Registerer, if set, gets the sync metrics (see metrics.go) when
	// Register runs.
	Registerer prometheus.Registerer
	// OnIngest, if set, is called with the entries of other nodes once
	// they are durable here (e.g. to drop state cached from the views).
	OnIngest func(stored []store.Stored)

	authors *authors

	metricsOnce sync.Once
	m           *metrics
	peersMu     sync.Mutex
	peers       []*Peer
}

// metrics returns the node's sync metrics, made on first use.
func (n *Node) metrics() *metrics {
	n.metricsOnce.Do(func() { n.m = newMetrics() })
	return n.m
}

// addPeer lists a peer in the node's status.
func (n *Node) addPeer(p *Peer) {
	n.peersMu.Lock()
	defer n.peersMu.Unlock()
	for _, q := range n.peers {
		if q == p {
			return
		}
	}
	n.peers = append(n.peers, p)
}

// PeerStatuses returns the status of every peer this node syncs with, in
// the order they started.
func (n *Node) PeerStatuses() []PeerStatus {
	n.peersMu.Lock()
	ps := append([]*Peer(nil), n.peers...)
	n.peersMu.Unlock()
	out := make([]PeerStatus, len(ps))
	for i, p := range ps {
		out[i] = p.Status()
	}
	return out
}

// PeerURL returns the URL of the peer whose node id is node, as learned
// from its vector, if this node syncs with it.
func (n *Node) PeerURL(node ledger.NodeID) (string, bool) {
	id := node.String()
	for _, st := range n.PeerStatuses() {
		if st.Node == id && st.URL != "" {
			return st.URL, true
		}
	}
	return "", false
}

// Vector is a version vector: per author, the highest contiguous seq held.
type Vector map[ledger.NodeID]uint64

// VectorResponse answers GET /v1/sync/vector.
type VectorResponse struct {
	Protocol int           `json:"protocol"`
	Node     ledger.NodeID `json:"node"`
	Vector   Vector        `json:"vector"`
}

// PullRequest is the body of POST /v1/sync/pull.
type PullRequest struct {
	Protocol int    `json:"protocol"`
	Vector   Vector `json:"vector"`
	// Follow keeps the stream open, sending new entries as they commit.
	Follow bool `json:"follow"`
}

// PushResponse answers POST /v1/sync/push.
type PushResponse struct {
	Added  int    `json:"added"`
	Vector Vector `json:"vector"`
	// Refused says why the rest of the stream was not taken, if it wasn't.
	Refused string `json:"refused,omitempty"`
	// RefusedReason classifies Refused (see RefusedReason).
	RefusedReason string `json:"refused_reason,omitempty"`
}

// StatusResponse answers GET /v1/sync/status: what this node holds and how
// its links are doing. It carries node ids and counts, no personal data.
type StatusResponse struct {
	Protocol int           `json:"protocol"`
	Event    string        `json:"event"`
	Node     ledger.NodeID `json:"node"`
	Vector   Vector        `json:"vector"`
	Peers    []PeerStatus  `json:"peers"`
}

// Register serves the sync endpoints on s. They need a node's enrolment
// and signature, not a device token.
func Register(s *api.Server, n *Node) {
	if n.Logger == nil {
		n.Logger = slog.New(slog.DiscardHandler)
	}
	if n.Clock == nil {
		n.Clock = ledger.SystemClock{}
	}
	if n.Heartbeat <= 0 {
		n.Heartbeat = 10 * time.Second
	}
	if n.CheckpointPoll <= 0 {
		n.CheckpointPoll = time.Second
	}
	n.authors = newAuthors(n.Event, n.Store)
	if n.Registerer != nil {
		if err := n.metrics().register(n.Registerer); err != nil {
			n.Logger.Warn("sync: metrics not registered", "err", err)
		}
	}
	s.Handle(api.Route{Pattern: "GET /v1/sync/status", Handler: n.status})
	s.Handle(api.Route{Pattern: "GET /v1/sync/vector", Handler: n.vector})
	s.Handle(api.Route{Pattern: "POST /v1/sync/pull", Handler: n.pull})
	s.Handle(api.Route{Pattern: "POST /v1/sync/push", MaxBody: 1 << 30, Handler: n.push})
}

func (n *Node) check(r *http.Request, bodyHash [32]byte) (*auth.Enrolment, error) {
	enr, err := authenticate(n.Event, n.Clock.Now(), r, bodyHash)
	if err != nil {
		return nil, api.NewProblem(api.TypeNodeUnauthenticated, "%v", err)
	}
	return enr, nil
}

func (n *Node) vector(w http.ResponseWriter, r *http.Request) error {
	if _, err := n.check(r, emptyHash); err != nil {
		return err
	}
	v, err := n.Store.Vector(r.Context(), n.Event.Slug)
	if err != nil {
		return err
	}
	return api.WriteJSON(w, http.StatusOK, VectorResponse{Protocol: ProtocolVersion, Node: n.Journal.Node(), Vector: v})
}

// status serves GET /v1/sync/status; it needs no credentials.
func (n *Node) status(w http.ResponseWriter, r *http.Request) error {
	v, err := n.Store.Vector(r.Context(), n.Event.Slug)
	if err != nil {
		return err
	}
	peers := n.PeerStatuses()
	return api.WriteJSON(w, http.StatusOK, StatusResponse{
		Protocol: ProtocolVersion, Event: n.Event.Slug, Node: n.Journal.Node(), Vector: v, Peers: peers,
	})
}

func (n *Node) pull(w http.ResponseWriter, r *http.Request) error {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		return api.NewProblem(api.TypeBodyUnreadable, "read pull request: %v", err)
	}
	peer, err := n.check(r, sha256.Sum256(body))
	if err != nil {
		return err
	}
	var req PullRequest
	if err := json.Unmarshal(body, &req); err != nil {
		return api.NewProblem(api.TypeMalformedJSON, "pull request: %v", err)
	}
	if req.Protocol != ProtocolVersion {
		return api.NewProblem(api.TypeSyncVersion, "peer speaks sync protocol %d, this node %d", req.Protocol, ProtocolVersion)
	}
	w.Header().Set("Content-Type", ContentType)
	var out io.Writer = w
	var gz *gzip.Writer
	if acceptsGzip(r) {
		// Compressed batches: each end frame flushes the compressor, so a
		// follow stream still delivers every commit at once.
		w.Header().Set("Content-Encoding", "gzip")
		w.Header().Add("Vary", "Accept-Encoding")
		gz, _ = gzip.NewWriterLevel(w, gzip.BestSpeed)
		defer gz.Close()
		out = gz
	}
	w.WriteHeader(http.StatusOK)
	sw, err := newWriter(out)
	if err != nil {
		return nil
	}
	flusher, _ := w.(http.Flusher)
	sent := Vector{}
	for k, v := range req.Vector {
		sent[k] = v
	}
	ctx := r.Context()
	cps := newCPTracker(n)
	defer cps.stop()
	for {
		changed, cpChanged := n.Journal.Changed(), n.cpChanged()
		before := maps.Clone(sent)
		polled := cps.polled()
		k, err := n.sendMissing(ctx, sw, sent, 0, cps)
		if err == nil {
			var c int
			c, err = cps.send(ctx, sw, before, sent)
			k += c
		}
		if err != nil {
			n.Logger.Warn("sync: pull stream", "peer", peer.Node.String(), "err", err)
			return nil
		}
		if polled && k == 0 {
			if !cps.wait(ctx, n.Stopping, changed, cpChanged, n.Heartbeat) {
				return nil
			}
			continue
		}
		if err := sw.end(); err != nil {
			return nil
		}
		if err := sw.flush(); err != nil {
			return nil
		}
		if gz != nil {
			if err := gz.Flush(); err != nil {
				return nil
			}
		}
		if flusher != nil {
			flusher.Flush()
		}
		if !req.Follow {
			return nil
		}
		if !cps.wait(ctx, n.Stopping, changed, cpChanged, n.Heartbeat) {
			return nil
		}
	}
}

// acceptsGzip reports whether the client takes a gzip-compressed stream.
func acceptsGzip(r *http.Request) bool {
	for _, part := range strings.Split(r.Header.Get("Accept-Encoding"), ",") {
		if strings.TrimSpace(strings.SplitN(part, ";", 2)[0]) == "gzip" {
			return true
		}
	}
	return false
}

// sendMissing writes held entries beyond sent, author by author in seq
// order, at most limit of them (0: all; a run under one checkpoint may go
// beyond), advances sent and returns how many it wrote. A run of an
// author's entries that one of its stored checkpoints covers is preceded by
// that checkpoint, so the receiver authenticates the run by its one
// signature (see cover.go); cps remembers what was sent.
func (n *Node) sendMissing(ctx context.Context, sw *writer, sent Vector, limit int, cps *cpTracker) (int, error) {
	held, err := n.Store.Vector(ctx, n.Event.Slug)
	if err != nil {
		return 0, err
	}
	count := 0
	for node, top := range held {
		for sent[node] < top {
			if limit > 0 && count >= limit {
				return count, nil
			}
			end := top
			cp, covered, err := cps.coverFor(ctx, node, sent[node], top, limit-count)
			if err != nil {
				return count, err
			}
			if covered {
				end = cp.Size
				if cps.sent[node] != string(cp.Note) {
					if err := sw.checkpoint(node, cp.Note); err != nil {
						return count, err
					}
					cps.sent[node] = string(cp.Note)
				}
			} else if limit > 0 {
				end = min(top, sent[node]+uint64(limit-count))
			}
			k, err := n.sendRun(ctx, sw, node, sent[node]+1, end)
			count += k
			sent[node] += uint64(k)
			if err != nil {
				return count, err
			}
		}
	}
	return count, nil
}

// encodedReader is implemented by stores that read entries in their
// encoded form without decoding them (store/sqlite).
type encodedReader interface {
	EncodedEntries(ctx context.Context, event string, node ledger.NodeID, from, to uint64, limit int) ([][]byte, error)
}

// sendRun writes node's held entries from..to, in pages, and returns how
// many it wrote.
func (n *Node) sendRun(ctx context.Context, sw *writer, node ledger.NodeID, from, to uint64) (int, error) {
	const page = 1000
	count := 0
	raw, _ := n.Store.(encodedReader)
	for seq := from; seq <= to; {
		var encs [][]byte
		if raw != nil {
			var err error
			if encs, err = raw.EncodedEntries(ctx, n.Event.Slug, node, seq, to, page); err != nil {
				return count, err
			}
		} else {
			es, err := n.Store.Entries(ctx, n.Event.Slug, node, seq, to, page)
			if err != nil {
				return count, err
			}
			for _, s := range es {
				encs = append(encs, s.Entry.Encode())
			}
		}
		if len(encs) == 0 {
			return count, fmt.Errorf("replica: entries of %s from %d are not readable", node, seq)
		}
		for _, enc := range encs {
			if err := sw.entry(enc); err != nil {
				return count, err
			}
			count++
		}
		seq += uint64(len(encs))
	}
	return count, nil
}

func (n *Node) push(w http.ResponseWriter, r *http.Request) error {
	peer, err := n.check(r, emptyHash)
	if err != nil {
		return err
	}
	if qerr := n.authors.quarantined(r.Context(), peer.Node); qerr != nil {
		return n.refusePush(w, r, peer.Node, qerr)
	}
	var body io.Reader = r.Body
	if r.Header.Get("Content-Encoding") == "gzip" {
		zr, err := gzip.NewReader(r.Body)
		if err != nil {
			return api.NewProblem(api.TypeSyncMalformed, "gzip push stream: %v", err)
		}
		defer zr.Close()
		body = zr
	}
	rd, err := newReader(body)
	if err != nil {
		if errors.Is(err, ErrVersion) {
			return api.NewProblem(api.TypeSyncVersion, "%v", err)
		}
		return api.NewProblem(api.TypeSyncMalformed, "%v", err)
	}
	added, refused := n.ingestStream(r.Context(), rd, "node:"+peer.Node.String(), nil)
	if refused != nil {
		n.Logger.Warn("sync: refused part of a push", "peer", peer.Node.String(), "err", refused)
	}
	v, err := n.Store.Vector(r.Context(), n.Event.Slug)
	if err != nil {
		return err
	}
	resp := PushResponse{Added: added, Vector: v}
	if refused != nil {
		resp.Refused, resp.RefusedReason = refused.Error(), RefusedReason(refused)
	}
	return api.WriteJSON(w, http.StatusOK, resp)
}

// ingested counts entries of other nodes just stored from peer, observes
// their lag and tells OnIngest.
func (n *Node) ingested(fresh []store.Stored, peer string) {
	if len(fresh) == 0 {
		return
	}
	m := n.metrics()
	m.received.WithLabelValues(peer).Add(float64(len(fresh)))
	m.observeLag(n.Clock.Now(), fresh)
	if n.OnIngest != nil {
		n.OnIngest(fresh)
	}
}

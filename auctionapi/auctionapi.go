// Package auctionapi serves the auction routes of an edge's device API:
// opening lots, judging bids under a per-lot lock, closing lots, reading
// them, and streaming each lot's accepted bids to watchers as server-sent
// events.
package auctionapi

import (
	"canopy/keylock"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"canopy/api"
	"canopy/auction"
	"canopy/auth"
	"canopy/ledger"
	"canopy/store"
)

// Views reads the auction view. A store.Store is one. View returns an
// error wrapping store.ErrNotFound for a row that does not exist.
type Views interface {
	View(ctx context.Context, event, view, key string) ([]byte, error)
	ViewRows(ctx context.Context, event, view string) ([]store.ViewRow, error)
}

// Deps is what the routes need from the node.
type Deps struct {
	Event *auth.Event   // the event this node serves (slug, currency, time zone)
	Node  ledger.NodeID // this node: the home of every lot opened here
	Views Views
	Clock ledger.Clock // nil: ledger.SystemClock{}; judges bids and closes
	// Heartbeat is the interval of SSE comment lines; 0: DefaultHeartbeat.
	Heartbeat time.Duration
	// Buffer is how many events a watcher may fall behind before it is
	// disconnected; 0: DefaultBuffer.
	Buffer int
	// WriteTimeout bounds one write to a watcher; 0: DefaultWriteTimeout.
	WriteTimeout time.Duration

	// A bid for a lot whose home is another edge is forwarded there
	// (POST /v1/sync/bids, signed with Key and Enrolment) if HomeURL knows
	// the home edge's URL and it answers within ForwardTimeout; otherwise
	// it is recorded here as an intent. HomeURL nil: always an intent.
	HomeURL        func(node ledger.NodeID) (url string, ok bool)
	Key            ed25519.PrivateKey
	Enrolment      string
	ForwardTimeout time.Duration // 0: DefaultForwardTimeout
	HTTP           *http.Client  // nil: a client of its own
	Logger         *slog.Logger  // nil: discard
	// Stopping, when closed, ends every event stream (the daemon closes it
	// as it shuts down, since http.Server.Shutdown waits for open streams).
	Stopping <-chan struct{}
}

// Defaults for zero Deps fields.
const (
	DefaultHeartbeat    = 15 * time.Second
	DefaultBuffer       = 1024
	DefaultWriteTimeout = 10 * time.Second
	// DefaultForwardTimeout bounds forwarding a bid to its lot's home edge.
	DefaultForwardTimeout = 300 * time.Millisecond
)

// Limits on what a lot may ask for.
const (
	MaxAmount      = 1_000_000_000_000 // minor units
	MaxTitleLen    = 200               // characters
	MaxIDLen       = 64
	MaxPaddleLen   = 64
	MaxDuration    = 7 * 24 * time.Hour
	MaxSoftCloseS  = 3600
	MaxExtendS     = 3600
	idRandomDigits = 8
)

// Roles of the routes.
var (
	rolesOpen  = []auth.Role{auth.RoleAuctioneer, auth.RoleOrganizer}
	rolesRead  = []auth.Role{auth.RoleAuctioneer, auth.RoleBidder, auth.RoleOrganizer, auth.RoleAdmin}
	rolesBid   = []auth.Role{auth.RoleBidder, auth.RoleAuctioneer}
	rolesClose = []auth.Role{auth.RoleAuctioneer, auth.RoleOrganizer}
)

// Auctions is the auction routes registered on a server.
type Auctions struct {
	h *handler
}

// Register adds the auction routes to s.
func Register(s *api.Server, d Deps) error {
	_, err := Mount(s, d)
	return err
}

// Mount adds the auction routes to s and returns them, for Ingested.
func Mount(s *api.Server, d Deps) (*Auctions, error) {
	if d.Event == nil || d.Views == nil {
		return nil, errors.New("auctionapi: Deps needs Event and Views")
	}
	if d.Node == (ledger.NodeID{}) {
		return nil, errors.New("auctionapi: Deps needs the node id")
	}
	loc, err := time.LoadLocation(d.Event.TimeZone)
	if err != nil {
		return nil, fmt.Errorf("auctionapi: event time zone %q: %w", d.Event.TimeZone, err)
	}
	if d.Clock == nil {
		d.Clock = ledger.SystemClock{}
	}
	if d.Heartbeat <= 0 {
		d.Heartbeat = DefaultHeartbeat
	}
	if d.Buffer <= 0 {
		d.Buffer = DefaultBuffer
	}
	if d.WriteTimeout <= 0 {
		d.WriteTimeout = DefaultWriteTimeout
	}
	if d.ForwardTimeout <= 0 {
		d.ForwardTimeout = DefaultForwardTimeout
	}
	if d.HTTP == nil {
		d.HTTP = &http.Client{}
	}
	if d.Logger == nil {
		d.Logger = slog.New(slog.DiscardHandler)
	}
	h := &handler{deps: d, loc: loc, rand: rand.Reader, broker: newBroker(d.Buffer), server: s}
	h.register(s)
	return &Auctions{h: h}, nil
}

type handler struct {
	deps   Deps
	loc    *time.Location
	broker *broker
	server *api.Server // forwarded bids run through its bid route

	randMu sync.Mutex
	rand   io.Reader

	openMu sync.Mutex  // serializes lot openings (the id check and append)
	locks  keylock.Map // per lot: judging and appending
	judged judgeCache  // per lot: what judging needs, under the lot lock
}

func (h *handler) register(s *api.Server) {
	api.HandleMutation(s, api.MutationRoute[LotRequest]{
		Pattern: "POST /v1/lots",
		Roles:   rolesOpen,
		Lock: func(*http.Request) (func(), error) {
			h.openMu.Lock()
			return h.openMu.Unlock, nil
		},
		Prepare: h.prepareOpen,
		Render:  h.renderOpen,
	})
	api.HandleMutation(s, api.MutationRoute[BidRequest]{
		Pattern: "POST /v1/lots/{id}/bids",
		Roles:   rolesBid,
		Lock:    h.lockLot,
		Divert:  h.divertBid,
		Prepare: h.prepareBid,
		Render:  h.renderBid,
	})
	s.Handle(api.Route{Pattern: "POST /v1/sync/bids", MaxBody: maxForwardBody, Handler: h.syncBids})
	api.HandleMutation(s, api.MutationRoute[CloseRequest]{
		Pattern:   "POST /v1/lots/{id}/close",
		Roles:     rolesClose,
		EmptyBody: true,
		Lock:      h.lockLot,
		Prepare:   h.prepareClose,
		Render:    h.renderClose,
	})
	s.Handle(api.Route{Pattern: "GET /v1/lots", Roles: rolesRead, Handler: h.list})
	s.Handle(api.Route{Pattern: "GET /v1/lots/{id}", Roles: rolesRead, Handler: h.get})
	s.Handle(api.Route{Pattern: "GET /v1/lots/{id}/events", Roles: rolesRead, Handler: h.events})
}

func (h *handler) lockLot(r *http.Request) (func(), error) {
	return h.locks.Lock(r.Context(), r.PathValue("id"))
}

func (h *handler) nowMs() int64 { return h.deps.Clock.Now().UnixMilli() }

// row reads a lot's row; a lot that was never opened is a 404 problem.
func (h *handler) row(ctx context.Context, id string) (*auction.Row, error) {
	if err := checkID(id); err != nil {
		return nil, api.NotFound("no lot %q: %s", id, err.Error())
	}
	b, err := h.deps.Views.View(ctx, h.deps.Event.Slug, auction.View, id)
	if errors.Is(err, store.ErrNotFound) {
		return nil, unknownLot(id)
	}
	if err != nil {
		return nil, fmt.Errorf("auctionapi: read lot %q: %w", id, err)
	}
	var row auction.Row
	if err := json.Unmarshal(b, &row); err != nil {
		return nil, fmt.Errorf("auctionapi: lot %q row: %w", id, err)
	}
	if row.Lot == nil {
		return nil, unknownLot(id)
	}
	return &row, nil
}

func unknownLot(id string) *api.Problem {
	p := api.NotFound("no lot %q has been opened on this node", id)
	p.Extensions = map[string]any{"reason": auction.ReasonUnknownLot, "lot": id}
	return p
}

// newID returns a time-ordered id: prefix, 12 hex digits of Unix
// milliseconds, "_", 8 random hex digits.
func (h *handler) newID(prefix string) (string, error) {
	var b [4]byte
	h.randMu.Lock()
	_, err := io.ReadFull(h.rand, b[:])
	h.randMu.Unlock()
	if err != nil {
		return "", fmt.Errorf("auctionapi: random id: %w", err)
	}
	ms := max(h.nowMs(), 0)
	return fmt.Sprintf("%s-%012x_%0*x", prefix, ms&0xffffffffffff, idRandomDigits, binary.BigEndian.Uint32(b[:])), nil
}

// judgeState is what judging a lot's next bid needs, kept in memory so a
// bid does not decode the lot's whole history. It is read and changed only
// under the lot's lock: loaded from the view on first use, then advanced by
// this node's own accepted bids and closes (seq guards against replays of
// older entries). Entries that reach the lot by sync drop it (Ingested);
// only lots that live on this node are cached.
type judgeState struct {
	row auction.Row // Lot, High (amount and paddle), ClosesAt, Closed; no Bids
	seq uint64      // the last entry of this node folded in
}

type judgeCache struct {
	mu sync.Mutex
	m  map[string]*judgeState
}

func (c *judgeCache) get(id string) *judgeState {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.m[id]
}

func (c *judgeCache) put(id string, s *judgeState) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]*judgeState{}
	}
	c.m[id] = s
}

// judgeRow returns the lot's judging state; the caller holds the lot lock.
func (h *handler) judgeRow(ctx context.Context, id string) (*judgeState, error) {
	if s := h.judged.get(id); s != nil {
		return s, nil
	}
	row, err := h.row(ctx, id)
	if err != nil {
		return nil, err
	}
	s := &judgeState{row: *row, seq: h.lastSeq(row)}
	if row.High != nil {
		high := *row.High
		s.row.High = &high
	}
	s.row.Bids = nil
	if row.Lot.Home == h.deps.Node.String() {
		// Only a lot that lives here is cached: another edge's lot
		// changes by sync alone.
		h.judged.put(id, s)
	}
	return s, nil
}

// forget drops a lot's cached state.
func (c *judgeCache) forget(id string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, id)
}

// advance applies change to a lot's cached state if this node's entry seq
// is newer than what it holds (a replayed response's older entry is not).
func (c *judgeCache) advance(id string, node, self ledger.NodeID, seq uint64, change func(*judgeState)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if s := c.m[id]; s != nil && node == self && seq > s.seq {
		s.seq = seq
		change(s)
	}
}

// Package edge is the daemon that runs at the venue: it loads the event and
// this node's enrolment, opens the store and the journal, and serves the
// device API. Open starts it; Close stops it gracefully.
package edge

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"canopy/api"
	"canopy/auctionapi"
	"canopy/auth"
	"canopy/config"
	"canopy/doorapi"
	"canopy/journal"
	"canopy/ledger"
	"canopy/posapi"
	"canopy/receipt"
	"canopy/reconcile"
	"canopy/replica"
	"canopy/revocation"
	"canopy/salesreport"
	"canopy/store/sqlite"
	"canopy/viewset"
)

// Log attribute keys.
const (
	logKeyAddr  = "addr"
	logKeyNode  = "node"
	logKeyEvent = "event"
	logKeyErr   = "err"
)

// StoreFile is the name of the store inside the data directory.
const StoreFile = "canopy.db"

// Edge is a running edge node.
type Edge struct {
	Config    config.Config
	Event     *auth.Event
	Enrolment *auth.Enrolment
	Store     *sqlite.Store
	Journal   *journal.Journal
	API       *api.Server

	log  *slog.Logger
	ln   net.Listener
	srv  *http.Server
	done chan error

	images *imageRegistry // the image cache, when [images] listen is set
	cache  *edgeCache     // the edge cache, when [cache] listen is set

	// Sync: the endpoint other nodes call, and the peers this node calls.
	Sync          *replica.Node
	Peers         []*replica.Peer
	stopping      chan struct{}
	peerCtx       context.Context
	peerKey       ed25519.PrivateKey
	peerEnrolment string
	peersMu       sync.Mutex
	stopPeers     context.CancelFunc
	peersDone     sync.WaitGroup
	stopOnce      sync.Once
	closeOnce     sync.Once
	closeErr      error
}

// Open validates cfg, opens everything and starts serving. The caller must
// Close the edge.
func Open(ctx context.Context, cfg config.Config, logger *slog.Logger) (*Edge, error) {
	if err := cfg.Resolve(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	clock := ledger.SystemClock{Offset: cfg.Node.ClockOffset.Duration}
	ev, err := auth.LoadEvent(cfg.Node.Event)
	if err != nil {
		return nil, fmt.Errorf("edge: load event (create one with 'canopy event init', or run 'canopy demo'): %w", err)
	}
	key, token, err := auth.LoadNode(cfg.Node.Key)
	if err != nil {
		return nil, fmt.Errorf("edge: load node key (enrol this node with 'canopy node enroll'): %w", err)
	}
	enr, err := auth.VerifyEnrolment(ev, token, clock.Now())
	if err != nil {
		return nil, fmt.Errorf("edge: enrolment in %s: %w", cfg.Node.Key, err)
	}
	if enr.Node != ledger.NodeIDOf(enr.PublicKey) || !enr.PublicKey.Equal(key.Public()) {
		return nil, fmt.Errorf("edge: enrolment in %s is for another key (node %s)", cfg.Node.Key, enr.Node)
	}
	if enr.Role != "edge" {
		return nil, fmt.Errorf("edge: node %s is enrolled as %q, not as an edge", enr.Node, enr.Role)
	}
	log := logger.With(logKeyEvent, ev.Slug, logKeyNode, enr.Node.String())

	if err := os.MkdirAll(cfg.Node.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("edge: data directory: %w", err)
	}
	st, err := sqlite.Open(ctx, filepath.Join(cfg.Node.Dir, StoreFile))
	if err != nil {
		return nil, fmt.Errorf("edge: open store: %w", err)
	}
	e := &Edge{Config: cfg, Event: ev, Enrolment: enr, Store: st, log: log, done: make(chan error, 1), stopping: make(chan struct{})}
	ok := false
	defer func() {
		if !ok {
			e.closeParts(context.Background())
		}
	}()

	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	e.Journal, err = journal.Open(ctx, journal.Config{
		Event: ev.Slug, Key: key, Store: st, Views: viewset.All(), Clock: clock, Logger: log, Metrics: reg,
	})
	if err != nil {
		return nil, fmt.Errorf("edge: open journal: %w", err)
	}
	if e.Journal.Durable() == 0 {
		// The first entry of every log is the node's enrolment, so the log
		// verifies with event.json alone.
		if _, err := e.Journal.Append(ctx, auth.EnrolledKind, enr.Node.String(), auth.EnrolledBody(token)); err != nil {
			return nil, fmt.Errorf("edge: write enrolment entry: %w", err)
		}
	}
	verifier := auth.NewVerifier(ev, clock)
	e.API, err = api.New(api.Config{
		Event:        ev.Slug,
		Verifier:     revocation.NewGuard(verifier, st, ev.Slug), // a revoked device token is refused on every call
		Appender:     e.Journal,
		Log:          e.Journal.AuditLog(),
		Views:        e.Journal.ViewReader(),
		Ready:        e.ready,
		Registerer:   reg,
		Gatherer:     reg,
		Logger:       log,
		Clock:        clock,
		MaxBodyBytes: cfg.Node.MaxBody,
		// Idempotency fingerprints are keyed by the node's secret, so they
		// cannot confirm guesses of a request's personal data.
		FingerprintKey: fingerprintKey(key.Seed()),
	})
	if err != nil {
		return nil, fmt.Errorf("edge: api: %w", err)
	}
	salesreport.Register(e.API, st, ev)
	reconcile.Register(e.API, st, ev.Slug)
	doorapi.Register(e.API, doorapi.Config{Event: ev.Slug, Tickets: verifier, Views: st})
	if err := posapi.Register(e.API, posapi.Deps{Event: ev, Views: st, Clock: clock}); err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	receipt.Register(e.API, receipt.Deps{Event: ev, Store: st, Checkpointer: e.Journal})
	auctions, err := auctionapi.Mount(e.API, auctionapi.Deps{Event: ev, Node: enr.Node, Views: st, Clock: clock,
		// Bids for another edge's lot go to it, at the URL its vector came from.
		HomeURL: func(n ledger.NodeID) (string, bool) { return e.Sync.PeerURL(n) },
		Key:     key, Enrolment: token, Logger: log, Stopping: e.stopping,
		ForwardTimeout: cfg.Sync.BidForwardTimeout.Duration})
	if err != nil {
		return nil, fmt.Errorf("edge: %w", err)
	}
	e.Sync = &replica.Node{Event: ev, Journal: e.Journal, Store: st, Clock: clock, Logger: log, Stopping: e.stopping,
		Registerer: reg, OnIngest: auctions.Ingested}
	replica.Register(e.API, e.Sync)
	if e.images, err = openImages(cfg.Images, log, reg, revocation.NewGuard(verifier, st, ev.Slug)); err != nil {
		return nil, err
	}
	if e.cache, err = openCache(cfg.Cache, cfg.TLS, log, reg); err != nil {
		return nil, err
	}
	e.ln, err = net.Listen("tcp", cfg.Node.Listen)
	if err != nil {
		return nil, fmt.Errorf("edge: listen on %s: %w", cfg.Node.Listen, err)
	}
	e.srv = &http.Server{
		Handler:           e.API,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	e.srv.RegisterOnShutdown(func() { e.stopOnce.Do(func() { close(e.stopping) }) })
	go func() { e.done <- e.srv.Serve(e.ln) }()
	e.startPeers(key, token)
	log.Info("edge serving", logKeyAddr, e.ln.Addr().String())
	ok = true
	return e, nil
}

// startPeers syncs with every configured peer, and with the hubs (one
// session at a time, the URLs tried in order).
func (e *Edge) startPeers(key ed25519.PrivateKey, enrolment string) {
	e.peerCtx, e.stopPeers = context.WithCancel(context.Background())
	e.peerKey, e.peerEnrolment = key, enrolment
	for _, u := range e.Config.Sync.Peers {
		e.AddPeer([]string{u}, nil)
	}
	if len(e.Config.Sync.Hubs) > 0 {
		e.AddPeer(e.Config.Sync.Hubs, nil)
	}
}

// AddPeer starts syncing with another node (URLs tried in order) until the
// edge closes; client nil uses the default. It returns the peer, whose
// Status tells how the link is doing.
func (e *Edge) AddPeer(urls []string, client *http.Client) *replica.Peer {
	p := &replica.Peer{URLs: urls, Node: e.Sync, Key: e.peerKey, Enrolment: e.peerEnrolment, HTTP: client}
	e.peersMu.Lock()
	e.Peers = append(e.Peers, p)
	e.peersMu.Unlock()
	e.peersDone.Add(1)
	go func() {
		defer e.peersDone.Done()
		p.Run(e.peerCtx)
	}()
	return p
}

// URL is the base URL of the device API.
func (e *Edge) URL() string { return "http://" + e.ln.Addr().String() }

// Addr is the address the device API listens on.
func (e *Edge) Addr() net.Addr { return e.ln.Addr() }

// ready reports whether the node can take writes: the store answers.
func (e *Edge) ready(ctx context.Context) error {
	if _, _, err := e.Store.Head(ctx, e.Event.Slug, e.Journal.Node()); err != nil {
		return fmt.Errorf("store: %w", err)
	}
	return nil
}

// Close stops accepting requests, lets requests in flight finish (until ctx
// ends), closes the journal (a final checkpoint) and the store.
func (e *Edge) Close(ctx context.Context) error {
	e.closeOnce.Do(func() { e.closeErr = e.close(ctx) })
	return e.closeErr
}

func (e *Edge) close(ctx context.Context) error {
	var errs []error
	if e.stopPeers != nil {
		e.stopPeers()
		e.peersDone.Wait()
	}
	if e.srv != nil {
		if err := e.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("edge: shutdown: %w", err))
		}
		if err := <-e.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, e.closeParts(ctx))
	return errors.Join(errs...)
}

func (e *Edge) closeParts(ctx context.Context) error {
	var errs []error
	if e.cache != nil {
		errs = append(errs, e.cache.close(ctx))
	}
	if e.images != nil {
		errs = append(errs, e.images.close(ctx))
	}
	if e.Journal != nil {
		if err := e.Journal.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("edge: close journal: %w", err))
		}
	}
	if e.Store != nil {
		if err := e.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("edge: close store: %w", err))
		}
	}
	return errors.Join(errs...)
}

// fingerprintKey derives the idempotency fingerprint key from the node's
// private key seed: SHA-256("canopy idempotency fingerprint v1" || seed).
func fingerprintKey(seed []byte) []byte {
	h := sha256.New()
	h.Write([]byte("canopy idempotency fingerprint v1"))
	h.Write(seed)
	return h.Sum(nil)
}

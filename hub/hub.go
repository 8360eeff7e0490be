// Package hub is the daemon that runs in the cloud: it serves the sync
// endpoint of many events at once, under /v1/events/<slug>/, from one store
// (a SQLite file, or PostgreSQL shared by several hub processes). Open
// starts it; Close stops it gracefully.
package hub

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"canopy/config"
	"canopy/ledger"
	"canopy/store"
	"canopy/store/postgres"
	"canopy/store/sqlite"
)

// Log attribute keys.
const (
	logKeyAddr   = "addr"
	logKeyEvent  = "event"
	logKeyNode   = "node"
	logKeyEvents = "events"
)

// Names inside the hub's data directory.
const (
	// StoreFile is the SQLite store used when no database is given.
	StoreFile = "hub.db"
	// EventsDir holds one directory per event served, named by its slug,
	// with the public event.json and the hub's node directory (NodeDir).
	EventsDir = "events"
	// NodeDir is the hub's node directory inside an event's directory:
	// node.key and an enrolment.token with role hub.
	NodeDir = "node"
)

// DefaultSharedHeartbeat is how often a follow stream looks for entries
// another hub process stored in a shared PostgreSQL database. A process
// wakes its streams at once for what it stores itself; what another process
// stores is only seen by looking.
const DefaultSharedHeartbeat = time.Second

// Config is what a hub needs.
type Config struct {
	// Dir is the data directory: events/<slug>/ and, by default, hub.db.
	Dir string
	// Listen is the HTTP address, e.g. 127.0.0.1:8090 (":0" in tests).
	Listen string
	// DB is empty (SQLite at Dir/hub.db), a SQLite file path, or a
	// PostgreSQL URL (postgres:// or postgresql://).
	DB string
	// ClockOffset shifts the hub's clock, for tests and drills.
	ClockOffset time.Duration
	// MaxBody caps request bodies of the device routes (0: api's default).
	MaxBody int64
	// Heartbeat is how often an idle follow stream sends an end frame and
	// looks again for new entries (0: 10 s on SQLite, DefaultSharedHeartbeat
	// on PostgreSQL).
	Heartbeat time.Duration
	// Logger receives the hub's logs (nil: discard).
	Logger *slog.Logger
}

// FromConfig takes a hub's settings from the [node] table of a daemon
// configuration (dir, listen, clock_offset, max_body) and the database
// DSN, which has no key in the file.
func FromConfig(c config.Config, db string, logger *slog.Logger) Config {
	return Config{
		Dir:         c.Node.Dir,
		Listen:      c.Node.Listen,
		DB:          db,
		ClockOffset: c.Node.ClockOffset.Duration,
		MaxBody:     c.Node.MaxBody,
		Logger:      logger,
	}
}

// isPostgres reports whether dsn names a PostgreSQL database.
func isPostgres(dsn string) bool {
	return strings.HasPrefix(dsn, "postgres://") || strings.HasPrefix(dsn, "postgresql://")
}

// Hub is a running hub.
type Hub struct {
	Config Config
	Store  store.Store
	// Events are the events served, sorted by slug.
	Events []*Event

	bySlug   map[string]*Event
	routes   map[string]http.Handler // "/v1/events/<slug>" → that event's API, prefix stripped
	registry *prometheus.Registry
	log      *slog.Logger
	clock    ledger.Clock

	ln       net.Listener
	srv      *http.Server
	done     chan error
	stopping chan struct{}
	stopOnce sync.Once
}

// Open loads every event under Dir/events, opens the store and serves.
// The caller must Close the hub.
func Open(ctx context.Context, cfg Config) (*Hub, error) {
	if cfg.Dir == "" {
		return nil, errors.New("hub: no data directory")
	}
	if _, _, err := net.SplitHostPort(cfg.Listen); err != nil {
		return nil, fmt.Errorf("hub: listen address %q: %v", cfg.Listen, err)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	if cfg.Heartbeat <= 0 && isPostgres(cfg.DB) {
		cfg.Heartbeat = DefaultSharedHeartbeat
	}
	h := &Hub{
		Config:   cfg,
		bySlug:   map[string]*Event{},
		routes:   map[string]http.Handler{},
		registry: prometheus.NewRegistry(),
		log:      cfg.Logger,
		clock:    ledger.SystemClock{Offset: cfg.ClockOffset},
		done:     make(chan error, 1),
		stopping: make(chan struct{}),
	}
	h.registry.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))

	// Check the events before touching the store, so a bad directory is
	// reported without opening (or creating) a database.
	dirs, err := h.eventDirs()
	if err != nil {
		return nil, err
	}
	loaded := make([]*loadedEvent, 0, len(dirs))
	for _, d := range dirs {
		le, err := loadEvent(d, h.clock.Now())
		if err != nil {
			return nil, fmt.Errorf("hub: %w", err)
		}
		loaded = append(loaded, le)
	}

	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("hub: data directory: %w", err)
	}
	if h.Store, err = openStore(ctx, cfg); err != nil {
		return nil, err
	}
	ok := false
	defer func() {
		if !ok {
			h.closeParts(context.Background())
		}
	}()
	for _, le := range loaded {
		ev, err := h.openEvent(ctx, le)
		if err != nil {
			return nil, fmt.Errorf("hub: event %s: %w", le.event.Slug, err)
		}
		h.Events = append(h.Events, ev)
		h.bySlug[ev.Event.Slug] = ev
		h.routes[eventPrefix(ev.Event.Slug)] = http.StripPrefix(eventPrefix(ev.Event.Slug), ev.API)
	}

	h.ln, err = net.Listen("tcp", cfg.Listen)
	if err != nil {
		return nil, fmt.Errorf("hub: listen on %s: %w", cfg.Listen, err)
	}
	h.srv = &http.Server{
		Handler:           h,
		ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout:       60 * time.Second,
		IdleTimeout:       120 * time.Second,
		MaxHeaderBytes:    64 << 10,
		ErrorLog:          slog.NewLogLogger(h.log.Handler(), slog.LevelWarn),
	}
	// Follow streams end when the server shuts down; Shutdown waits for them.
	h.srv.RegisterOnShutdown(func() { h.stopOnce.Do(func() { close(h.stopping) }) })
	go func() { h.done <- h.srv.Serve(h.ln) }()
	h.log.Info("hub serving", logKeyAddr, h.ln.Addr().String(), logKeyEvents, strings.Join(h.Slugs(), ","))
	ok = true
	return h, nil
}

// openStore opens the store cfg names.
func openStore(ctx context.Context, cfg Config) (store.Store, error) {
	switch {
	case isPostgres(cfg.DB):
		st, err := postgres.Open(ctx, cfg.DB)
		if err != nil {
			return nil, fmt.Errorf("hub: open PostgreSQL store: %w", err)
		}
		return st, nil
	case strings.Contains(cfg.DB, "://"):
		return nil, fmt.Errorf("hub: database %q: want a postgres:// URL or a SQLite file path", redactDSN(cfg.DB))
	default:
		path := cfg.DB
		if path == "" {
			path = filepath.Join(cfg.Dir, StoreFile)
		}
		st, err := sqlite.Open(ctx, path)
		if err != nil {
			return nil, fmt.Errorf("hub: open SQLite store: %w", err)
		}
		return st, nil
	}
}

// redactDSN hides a password in a URL-shaped DSN for error messages.
func redactDSN(dsn string) string {
	scheme, rest, ok := strings.Cut(dsn, "://")
	if !ok {
		return dsn
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		if user, _, hasPw := strings.Cut(rest[:at], ":"); hasPw {
			return scheme + "://" + user + ":***" + rest[at:]
		}
	}
	return dsn
}

// eventDirs lists the event directories under Dir/events, sorted.
func (h *Hub) eventDirs() ([]string, error) {
	root := filepath.Join(h.Config.Dir, EventsDir)
	ents, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("hub: list events: %w", err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() || strings.HasPrefix(e.Name(), ".") {
			continue // .tmp-* directories are add-event's work in progress
		}
		out = append(out, filepath.Join(root, e.Name()))
	}
	sort.Strings(out)
	return out, nil
}

// Slugs returns the slugs of the events served, sorted.
func (h *Hub) Slugs() []string {
	out := make([]string, len(h.Events))
	for i, ev := range h.Events {
		out[i] = ev.Event.Slug
	}
	return out
}

// Lookup returns the event served under slug, or nil.
func (h *Hub) Lookup(slug string) *Event { return h.bySlug[slug] }

// URL is the hub's base URL.
func (h *Hub) URL() string { return "http://" + h.ln.Addr().String() }

// EventURL is the base URL an edge syncs one event with ([sync] hubs).
func (h *Hub) EventURL(slug string) string { return h.URL() + eventPrefix(slug) }

// Addr is the address the hub listens on.
func (h *Hub) Addr() net.Addr { return h.ln.Addr() }

// Registry is the hub's Prometheus registry, served at /metrics.
func (h *Hub) Registry() *prometheus.Registry { return h.registry }

// ready reports whether the hub can serve: the store answers for every
// event. On failure it returns the slug of the first event that cannot.
func (h *Hub) ready(ctx context.Context) (string, error) {
	for _, ev := range h.Events {
		if err := ev.ready(ctx); err != nil {
			return ev.Event.Slug, err
		}
	}
	return "", nil
}

// Close stops accepting requests, lets those in flight finish (until ctx
// ends; follow streams are ended), closes every event's journal (a final
// checkpoint each) and the store.
func (h *Hub) Close(ctx context.Context) error {
	var errs []error
	if h.srv != nil {
		if err := h.srv.Shutdown(ctx); err != nil {
			errs = append(errs, fmt.Errorf("hub: shutdown: %w", err))
		}
		if err := <-h.done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			errs = append(errs, err)
		}
	}
	errs = append(errs, h.closeParts(ctx))
	return errors.Join(errs...)
}

func (h *Hub) closeParts(ctx context.Context) error {
	var errs []error
	for _, ev := range h.Events {
		if err := ev.Journal.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("hub: close journal of %s: %w", ev.Event.Slug, err))
		}
	}
	if h.Store != nil {
		if err := h.Store.Close(); err != nil {
			errs = append(errs, fmt.Errorf("hub: close store: %w", err))
		}
	}
	return errors.Join(errs...)
}

package bench

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"

	"canopy/auth"
	"canopy/config"
	"canopy/edge"
	"canopy/hub"
	"canopy/ledger"
	"canopy/replica"
)

// HubIngestOptions configures RunHubIngest.
type HubIngestOptions struct {
	Dir string
	// Postgres is a PostgreSQL server URL on which the bench may create
	// and drop databases (one fresh database per round).
	Postgres string
	Edges    int // edges syncing with the hub at once (the figure is 10)
	Entries  int // entries each edge holds beforehand
	Rounds   int // rounds, each one PostgreSQL run and one SQLite run (alternating which goes first)
	// Pull lets the edges also pull each other's entries from the hub
	// while they push, as they would on site. Off, the edges only push:
	// their pull streams go to a loopback front that holds them open
	// without entries (see pushOnlyFront).
	Pull bool
}

// HubIngestResult is one hub ingest measurement, or (Stat "median") the
// median of a store's rounds.
type HubIngestResult struct {
	Bench string `json:"bench"` // hub_ingest
	Store string `json:"store"` // postgres or sqlite
	Stat  string `json:"stat,omitempty"`
	Round int    `json:"round,omitempty"`
	Edges int    `json:"edges"`
	// Entries is how many entries the hub ingested from the edges (every
	// edge's log, its enrolment entry included).
	Entries int `json:"entries"`
	// Pull: the edges also pulled each other's entries from the hub.
	Pull      bool    `json:"pull"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_second"`
	Note      string  `json:"note,omitempty"`
}

// HubIngestRatio compares the medians: PostgreSQL's over SQLite's.
type HubIngestRatio struct {
	Bench string `json:"bench"`
	Stat  string `json:"stat"` // "ratio postgres/sqlite"
	// PerSecond above 1 means the hub ingested faster on PostgreSQL.
	PerSecond float64 `json:"per_second"`
	Seconds   float64 `json:"seconds"`
}

// What the bench measures, printed with its results.
const (
	noteHubIngest = "hub ingest: every edge (its own SQLite store, holding its backlog) starts syncing with a fresh hub " +
		"over HTTP on loopback at once; timed from the first edge's session start until the hub's store holds every " +
		"edge's whole log (durable: read back from the store); "
	notePushOnly = "the edges only push: their pull streams are held open without entries by a loopback front, since on site " +
		"each edge verifies what it pulls on its own machine, not on the hub's cores"
	notePull = "the edges also pull each other's entries from the hub meanwhile, verifying them on the same cores as the hub"
)

// ErrNoPostgres is returned by RunHubIngest without a PostgreSQL server.
var ErrNoPostgres = errors.New(`no PostgreSQL server: pass --db postgres://… or set CANOPY_TEST_POSTGRES ` +
	`(start a throwaway one with: eval "$(./scripts/postgres.sh start)")`)

// RunHubIngest measures how fast a hub ingests the logs of o.Edges edges
// syncing with it at once, with the hub's store on PostgreSQL and on
// SQLite, o.Rounds times each. The edges' logs are written once and copied
// for every run, so every run ingests the very same entries; every
// PostgreSQL run has a database of its own, every SQLite run a new file. It
// prints every run, then the medians and the ratio, as JSON lines.
func RunHubIngest(ctx context.Context, w io.Writer, o HubIngestOptions) error {
	if o.Postgres == "" {
		return ErrNoPostgres
	}
	if o.Edges < 1 || o.Entries < 1 || o.Rounds < 1 {
		return fmt.Errorf("bench hub-ingest: edges, entries and rounds must be at least 1 (have %d, %d, %d)",
			o.Edges, o.Entries, o.Rounds)
	}
	root, err := os.MkdirTemp(o.Dir, "canopy-bench-hub-ingest-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	fx, err := prepareHubIngest(ctx, root, o.Edges, o.Entries)
	if err != nil {
		return fmt.Errorf("prepare the edges: %w", err)
	}
	enc := json.NewEncoder(w)
	var all []HubIngestResult
	for round := 1; round <= o.Rounds; round++ {
		order := []string{"postgres", "sqlite"}
		if round%2 == 0 {
			order = []string{"sqlite", "postgres"}
		}
		for _, st := range order {
			r, err := fx.run(ctx, o.Postgres, st, round, o.Pull)
			if err != nil {
				return fmt.Errorf("%s round %d: %w", st, round, err)
			}
			all = append(all, r)
			enc.Encode(r)
		}
	}
	pg, sq := hubIngestMedian(all, "postgres"), hubIngestMedian(all, "sqlite")
	enc.Encode(pg)
	enc.Encode(sq)
	return enc.Encode(HubIngestRatio{Bench: "hub_ingest", Stat: "ratio postgres/sqlite",
		PerSecond: ratio(pg.PerSecond, sq.PerSecond), Seconds: ratio(pg.Seconds, sq.Seconds)})
}

// hubIngestMedian is the median of one store's runs.
func hubIngestMedian(all []HubIngestResult, st string) HubIngestResult {
	var secs, rates []float64
	m := HubIngestResult{Bench: "hub_ingest", Store: st, Stat: "median"}
	for _, r := range all {
		if r.Store == st {
			secs, rates = append(secs, r.Seconds), append(rates, r.PerSecond)
			m.Edges, m.Entries, m.Pull = r.Edges, r.Entries, r.Pull
		}
	}
	m.Seconds, m.PerSecond = round(medianFloat(secs)), round(medianFloat(rates))
	return m
}

// hubIngestFixture is what every run starts from: one event, a hub node
// enrolled in it, and the edges' nodes with their data directories
// holding their backlogs (copied for each run).
type hubIngestFixture struct {
	root     string
	eventDir string
	hubNode  string // the hub's node directory
	edges    []ingestEdge
	total    int // entries of all edges' logs
}

type ingestEdge struct {
	node    ledger.NodeID
	nodeDir string
	dataDir string // pristine; each run copies it
	head    uint64
}

// prepareHubIngest creates the event, the hub's node and n edges, each
// holding entries entries of its own (plus its enrolment), then closes them.
func prepareHubIngest(ctx context.Context, root string, edges, entries int) (*hubIngestFixture, error) {
	now := time.Now().UTC()
	fx := &hubIngestFixture{root: root, eventDir: filepath.Join(root, "event")}
	ev, err := auth.InitEvent(fx.eventDir, auth.Event{
		Slug: "bench-hub-ingest", Name: "Benchmark hub ingest", TimeZone: "UTC",
		StartsAt: now.Add(-time.Hour), EndsAt: now.Add(24 * time.Hour), Currency: "EUR",
	})
	if err != nil {
		return nil, err
	}
	key, err := auth.LoadEventKey(fx.eventDir)
	if err != nil {
		return nil, err
	}
	enrol := func(name, role, dir string) (ledger.NodeID, error) {
		nk, tok, err := auth.EnrollNode(key, ev, name, role, now.Add(-time.Hour), now.Add(48*time.Hour))
		if err != nil {
			return ledger.NodeID{}, err
		}
		if err := auth.WriteNode(dir, nk, tok); err != nil {
			return ledger.NodeID{}, err
		}
		return ledger.NodeIDOf(nk.Public().(ed25519.PublicKey)), nil
	}
	fx.hubNode = filepath.Join(root, "hub-node")
	if _, err := enrol("bench-hub", auth.NodeHub, fx.hubNode); err != nil {
		return nil, err
	}
	for i := range edges {
		ie := ingestEdge{
			nodeDir: filepath.Join(root, fmt.Sprintf("edge-%02d-node", i)),
			dataDir: filepath.Join(root, fmt.Sprintf("edge-%02d-data", i)),
		}
		if ie.node, err = enrol(fmt.Sprintf("bench-edge-%02d", i), auth.NodeEdge, ie.nodeDir); err != nil {
			return nil, err
		}
		e, err := edge.Open(ctx, fx.edgeConfig(ie, ie.dataDir), benchLogger())
		if err != nil {
			return nil, err
		}
		_, err = appendBacklog(ctx, &Edge{Edge: e}, 0, entries)
		if err == nil {
			ie.head, _, err = e.Store.Head(ctx, ev.Slug, ie.node)
		}
		if cerr := e.Close(context.Background()); err == nil {
			err = cerr
		}
		if err != nil {
			return nil, err
		}
		fx.total += int(ie.head)
		fx.edges = append(fx.edges, ie)
	}
	return fx, nil
}

func (fx *hubIngestFixture) edgeConfig(ie ingestEdge, dataDir string) config.Config {
	cfg := config.Default()
	cfg.Node.Dir = dataDir
	cfg.Node.Event = fx.eventDir
	cfg.Node.Key = ie.nodeDir
	cfg.Node.Listen = "127.0.0.1:0"
	return cfg
}

// benchLogger logs errors to stderr (a run ends by closing the edges
// mid-stream, which the hub logs as warnings).
func benchLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelError}))
}

// run is one measurement: a fresh hub on st ("postgres": a new database
// on the server at pgURL; "sqlite": a new file) and copies of the edges'
// data directories; every edge starts syncing with the hub at once, and the
// time until the hub's store holds every edge's log is measured.
func (fx *hubIngestFixture) run(ctx context.Context, pgURL, st string, rnd int, pull bool) (HubIngestResult, error) {
	r := HubIngestResult{Bench: "hub_ingest", Store: st, Round: rnd, Edges: len(fx.edges), Entries: fx.total, Pull: pull,
		Note: noteHubIngest + notePushOnly}
	if pull {
		r.Note = noteHubIngest + notePull
	}
	dir, err := os.MkdirTemp(fx.root, "run-")
	if err != nil {
		return r, err
	}
	defer os.RemoveAll(dir)
	hubDir := filepath.Join(dir, "hub")
	slug, err := hub.AddEvent(hubDir, fx.eventDir, fx.hubNode, time.Now())
	if err != nil {
		return r, err
	}
	db := filepath.Join(dir, "hub.db")
	if st == "postgres" {
		dsn, drop, err := freshDatabase(ctx, pgURL)
		if err != nil {
			return r, err
		}
		defer drop()
		db = dsn
	}
	h, err := hub.Open(ctx, hub.Config{Dir: hubDir, Listen: "127.0.0.1:0", DB: db, Logger: benchLogger()})
	if err != nil {
		return r, err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
		defer cancel()
		h.Close(cctx)
	}()
	var edges []*edge.Edge
	defer func() {
		for _, e := range edges {
			e.Close(context.Background())
		}
	}()
	for i, ie := range fx.edges {
		data := filepath.Join(dir, fmt.Sprintf("edge-%02d", i))
		if err := copyDir(ie.dataDir, data); err != nil {
			return r, err
		}
		e, err := edge.Open(ctx, fx.edgeConfig(ie, data), benchLogger())
		if err != nil {
			return r, err
		}
		edges = append(edges, e)
	}
	hev := h.Lookup(slug)
	target := h.URL()
	if !pull {
		front, err := startPushOnlyFront(h.URL())
		if err != nil {
			return r, err
		}
		defer front.close()
		target = front.url
	}
	start := time.Now()
	for _, e := range edges {
		e.AddPeer([]string{target + "/v1/events/" + slug}, nil)
	}
	if err := fx.waitIngested(ctx, hev, slug); err != nil {
		return r, err
	}
	secs := time.Since(start).Seconds()
	r.Seconds, r.PerSecond = round(secs), round(float64(fx.total)/secs)
	return r, nil
}

// waitIngested waits, woken by every commit of the hub's journal, until
// the hub's store holds every edge's whole log, and checks it holds
// nothing more of them.
func (fx *hubIngestFixture) waitIngested(ctx context.Context, hev *hub.Event, slug string) error {
	deadline := time.NewTimer(10 * time.Minute)
	defer deadline.Stop()
	for {
		changed := hev.Journal.Changed()
		v, err := hev.Sync.Store.Vector(ctx, slug)
		if err != nil {
			return err
		}
		done := true
		for _, ie := range fx.edges {
			switch got := v[ie.node]; {
			case got > ie.head:
				return fmt.Errorf("the hub holds %d entries of edge %s, which wrote %d", got, ie.node, ie.head)
			case got < ie.head:
				done = false
			}
		}
		if done {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("the hub did not ingest the %d edges' %d entries in 10 minutes (holds %v)", len(fx.edges), fx.total, v)
		}
	}
}

// freshDatabase creates an empty database on the server at admin and
// returns its DSN and a function that drops it.
func freshDatabase(ctx context.Context, admin string) (string, func(), error) {
	u, err := url.Parse(admin)
	if err != nil || (u.Scheme != "postgres" && u.Scheme != "postgresql") {
		return "", nil, fmt.Errorf("PostgreSQL URL %q: want postgres://user@host:port/db", admin)
	}
	conn, err := pgx.Connect(ctx, admin)
	if err != nil {
		return "", nil, fmt.Errorf("connect to PostgreSQL: %w", err)
	}
	defer conn.Close(context.WithoutCancel(ctx))
	var b [6]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", nil, err
	}
	name := "canopy_bench_" + hex.EncodeToString(b[:])
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+name); err != nil {
		return "", nil, fmt.Errorf("create database %s (the bench needs the CREATEDB privilege): %w", name, err)
	}
	drop := func() {
		ctx := context.Background()
		conn, err := pgx.Connect(ctx, admin)
		if err != nil {
			slog.Warn("bench: drop database: connect", "db", name, "err", err)
			return
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			slog.Warn("bench: drop database", "db", name, "err", err)
		}
	}
	u.Path = "/" + name
	return u.String(), drop, nil
}

// copyDir copies the regular files of src (a store's directory, closed)
// into a new directory dst, keeping the tree.
func copyDir(src, dst string) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		to := filepath.Join(dst, rel)
		if d.IsDir() {
			return os.MkdirAll(to, 0o700)
		}
		if !d.Type().IsRegular() {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		return os.WriteFile(to, data, 0o600)
	})
}

// pushOnlyFront is a reverse proxy in front of a hub that passes every sync
// request on except pulls, which it answers with the headers of an entry
// stream and then holds open, sending nothing, until the edge goes away:
// the edges' push loops run as they do on site, and their pull loops wait.
type pushOnlyFront struct {
	url  string
	srv  *http.Server
	done chan struct{}
}

func startPushOnlyFront(hubURL string) (*pushOnlyFront, error) {
	u, err := url.Parse(hubURL)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	f := &pushOnlyFront{url: "http://" + ln.Addr().String(), done: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(u)
	proxy.FlushInterval = -1
	proxy.ErrorLog = log.New(io.Discard, "", 0)
	f.srv = &http.Server{ReadHeaderTimeout: 10 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.HasSuffix(r.URL.Path, "/v1/sync/pull") {
			proxy.ServeHTTP(w, r)
			return
		}
		w.Header().Set("Content-Type", replica.ContentType)
		w.WriteHeader(http.StatusOK)
		if fl, ok := w.(http.Flusher); ok {
			fl.Flush()
		}
		select {
		case <-r.Context().Done():
		case <-f.done:
		}
	})}
	go f.srv.Serve(ln)
	return f, nil
}

func (f *pushOnlyFront) close() {
	close(f.done)
	f.srv.Close()
}

// Package sqlite is the embedded store.Store: one SQLite database file in WAL
// mode with full fsync, written through one dedicated connection and read
// through a separate pool, so reads never wait behind a commit.
package sqlite

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"time"

	_ "modernc.org/sqlite" // registers the "sqlite" driver

	"canopy/store"
)

// SchemaVersion is the version of the database layout this build writes,
// kept in PRAGMA user_version. Open refuses a database with a newer one.
const SchemaVersion = 1

// ErrNewerSchema is returned by Open for a database written by a newer
// Canopy whose layout this build does not know.
var ErrNewerSchema = errors.New("sqlite store: database schema is newer than this build")

const schema = `
CREATE TABLE entries (
	event       TEXT    NOT NULL,
	node        BLOB    NOT NULL,
	seq         INTEGER NOT NULL,
	hash        BLOB    NOT NULL,
	hlc_wall    INTEGER NOT NULL,
	hlc_logical INTEGER NOT NULL,
	kind        TEXT    NOT NULL,
	key         TEXT    NOT NULL,
	data        BLOB    NOT NULL,
	PRIMARY KEY (event, node, seq)
);
CREATE INDEX entries_by_key ON entries (event, key, hlc_wall, hlc_logical, node, seq);
CREATE INDEX entries_by_hlc ON entries (event, hlc_wall, hlc_logical, node, seq);
CREATE TABLE heads (
	event TEXT    NOT NULL,
	node  BLOB    NOT NULL,
	seq   INTEGER NOT NULL,
	hash  BLOB    NOT NULL,
	PRIMARY KEY (event, node)
) WITHOUT ROWID;
CREATE TABLE tree_hashes (
	event TEXT    NOT NULL,
	node  BLOB    NOT NULL,
	idx   INTEGER NOT NULL,
	hash  BLOB    NOT NULL,
	PRIMARY KEY (event, node, idx)
) WITHOUT ROWID;
CREATE TABLE checkpoints (
	event TEXT    NOT NULL,
	node  BLOB    NOT NULL,
	size  INTEGER NOT NULL,
	root  BLOB    NOT NULL,
	note  BLOB    NOT NULL,
	PRIMARY KEY (event, node, size)
) WITHOUT ROWID;
CREATE TABLE views (
	event TEXT NOT NULL,
	view  TEXT NOT NULL,
	key   TEXT NOT NULL,
	value BLOB NOT NULL,
	PRIMARY KEY (event, view, key)
);
`

// writerCacheKiB is the page cache of the writer connection.
const writerCacheKiB = 32 << 10

// viewCacheBytes bounds the in-memory cache of view rows.
const viewCacheBytes = 64 << 20

// Option configures Open.
type Option func(*options)

type options struct {
	busyTimeout  time.Duration
	readers      int
	maxPageCount int64
	readOnly     bool
}

// WithBusyTimeout sets how long a statement waits for a lock held by another
// process before failing (default 5s).
func WithBusyTimeout(d time.Duration) Option {
	return func(o *options) { o.busyTimeout = d }
}

// WithReaders sets the size of the read connection pool (default: the
// number of CPUs, at least 4).
func WithReaders(n int) Option {
	return func(o *options) { o.readers = n }
}

// WithMaxPageCount caps the database at that many pages (PRAGMA
// max_page_count; pages are 4 KiB unless the file says otherwise). A commit
// that would grow it further fails with store.ErrUnavailable, exactly as on a
// full disk; it is a size budget, and a deterministic full disk for tests.
func WithMaxPageCount(pages int64) Option {
	return func(o *options) { o.maxPageCount = pages }
}

// WithReadOnly opens an existing store for reading only, as a verifier
// does: nothing is created or changed in the file, and Commit and
// ReplaceViews fail with ErrReadOnly.
func WithReadOnly() Option {
	return func(o *options) { o.readOnly = true }
}

// ErrReadOnly is returned by writes to a store opened WithReadOnly.
var ErrReadOnly = errors.New("sqlite store: opened read-only")

// Store is a store.Store in one SQLite database file. It is safe for
// concurrent use.
type Store struct {
	path     string
	readOnly bool
	w        *sql.DB
	cp       *sql.DB // background WAL checkpointer
	cache    *viewCache
	cpStop   chan struct{}
	cpDone   chan struct{} // exactly one connection: every write goes through it
	r        *sql.DB       // read-only pool
	wsem     chan struct{}
	ws       writeStmts
	rs       readStmts

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// Open opens the database at path, creating it (and its schema) if it does
// not exist. It fails with ErrNewerSchema if the file was written by a newer
// build, and with a plain error if it is not a Canopy store.
func Open(ctx context.Context, path string, opts ...Option) (*Store, error) {
	o := options{busyTimeout: 5 * time.Second, readers: max(4, runtime.NumCPU())}
	for _, opt := range opts {
		opt(&o)
	}
	if path == "" {
		return nil, errors.New("sqlite store: empty path")
	}
	if o.readers < 1 {
		return nil, fmt.Errorf("sqlite store: %d readers: need at least one", o.readers)
	}
	if o.maxPageCount < 0 || o.busyTimeout < 0 {
		return nil, errors.New("sqlite store: negative option value")
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("sqlite store %s: %w", path, err)
	}
	s := &Store{path: abs, readOnly: o.readOnly, wsem: make(chan struct{}, 1), cache: newViewCache(viewCacheBytes)}

	wq := url.Values{}
	wq.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.busyTimeout.Milliseconds()))
	if o.readOnly {
		wq.Set("mode", "ro")
	} else {
		// 16 KiB pages: a group commit writes fewer, larger WAL frames.
		// Set before WAL mode, so a new file is created with them.
		wq.Add("_pragma", "page_size(16384)")
		wq.Add("_pragma", "journal_mode(WAL)")
		// The WAL is checkpointed in the background (checkpointLoop), not by
		// whichever commit crosses the threshold, so a commit never waits
		// for a checkpoint's writes and fsync.
		wq.Add("_pragma", "wal_autocheckpoint(0)")
	}
	wq.Add("_pragma", "synchronous(FULL)")
	wq.Add("_pragma", "temp_store(MEMORY)") // statement journals stay off the disk
	// A large group commit dirties many pages; with SQLite's 2 MiB default
	// cache it spills them to the WAL half-way and reads them back.
	wq.Add("_pragma", fmt.Sprintf("cache_size(%d)", -writerCacheKiB))
	if o.maxPageCount > 0 {
		wq.Add("_pragma", fmt.Sprintf("max_page_count(%d)", o.maxPageCount))
	}
	if o.readOnly {
		wq.Add("_pragma", "query_only(1)")
	}
	wq.Set("_txlock", "immediate")
	s.w, err = sql.Open("sqlite", dsn(abs, wq))
	if err != nil {
		return nil, fmt.Errorf("sqlite store %s: %w", path, err)
	}
	s.w.SetMaxOpenConns(1)
	s.w.SetMaxIdleConns(1)
	s.w.SetConnMaxIdleTime(0)
	s.w.SetConnMaxLifetime(0)
	if err := s.migrate(ctx); err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite store %s: %w", path, err)
	}

	rq := url.Values{}
	rq.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.busyTimeout.Milliseconds()))
	rq.Add("_pragma", "query_only(1)")
	s.r, err = sql.Open("sqlite", dsn(abs, rq))
	if err != nil {
		s.w.Close()
		return nil, fmt.Errorf("sqlite store %s: %w", path, err)
	}
	s.r.SetMaxOpenConns(o.readers)
	s.r.SetMaxIdleConns(o.readers)
	s.r.SetConnMaxIdleTime(0)
	s.r.SetConnMaxLifetime(0)

	if err := s.ws.prepare(ctx, s.w); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite store %s: prepare: %w", path, err)
	}
	if err := s.rs.prepare(ctx, s.r); err != nil {
		s.closeDBs()
		return nil, fmt.Errorf("sqlite store %s: prepare: %w", path, err)
	}
	if !o.readOnly {
		cq := url.Values{}
		cq.Add("_pragma", fmt.Sprintf("busy_timeout(%d)", o.busyTimeout.Milliseconds()))
		s.cp, err = sql.Open("sqlite", dsn(abs, cq))
		if err != nil {
			s.closeDBs()
			return nil, fmt.Errorf("sqlite store %s: %w", path, err)
		}
		s.cp.SetMaxOpenConns(1)
		s.cpStop = make(chan struct{})
		s.cpDone = make(chan struct{})
		go s.checkpointLoop()
	}
	return s, nil
}

// How the background checkpointer runs: it looks at the WAL's size every
// checkpointPoll and checkpoints once it exceeds checkpointWAL bytes.
const (
	checkpointPoll = 100 * time.Millisecond
	checkpointWAL  = 16 << 20
)

// checkpointLoop copies committed WAL frames into the database file in the
// background (PASSIVE: it never blocks readers or the writer) once the WAL
// has grown, so the WAL is reused instead of growing without bound and no
// commit waits for a checkpoint.
func (s *Store) checkpointLoop() {
	defer close(s.cpDone)
	t := time.NewTicker(checkpointPoll)
	defer t.Stop()
	for {
		select {
		case <-s.cpStop:
			return
		case <-t.C:
			fi, err := os.Stat(s.path + "-wal")
			if err != nil || fi.Size() < checkpointWAL {
				continue
			}
			// An error here (a busy database, a full disk) only delays the
			// checkpoint; the WAL keeps every commit durable meanwhile.
			_, _ = s.cp.Exec("PRAGMA wal_checkpoint(PASSIVE)")
		}
	}
}

// dsn builds a file: URI for path, escaping what SQLite's URI parser would
// otherwise take as syntax.
func dsn(path string, q url.Values) string {
	esc := strings.NewReplacer("%", "%25", "?", "%3f", "#", "%23").Replace(filepath.ToSlash(path))
	return "file:" + esc + "?" + q.Encode()
}

// migrate creates the schema in a new database and checks the version of an
// existing one.
func (s *Store) migrate(ctx context.Context) error {
	var version int
	if err := s.w.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return classify("read schema version", err)
	}
	switch {
	case version == SchemaVersion:
		return nil
	case version > SchemaVersion:
		return fmt.Errorf("%w: the file has schema version %d, this build knows up to %d; upgrade canopy to open it", ErrNewerSchema, version, SchemaVersion)
	case version < 0:
		return fmt.Errorf("schema version %d: not a canopy store", version)
	}
	var tables int
	if err := s.w.QueryRowContext(ctx, "SELECT count(*) FROM sqlite_schema").Scan(&tables); err != nil {
		return classify("read schema", err)
	}
	if tables != 0 {
		return fmt.Errorf("the database has %d schema objects but no canopy schema version: not a canopy store", tables)
	}
	if s.readOnly {
		return errors.New("the database is empty: not a canopy store (opened read-only, so nothing was created)")
	}
	tx, err := s.w.BeginTx(ctx, nil)
	if err != nil {
		return classify("create schema", err)
	}
	defer tx.Rollback()
	if _, err := tx.ExecContext(ctx, schema); err != nil {
		return classify("create schema", err)
	}
	if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", SchemaVersion)); err != nil {
		return classify("set schema version", err)
	}
	if err := tx.Commit(); err != nil {
		return classify("create schema", err)
	}
	return nil
}

// Path returns the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// enter registers an operation in flight, or returns store.ErrClosed.
func (s *Store) enter() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return store.ErrClosed
	}
	s.inflight.Add(1)
	return nil
}

func (s *Store) leave() { s.inflight.Done() }

// Close waits for operations in flight, then closes the database. Calls
// after the first return nil.
func (s *Store) Close() error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	s.mu.Unlock()
	s.inflight.Wait()
	return s.closeDBs()
}

func (s *Store) closeDBs() error {
	if s.cpStop != nil {
		close(s.cpStop)
		<-s.cpDone
		s.cp.Close()
		s.cpStop = nil
	}
	s.ws.close()
	s.rs.close()
	var errs []error
	if s.r != nil {
		errs = append(errs, s.r.Close())
	}
	// The writer closes last: as the last connection it checkpoints the WAL.
	errs = append(errs, s.w.Close())
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("sqlite store %s: close: %w", s.path, err)
	}
	return nil
}

// Check runs PRAGMA integrity_check and returns an error listing every
// problem it reports, or nil if the database is sound.
func (s *Store) Check(ctx context.Context) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	rows, err := s.r.QueryContext(ctx, "PRAGMA integrity_check")
	if err != nil {
		return classify("integrity check", err)
	}
	defer rows.Close()
	var problems []string
	for rows.Next() {
		var line string
		if err := rows.Scan(&line); err != nil {
			return classify("integrity check", err)
		}
		if line != "ok" {
			problems = append(problems, line)
		}
	}
	if err := rows.Err(); err != nil {
		return classify("integrity check", err)
	}
	if len(problems) > 0 {
		return fmt.Errorf("sqlite store %s: integrity check failed: %s", s.path, strings.Join(problems, "; "))
	}
	return nil
}

// Interface guard.
var _ store.Store = (*Store)(nil)

// Package postgres is the scale-out store.Store: a PostgreSQL database (or a
// PostgreSQL-wire one such as YugabyteDB) that several hub processes may share,
// each committing with per-author row locks so that concurrent writers of one
// author's log cannot corrupt it.
//
// Every table lives in the schema "canopy". Events, keys, kinds and view names
// are kept as bytea, so any bytes an entry carries are stored exactly and sort
// byte-wise, as in the SQLite store, whatever the database's collation.
package postgres

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"canopy/store"
)

// SchemaVersion is the version of the database layout this build writes,
// kept in canopy.schema_version. Open refuses a database with a newer one.
const SchemaVersion = 1

// ErrNewerSchema is returned by Open for a database written by a newer
// Canopy whose layout this build does not know.
var ErrNewerSchema = errors.New("postgres store: database schema is newer than this build")

// migrateLock is the pg_advisory_xact_lock key that serializes schema
// creation between processes opening the same database at once.
const migrateLock = 0x63616e6f7079 // "canopy"

const schema = `
CREATE SCHEMA IF NOT EXISTS canopy;
CREATE TABLE canopy.schema_version (
	version integer NOT NULL
);
CREATE TABLE canopy.entries (
	event       bytea  NOT NULL,
	node        bytea  NOT NULL,
	seq         bigint NOT NULL,
	hash        bytea  NOT NULL,
	hlc_wall    bigint NOT NULL,
	hlc_logical bigint NOT NULL,
	kind        bytea  NOT NULL,
	key         bytea  NOT NULL,
	data        bytea  NOT NULL,
	PRIMARY KEY (event, node, seq)
);
CREATE INDEX entries_by_key ON canopy.entries (event, key, hlc_wall, hlc_logical, node, seq);
CREATE INDEX entries_by_hlc ON canopy.entries (event, hlc_wall, hlc_logical, node, seq);
CREATE TABLE canopy.heads (
	event bytea  NOT NULL,
	node  bytea  NOT NULL,
	seq   bigint NOT NULL,
	hash  bytea  NOT NULL,
	PRIMARY KEY (event, node)
);
CREATE TABLE canopy.tree_hashes (
	event bytea  NOT NULL,
	node  bytea  NOT NULL,
	idx   bigint NOT NULL,
	hash  bytea  NOT NULL,
	PRIMARY KEY (event, node, idx)
);
CREATE TABLE canopy.checkpoints (
	event bytea  NOT NULL,
	node  bytea  NOT NULL,
	size  bigint NOT NULL,
	root  bytea  NOT NULL,
	note  bytea  NOT NULL,
	PRIMARY KEY (event, node, size)
);
CREATE TABLE canopy.views (
	event bytea NOT NULL,
	view  bytea NOT NULL,
	key   bytea NOT NULL,
	value bytea NOT NULL,
	PRIMARY KEY (event, view, key)
);
`

// Option configures Open.
type Option func(*options)

type options struct {
	txTimeout time.Duration
	retries   int
}

// WithTxTimeout bounds how long one write transaction may run once it has
// begun (default 30s). The caller's context only bounds the wait for a
// connection: a transaction is not abandoned half-way because the caller
// gave up, which would leave its outcome unknown.
func WithTxTimeout(d time.Duration) Option {
	return func(o *options) { o.txTimeout = d }
}

// WithRetries sets how many times a write transaction is retried after a
// serialization failure or a deadlock (default 10).
func WithRetries(n int) Option {
	return func(o *options) { o.retries = n }
}

// Store is a store.Store in a PostgreSQL database. It is safe for concurrent
// use, and several Stores, in one process or many, may share one database.
type Store struct {
	pool *pgxpool.Pool
	o    options

	mu       sync.Mutex
	closed   bool
	inflight sync.WaitGroup
}

// Open connects to the database named by dsn (a postgres:// URL or a
// keyword/value string, as libpq takes them; pool_max_conns and the other
// pgxpool parameters are honoured) and creates the schema if it is missing.
// It fails with ErrNewerSchema if the database was written by a newer build,
// and with an error wrapping store.ErrUnavailable if the server cannot be
// reached.
func Open(ctx context.Context, dsn string, opts ...Option) (*Store, error) {
	o := options{txTimeout: 30 * time.Second, retries: 10}
	for _, opt := range opts {
		opt(&o)
	}
	if o.txTimeout <= 0 || o.retries < 0 {
		return nil, errors.New("postgres store: transaction timeout must be positive and retries not negative")
	}
	if dsn == "" {
		return nil, errors.New("postgres store: empty DSN")
	}
	cfg, err := pgxpool.ParseConfig(dsn)
	if err != nil {
		return nil, fmt.Errorf("postgres store: parse DSN: %w", err)
	}
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres store: %w", err)
	}
	s := &Store{pool: pool, o: o}
	if err := s.migrate(ctx); err != nil {
		pool.Close()
		return nil, fmt.Errorf("postgres store %s/%s: %w", cfg.ConnConfig.Host, cfg.ConnConfig.Database, err)
	}
	return s, nil
}

// migrate creates the schema in a database without one and checks the
// version of an existing one, under an advisory lock so that hubs starting
// together do not race.
func (s *Store) migrate(ctx context.Context) error {
	tx, err := s.pool.Begin(ctx)
	if err != nil {
		return classify("connect", err)
	}
	defer tx.Rollback(context.WithoutCancel(ctx))
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock($1)`, int64(migrateLock)); err != nil {
		return classify("lock schema", err)
	}
	var exists bool
	if err := tx.QueryRow(ctx, `SELECT to_regclass('canopy.schema_version') IS NOT NULL`).Scan(&exists); err != nil {
		return classify("read schema", err)
	}
	if exists {
		var version int
		err := tx.QueryRow(ctx, `SELECT version FROM canopy.schema_version`).Scan(&version)
		if errors.Is(err, pgx.ErrNoRows) {
			return errors.New("canopy.schema_version is empty: not a canopy store, or a damaged one")
		}
		if err != nil {
			return classify("read schema version", err)
		}
		switch {
		case version == SchemaVersion:
			return nil
		case version > SchemaVersion:
			return fmt.Errorf("%w: the database has schema version %d, this build knows up to %d; upgrade canopy to open it",
				ErrNewerSchema, version, SchemaVersion)
		default:
			return fmt.Errorf("schema version %d: not a canopy store", version)
		}
	}
	var tables int
	if err := tx.QueryRow(ctx, `SELECT count(*) FROM pg_tables WHERE schemaname = 'canopy'`).Scan(&tables); err != nil {
		return classify("read schema", err)
	}
	if tables != 0 {
		return fmt.Errorf("schema canopy has %d tables but no canopy.schema_version: not a canopy store", tables)
	}
	if _, err := tx.Exec(ctx, schema); err != nil {
		return classify("create schema", err)
	}
	if _, err := tx.Exec(ctx, `INSERT INTO canopy.schema_version (version) VALUES ($1)`, SchemaVersion); err != nil {
		return classify("set schema version", err)
	}
	if err := tx.Commit(ctx); err != nil {
		return classify("create schema", err)
	}
	return nil
}

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

// Close waits for operations in flight, then closes every connection. Calls
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
	s.pool.Close()
	return nil
}

// Interface guard.
var _ store.Store = (*Store)(nil)

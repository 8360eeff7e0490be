package sqlite

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"strings"

	"canopy/ledger"
	"canopy/store"
)

// scanPage is how many entries Scan reads per query. Between pages it holds
// no connection and no read transaction, so fn may do anything, including
// commit.
const scanPage = 256

// Head implements store.Store.
func (s *Store) Head(ctx context.Context, event string, node ledger.NodeID) (uint64, ledger.Hash, error) {
	if err := s.enter(); err != nil {
		return 0, ledger.Hash{}, err
	}
	defer s.leave()
	var seq int64
	var hash []byte
	err := s.rs.head.QueryRowContext(ctx, event, node[:]).Scan(&seq, &hash)
	if errors.Is(err, sql.ErrNoRows) {
		return 0, ledger.Hash{}, nil
	}
	if err != nil {
		return 0, ledger.Hash{}, classify("head", err)
	}
	h, err := toHash(hash)
	if err != nil {
		return 0, ledger.Hash{}, fmt.Errorf("sqlite store: head of %s: %w", node, err)
	}
	return uint64(seq), h, nil
}

// Vector implements store.Store.
func (s *Store) Vector(ctx context.Context, event string) (map[ledger.NodeID]uint64, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := s.rs.vector.QueryContext(ctx, event)
	if err != nil {
		return nil, classify("vector", err)
	}
	defer rows.Close()
	v := map[ledger.NodeID]uint64{}
	for rows.Next() {
		var node []byte
		var seq int64
		if err := rows.Scan(&node, &seq); err != nil {
			return nil, classify("vector", err)
		}
		if len(node) != ledger.NodeIDSize {
			return nil, fmt.Errorf("sqlite store: vector: stored node id of %d bytes", len(node))
		}
		v[ledger.NodeID(node)] = uint64(seq)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("vector", err)
	}
	return v, nil
}

// Entries implements store.Store.
func (s *Store) Entries(ctx context.Context, event string, node ledger.NodeID, from, to uint64, limit int) ([]store.Stored, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := rangeQuery(ctx, s.rs.entries, event, node, from, to, limit)
	if err != nil || rows == nil {
		return nil, classify("entries", err)
	}
	return collect(rows, "entries")
}

// rangeQuery runs a query of an author's entries with from <= seq <= to,
// at most limit (<= 0: all); it returns nil rows for an empty range.
func rangeQuery(ctx context.Context, st *sql.Stmt, event string, node ledger.NodeID, from, to uint64, limit int) (*sql.Rows, error) {
	if from > to || from > math.MaxInt64 {
		return nil, nil
	}
	to = min(to, math.MaxInt64)
	lim := int64(limit)
	if limit <= 0 {
		lim = -1 // SQLite: no limit
	}
	return st.QueryContext(ctx, event, node[:], int64(from), int64(to), lim)
}

// EncodedEntries is Entries in the entries' encoded form (ledger.Entry.Encode),
// as stored: nothing is decoded. A sync sender writes them to the wire as
// they are.
func (s *Store) EncodedEntries(ctx context.Context, event string, node ledger.NodeID, from, to uint64, limit int) ([][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := rangeQuery(ctx, s.rs.encoded, event, node, from, to, limit)
	if err != nil || rows == nil {
		return nil, classify("encoded entries", err)
	}
	defer rows.Close()
	var out [][]byte
	for rows.Next() {
		var data []byte
		if err := rows.Scan(&data); err != nil {
			return nil, classify("encoded entries", err)
		}
		out = append(out, data)
	}
	if err := rows.Err(); err != nil {
		return nil, classify("encoded entries", err)
	}
	return out, nil
}

// EntriesByKey implements store.Store.
func (s *Store) EntriesByKey(ctx context.Context, event, key string) ([]store.Stored, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := s.rs.byKey.QueryContext(ctx, event, key)
	if err != nil {
		return nil, classify("entries by key", err)
	}
	return collect(rows, "entries by key")
}

// collect decodes every row of entryCols and closes rows.
func collect(rows *sql.Rows, op string) ([]store.Stored, error) {
	defer rows.Close()
	var out []store.Stored
	for rows.Next() {
		var hash, data, node []byte
		var seq int64
		if err := rows.Scan(&hash, &data, &node, &seq); err != nil {
			return nil, classify(op, err)
		}
		st, err := decode(hash, data, node, seq)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: %s: %w", op, err)
		}
		out = append(out, st)
	}
	if err := rows.Err(); err != nil {
		return nil, classify(op, err)
	}
	return out, nil
}

func decode(hash, data, node []byte, seq int64) (store.Stored, error) {
	h, err := toHash(hash)
	if err != nil {
		return store.Stored{}, fmt.Errorf("stored entry of node %x seq %d: %w", node, seq, err)
	}
	e, err := ledger.Decode(data)
	if err != nil {
		return store.Stored{}, fmt.Errorf("stored entry of node %x seq %d (hash %s): %w", node, seq, h, err)
	}
	if e.Seq != uint64(seq) || !bytes.Equal(e.Node[:], node) {
		return store.Stored{}, fmt.Errorf("stored entry of node %x seq %d (hash %s): %w: its bytes say node %s seq %d",
			node, seq, h, ledger.ErrMalformed, e.Node, e.Seq)
	}
	return store.Stored{Entry: e, Hash: h}, nil
}

func toHash(b []byte) (ledger.Hash, error) {
	if len(b) != ledger.HashSize {
		return ledger.Hash{}, fmt.Errorf("stored hash of %d bytes, want %d", len(b), ledger.HashSize)
	}
	return ledger.Hash(b), nil
}

// Scan implements store.Store. It reads the event in pages ordered by
// (hlc, node, seq), resuming after the last entry it passed to fn, so it
// holds no read transaction while fn runs. An entry committed during the scan
// is seen if it sorts after the scan's position.
func (s *Store) Scan(ctx context.Context, event string, fn func(store.Stored) error) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	var (
		wall    int64 = -1
		logical int64
		node    = []byte{}
		seq     int64
	)
	for {
		page, err := s.scanPage(ctx, event, wall, logical, node, seq)
		if err != nil {
			return err
		}
		for _, st := range page {
			if err := ctx.Err(); err != nil {
				return fmt.Errorf("scan: %w", err)
			}
			if err := fn(st); err != nil {
				return err
			}
		}
		if len(page) < scanPage {
			return nil
		}
		last := page[len(page)-1].Entry
		wall, logical, node, seq = last.HLC.Wall, int64(last.HLC.Logical), bytes.Clone(last.Node[:]), int64(last.Seq)
	}
}

func (s *Store) scanPage(ctx context.Context, event string, wall, logical int64, node []byte, seq int64) ([]store.Stored, error) {
	rows, err := s.rs.scan.QueryContext(ctx, event, wall, logical, node, seq, scanPage)
	if err != nil {
		return nil, classify("scan", err)
	}
	return collect(rows, "scan")
}

// ReadTreeHashes implements store.Store.
func (s *Store) ReadTreeHashes(ctx context.Context, event string, node ledger.NodeID, indexes []int64) ([]ledger.Hash, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	out := make([]ledger.Hash, len(indexes))
	if len(indexes) == 0 {
		return out, nil
	}
	conn, err := s.r.Conn(ctx)
	if err != nil {
		return nil, classify("read tree hashes", err)
	}
	defer conn.Close()
	// One read transaction, so all hashes come from the same state.
	tx, err := conn.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return nil, classify("read tree hashes", err)
	}
	defer tx.Rollback()
	at := tx.StmtContext(ctx, s.rs.treeAt)
	for i, idx := range indexes {
		var h []byte
		err := at.QueryRowContext(ctx, event, node[:], idx).Scan(&h)
		if errors.Is(err, sql.ErrNoRows) {
			return nil, fmt.Errorf("%w: tree hash %d of %s in event %q", store.ErrNotFound, idx, node, event)
		}
		if err != nil {
			return nil, classify("read tree hashes", err)
		}
		if out[i], err = toHash(h); err != nil {
			return nil, fmt.Errorf("sqlite store: tree hash %d: %w", idx, err)
		}
	}
	return out, nil
}

// LatestCheckpoint implements store.Store.
func (s *Store) LatestCheckpoint(ctx context.Context, event string, node ledger.NodeID) (store.Checkpoint, error) {
	if err := s.enter(); err != nil {
		return store.Checkpoint{}, err
	}
	defer s.leave()
	rows, err := s.rs.latestCP.QueryContext(ctx, event, node[:])
	if err != nil {
		return store.Checkpoint{}, classify("latest checkpoint", err)
	}
	cs, err := checkpoints(rows, node)
	if err != nil {
		return store.Checkpoint{}, err
	}
	if len(cs) == 0 {
		return store.Checkpoint{}, fmt.Errorf("%w: no checkpoint of %s in event %q", store.ErrNotFound, node, event)
	}
	return cs[0], nil
}

// Checkpoints implements store.Store.
func (s *Store) Checkpoints(ctx context.Context, event string, node ledger.NodeID) ([]store.Checkpoint, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := s.rs.checkpoints.QueryContext(ctx, event, node[:])
	if err != nil {
		return nil, classify("checkpoints", err)
	}
	return checkpoints(rows, node)
}

func checkpoints(rows *sql.Rows, node ledger.NodeID) ([]store.Checkpoint, error) {
	defer rows.Close()
	var out []store.Checkpoint
	for rows.Next() {
		var size int64
		var root, note []byte
		if err := rows.Scan(&size, &root, &note); err != nil {
			return nil, classify("checkpoints", err)
		}
		r, err := toHash(root)
		if err != nil {
			return nil, fmt.Errorf("sqlite store: checkpoint %d: %w", size, err)
		}
		if note == nil {
			note = []byte{}
		}
		out = append(out, store.Checkpoint{Node: node, Size: uint64(size), Root: r, Note: note})
	}
	if err := rows.Err(); err != nil {
		return nil, classify("checkpoints", err)
	}
	return out, nil
}

// View implements store.Store.
func (s *Store) View(ctx context.Context, event, view, key string) ([]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	k := cacheKey{event, view, key}
	v, ok := s.cache.get(k)
	if !ok {
		gen := s.cache.generation()
		err := s.rs.view.QueryRowContext(ctx, event, view, key).Scan(&v)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			v = nil
		case err != nil:
			return nil, classify("view", err)
		case v == nil:
			v = []byte{}
		}
		s.cache.fill(gen, k, v)
	}
	if v == nil {
		return nil, fmt.Errorf("%w: view %s row %q in event %q", store.ErrNotFound, view, key, event)
	}
	return v, nil
}

// ViewRows implements store.Store.
func (s *Store) ViewRows(ctx context.Context, event, view string) ([]store.ViewRow, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := s.rs.viewRows.QueryContext(ctx, event, view)
	return collectViewRows(rows, err, view, "view rows")
}

// collectViewRows reads (key, value) rows of one view and closes them.
func collectViewRows(rows *sql.Rows, err error, view, op string) ([]store.ViewRow, error) {
	if err != nil {
		return nil, classify(op, err)
	}
	defer rows.Close()
	var out []store.ViewRow
	for rows.Next() {
		var key string
		var v []byte
		if err := rows.Scan(&key, &v); err != nil {
			return nil, classify(op, err)
		}
		if v == nil {
			v = []byte{}
		}
		out = append(out, store.ViewRow{View: view, Key: key, Value: v})
	}
	if err := rows.Err(); err != nil {
		return nil, classify(op, err)
	}
	return out, nil
}

// ViewPage implements store.Store.
func (s *Store) ViewPage(ctx context.Context, event, view, after string, limit int) ([]store.ViewRow, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	if limit <= 0 {
		return nil, nil
	}
	rows, err := s.r.QueryContext(ctx, `SELECT key, value FROM views WHERE event = ? AND view = ? AND key > ? ORDER BY key LIMIT ?`,
		event, view, after, limit)
	return collectViewRows(rows, err, view, "view page")
}

// readViewsChunk bounds the rows one ReadViews statement asks for.
const readViewsChunk = 200

// ReadViews implements store.Store.
func (s *Store) ReadViews(ctx context.Context, event string, keys []store.ViewKey) ([][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	out := make([][]byte, len(keys))
	at := make(map[store.ViewKey][]int, len(keys))
	var missing []store.ViewKey
	for i, k := range keys {
		if v, ok := s.cache.get(cacheKey{event, k.View, k.Key}); ok {
			out[i] = v
			continue
		}
		if _, dup := at[k]; !dup {
			missing = append(missing, k)
		}
		at[k] = append(at[k], i)
	}
	gen := s.cache.generation()
	found := map[store.ViewKey]bool{}
	for start := 0; start < len(missing); start += readViewsChunk {
		chunk := missing[start:min(len(missing), start+readViewsChunk)]
		var q strings.Builder
		q.WriteString(`SELECT view, key, value FROM views WHERE event = ? AND (view, key) IN (VALUES `)
		args := make([]any, 0, 1+2*len(chunk))
		args = append(args, event)
		for i, k := range chunk {
			if i > 0 {
				q.WriteString(", ")
			}
			q.WriteString("(?, ?)")
			args = append(args, k.View, k.Key)
		}
		q.WriteString(")")
		rows, err := s.r.QueryContext(ctx, q.String(), args...)
		if err != nil {
			return nil, classify("read views", err)
		}
		for rows.Next() {
			var k store.ViewKey
			var v []byte
			if err := rows.Scan(&k.View, &k.Key, &v); err != nil {
				rows.Close()
				return nil, classify("read views", err)
			}
			if v == nil {
				v = []byte{}
			}
			found[k] = true
			s.cache.fill(gen, cacheKey{event, k.View, k.Key}, v)
			for _, i := range at[k] {
				out[i] = v
			}
		}
		err = rows.Err()
		rows.Close()
		if err != nil {
			return nil, classify("read views", err)
		}
	}
	for _, k := range missing {
		if !found[k] {
			s.cache.fill(gen, cacheKey{event, k.View, k.Key}, nil)
		}
	}
	return out, nil
}

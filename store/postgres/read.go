package postgres

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"

	"github.com/jackc/pgx/v5"

	"canopy/ledger"
	"canopy/store"
)

// entryCols are the columns a read selects to rebuild a store.Stored.
const entryCols = `hash, data, node, seq`

// scanPage is how many entries Scan reads per query. Between pages it holds
// no connection and no transaction, so fn may do anything, including commit.
const scanPage = 256

// Head implements store.Store.
func (s *Store) Head(ctx context.Context, event string, node ledger.NodeID) (uint64, ledger.Hash, error) {
	if err := s.enter(); err != nil {
		return 0, ledger.Hash{}, err
	}
	defer s.leave()
	var seq int64
	var hash []byte
	err := s.pool.QueryRow(ctx, `SELECT seq, hash FROM canopy.heads WHERE event = $1 AND node = $2 AND seq > 0`,
		[]byte(event), node[:]).Scan(&seq, &hash)
	if errors.Is(err, pgx.ErrNoRows) {
		return 0, ledger.Hash{}, nil
	}
	if err != nil {
		return 0, ledger.Hash{}, classify("head", err)
	}
	h, err := toHash(hash)
	if err != nil {
		return 0, ledger.Hash{}, fmt.Errorf("postgres store: head of %s: %w", node, err)
	}
	return uint64(seq), h, nil
}

// Vector implements store.Store.
func (s *Store) Vector(ctx context.Context, event string) (map[ledger.NodeID]uint64, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := s.pool.Query(ctx, `SELECT node, seq FROM canopy.heads WHERE event = $1 AND seq > 0`, []byte(event))
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
			return nil, fmt.Errorf("postgres store: vector: stored node id of %d bytes", len(node))
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
	rows, err := s.rangeRows(ctx, entryCols, event, node, from, to, limit)
	if err != nil || rows == nil {
		return nil, classify("entries", err)
	}
	return collect(rows, "entries")
}

// rangeRows queries cols of the author's entries with from <= seq <= to, in
// seq order, at most limit (<= 0: all); nil rows for an empty range.
func (s *Store) rangeRows(ctx context.Context, cols, event string, node ledger.NodeID, from, to uint64, limit int) (pgx.Rows, error) {
	if from > to || from > math.MaxInt64 {
		return nil, nil
	}
	to = min(to, math.MaxInt64)
	var lim *int64 // NULL: no limit
	if limit > 0 {
		l := int64(limit)
		lim = &l
	}
	return s.pool.Query(ctx, `SELECT `+cols+` FROM canopy.entries
		WHERE event = $1 AND node = $2 AND seq BETWEEN $3 AND $4 ORDER BY seq LIMIT $5`,
		[]byte(event), node[:], int64(from), int64(to), lim)
}

// EncodedEntries is Entries in the entries' encoded form (ledger.Entry.Encode),
// as stored: a sender streams them without decoding and encoding again.
func (s *Store) EncodedEntries(ctx context.Context, event string, node ledger.NodeID, from, to uint64, limit int) ([][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := s.rangeRows(ctx, "data", event, node, from, to, limit)
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
	rows, err := s.pool.Query(ctx, `SELECT `+entryCols+` FROM canopy.entries
		WHERE event = $1 AND key = $2 ORDER BY hlc_wall, hlc_logical, node, seq`, []byte(event), []byte(key))
	if err != nil {
		return nil, classify("entries by key", err)
	}
	return collect(rows, "entries by key")
}

// collect decodes every row of entryCols and closes rows.
func collect(rows pgx.Rows, op string) ([]store.Stored, error) {
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
			return nil, fmt.Errorf("postgres store: %s: %w", op, err)
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
// holds no connection or transaction while fn runs. An entry committed
// during the scan is seen if it sorts after the scan's position.
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
		rows, err := s.pool.Query(ctx, `SELECT `+entryCols+` FROM canopy.entries
			WHERE event = $1 AND (hlc_wall, hlc_logical, node, seq) > ($2, $3, $4, $5)
			ORDER BY hlc_wall, hlc_logical, node, seq LIMIT $6`,
			[]byte(event), wall, logical, node, seq, scanPage)
		if err != nil {
			return classify("scan", err)
		}
		page, err := collect(rows, "scan")
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

// ReadTreeHashes implements store.Store. All hashes are read by one
// statement, so they come from one snapshot.
func (s *Store) ReadTreeHashes(ctx context.Context, event string, node ledger.NodeID, indexes []int64) ([]ledger.Hash, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	out := make([]ledger.Hash, len(indexes))
	if len(indexes) == 0 {
		return out, nil
	}
	rows, err := s.pool.Query(ctx, `SELECT u.i, u.idx, t.hash
		FROM unnest($3::bigint[]) WITH ORDINALITY AS u(idx, i)
		LEFT JOIN canopy.tree_hashes t ON t.event = $1 AND t.node = $2 AND t.idx = u.idx
		ORDER BY u.i`, []byte(event), node[:], indexes)
	if err != nil {
		return nil, classify("read tree hashes", err)
	}
	defer rows.Close()
	n := 0
	for rows.Next() {
		var i, idx int64
		var h []byte
		if err := rows.Scan(&i, &idx, &h); err != nil {
			return nil, classify("read tree hashes", err)
		}
		if h == nil {
			return nil, fmt.Errorf("%w: tree hash %d of %s in event %q", store.ErrNotFound, idx, node, event)
		}
		if i < 1 || i > int64(len(out)) {
			return nil, fmt.Errorf("postgres store: read tree hashes: row %d of %d", i, len(out))
		}
		if out[i-1], err = toHash(h); err != nil {
			return nil, fmt.Errorf("postgres store: tree hash %d: %w", idx, err)
		}
		n++
	}
	if err := rows.Err(); err != nil {
		return nil, classify("read tree hashes", err)
	}
	if n != len(out) {
		return nil, fmt.Errorf("postgres store: read tree hashes: %d rows for %d indexes", n, len(out))
	}
	return out, nil
}

// LatestCheckpoint implements store.Store.
func (s *Store) LatestCheckpoint(ctx context.Context, event string, node ledger.NodeID) (store.Checkpoint, error) {
	if err := s.enter(); err != nil {
		return store.Checkpoint{}, err
	}
	defer s.leave()
	rows, err := s.pool.Query(ctx, `SELECT size, root, note FROM canopy.checkpoints
		WHERE event = $1 AND node = $2 ORDER BY size DESC LIMIT 1`, []byte(event), node[:])
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
	rows, err := s.pool.Query(ctx, `SELECT size, root, note FROM canopy.checkpoints
		WHERE event = $1 AND node = $2 ORDER BY size`, []byte(event), node[:])
	if err != nil {
		return nil, classify("checkpoints", err)
	}
	return checkpoints(rows, node)
}

func checkpoints(rows pgx.Rows, node ledger.NodeID) ([]store.Checkpoint, error) {
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
			return nil, fmt.Errorf("postgres store: checkpoint %d: %w", size, err)
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
	var v []byte
	err := s.pool.QueryRow(ctx, `SELECT value FROM canopy.views WHERE event = $1 AND view = $2 AND key = $3`,
		[]byte(event), []byte(view), []byte(key)).Scan(&v)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil, fmt.Errorf("%w: view %s row %q in event %q", store.ErrNotFound, view, key, event)
	}
	if err != nil {
		return nil, classify("view", err)
	}
	if v == nil {
		v = []byte{}
	}
	return v, nil
}

// ViewRows implements store.Store.
func (s *Store) ViewRows(ctx context.Context, event, view string) ([]store.ViewRow, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	rows, err := s.pool.Query(ctx, `SELECT key, value FROM canopy.views WHERE event = $1 AND view = $2 ORDER BY key`,
		[]byte(event), []byte(view))
	if err != nil {
		return nil, classify("view rows", err)
	}
	defer rows.Close()
	var out []store.ViewRow
	for rows.Next() {
		var key, v []byte
		if err := rows.Scan(&key, &v); err != nil {
			return nil, classify("view rows", err)
		}
		if v == nil {
			v = []byte{}
		}
		out = append(out, store.ViewRow{View: view, Key: string(key), Value: v})
	}
	if err := rows.Err(); err != nil {
		return nil, classify("view rows", err)
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
	rows, err := s.pool.Query(ctx, `SELECT key, value FROM canopy.views WHERE event = $1 AND view = $2 AND key > $3 ORDER BY key LIMIT $4`,
		[]byte(event), []byte(view), []byte(after), limit)
	if err != nil {
		return nil, classify("view page", err)
	}
	defer rows.Close()
	var out []store.ViewRow
	for rows.Next() {
		var key, v []byte
		if err := rows.Scan(&key, &v); err != nil {
			return nil, classify("view page", err)
		}
		if v == nil {
			v = []byte{}
		}
		out = append(out, store.ViewRow{View: view, Key: string(key), Value: v})
	}
	if err := rows.Err(); err != nil {
		return nil, classify("view page", err)
	}
	return out, nil
}

// ReadViews implements store.Store.
func (s *Store) ReadViews(ctx context.Context, event string, keys []store.ViewKey) ([][]byte, error) {
	if err := s.enter(); err != nil {
		return nil, err
	}
	defer s.leave()
	out := make([][]byte, len(keys))
	if len(keys) == 0 {
		return out, nil
	}
	viewsCol := make([][]byte, len(keys))
	keysCol := make([][]byte, len(keys))
	at := make(map[store.ViewKey][]int, len(keys))
	for i, k := range keys {
		viewsCol[i], keysCol[i] = []byte(k.View), []byte(k.Key)
		at[k] = append(at[k], i)
	}
	rows, err := s.pool.Query(ctx, `SELECT v.view, v.key, v.value FROM canopy.views v
		JOIN unnest($2::bytea[], $3::bytea[]) AS w(view, key) ON v.view = w.view AND v.key = w.key
		WHERE v.event = $1`, []byte(event), viewsCol, keysCol)
	if err != nil {
		return nil, classify("read views", err)
	}
	defer rows.Close()
	for rows.Next() {
		var view, key, v []byte
		if err := rows.Scan(&view, &key, &v); err != nil {
			return nil, classify("read views", err)
		}
		if v == nil {
			v = []byte{}
		}
		for _, i := range at[store.ViewKey{View: string(view), Key: string(key)}] {
			out[i] = v
		}
	}
	if err := rows.Err(); err != nil {
		return nil, classify("read views", err)
	}
	return out, nil
}

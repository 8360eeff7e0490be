package postgres

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"canopy/ledger"
	"canopy/store"
)

// row is one entry of a batch, encoded and checked before any connection is
// taken.
type row struct {
	e    *ledger.Entry
	hash ledger.Hash
	data []byte
}

// run is one author's entries of a batch, sorted by seq, without duplicates
// and without gaps or breaks in the chain between them.
type run struct {
	node ledger.NodeID
	rows []row
}

// cpKey names a checkpoint within an event.
type cpKey struct {
	node ledger.NodeID
	size uint64
}

// viewKey names a view row within an event.
type viewKey struct{ view, key string }

// plan is a batch checked without touching the database: entries grouped
// into runs sorted by author (the order their heads are locked in), and the
// checkpoints and view rows reduced to their final value per key.
type plan struct {
	runs  []run
	cps   []store.Checkpoint
	views []store.ViewRow
}

// makePlan checks b and builds its plan.
func makePlan(b *store.Batch) (*plan, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil batch", store.ErrInvalid)
	}
	if b.Event == "" {
		return nil, fmt.Errorf("%w: no event", store.ErrInvalid)
	}
	p := &plan{}
	index := map[ledger.NodeID]int{}
	for i, s := range b.Entries {
		if err := checkEntry(b.Event, i, s); err != nil {
			return nil, err
		}
		e := s.Entry
		data := e.Encode()
		if h := ledger.Hash(sha256.Sum256(data)); h != s.Hash {
			return nil, fmt.Errorf("%w: entry %d (%s seq %d): hash %s given, entry hashes to %s", store.ErrInvalid, i, e.Node, e.Seq, s.Hash, h)
		}
		j, ok := index[e.Node]
		if !ok {
			j = len(p.runs)
			index[e.Node] = j
			p.runs = append(p.runs, run{node: e.Node})
		}
		p.runs[j].rows = append(p.runs[j].rows, row{e: e, hash: s.Hash, data: data})
	}
	for i := range p.runs {
		if err := p.runs[i].dedupe(b.Event); err != nil {
			return nil, err
		}
	}
	slices.SortFunc(p.runs, func(x, y run) int { return bytes.Compare(x.node[:], y.node[:]) })

	for i, th := range b.TreeHashes {
		if th.Index < 0 {
			return nil, fmt.Errorf("%w: tree hash %d: negative index %d", store.ErrInvalid, i, th.Index)
		}
	}

	// A later checkpoint of the same size replaces the note of an earlier
	// one with the same root, as it would a stored one.
	cps := map[cpKey]int{}
	for i, c := range b.Checkpoints {
		if c.Size > math.MaxInt64 {
			return nil, fmt.Errorf("%w: checkpoint %d: size %d too large", store.ErrInvalid, i, c.Size)
		}
		k := cpKey{c.Node, c.Size}
		if j, ok := cps[k]; ok {
			if p.cps[j].Root != c.Root {
				return nil, fmt.Errorf("%w: event %q author %s: two checkpoints of size %d with different roots in one batch",
					store.ErrConflict, b.Event, c.Node, c.Size)
			}
			p.cps[j].Note = c.Note
			continue
		}
		cps[k] = len(p.cps)
		p.cps = append(p.cps, c)
	}

	if err := checkViews(b.Views); err != nil {
		return nil, err
	}
	p.views = lastViews(b.Views)
	return p, nil
}

// dedupe sorts the run by seq, drops entries given twice, and checks that
// the rest are consecutive and chained.
func (r *run) dedupe(event string) error {
	slices.SortStableFunc(r.rows, func(x, y row) int { return cmp.Compare(x.e.Seq, y.e.Seq) })
	out := r.rows[:1]
	for _, w := range r.rows[1:] {
		last := out[len(out)-1]
		switch {
		case w.e.Seq == last.e.Seq && w.hash == last.hash:
			continue // the same entry twice
		case w.e.Seq == last.e.Seq:
			return fmt.Errorf("%w: event %q author %s seq %d: two different entries in one batch (%s, %s)",
				store.ErrConflict, event, r.node, w.e.Seq, last.hash, w.hash)
		case w.e.Seq != last.e.Seq+1:
			return fmt.Errorf("%w: event %q author %s: gap in batch between seq %d and %d",
				store.ErrConflict, event, r.node, last.e.Seq, w.e.Seq)
		case w.e.Prev != last.hash:
			return fmt.Errorf("%w: event %q author %s seq %d: prev %s is not the hash of seq %d (%s)",
				store.ErrConflict, event, r.node, w.e.Seq, w.e.Prev, last.e.Seq, last.hash)
		}
		out = append(out, w)
	}
	r.rows = out
	return nil
}

func checkEntry(event string, i int, s store.Stored) error {
	e := s.Entry
	switch {
	case e == nil:
		return fmt.Errorf("%w: entry %d is nil", store.ErrInvalid, i)
	case e.Event != event:
		return fmt.Errorf("%w: entry %d belongs to event %q, batch is for %q", store.ErrInvalid, i, e.Event, event)
	case e.Seq == 0 || e.Seq > math.MaxInt64:
		return fmt.Errorf("%w: entry %d: seq %d out of range", store.ErrInvalid, i, e.Seq)
	case e.HLC.Wall < 0:
		return fmt.Errorf("%w: entry %d: negative hlc", store.ErrInvalid, i)
	case len(e.Sig) != ledger.SigSize:
		return fmt.Errorf("%w: entry %d: signature of %d bytes, want %d", store.ErrInvalid, i, len(e.Sig), ledger.SigSize)
	case len(e.Event) > ledger.MaxEventLen || e.Kind == "" || len(e.Kind) > ledger.MaxKindLen ||
		len(e.Key) > ledger.MaxKeyLen || len(e.Body) > ledger.MaxBodyLen:
		return fmt.Errorf("%w: entry %d: a field is outside the limits of the entry format", store.ErrInvalid, i)
	}
	return nil
}

func checkViews(rows []store.ViewRow) error {
	for i, v := range rows {
		if v.View == "" {
			return fmt.Errorf("%w: view row %d (key %q) has no view name", store.ErrInvalid, i, v.Key)
		}
	}
	return nil
}

// lastViews keeps the last row given for each (view, key), in order of first
// appearance: applying them gives the same state as applying all in order.
// Each keeps the Prior of the key's first row, the value the batch expects
// stored.
func lastViews(rows []store.ViewRow) []store.ViewRow {
	if len(rows) == 0 {
		return nil
	}
	at := make(map[viewKey]int, len(rows))
	var out []store.ViewRow
	for _, v := range rows {
		k := viewKey{v.View, v.Key}
		if i, ok := at[k]; ok {
			v.Prior = out[i].Prior
			out[i] = v
			continue
		}
		at[k] = len(out)
		out = append(out, v)
	}
	return out
}

// Commit implements store.Store. The context bounds the wait for a
// connection; once the transaction has begun it runs to its end (or to the
// WithTxTimeout bound). Each author's head row is locked (SELECT ... FOR
// UPDATE, in node order) before its entries are checked, so commits of one
// author from any number of Stores on the database are serialized, and an
// entry is only ever inserted right after the head it was checked against.
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	p, err := makePlan(b)
	if err != nil {
		return err
	}
	return s.write(ctx, "commit", func(ctx context.Context, tx pgx.Tx) error { return apply(ctx, tx, b, p) })
}

// ReplaceViews implements store.Store.
func (s *Store) ReplaceViews(ctx context.Context, event string, rows []store.ViewRow) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	if event == "" {
		return fmt.Errorf("%w: no event", store.ErrInvalid)
	}
	if err := checkViews(rows); err != nil {
		return err
	}
	views := lastViews(rows)
	return s.write(ctx, "replace views", func(ctx context.Context, tx pgx.Tx) error {
		var q pgx.Batch
		q.Queue(`DELETE FROM canopy.views WHERE event = $1`, []byte(event))
		queueViews(&q, event, views)
		return tx.SendBatch(ctx, &q).Close()
	})
}

// write runs fn in one READ COMMITTED transaction, again from the start
// after a serialization failure or a deadlock.
func (s *Store) write(ctx context.Context, op string, fn func(context.Context, pgx.Tx) error) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	conn, err := s.pool.Acquire(ctx)
	if err != nil {
		return classify(op, err)
	}
	defer conn.Release()
	tctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.txTimeout)
	defer cancel()
	for attempt := 0; ; attempt++ {
		err := once(tctx, conn.Conn(), fn)
		switch {
		case err == nil:
			return nil
		case errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrStaleView):
			return err
		case isRetryable(err) && attempt < s.o.retries:
			// Back off a little, randomly, so the transactions that
			// collided do not collide again.
			d := time.Duration(1+rand.IntN(1<<min(attempt, 6))) * time.Millisecond
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-tctx.Done():
				t.Stop()
				return classify(op, err)
			}
		default:
			return classify(op, err)
		}
	}
}

func once(ctx context.Context, conn *pgx.Conn, fn func(context.Context, pgx.Tx) error) error {
	tx, err := conn.Begin(ctx)
	if err != nil {
		return err
	}
	if err := fn(ctx, tx); err != nil {
		tx.Rollback(ctx)
		return err
	}
	return tx.Commit(ctx)
}

// apply writes a planned batch inside tx in at most three round trips: lock
// and read the heads; read the stored hashes a re-delivery overlaps; write
// everything.
func apply(ctx context.Context, tx pgx.Tx, b *store.Batch, p *plan) error {
	ev := []byte(b.Event)
	heads, err := lockHeads(ctx, tx, ev, p.runs)
	if err != nil {
		return err
	}
	stored, err := storedHashes(ctx, tx, ev, p.runs, heads)
	if err != nil {
		return err
	}
	var fresh []row
	var headNodes, headHashes [][]byte
	var headSeqs []int64
	for _, r := range p.runs {
		rows, err := newRows(b.Event, r, heads[r.node], stored[r.node])
		if err != nil {
			return err
		}
		if len(rows) == 0 {
			continue
		}
		fresh = append(fresh, rows...)
		last := rows[len(rows)-1]
		headNodes = append(headNodes, r.node[:])
		headSeqs = append(headSeqs, int64(last.e.Seq))
		headHashes = append(headHashes, last.hash[:])
	}

	var q pgx.Batch
	var checks []func(pgx.BatchResults) error
	if len(fresh) >= copyMin {
		if err := copyEntries(ctx, tx, b.Event, fresh); err != nil {
			return err
		}
	} else {
		queueEntries(&q, &checks, b.Event, fresh)
	}
	treeHashes := b.TreeHashes
	if len(treeHashes) >= copyMin {
		copied, err := copyTreeHashes(ctx, tx, ev, treeHashes)
		if err != nil {
			return err
		}
		if copied {
			treeHashes = nil
		}
	}
	if len(headNodes) > 0 {
		q.Queue(`UPDATE canopy.heads h SET seq = u.seq, hash = u.hash
			FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) AS u(node, seq, hash)
			WHERE h.event = $1 AND h.node = u.node`, ev, headNodes, headSeqs, headHashes)
		checks = append(checks, execOnly)
	}
	// Tree hashes already stored are skipped; only if some were (a
	// re-delivery) are the given ones compared with the stored ones, after
	// the batch.
	var trees *treeArgs
	if len(treeHashes) > 0 {
		trees = newTreeArgs(treeHashes)
		q.Queue(`INSERT INTO canopy.tree_hashes (event, node, idx, hash)
			SELECT $1, u.node, u.idx, u.hash FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) AS u(node, idx, hash)
			ON CONFLICT (event, node, idx) DO NOTHING`, ev, trees.nodes, trees.idxs, trees.hashes)
		checks = append(checks, func(br pgx.BatchResults) error {
			tag, err := br.Exec()
			if err == nil && tag.RowsAffected() == int64(len(trees.idxs)) {
				trees = nil // every one was new
			}
			return err
		})
	}
	if len(p.cps) > 0 {
		nodes := make([][]byte, len(p.cps))
		sizes := make([]int64, len(p.cps))
		roots := make([][]byte, len(p.cps))
		notes := make([][]byte, len(p.cps))
		for i, c := range p.cps {
			nodes[i], sizes[i], roots[i], notes[i] = c.Node[:], int64(c.Size), c.Root[:], c.Note
			if notes[i] == nil {
				notes[i] = []byte{}
			}
		}
		q.Queue(`INSERT INTO canopy.checkpoints AS c (event, node, size, root, note)
			SELECT $1, u.node, u.size, u.root, u.note
			FROM unnest($2::bytea[], $3::bigint[], $4::bytea[], $5::bytea[]) AS u(node, size, root, note)
			ON CONFLICT (event, node, size) DO UPDATE SET note = excluded.note WHERE c.root = excluded.root`,
			ev, nodes, sizes, roots, notes)
		checks = append(checks, func(br pgx.BatchResults) error {
			tag, err := br.Exec()
			if err != nil {
				return err
			}
			if n := tag.RowsAffected(); n != int64(len(p.cps)) {
				return fmt.Errorf("%w: event %q: %d of the batch's checkpoints have the size of a stored one with another root",
					store.ErrConflict, b.Event, int64(len(p.cps))-n)
			}
			return nil
		})
	}
	n := q.Len()
	if !b.CheckViews {
		queueViews(&q, b.Event, p.views)
	}
	for range q.Len() - n {
		checks = append(checks, execOnly)
	}
	if q.Len() == 0 {
		if b.CheckViews {
			return writeCheckedViews(ctx, tx, b, p.views)
		}
		return nil
	}
	br := tx.SendBatch(ctx, &q)
	for _, check := range checks {
		if err := check(br); err != nil {
			br.Close()
			return err
		}
	}
	if err := br.Close(); err != nil {
		return err
	}
	if trees != nil {
		if err := trees.compare(ctx, tx, b.Event); err != nil {
			return err
		}
	}
	if b.CheckViews {
		return writeCheckedViews(ctx, tx, b, p.views)
	}
	return nil
}

// writeCheckedViews writes a CheckViews batch's rows: it locks them against
// other writers until the transaction ends (advisory locks, which also
// cover rows that do not exist yet), reads them, and writes the batch's rows
// if every stored value is the row's Prior, or else what b.Refold folds from
// the stored values.
func writeCheckedViews(ctx context.Context, tx pgx.Tx, b *store.Batch, rows []store.ViewRow) error {
	if len(rows) == 0 {
		return nil
	}
	keys := make([]store.ViewKey, len(rows))
	for i, v := range rows {
		keys[i] = store.ViewKey{View: v.View, Key: v.Key}
	}
	read := func(ctx context.Context, keys []store.ViewKey) ([][]byte, error) {
		return lockAndReadViews(ctx, tx, b.Event, keys)
	}
	stored, err := read(ctx, keys)
	if err != nil {
		return err
	}
	for i, v := range rows {
		if (stored[i] == nil) == (v.Prior == nil) && bytes.Equal(stored[i], v.Prior) {
			continue
		}
		if b.Refold == nil {
			return fmt.Errorf("%w: event %q view %s key %q", store.ErrStaleView, b.Event, v.View, v.Key)
		}
		if rows, err = b.Refold(ctx, read); err != nil {
			return err
		}
		if err := checkViews(rows); err != nil {
			return err
		}
		rows = lastViews(rows)
		break
	}
	var q pgx.Batch
	queueViews(&q, b.Event, rows)
	return tx.SendBatch(ctx, &q).Close()
}

// lockAndReadViews takes a transaction-scoped advisory lock on each view
// row (in a fixed order, so two writers cannot deadlock on rows of one
// call) and returns the rows' values, nil for a missing one.
func lockAndReadViews(ctx context.Context, tx pgx.Tx, event string, keys []store.ViewKey) ([][]byte, error) {
	ids := make([]int64, 0, len(keys))
	views, names := make([][]byte, len(keys)), make([][]byte, len(keys))
	for i, k := range keys {
		ids = append(ids, viewLockID(event, k))
		views[i], names[i] = []byte(k.View), []byte(k.Key)
	}
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(id) FROM unnest($1::bigint[]) WITH ORDINALITY AS u(id, n) ORDER BY n`, ids); err != nil {
		return nil, err
	}
	rs, err := tx.Query(ctx, `SELECT u.n, t.value FROM unnest($2::bytea[], $3::bytea[]) WITH ORDINALITY AS u(view, key, n)
		JOIN canopy.views t ON t.event = $1 AND t.view = u.view AND t.key = u.key`, []byte(event), views, names)
	if err != nil {
		return nil, err
	}
	defer rs.Close()
	out := make([][]byte, len(keys))
	for rs.Next() {
		var n int64
		var v []byte
		if err := rs.Scan(&n, &v); err != nil {
			return nil, err
		}
		if v == nil {
			v = []byte{} // an empty value is a row
		}
		out[n-1] = v
	}
	return out, rs.Err()
}

// viewLockID is the advisory lock key of a view row: the first 8 bytes of
// a SHA-256 over its event, view and key.
func viewLockID(event string, k store.ViewKey) int64 {
	h := sha256.New()
	for _, part := range []string{event, k.View, k.Key} {
		var n [4]byte
		n[0], n[1], n[2], n[3] = byte(len(part)>>24), byte(len(part)>>16), byte(len(part)>>8), byte(len(part))
		h.Write(n[:])
		h.Write([]byte(part))
	}
	sum := h.Sum(nil)
	return int64(uint64(sum[0])<<56 | uint64(sum[1])<<48 | uint64(sum[2])<<40 | uint64(sum[3])<<32 |
		uint64(sum[4])<<24 | uint64(sum[5])<<16 | uint64(sum[6])<<8 | uint64(sum[7]))
}

// copyMin is the number of rows from which entries and tree hashes are
// written with COPY, which costs the server much less per row than a
// multi-row INSERT but takes a round trip of its own.
const copyMin = 64

var entryColumns = []string{"event", "node", "seq", "hash", "hlc_wall", "hlc_logical", "kind", "key", "data"}

// copyEntries writes new entries with COPY. With the authors' heads locked
// none of them can be stored already; if one is, the log was written around
// the heads table, and the unique violation is a conflict.
func copyEntries(ctx context.Context, tx pgx.Tx, event string, rows []row) error {
	ev := []byte(event)
	_, err := tx.CopyFrom(ctx, pgx.Identifier{"canopy", "entries"}, entryColumns,
		pgx.CopyFromSlice(len(rows), func(i int) ([]any, error) {
			w := rows[i]
			return []any{ev, w.e.Node[:], int64(w.e.Seq), w.hash[:], w.e.HLC.Wall, int64(w.e.HLC.Logical),
				[]byte(w.e.Kind), []byte(w.e.Key), w.data}, nil
		}))
	if isUniqueViolation(err) {
		return fmt.Errorf("%w: event %q: new entries were already stored without a head that covers them: %v",
			store.ErrConflict, event, err)
	}
	return err
}

// copyTreeHashes writes tree hashes with COPY inside a savepoint and
// reports whether it did. If one is stored already (a re-delivery, or
// another writer), the savepoint is rolled back and it returns false: the
// caller writes them the slower way, which skips and compares stored ones.
func copyTreeHashes(ctx context.Context, tx pgx.Tx, ev []byte, ths []store.TreeHash) (bool, error) {
	sp, err := tx.Begin(ctx) // a savepoint
	if err != nil {
		return false, err
	}
	_, err = sp.CopyFrom(ctx, pgx.Identifier{"canopy", "tree_hashes"}, []string{"event", "node", "idx", "hash"},
		pgx.CopyFromSlice(len(ths), func(i int) ([]any, error) {
			th := &ths[i]
			return []any{ev, th.Node[:], th.Index, th.Hash[:]}, nil
		}))
	if isUniqueViolation(err) {
		return false, sp.Rollback(ctx)
	}
	if err != nil {
		return false, err
	}
	return true, sp.Commit(ctx)
}

// treeArgs are a batch's tree hashes as query parameters.
type treeArgs struct {
	nodes, hashes [][]byte
	idxs          []int64
}

func newTreeArgs(ths []store.TreeHash) *treeArgs {
	t := &treeArgs{nodes: make([][]byte, len(ths)), idxs: make([]int64, len(ths)), hashes: make([][]byte, len(ths))}
	for i, th := range ths {
		t.nodes[i], t.idxs[i], t.hashes[i] = th.Node[:], th.Index, th.Hash[:]
	}
	return t
}

// compare returns an error wrapping store.ErrConflict if a stored tree
// hash differs from the one given for its index.
func (t *treeArgs) compare(ctx context.Context, tx pgx.Tx, event string) error {
	var node, have, want []byte
	var idx int64
	err := tx.QueryRow(ctx, `SELECT u.node, u.idx, t.hash, u.hash
		FROM unnest($2::bytea[], $3::bigint[], $4::bytea[]) AS u(node, idx, hash)
		JOIN canopy.tree_hashes t ON t.event = $1 AND t.node = u.node AND t.idx = u.idx
		WHERE t.hash <> u.hash LIMIT 1`, []byte(event), t.nodes, t.idxs, t.hashes).Scan(&node, &idx, &have, &want)
	if errors.Is(err, pgx.ErrNoRows) {
		return nil
	}
	if err != nil {
		return err
	}
	return fmt.Errorf("%w: event %q author %x tree hash %d: stored %x, batch has %x",
		store.ErrConflict, event, node, idx, have, want)
}

func execOnly(br pgx.BatchResults) error {
	_, err := br.Exec()
	return err
}

// head is an author's stored head.
type head struct {
	seq  uint64
	hash ledger.Hash
}

// lockHeads makes sure every author of the batch has a head row, locks those
// rows in node order, and returns them. A new author's row has seq 0; it is
// either advanced by this transaction or rolled back with it.
func lockHeads(ctx context.Context, tx pgx.Tx, ev []byte, runs []run) (map[ledger.NodeID]head, error) {
	if len(runs) == 0 {
		return nil, nil
	}
	nodes := make([][]byte, len(runs))
	for i, r := range runs {
		nodes[i] = r.node[:]
	}
	var q pgx.Batch
	q.Queue(`INSERT INTO canopy.heads (event, node, seq, hash)
		SELECT $1, n, 0, $3 FROM unnest($2::bytea[]) AS n
		ON CONFLICT (event, node) DO NOTHING`, ev, nodes, make([]byte, ledger.HashSize))
	q.Queue(`SELECT node, seq, hash FROM canopy.heads
		WHERE event = $1 AND node = ANY($2::bytea[]) ORDER BY node FOR UPDATE`, ev, nodes)
	br := tx.SendBatch(ctx, &q)
	defer br.Close()
	if _, err := br.Exec(); err != nil {
		return nil, err
	}
	rows, err := br.Query()
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	heads := make(map[ledger.NodeID]head, len(runs))
	for rows.Next() {
		var node, hash []byte
		var seq int64
		if err := rows.Scan(&node, &seq, &hash); err != nil {
			return nil, err
		}
		if len(node) != ledger.NodeIDSize || len(hash) != ledger.HashSize || seq < 0 {
			return nil, fmt.Errorf("stored head of node %x is damaged (%d-byte hash, seq %d)", node, len(hash), seq)
		}
		heads[ledger.NodeID(node)] = head{seq: uint64(seq), hash: ledger.Hash(hash)}
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if len(heads) != len(runs) {
		return nil, fmt.Errorf("locked %d head rows for %d authors", len(heads), len(runs))
	}
	return heads, nil
}

// storedHashes reads, for each run that re-delivers entries below its
// author's head, the stored hashes of those entries.
func storedHashes(ctx context.Context, tx pgx.Tx, ev []byte, runs []run, heads map[ledger.NodeID]head) (map[ledger.NodeID]map[uint64]ledger.Hash, error) {
	var q pgx.Batch
	var asked []ledger.NodeID
	for _, r := range runs {
		h := heads[r.node]
		var seqs []int64
		for _, w := range r.rows {
			if w.e.Seq >= h.seq {
				break
			}
			seqs = append(seqs, int64(w.e.Seq))
		}
		if len(seqs) == 0 {
			continue
		}
		q.Queue(`SELECT seq, hash FROM canopy.entries WHERE event = $1 AND node = $2 AND seq = ANY($3::bigint[])`,
			ev, r.node[:], seqs)
		asked = append(asked, r.node)
	}
	if len(asked) == 0 {
		return nil, nil
	}
	br := tx.SendBatch(ctx, &q)
	defer br.Close()
	out := make(map[ledger.NodeID]map[uint64]ledger.Hash, len(asked))
	for _, node := range asked {
		rows, err := br.Query()
		if err != nil {
			return nil, err
		}
		m := map[uint64]ledger.Hash{}
		for rows.Next() {
			var seq int64
			var hash []byte
			if err := rows.Scan(&seq, &hash); err != nil {
				rows.Close()
				return nil, err
			}
			if len(hash) != ledger.HashSize {
				rows.Close()
				return nil, fmt.Errorf("stored entry %s seq %d has a %d-byte hash", node, seq, len(hash))
			}
			m[uint64(seq)] = ledger.Hash(hash)
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
		out[node] = m
	}
	return out, nil
}

// newRows checks a run against the author's stored log and returns the rows
// not stored yet. Rows already stored must be identical; the first new one
// must follow the stored head.
func newRows(event string, r run, h head, stored map[uint64]ledger.Hash) ([]row, error) {
	rows := r.rows
	for len(rows) > 0 && rows[0].e.Seq <= h.seq {
		w := rows[0]
		have, ok := h.hash, true
		if w.e.Seq < h.seq {
			have, ok = stored[w.e.Seq]
		}
		if !ok {
			return nil, fmt.Errorf("author %s: head is at seq %d but seq %d is not stored", r.node, h.seq, w.e.Seq)
		}
		if have != w.hash {
			return nil, fmt.Errorf("%w: event %q author %s seq %d: stored entry %s, batch has %s",
				store.ErrConflict, event, r.node, w.e.Seq, have, w.hash)
		}
		rows = rows[1:]
	}
	if len(rows) == 0 {
		return nil, nil
	}
	first := rows[0]
	if first.e.Seq != h.seq+1 {
		return nil, fmt.Errorf("%w: event %q author %s: batch starts at seq %d, stored log ends at %d",
			store.ErrConflict, event, r.node, first.e.Seq, h.seq)
	}
	if first.e.Prev != h.hash {
		return nil, fmt.Errorf("%w: event %q author %s seq %d: prev %s is not the hash of stored seq %d (%s)",
			store.ErrConflict, event, r.node, first.e.Seq, first.e.Prev, h.seq, h.hash)
	}
	return rows, nil
}

// insertBytes caps the entry bytes one INSERT carries, well below the
// server's 1 GiB message limit.
const insertBytes = 32 << 20

// queueEntries queues multi-row inserts of rows, each checked to have
// inserted every row it carried: with the heads locked none can exist yet,
// so a skipped one means the log was written around the heads table.
func queueEntries(q *pgx.Batch, checks *[]func(pgx.BatchResults) error, event string, rows []row) {
	ev := []byte(event)
	for len(rows) > 0 {
		n, size := 0, 0
		for n < len(rows) && (n == 0 || size+len(rows[n].data) <= insertBytes) {
			size += len(rows[n].data)
			n++
		}
		chunk := rows[:n]
		rows = rows[n:]
		var (
			nodes, hashes, kinds, keys, data = make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n), make([][]byte, n)
			seqs, walls, logicals            = make([]int64, n), make([]int64, n), make([]int64, n)
		)
		for i, w := range chunk {
			nodes[i], seqs[i], hashes[i] = w.e.Node[:], int64(w.e.Seq), w.hash[:]
			walls[i], logicals[i] = w.e.HLC.Wall, int64(w.e.HLC.Logical)
			kinds[i], keys[i], data[i] = []byte(w.e.Kind), []byte(w.e.Key), w.data
		}
		q.Queue(`INSERT INTO canopy.entries (event, node, seq, hash, hlc_wall, hlc_logical, kind, key, data)
			SELECT $1, u.node, u.seq, u.hash, u.wall, u.logical, u.kind, u.key, u.data
			FROM unnest($2::bytea[], $3::bigint[], $4::bytea[], $5::bigint[], $6::bigint[], $7::bytea[], $8::bytea[], $9::bytea[])
				AS u(node, seq, hash, wall, logical, kind, key, data)
			ON CONFLICT (event, node, seq) DO NOTHING`,
			ev, nodes, seqs, hashes, walls, logicals, kinds, keys, data)
		*checks = append(*checks, func(br pgx.BatchResults) error {
			tag, err := br.Exec()
			if err != nil {
				return err
			}
			if tag.RowsAffected() != int64(n) {
				return fmt.Errorf("%w: event %q: %d of %d new entries were already stored without a head that covers them",
					store.ErrConflict, event, int64(n)-tag.RowsAffected(), n)
			}
			return nil
		})
	}
}

// queueViews queues the upsert of rows with a value and the deletion of
// rows without one (rows holds one row per key).
func queueViews(q *pgx.Batch, event string, rows []store.ViewRow) {
	var putViews, putKeys, putValues, delViews, delKeys [][]byte
	for _, v := range rows {
		if v.Value == nil {
			delViews, delKeys = append(delViews, []byte(v.View)), append(delKeys, []byte(v.Key))
			continue
		}
		putViews, putKeys, putValues = append(putViews, []byte(v.View)), append(putKeys, []byte(v.Key)), append(putValues, v.Value)
	}
	ev := []byte(event)
	if len(delViews) > 0 {
		q.Queue(`DELETE FROM canopy.views t USING unnest($2::bytea[], $3::bytea[]) AS u(view, key)
			WHERE t.event = $1 AND t.view = u.view AND t.key = u.key`, ev, delViews, delKeys)
	}
	if len(putViews) > 0 {
		q.Queue(`INSERT INTO canopy.views (event, view, key, value)
			SELECT $1, u.view, u.key, u.value FROM unnest($2::bytea[], $3::bytea[], $4::bytea[]) AS u(view, key, value)
			ON CONFLICT (event, view, key) DO UPDATE SET value = excluded.value`, ev, putViews, putKeys, putValues)
	}
}

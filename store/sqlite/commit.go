package sqlite

import (
	"bytes"
	"cmp"
	"context"
	"crypto/sha256"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"slices"

	"canopy/ledger"
	"canopy/store"
)

// row is one entry of a batch, encoded and checked before the writer is
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

// plan checks a batch without touching the database and groups its entries
// into runs, one per author, in the order authors first appear.
func plan(b *store.Batch) ([]run, error) {
	if b == nil {
		return nil, fmt.Errorf("%w: nil batch", store.ErrInvalid)
	}
	if b.Event == "" {
		return nil, fmt.Errorf("%w: no event", store.ErrInvalid)
	}
	var runs []run
	index := map[ledger.NodeID]int{}
	for i, s := range b.Entries {
		e := s.Entry
		if err := checkEntry(b.Event, i, s); err != nil {
			return nil, err
		}
		data := e.Encode()
		if h := ledger.Hash(sha256.Sum256(data)); h != s.Hash {
			return nil, fmt.Errorf("%w: entry %d (%s seq %d): hash %s given, entry hashes to %s", store.ErrInvalid, i, e.Node, e.Seq, s.Hash, h)
		}
		j, ok := index[e.Node]
		if !ok {
			j = len(runs)
			index[e.Node] = j
			runs = append(runs, run{node: e.Node})
		}
		runs[j].rows = append(runs[j].rows, row{e: e, hash: s.Hash, data: data})
	}
	for i := range runs {
		r := &runs[i]
		slices.SortStableFunc(r.rows, func(x, y row) int { return cmp.Compare(x.e.Seq, y.e.Seq) })
		out := r.rows[:1]
		for _, w := range r.rows[1:] {
			last := out[len(out)-1]
			switch {
			case w.e.Seq == last.e.Seq && w.hash == last.hash:
				continue // the same entry twice
			case w.e.Seq == last.e.Seq:
				return nil, fmt.Errorf("%w: event %q author %s seq %d: two different entries in one batch (%s, %s)",
					store.ErrConflict, b.Event, r.node, w.e.Seq, last.hash, w.hash)
			case w.e.Seq != last.e.Seq+1:
				return nil, fmt.Errorf("%w: event %q author %s: gap in batch between seq %d and %d",
					store.ErrConflict, b.Event, r.node, last.e.Seq, w.e.Seq)
			case w.e.Prev != last.hash:
				return nil, fmt.Errorf("%w: event %q author %s seq %d: prev %s is not the hash of seq %d (%s)",
					store.ErrConflict, b.Event, r.node, w.e.Seq, w.e.Prev, last.e.Seq, last.hash)
			}
			out = append(out, w)
		}
		r.rows = out
	}
	for i, th := range b.TreeHashes {
		if th.Index < 0 {
			return nil, fmt.Errorf("%w: tree hash %d: negative index %d", store.ErrInvalid, i, th.Index)
		}
	}
	for i, c := range b.Checkpoints {
		if c.Size > math.MaxInt64 {
			return nil, fmt.Errorf("%w: checkpoint %d: size %d too large", store.ErrInvalid, i, c.Size)
		}
	}
	if err := checkViews(b.Views); err != nil {
		return nil, err
	}
	return runs, nil
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

// Commit implements store.Store. The context bounds the wait for the writer;
// once the transaction has begun it runs to its end.
func (s *Store) Commit(ctx context.Context, b *store.Batch) error {
	if err := s.enter(); err != nil {
		return err
	}
	defer s.leave()
	runs, err := plan(b)
	if err != nil {
		return err
	}
	return s.write(ctx, "commit", func(tx *sql.Tx) (viewWrite, error) {
		written, err := s.apply(ctx, tx, b, runs)
		return viewWrite{event: b.Event, rows: written}, err
	})
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
	return s.write(ctx, "replace views", func(tx *sql.Tx) (viewWrite, error) {
		vw := viewWrite{event: event, all: true}
		if _, err := tx.Stmt(s.ws.delViews).Exec(event); err != nil {
			return vw, err
		}
		put := tx.Stmt(s.ws.putView)
		for _, r := range rows {
			if r.Value == nil {
				continue
			}
			if _, err := put.Exec(event, r.View, r.Key, r.Value); err != nil {
				return vw, err
			}
		}
		return vw, nil
	})
}

// write runs fn in one transaction on the writer connection. The view rows
// fn says it wrote leave the cache before the transaction commits (so that
// no reader can see a newer value in the database and then an older one in
// the cache) and come back once it has, before the next write begins.
func (s *Store) write(ctx context.Context, op string, fn func(tx *sql.Tx) (viewWrite, error)) error {
	if s.readOnly {
		return fmt.Errorf("%s: %w", op, ErrReadOnly)
	}
	select {
	case s.wsem <- struct{}{}:
	case <-ctx.Done():
		return fmt.Errorf("%s: %w", op, ctx.Err())
	}
	defer func() { <-s.wsem }()
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("%s: %w", op, err)
	}
	// Without cancellation, the driver does not watch the context on every
	// statement; the transaction is short and must not end half-way.
	tctx := context.WithoutCancel(ctx)
	tx, err := s.w.BeginTx(tctx, nil)
	if err != nil {
		return classify(op, err)
	}
	vw, err := fn(tx)
	if err != nil {
		tx.Rollback()
		if errors.Is(err, store.ErrConflict) || errors.Is(err, store.ErrInvalid) || errors.Is(err, store.ErrStaleView) {
			return err
		}
		return classify(op, err)
	}
	s.cache.hold(vw)
	defer s.cache.release()
	if err := tx.Commit(); err != nil {
		return classify(op, err)
	}
	s.cache.committed(vw)
	return nil
}

// apply writes a planned batch inside tx and returns the view rows it wrote.
func (s *Store) apply(ctx context.Context, tx *sql.Tx, b *store.Batch, runs []run) ([]store.ViewRow, error) {
	ev := b.Event
	ins := s.newInserter(tx, ev)
	for _, r := range runs {
		rows, err := s.newRows(tx, ev, r)
		if err != nil {
			return nil, err
		}
		if len(rows) == 0 {
			continue
		}
		last := rows[len(rows)-1]
		if _, err := tx.Stmt(s.ws.putHead).Exec(ev, r.node[:], int64(last.e.Seq), last.hash[:]); err != nil {
			return nil, err
		}
		if err := s.insertEntries(ins, r.node, rows); err != nil {
			return nil, err
		}
	}

	if err := s.insertTreeHashes(ins, b.TreeHashes); err != nil {
		return nil, err
	}

	if len(b.Checkpoints) > 0 {
		put := tx.Stmt(s.ws.putCP)
		for _, c := range b.Checkpoints {
			note := c.Note
			if note == nil {
				note = []byte{}
			}
			res, err := put.Exec(ev, c.Node[:], int64(c.Size), c.Root[:], note)
			if err != nil {
				return nil, err
			}
			if n, err := res.RowsAffected(); err != nil {
				return nil, err
			} else if n == 0 {
				return nil, fmt.Errorf("%w: event %q author %s: a checkpoint of size %d with another root than %s is stored",
					store.ErrConflict, ev, c.Node, c.Size, c.Root)
			}
		}
	}

	views := b.Views
	if b.CheckViews {
		// The writer connection is the only one: nobody changes a row
		// between these reads and the commit.
		at := tx.Stmt(s.ws.viewAt)
		err := checkPriors(at, ev, views)
		if errors.Is(err, store.ErrStaleView) && b.Refold != nil {
			views, err = b.Refold(ctx, func(_ context.Context, keys []store.ViewKey) ([][]byte, error) {
				return readViewsAt(at, ev, keys)
			})
			if err == nil {
				err = checkViews(views)
			}
		}
		if err != nil {
			return nil, err
		}
	}
	if len(views) > 0 {
		put, del := tx.Stmt(s.ws.putView), tx.Stmt(s.ws.delView)
		for _, v := range views {
			var err error
			if v.Value == nil {
				_, err = del.Exec(ev, v.View, v.Key)
			} else {
				_, err = put.Exec(ev, v.View, v.Key, v.Value)
			}
			if err != nil {
				return nil, err
			}
		}
	}
	return views, nil
}

// readViewsAt reads view rows one by one with the statement at (nil for a
// missing row).
func readViewsAt(at *sql.Stmt, ev string, keys []store.ViewKey) ([][]byte, error) {
	out := make([][]byte, len(keys))
	for i, k := range keys {
		err := at.QueryRow(ev, k.View, k.Key).Scan(&out[i])
		if err != nil && !errors.Is(err, sql.ErrNoRows) {
			return nil, err
		}
	}
	return out, nil
}

// checkPriors returns ErrStaleView unless every view row's stored value is
// the Prior of the batch's first row for its key.
func checkPriors(at *sql.Stmt, ev string, rows []store.ViewRow) error {
	seen := make(map[store.ViewKey]bool, len(rows))
	for _, v := range rows {
		k := store.ViewKey{View: v.View, Key: v.Key}
		if seen[k] {
			continue
		}
		seen[k] = true
		var cur []byte
		err := at.QueryRow(ev, v.View, v.Key).Scan(&cur)
		switch {
		case errors.Is(err, sql.ErrNoRows):
			if v.Prior != nil {
				return fmt.Errorf("%w: event %q view %s key %q was deleted", store.ErrStaleView, ev, v.View, v.Key)
			}
		case err != nil:
			return err
		case v.Prior == nil || !bytes.Equal(cur, v.Prior):
			return fmt.Errorf("%w: event %q view %s key %q", store.ErrStaleView, ev, v.View, v.Key)
		}
	}
	return nil
}

// insertTreeHashes writes tree hashes, an author's at a time, in as few
// statements as it can. A hash already stored must be the same.
func (s *Store) insertTreeHashes(ins *inserter, ths []store.TreeHash) error {
	var at *sql.Stmt
	for _, g := range byNode(ths) {
		for len(g) > 0 {
			k, i := chunkOf(len(g), treeChunk)
			args := ins.start(g[0].Node, k*treeParams)
			for _, th := range g[:k] {
				args = append(args, th.Index, th.Hash[:])
			}
			res, err := ins.stmt(s.ws.insertTrees, i, ins.trees).Exec(args...)
			if err != nil {
				return err
			}
			n, err := res.RowsAffected()
			if err != nil {
				return err
			}
			if n != int64(k) {
				// Some were stored before: they must be the same.
				if at == nil {
					at = ins.tx.Stmt(s.ws.treeAt)
				}
				for _, th := range g[:k] {
					var stored []byte
					if err := at.QueryRow(ins.ev, th.Node[:], th.Index).Scan(&stored); err != nil {
						return err
					}
					if !bytes.Equal(stored, th.Hash[:]) {
						return fmt.Errorf("%w: event %q author %s tree hash %d: stored %x, batch has %s",
							store.ErrConflict, ins.ev, th.Node, th.Index, stored, th.Hash)
					}
				}
			}
			g = g[k:]
		}
	}
	return nil
}

// byNode splits tree hashes into one group per author, in the order
// authors first appear, keeping each author's hashes in order. A slice of
// one author's hashes is returned whole, without copying.
func byNode(ths []store.TreeHash) [][]store.TreeHash {
	if len(ths) == 0 {
		return nil
	}
	one := true
	for _, th := range ths[1:] {
		if th.Node != ths[0].Node {
			one = false
			break
		}
	}
	if one {
		return [][]store.TreeHash{ths}
	}
	var groups [][]store.TreeHash
	index := map[ledger.NodeID]int{}
	for _, th := range ths {
		j, ok := index[th.Node]
		if !ok {
			j = len(groups)
			index[th.Node] = j
			groups = append(groups, nil)
		}
		groups[j] = append(groups[j], th)
	}
	return groups
}

// newRows checks a run against the author's stored log and returns the rows
// not stored yet. Rows already stored must be identical; the first new one
// must follow the stored head.
func (s *Store) newRows(tx *sql.Tx, ev string, r run) ([]row, error) {
	var headSeq int64
	var headHash []byte
	err := tx.Stmt(s.ws.head).QueryRow(ev, r.node[:]).Scan(&headSeq, &headHash)
	switch {
	case errors.Is(err, sql.ErrNoRows):
		headSeq, headHash = 0, make([]byte, ledger.HashSize)
	case err != nil:
		return nil, err
	}
	head := uint64(headSeq)
	rows := r.rows
	// Rows at or below the head must already be stored, byte for byte.
	for len(rows) > 0 && rows[0].e.Seq <= head {
		w := rows[0]
		stored := headHash
		if w.e.Seq < head {
			if err := tx.Stmt(s.ws.hashAt).QueryRow(ev, r.node[:], int64(w.e.Seq)).Scan(&stored); err != nil {
				return nil, fmt.Errorf("read stored seq %d: %w", w.e.Seq, err)
			}
		}
		if !bytes.Equal(stored, w.hash[:]) {
			return nil, fmt.Errorf("%w: event %q author %s seq %d: stored entry %x, batch has %s",
				store.ErrConflict, ev, r.node, w.e.Seq, stored, w.hash)
		}
		rows = rows[1:]
	}
	if len(rows) == 0 {
		return nil, nil
	}
	first := rows[0]
	if first.e.Seq != head+1 {
		return nil, fmt.Errorf("%w: event %q author %s: batch starts at seq %d, stored log ends at %d",
			store.ErrConflict, ev, r.node, first.e.Seq, head)
	}
	if !bytes.Equal(first.e.Prev[:], headHash) {
		return nil, fmt.Errorf("%w: event %q author %s seq %d: prev %s is not the hash of stored seq %d (%x)",
			store.ErrConflict, ev, r.node, first.e.Seq, first.e.Prev, head, headHash)
	}
	return rows, nil
}

// inserter holds what the multi-row inserts of one transaction share:
// the statements taken into it and an argument slice reused by each.
type inserter struct {
	tx      *sql.Tx
	ev      string
	args    []any
	entries []*sql.Stmt // by chunk index, taken on first use
	trees   []*sql.Stmt
}

func (s *Store) newInserter(tx *sql.Tx, ev string) *inserter {
	return &inserter{tx: tx, ev: ev, entries: make([]*sql.Stmt, len(s.ws.insertEntries)),
		trees: make([]*sql.Stmt, len(s.ws.insertTrees))}
}

// start begins the arguments of one statement for author node, with room
// for n more.
func (ins *inserter) start(node ledger.NodeID, n int) []any {
	if cap(ins.args) < 2+n {
		ins.args = make([]any, 0, 2+n)
	}
	ins.args = append(ins.args[:0], ins.ev, node[:])
	return ins.args
}

// stmt returns prepared statement i of sts within the transaction.
func (ins *inserter) stmt(sts []*sql.Stmt, i int, taken []*sql.Stmt) *sql.Stmt {
	if taken[i] == nil {
		taken[i] = ins.tx.Stmt(sts[i])
	}
	return taken[i]
}

// insertEntries writes one author's new rows with as few statements as it
// can: whole chunks of insertChunk rows, then one statement per power of
// two left.
func (s *Store) insertEntries(ins *inserter, node ledger.NodeID, rows []row) error {
	for len(rows) > 0 {
		k, i := chunkOf(len(rows), insertChunk)
		args := ins.start(node, k*entryParams)
		for _, w := range rows[:k] {
			args = append(args, int64(w.e.Seq), w.hash[:], w.e.HLC.Wall, int64(w.e.HLC.Logical), w.e.Kind, w.e.Key, w.data)
		}
		if _, err := ins.stmt(s.ws.insertEntries, i, ins.entries).Exec(args...); err != nil {
			return err
		}
		rows = rows[k:]
	}
	return nil
}

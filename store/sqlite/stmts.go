package sqlite

import (
	"context"
	"database/sql"
	"fmt"
	"math/bits"
	"strings"
)

// entryCols are the columns a read selects to rebuild a store.Stored.
const entryCols = `hash, data, node, seq`

// insertChunk is the most entries one multi-row INSERT carries. Inserts
// of 1, 2, 4, … insertChunk rows are prepared, so any number of rows is
// written with one statement per set bit of it (after whole chunks).
const insertChunk = 128

// treeChunk is the most tree hashes one multi-row INSERT carries, with the
// same powers of two below it.
const treeChunk = 256

// entryParams is how many parameters each row of an entries insert binds
// after the two the statement shares (?1 event, ?2 node).
const entryParams = 7

// treeParams is likewise for a tree hashes insert.
const treeParams = 2

// chunkSizes returns how many prepared sizes 1, 2, 4, … max are.
func chunkSizes(max int) int { return bits.Len(uint(max)) }

// chunkOf returns the largest prepared size, a power of two at most max,
// that n rows fill, and that size's index in the prepared statements.
func chunkOf(n, max int) (size, index int) {
	index = bits.Len(uint(min(n, max))) - 1
	return 1 << index, index
}

// rowsSQL returns k value tuples that start with the shared parameters
// ?1 and ?2 and then take per anonymous parameters each, numbered from 3 in
// order. (Naming them all would make binding quadratic: SQLite looks a
// parameter's name up in a list of every named one.)
func rowsSQL(k, per int) string {
	tuple := "(?1, ?2" + strings.Repeat(", ?", per) + ")"
	return strings.TrimSuffix(strings.Repeat(tuple+", ", k), ", ")
}

// writeStmts are prepared once on the writer connection and reused by every
// commit.
type writeStmts struct {
	head   *sql.Stmt
	hashAt *sql.Stmt
	// insertEntries[i] writes 1<<i entries of one author.
	insertEntries []*sql.Stmt
	putHead       *sql.Stmt
	// insertTrees[i] writes 1<<i tree hashes of one author.
	insertTrees []*sql.Stmt
	treeAt      *sql.Stmt
	putCP       *sql.Stmt
	putView     *sql.Stmt
	delView     *sql.Stmt
	delViews    *sql.Stmt
	viewAt      *sql.Stmt
}

func (ws *writeStmts) prepare(ctx context.Context, db *sql.DB) error {
	// OR ROLLBACK: the checks before the insert rule out a duplicate key, so
	// SQLite need not keep a statement journal to undo half a statement.
	// The event and the author are bound once per statement, not per row.
	const insert = `INSERT OR ROLLBACK INTO entries (event, node, seq, hash, hlc_wall, hlc_logical, kind, key, data) VALUES `
	var ps []prep
	ws.insertEntries = make([]*sql.Stmt, chunkSizes(insertChunk))
	for i := range ws.insertEntries {
		ps = append(ps, prep{&ws.insertEntries[i], insert + rowsSQL(1<<i, entryParams)})
	}
	ws.insertTrees = make([]*sql.Stmt, chunkSizes(treeChunk))
	for i := range ws.insertTrees {
		ps = append(ps, prep{&ws.insertTrees[i], `INSERT INTO tree_hashes (event, node, idx, hash) VALUES ` +
			rowsSQL(1<<i, treeParams) + ` ON CONFLICT (event, node, idx) DO NOTHING`})
	}
	return prepareAll(ctx, db, append(ps, []prep{
		{&ws.head, `SELECT seq, hash FROM heads WHERE event = ? AND node = ?`},
		{&ws.hashAt, `SELECT hash FROM entries WHERE event = ? AND node = ? AND seq = ?`},
		{&ws.putHead, `INSERT INTO heads (event, node, seq, hash) VALUES (?, ?, ?, ?)
			ON CONFLICT (event, node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`},
		{&ws.treeAt, `SELECT hash FROM tree_hashes WHERE event = ? AND node = ? AND idx = ?`},
		{&ws.putCP, `INSERT INTO checkpoints (event, node, size, root, note) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (event, node, size) DO UPDATE SET note = excluded.note WHERE root = excluded.root`},
		{&ws.putView, `INSERT INTO views (event, view, key, value) VALUES (?, ?, ?, ?)
			ON CONFLICT (event, view, key) DO UPDATE SET value = excluded.value`},
		{&ws.delView, `DELETE FROM views WHERE event = ? AND view = ? AND key = ?`},
		{&ws.delViews, `DELETE FROM views WHERE event = ?`},
		{&ws.viewAt, `SELECT value FROM views WHERE event = ? AND view = ? AND key = ?`},
	}...))
}

func (ws *writeStmts) close() {
	closeAll(ws.insertEntries...)
	closeAll(ws.insertTrees...)
	closeAll(ws.head, ws.hashAt, ws.putHead, ws.treeAt, ws.putCP, ws.putView, ws.delView, ws.delViews, ws.viewAt)
}

// readStmts are prepared once on the read pool.
type readStmts struct {
	head        *sql.Stmt
	vector      *sql.Stmt
	entries     *sql.Stmt
	encoded     *sql.Stmt
	byKey       *sql.Stmt
	scan        *sql.Stmt
	treeAt      *sql.Stmt
	latestCP    *sql.Stmt
	checkpoints *sql.Stmt
	view        *sql.Stmt
	viewRows    *sql.Stmt
}

func (rs *readStmts) prepare(ctx context.Context, db *sql.DB) error {
	return prepareAll(ctx, db, []prep{
		{&rs.head, `SELECT seq, hash FROM heads WHERE event = ? AND node = ?`},
		{&rs.vector, `SELECT node, seq FROM heads WHERE event = ?`},
		{&rs.entries, `SELECT ` + entryCols + ` FROM entries
			WHERE event = ? AND node = ? AND seq BETWEEN ? AND ? ORDER BY seq LIMIT ?`},
		{&rs.encoded, `SELECT data FROM entries
			WHERE event = ? AND node = ? AND seq BETWEEN ? AND ? ORDER BY seq LIMIT ?`},
		{&rs.byKey, `SELECT ` + entryCols + ` FROM entries
			WHERE event = ? AND key = ? ORDER BY hlc_wall, hlc_logical, node, seq`},
		{&rs.scan, `SELECT ` + entryCols + ` FROM entries
			WHERE event = ? AND (hlc_wall, hlc_logical, node, seq) > (?, ?, ?, ?)
			ORDER BY hlc_wall, hlc_logical, node, seq LIMIT ?`},
		{&rs.treeAt, `SELECT hash FROM tree_hashes WHERE event = ? AND node = ? AND idx = ?`},
		{&rs.latestCP, `SELECT size, root, note FROM checkpoints
			WHERE event = ? AND node = ? ORDER BY size DESC LIMIT 1`},
		{&rs.checkpoints, `SELECT size, root, note FROM checkpoints
			WHERE event = ? AND node = ? ORDER BY size`},
		{&rs.view, `SELECT value FROM views WHERE event = ? AND view = ? AND key = ?`},
		{&rs.viewRows, `SELECT key, value FROM views WHERE event = ? AND view = ? ORDER BY key`},
	})
}

func (rs *readStmts) close() {
	closeAll(rs.head, rs.vector, rs.entries, rs.encoded, rs.byKey, rs.scan, rs.treeAt, rs.latestCP,
		rs.checkpoints, rs.view, rs.viewRows)
}

type prep struct {
	dst   **sql.Stmt
	query string
}

func prepareAll(ctx context.Context, db *sql.DB, ps []prep) error {
	for _, p := range ps {
		st, err := db.PrepareContext(ctx, p.query)
		if err != nil {
			return fmt.Errorf("%s: %w", p.query, err)
		}
		*p.dst = st
	}
	return nil
}

func closeAll(sts ...*sql.Stmt) {
	for _, st := range sts {
		if st != nil {
			st.Close()
		}
	}
}

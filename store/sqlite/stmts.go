package sqlite

import (
	"context"
	"database/sql"
	"fmt"
)

// entryCols are the columns a read selects to rebuild a store.Stored.
const entryCols = `hash, data, node, seq`

// insertChunk is how many entries one multi-row INSERT carries; a batch is
// written in chunks of this size and single-row inserts for the rest.
const insertChunk = 128

// treeChunk is how many tree hashes one multi-row INSERT carries.
const treeChunk = 256

// writeStmts are prepared once on the writer connection and reused by every
// commit.
type writeStmts struct {
	head        *sql.Stmt
	hashAt      *sql.Stmt
	insertEntry *sql.Stmt
	insertChunk *sql.Stmt
	putHead     *sql.Stmt
	insertTree  *sql.Stmt
	insertTrees *sql.Stmt // treeChunk rows
	treeAt      *sql.Stmt
	putCP       *sql.Stmt
	putView     *sql.Stmt
	delView     *sql.Stmt
	delViews    *sql.Stmt
	viewAt      *sql.Stmt
}

func (ws *writeStmts) prepare(ctx context.Context, db *sql.DB) error {
	values := "(?, ?, ?, ?, ?, ?, ?, ?, ?)"
	chunk := values
	for range insertChunk - 1 {
		chunk += ", " + values
	}
	trees := "(?, ?, ?, ?)"
	for range treeChunk - 1 {
		trees += ", (?, ?, ?, ?)"
	}
	// OR ROLLBACK: the checks before the insert rule out a duplicate key, so
	// SQLite need not keep a statement journal to undo half a statement.
	const insert = `INSERT OR ROLLBACK INTO entries (event, node, seq, hash, hlc_wall, hlc_logical, kind, key, data) VALUES `
	return prepareAll(ctx, db, []prep{
		{&ws.head, `SELECT seq, hash FROM heads WHERE event = ? AND node = ?`},
		{&ws.hashAt, `SELECT hash FROM entries WHERE event = ? AND node = ? AND seq = ?`},
		{&ws.insertEntry, insert + values},
		{&ws.insertChunk, insert + chunk},
		{&ws.putHead, `INSERT INTO heads (event, node, seq, hash) VALUES (?, ?, ?, ?)
			ON CONFLICT (event, node) DO UPDATE SET seq = excluded.seq, hash = excluded.hash`},
		{&ws.insertTree, `INSERT INTO tree_hashes (event, node, idx, hash) VALUES (?, ?, ?, ?)
			ON CONFLICT (event, node, idx) DO NOTHING`},
		{&ws.insertTrees, `INSERT INTO tree_hashes (event, node, idx, hash) VALUES ` + trees + `
			ON CONFLICT (event, node, idx) DO NOTHING`},
		{&ws.treeAt, `SELECT hash FROM tree_hashes WHERE event = ? AND node = ? AND idx = ?`},
		{&ws.putCP, `INSERT INTO checkpoints (event, node, size, root, note) VALUES (?, ?, ?, ?, ?)
			ON CONFLICT (event, node, size) DO UPDATE SET note = excluded.note WHERE root = excluded.root`},
		{&ws.putView, `INSERT INTO views (event, view, key, value) VALUES (?, ?, ?, ?)
			ON CONFLICT (event, view, key) DO UPDATE SET value = excluded.value`},
		{&ws.delView, `DELETE FROM views WHERE event = ? AND view = ? AND key = ?`},
		{&ws.delViews, `DELETE FROM views WHERE event = ?`},
		{&ws.viewAt, `SELECT value FROM views WHERE event = ? AND view = ? AND key = ?`},
	})
}

func (ws *writeStmts) close() {
	closeAll(ws.head, ws.hashAt, ws.insertEntry, ws.insertChunk, ws.putHead, ws.insertTree,
		ws.insertTrees, ws.treeAt, ws.putCP, ws.putView, ws.delView, ws.delViews, ws.viewAt)
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

// Package store declares how Canopy persists a node's view of its events:
// entries from any author, each author's Merkle tree hashes and signed
// checkpoints, and the derived view rows. Implementations live in
// sub-packages named after what they wrap (sqlite, postgres) and prove
// themselves against the conformance suite in storetest.
package store

import (
	"context"
	"errors"

	"canopy/ledger"
)

// Errors returned by every implementation. Callers test them with errors.Is.
var (
	// ErrNotFound: the entry, checkpoint or view row does not exist.
	ErrNotFound = errors.New("store: not found")
	// ErrConflict: a different entry is already stored at that (event, node, seq),
	// or the batch would leave a gap in an author's sequence.
	ErrConflict = errors.New("store: conflicting entry")
	// ErrUnavailable: the store could not make the write durable (disk full,
	// I/O error). Nothing of the batch was stored; the store remains valid and
	// later commits may succeed once the cause is gone.
	ErrUnavailable = errors.New("store: unavailable")
	// ErrClosed: the store has been closed.
	ErrClosed = errors.New("store: closed")
	// ErrInvalid: the batch is malformed (no event, an entry of another
	// event, a Stored.Hash that is not the entry's hash, a missing entry).
	// Nothing of the batch was stored; retrying it cannot succeed.
	ErrInvalid = errors.New("store: invalid batch")
	// ErrStaleView: a batch with CheckViews set and no Refold folded a view
	// row from a value that another writer has changed since (several
	// processes sharing one database). Nothing of the batch was stored.
	ErrStaleView = errors.New("store: view row changed since it was read")
)

// Stored is an entry as it is kept: the decoded entry and its hash.
type Stored struct {
	Entry *ledger.Entry
	Hash  ledger.Hash
}

// TreeHash is one stored hash of an author's RFC 6962 Merkle tree, at the
// index defined by golang.org/x/mod/sumdb/tlog.StoredHashIndex.
type TreeHash struct {
	Node  ledger.NodeID
	Index int64
	Hash  ledger.Hash
}

// ViewRow is one row of derived state: the value of entity Key in view View.
// A nil Value deletes the row.
type ViewRow struct {
	View  string
	Key   string
	Value []byte
	// Prior is the value Value was folded from (nil: the row was absent).
	// Commit compares it with the stored value when Batch.CheckViews is set;
	// it is ignored otherwise.
	Prior []byte
}

// ViewKey names one view row.
type ViewKey struct {
	View string
	Key  string
}

// Checkpoint is a signed checkpoint of one author's log.
type Checkpoint struct {
	Node ledger.NodeID
	Size uint64
	Root ledger.Hash
	Note []byte // the signed note text (C2SP tlog-checkpoint)
}

// Batch is everything one transaction writes for one event. Entries of one
// author must be consecutive in seq and continue that author's stored log
// (the first of them has seq 1 or follows the stored head), and each one's
// Prev must be the hash of the author's previous entry. Entries may appear in
// any order in the slice; authors may be interleaved. Views are applied in
// slice order, so a later row for the same key wins. A checkpoint of a size
// already stored replaces the stored note if the roots are equal (e.g. the
// same checkpoint with more cosignatures) and is a conflict otherwise.
//
// With CheckViews set, the batch's view rows are written only if nobody
// changed them since they were read: for each (view, key), the stored value
// must equal the Prior of the key's first row in the batch (absent for a nil
// Prior). If one does not, Commit calls Refold inside the transaction, with
// a reader of the stored values that keeps other writers of those rows out
// until the commit, and writes the rows it returns instead; without Refold
// it returns ErrStaleView and stores nothing. Writers that share a store
// with other processes set both (see journal.Config.Shared).
type Batch struct {
	Event       string
	Entries     []Stored
	TreeHashes  []TreeHash
	Views       []ViewRow
	Checkpoints []Checkpoint
	CheckViews  bool
	Refold      func(ctx context.Context, read ReadViewsFunc) ([]ViewRow, error)
}

// ReadViewsFunc returns the stored values of view rows, in the order of
// keys, nil for a row that does not exist.
type ReadViewsFunc func(ctx context.Context, keys []ViewKey) ([][]byte, error)

// Store persists entries, tree hashes, checkpoints and views. Implementations
// are safe for concurrent use.
type Store interface {
	// Commit writes the batch in one transaction and returns only once it is
	// durable. Entries already stored with the same hash are skipped, so
	// re-delivering a batch is harmless. It returns ErrConflict if an entry
	// differs from one stored at the same (event, node, seq) or would leave a
	// gap, or if a tree hash or checkpoint root differs from the stored one;
	// ErrUnavailable if the write could not be made durable; ErrInvalid if the
	// batch is malformed. In every error case nothing of the batch is stored.
	Commit(ctx context.Context, b *Batch) error

	// Head returns the highest seq stored for the author and that entry's hash,
	// or (0, zero hash, nil) if none is stored.
	Head(ctx context.Context, event string, node ledger.NodeID) (uint64, ledger.Hash, error)

	// Vector returns, per author, the highest seq stored for the event.
	Vector(ctx context.Context, event string) (map[ledger.NodeID]uint64, error)

	// Entries returns the author's entries with from <= seq <= to, in seq order,
	// at most limit of them (limit <= 0: no limit).
	Entries(ctx context.Context, event string, node ledger.NodeID, from, to uint64, limit int) ([]Stored, error)

	// EntriesByKey returns every entry of the event about key, from any
	// author, sorted by (hlc, node, seq).
	EntriesByKey(ctx context.Context, event, key string) ([]Stored, error)

	// Scan calls fn for every entry of the event, sorted by (hlc, node, seq),
	// until fn returns an error, which Scan returns.
	Scan(ctx context.Context, event string, fn func(Stored) error) error

	// ReadTreeHashes returns the author's stored tree hashes at the indexes,
	// in the same order; a missing one is ErrNotFound.
	ReadTreeHashes(ctx context.Context, event string, node ledger.NodeID, indexes []int64) ([]ledger.Hash, error)

	// LatestCheckpoint returns the largest stored checkpoint of the author,
	// or ErrNotFound.
	LatestCheckpoint(ctx context.Context, event string, node ledger.NodeID) (Checkpoint, error)

	// Checkpoints returns the author's stored checkpoints in increasing size.
	Checkpoints(ctx context.Context, event string, node ledger.NodeID) ([]Checkpoint, error)

	// View returns the value of one view row, or ErrNotFound.
	View(ctx context.Context, event, view, key string) ([]byte, error)

	// ViewRows returns every row of a view, sorted by key.
	ViewRows(ctx context.Context, event, view string) ([]ViewRow, error)

	// ViewPage returns at most limit rows of a view whose key sorts after
	// after (byte-wise), sorted by key: a page of a listing.
	ViewPage(ctx context.Context, event, view, after string, limit int) ([]ViewRow, error)

	// ReadViews returns the values of many rows in one round trip, in the
	// order of keys; a row that does not exist is nil (an existing empty
	// row is a non-nil empty slice).
	ReadViews(ctx context.Context, event string, keys []ViewKey) ([][]byte, error)

	// ReplaceViews deletes every view row of the event and writes rows in
	// one transaction (used when views are rebuilt from entries).
	ReplaceViews(ctx context.Context, event string, rows []ViewRow) error

	// Close releases the store. Commits in flight finish first.
	Close() error
}

// EncodedReader is implemented by stores that can return an author's
// entries in their encoded form (ledger.Entry.Encode) as stored, like
// Store.Entries, so that a sync sender streams them without decoding and
// encoding them again. The conformance suite checks it against Entries.
type EncodedReader interface {
	EncodedEntries(ctx context.Context, event string, node ledger.NodeID, from, to uint64, limit int) ([][]byte, error)
}

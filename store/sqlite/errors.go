package sqlite

import (
	"context"
	"errors"
	"fmt"
	"syscall"

	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"

	"canopy/store"
)

// classify wraps an error from the database for operation op. Conditions
// under which nothing can be made durable right now (a full disk, an I/O
// error, a read-only file system, a lock held elsewhere past the busy
// timeout) become store.ErrUnavailable with SQLite's message, for example
// "store: unavailable: commit: database or disk is full (13)".
func classify(op string, err error) error {
	if err == nil {
		return nil
	}
	if errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("%s: %w", op, err)
	}
	if transient(err) {
		return fmt.Errorf("%w: %s: %v", store.ErrUnavailable, op, err)
	}
	return fmt.Errorf("sqlite store: %s: %w", op, err)
}

// transient reports whether err means the storage cannot take writes now but
// may later.
func transient(err error) bool {
	var se *sqlite.Error
	if errors.As(err, &se) {
		switch se.Code() & 0xff {
		case sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR, sqlite3.SQLITE_READONLY,
			sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED, sqlite3.SQLITE_NOMEM,
			sqlite3.SQLITE_CANTOPEN, sqlite3.SQLITE_PROTOCOL:
			return true
		}
		return false
	}
	return errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EIO) ||
		errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EROFS)
}

package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"syscall"

	"github.com/jackc/pgx/v5/pgconn"

	"canopy/store"
)

// classify wraps an error from the database for operation op. Conditions
// under which nothing can be made durable right now (the connection is lost
// or refused, the server is shutting down or in recovery, the disk is full,
// the database is read-only, too many connections, an I/O error, retries of
// a serialization failure exhausted) become store.ErrUnavailable with the
// server's message, for example
// "store: unavailable: commit: ERROR: could not extend file ... (SQLSTATE 53100)".
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
	return fmt.Errorf("postgres store: %s: %w", op, err)
}

// transient reports whether err means the database cannot take writes now
// but may later.
func transient(err error) bool {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		if retryable(pe.Code) {
			return true
		}
		switch pe.Code[:2] {
		case "08", // connection exception
			"53", // insufficient resources: disk full, out of memory, too many connections
			"58": // system error: I/O error
			return true
		}
		switch pe.Code {
		case "25006", // read_only_sql_transaction (a standby, or default_transaction_read_only)
			"57P01", // admin_shutdown
			"57P02", // crash_shutdown
			"57P03", // cannot_connect_now (starting up, in recovery)
			"57P05", // idle_session_timeout
			"57014", // query_canceled (statement_timeout)
			"55P03": // lock_not_available (lock_timeout)
			return true
		}
		return false
	}
	var ce *pgconn.ConnectError
	var ne net.Error
	return errors.As(err, &ce) || errors.As(err, &ne) || pgconn.Timeout(err) ||
		errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) ||
		errors.Is(err, syscall.ECONNREFUSED) || errors.Is(err, syscall.ECONNRESET) ||
		errors.Is(err, syscall.EPIPE) || errors.Is(err, net.ErrClosed)
}

// retryable reports whether a transaction that failed with SQLSTATE code
// may succeed if run again from the start.
func retryable(code string) bool {
	return code == "40001" || // serialization_failure
		code == "40P01" // deadlock_detected
}

// isRetryable reports whether err is a serialization failure or deadlock.
func isRetryable(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && retryable(pe.Code)
}

// isUniqueViolation reports whether err is a unique_violation.
func isUniqueViolation(err error) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505"
}

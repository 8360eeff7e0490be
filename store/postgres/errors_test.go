package postgres

import (
	"context"
	"errors"
	"fmt"
	"io"
	"testing"

	"github.com/jackc/pgx/v5/pgconn"

	"canopy/store"
)

func TestClassify(t *testing.T) {
	pg := func(code string) error {
		return fmt.Errorf("exec: %w", &pgconn.PgError{Severity: "ERROR", Code: code, Message: "m"})
	}
	unavailable := map[string]error{
		"disk full":           pg("53100"),
		"out of memory":       pg("53200"),
		"too many conns":      pg("53300"),
		"read-only":           pg("25006"),
		"admin shutdown":      pg("57P01"),
		"crash shutdown":      pg("57P02"),
		"starting up":         pg("57P03"),
		"connection failure":  pg("08006"),
		"io error":            pg("58030"),
		"serialization":       pg("40001"),
		"deadlock":            pg("40P01"),
		"statement timeout":   pg("57014"),
		"connection lost":     io.ErrUnexpectedEOF,
		"connection closed":   fmt.Errorf("read: %w", io.EOF),
		"connect error":       &pgconn.ConnectError{},
		"lock timeout":        pg("55P03"),
		"idle session closed": pg("57P05"),
	}
	for name, err := range unavailable {
		if got := classify("commit", err); !errors.Is(got, store.ErrUnavailable) {
			t.Errorf("%s: classify = %v, want ErrUnavailable", name, got)
		}
	}
	other := map[string]error{
		"syntax error":     pg("42601"),
		"undefined table":  pg("42P01"),
		"unique violation": pg("23505"),
		"plain error":      errors.New("boom"),
	}
	for name, err := range other {
		got := classify("commit", err)
		if errors.Is(got, store.ErrUnavailable) {
			t.Errorf("%s: classify = %v, must not be ErrUnavailable", name, got)
		}
		if !errors.Is(got, err) {
			t.Errorf("%s: classify = %v, does not wrap the cause", name, got)
		}
	}
	if got := classify("commit", fmt.Errorf("x: %w", context.Canceled)); !errors.Is(got, context.Canceled) || errors.Is(got, store.ErrUnavailable) {
		t.Errorf("canceled: classify = %v, want context.Canceled only", got)
	}
}

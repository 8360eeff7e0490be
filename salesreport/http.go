package salesreport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"time"

	"canopy/api"
	"canopy/auth"
	"canopy/pos"
	"canopy/store"
)

// Path is the route of the report.
const Path = "/v1/reports/sales"

// Roles may read the report.
var Roles = []auth.Role{auth.RoleOrganizer, auth.RoleAdmin}

// Rows reads every row of one view of an event, sorted by key. A
// store.Store is one. Errors wrap store.ErrUnavailable or store.ErrClosed
// when the store cannot be read.
type Rows interface {
	ViewRows(ctx context.Context, event, view string) ([]store.ViewRow, error)
}

// ErrRange reports a bad from or to; it is wrapped by a *RangeError.
var ErrRange = errors.New("salesreport: invalid time range")

// RangeError names the parameter (from or to) that is wrong and why.
type RangeError struct {
	Parameter string
	Detail    string
}

func (e *RangeError) Error() string { return e.Parameter + ": " + e.Detail }

// Unwrap returns ErrRange.
func (e *RangeError) Unwrap() error { return ErrRange }

// ParseRange parses from and to as RFC 3339 times with an offset ("Z" or
// ±hh:mm). An empty from is the event's start, an empty to its end. It also
// returns the event's IANA time zone. Bad input is a *RangeError.
func ParseRange(ev *auth.Event, from, to string) (time.Time, time.Time, *time.Location, error) {
	loc, err := time.LoadLocation(ev.TimeZone)
	if err != nil {
		return time.Time{}, time.Time{}, nil, fmt.Errorf("event %q time zone %q: %w", ev.Slug, ev.TimeZone, err)
	}
	parse := func(name, v string, def time.Time) (time.Time, error) {
		if v == "" {
			return def, nil
		}
		t, err := time.Parse(time.RFC3339, v)
		if err != nil {
			return time.Time{}, &RangeError{Parameter: name, Detail: fmt.Sprintf("must be an RFC 3339 time with an offset, e.g. 2026-05-01T18:00:00+02:00, got %q", v)}
		}
		return t, nil
	}
	f, err := parse("from", from, ev.StartsAt)
	if err != nil {
		return time.Time{}, time.Time{}, nil, err
	}
	t, err := parse("to", to, ev.EndsAt)
	if err != nil {
		return time.Time{}, time.Time{}, nil, err
	}
	if !f.Before(t) {
		return time.Time{}, time.Time{}, nil, &RangeError{Parameter: "to", Detail: fmt.Sprintf("must be after from (%s), got %s", f.Format(time.RFC3339), t.Format(time.RFC3339))}
	}
	return f, t, loc, nil
}

// Orders reads the rows of the pos.orders view of an event.
func Orders(ctx context.Context, rows Rows, event string) ([]pos.Order, error) {
	rs, err := rows.ViewRows(ctx, event, pos.ViewOrders)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", pos.ViewOrders, err)
	}
	out := make([]pos.Order, len(rs))
	for i, r := range rs {
		if err := json.Unmarshal(r.Value, &out[i]); err != nil {
			return nil, fmt.Errorf("%s row %q does not decode: %w", pos.ViewOrders, r.Key, err)
		}
	}
	return out, nil
}

// Compute reads the event's orders and builds the report over [from, to)
// as ParseRange reads them. A report without orders is in the event's
// currency.
func Compute(ctx context.Context, rows Rows, ev *auth.Event, from, to string) (Report, error) {
	f, t, loc, err := ParseRange(ev, from, to)
	if err != nil {
		return Report{}, err
	}
	orders, err := Orders(ctx, rows, ev.Slug)
	if err != nil {
		return Report{}, err
	}
	rep := Build(orders, f, t, loc)
	if rep.Currency == "" {
		// No orders in range: the amounts (all zero) are in the event's.
		rep.Currency = ev.Currency
	}
	return rep, nil
}

// Register adds GET /v1/reports/sales (organizer, admin) to s, reading
// the orders of ev from rows.
func Register(s *api.Server, rows Rows, ev *auth.Event) {
	s.Handle(api.Route{
		Pattern: "GET " + Path,
		Roles:   Roles,
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			from, to, err := query(r.URL.Query())
			if err != nil {
				return err
			}
			rep, err := Compute(r.Context(), rows, ev, from, to)
			var re *RangeError
			if errors.As(err, &re) {
				return paramProblem(api.FieldError{Parameter: re.Parameter, Detail: re.Detail})
			}
			if err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusOK, rep)
		},
	})
}

// query returns the from and to parameters, refusing unknown or repeated
// ones.
func query(q url.Values) (string, string, error) {
	var errs []api.FieldError
	for _, name := range sortedKeys(q) {
		switch name {
		case "from", "to":
			if len(q[name]) > 1 {
				errs = append(errs, api.FieldError{Parameter: name, Detail: fmt.Sprintf("given %d times; give it once", len(q[name]))})
			}
		default:
			errs = append(errs, api.FieldError{Parameter: name, Detail: "unknown parameter; the parameters are from and to"})
		}
	}
	if len(errs) > 0 {
		return "", "", paramProblem(errs...)
	}
	return q.Get("from"), q.Get("to"), nil
}

func paramProblem(errs ...api.FieldError) *api.Problem {
	p := api.NewProblem(api.TypeInvalidParameter, "parameter %s: %s", errs[0].Parameter, errs[0].Detail)
	if len(errs) > 1 {
		p.Detail = fmt.Sprintf("%d query parameters are invalid", len(errs))
	}
	p.Errors = errs
	return p
}

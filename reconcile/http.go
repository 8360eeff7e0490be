package reconcile

import (
	"context"
	"fmt"
	"maps"
	"net/http"
	"slices"

	"canopy/api"
	"canopy/auth"
	"canopy/ledger"
	"canopy/store"
)

// Path is the route of the report on an edge.
const Path = "/v1/reconciliation"

// Roles may read the report.
var Roles = []auth.Role{auth.RoleOrganizer, auth.RoleAdmin}

// Source is what a report is read from; a store.Store is one. Errors wrap
// the store's (store.ErrUnavailable, store.ErrClosed).
type Source interface {
	Scan(ctx context.Context, event string, fn func(store.Stored) error) error
	ViewRows(ctx context.Context, event, view string) ([]store.ViewRow, error)
}

// Read builds the report of event from a node's store: every entry (bodies
// kept only for node.quarantined entries) and the rows of Views.
func Read(ctx context.Context, src Source, event string, opt Options) (Report, error) {
	var entries []store.Stored
	err := src.Scan(ctx, event, func(s store.Stored) error {
		e := &ledger.Entry{Node: s.Entry.Node, Seq: s.Entry.Seq, HLC: s.Entry.HLC, Kind: s.Entry.Kind, Key: s.Entry.Key}
		if e.Kind == KindNodeQuarantined {
			e.Body = s.Entry.Body
		}
		entries = append(entries, store.Stored{Entry: e, Hash: s.Hash})
		return nil
	})
	if err != nil {
		return Report{}, fmt.Errorf("reconcile: read entries: %w", err)
	}
	var rows []store.ViewRow
	for _, v := range Views {
		rs, err := src.ViewRows(ctx, event, v)
		if err != nil {
			return Report{}, fmt.Errorf("reconcile: read view %s: %w", v, err)
		}
		rows = append(rows, rs...)
	}
	return Build(event, entries, rows, opt), nil
}

// Register adds GET /v1/reconciliation (organizer, admin) to s: the report
// of event with the default options, as JSON carrying its hash.
func Register(s *api.Server, src Source, event string) {
	s.Handle(api.Route{
		Pattern: "GET " + Path,
		Roles:   Roles,
		Handler: func(w http.ResponseWriter, r *http.Request) error {
			if len(r.URL.Query()) > 0 {
				p := api.NewProblem(api.TypeInvalidParameter, "this route takes no query parameters")
				for _, name := range slices.Sorted(maps.Keys(r.URL.Query())) {
					p.Errors = append(p.Errors, api.FieldError{Parameter: name, Detail: "unknown parameter"})
				}
				return p
			}
			rep, err := Read(r.Context(), src, event, Options{})
			if err != nil {
				return err
			}
			return api.WriteJSON(w, http.StatusOK, rep)
		},
	})
}

// Package views derives state from entries: deterministic reducers fold the
// entries of each row, and the same entries always give byte-identical rows,
// whether folded as they are appended or rebuilt from the log.
package views

import (
	"bytes"
	"context"
	"fmt"
	"sort"

	"canopy/store"
)

// Reducer maintains one view. Row and Fold must be pure functions of their
// arguments, and folding a row's entries in (hlc, node, seq) order must give
// the same value on every node.
type Reducer interface {
	// View names the view (its rows are stored under this name).
	View() string
	// Rows returns the keys of the rows the entry affects (none if the
	// entry does not concern this view).
	Rows(s store.Stored) []string
	// Fold returns row key's value after the entry, given its current value
	// (nil when the row does not exist yet). It never fails: an entry the
	// reducer cannot use leaves the value unchanged. Folding the same
	// entries in any order must give the same value (reducers keep what
	// they need to be order-independent, e.g. the (hlc, node, seq) of the
	// fact that won), so nodes that received entries in different orders
	// agree.
	Fold(cur []byte, key string, s store.Stored) []byte
}

// Set is the list of reducers a node maintains.
type Set struct {
	reducers []Reducer
}

// NewSet returns a set of reducers. View names must be unique.
func NewSet(rs ...Reducer) (*Set, error) {
	seen := map[string]bool{}
	for _, r := range rs {
		if seen[r.View()] {
			return nil, fmt.Errorf("views: two reducers for view %q", r.View())
		}
		seen[r.View()] = true
	}
	return &Set{reducers: rs}, nil
}

// Default returns the set of views the ledger itself needs: the
// idempotency view. A node's full set (with the domain views) is
// canopy/viewset.All.
func Default() *Set {
	s, _ := NewSet(Idempotency{})
	return s
}

// ReadFunc returns the current values of many rows at once, in the order
// asked; a row that does not exist is nil.
type ReadFunc = store.ReadViewsFunc

// ReadEach adapts a one-row reader (which returns an error wrapping
// store.ErrNotFound for a missing row) to a ReadFunc.
func ReadEach(one func(ctx context.Context, view, key string) ([]byte, error)) ReadFunc {
	return func(ctx context.Context, keys []store.ViewKey) ([][]byte, error) {
		out := make([][]byte, len(keys))
		for i, k := range keys {
			v, err := one(ctx, k.View, k.Key)
			switch {
			case err == nil:
				out[i] = v
			case !isNotFound(err):
				return nil, err
			}
		}
		return out, nil
	}
}

// Apply folds entries, in the order given, into the rows they affect and
// returns the changed rows (one per row, its final value, with the value read
// as its Prior), sorted by view and key. Every row the entries touch is read
// with one call of read.
func (s *Set) Apply(ctx context.Context, read ReadFunc, entries []store.Stored) ([]store.ViewRow, error) {
	type touch struct {
		r   Reducer
		key store.ViewKey
		e   store.Stored
	}
	var steps []touch
	var keys []store.ViewKey
	seen := map[store.ViewKey]bool{}
	for _, e := range entries {
		for _, r := range s.reducers {
			for _, key := range r.Rows(e) {
				k := store.ViewKey{View: r.View(), Key: key}
				steps = append(steps, touch{r, k, e})
				if !seen[k] {
					seen[k] = true
					keys = append(keys, k)
				}
			}
		}
	}
	if len(keys) == 0 {
		return nil, nil
	}
	vals, err := read(ctx, keys)
	if err != nil {
		return nil, fmt.Errorf("views: read %d rows: %w", len(keys), err)
	}
	if len(vals) != len(keys) {
		return nil, fmt.Errorf("views: read %d rows, got %d values", len(keys), len(vals))
	}
	cur := make(map[store.ViewKey][]byte, len(keys))
	for i, k := range keys {
		cur[k] = vals[i]
	}
	for _, st := range steps {
		cur[st.key] = st.r.Fold(cur[st.key], st.key.Key, st.e)
	}
	rows := make([]store.ViewRow, 0, len(keys))
	for i, k := range keys {
		v := cur[k]
		if (v == nil) == (vals[i] == nil) && bytes.Equal(v, vals[i]) {
			continue // unchanged: nothing to write
		}
		rows = append(rows, store.ViewRow{View: k.View, Key: k.Key, Value: v, Prior: vals[i]})
	}
	sortRows(rows)
	return rows, nil
}

// Rebuild folds every entry of the event, in (hlc, node, seq) order, from
// empty views, and returns all rows sorted by view and key.
func (s *Set) Rebuild(ctx context.Context, st store.Store, event string) ([]store.ViewRow, error) {
	type rowID struct{ view, key string }
	cur := map[rowID][]byte{}
	err := st.Scan(ctx, event, func(e store.Stored) error {
		for _, r := range s.reducers {
			for _, key := range r.Rows(e) {
				id := rowID{r.View(), key}
				cur[id] = r.Fold(cur[id], key, e)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("views: rebuild: %w", err)
	}
	rows := make([]store.ViewRow, 0, len(cur))
	for id, v := range cur {
		if v != nil {
			rows = append(rows, store.ViewRow{View: id.view, Key: id.key, Value: v})
		}
	}
	sortRows(rows)
	return rows, nil
}

// Names returns the names of the views in the set.
func (s *Set) Names() []string {
	names := make([]string, len(s.reducers))
	for i, r := range s.reducers {
		names[i] = r.View()
	}
	return names
}

// Verify rebuilds the event's views from its entries and compares them with
// the stored rows byte for byte. It returns an error naming the first rows
// that differ.
func (s *Set) Verify(ctx context.Context, st store.Store, event string) error {
	rebuilt, err := s.Rebuild(ctx, st, event)
	if err != nil {
		return err
	}
	var stored []store.ViewRow
	for _, name := range s.Names() {
		rows, err := st.ViewRows(ctx, event, name)
		if err != nil {
			return fmt.Errorf("views: read %s: %w", name, err)
		}
		stored = append(stored, rows...)
	}
	sortRows(stored)
	return Diff(stored, rebuilt)
}

// Diff returns nil if the two sorted row lists are identical, or an error
// naming the first difference.
func Diff(stored, rebuilt []store.ViewRow) error {
	i, j := 0, 0
	for i < len(stored) || j < len(rebuilt) {
		switch {
		case j == len(rebuilt) || (i < len(stored) && less(stored[i], rebuilt[j])):
			return fmt.Errorf("views: row %s/%s is stored but not derived from the entries", stored[i].View, stored[i].Key)
		case i == len(stored) || less(rebuilt[j], stored[i]):
			return fmt.Errorf("views: row %s/%s is derived from the entries but not stored", rebuilt[j].View, rebuilt[j].Key)
		case !bytes.Equal(stored[i].Value, rebuilt[j].Value):
			return fmt.Errorf("views: row %s/%s differs: stored %q, rebuilt %q", stored[i].View, stored[i].Key, stored[i].Value, rebuilt[j].Value)
		}
		i++
		j++
	}
	return nil
}

func less(a, b store.ViewRow) bool {
	if a.View != b.View {
		return a.View < b.View
	}
	return a.Key < b.Key
}

func sortRows(rows []store.ViewRow) {
	sort.Slice(rows, func(i, j int) bool { return less(rows[i], rows[j]) })
}

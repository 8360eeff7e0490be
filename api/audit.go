package api

import (
	"errors"
	"fmt"
	"math"
	"net/http"
	"net/url"
	"strconv"

	"canopy/auth"
	"canopy/ledger"
	"canopy/store"
)

// auditRoles may read the log.
var auditRoles = []auth.Role{auth.RoleOrganizer, auth.RoleAdmin}

// EntryJSON is an entry as the audit endpoint lists it: every field, the
// body and signature in base64, and the encoded entry in base64 so that a
// verifier can decode it and check the signature and hash itself.
type EntryJSON struct {
	Event   string        `json:"event"`
	Node    ledger.NodeID `json:"node"`
	Seq     uint64        `json:"seq"`
	Prev    ledger.Hash   `json:"prev"`
	HLC     ledger.HLC    `json:"hlc"`
	Kind    string        `json:"kind"`
	Key     string        `json:"key"`
	Body    []byte        `json:"body"`
	Sig     []byte        `json:"sig"`
	Hash    ledger.Hash   `json:"hash"`
	Encoded []byte        `json:"encoded"`
}

// EntryPage is one page of GET /v1/log/entries. Next is the "from" of the
// following page, or nil when the range is exhausted.
type EntryPage struct {
	Node    ledger.NodeID `json:"node"`
	Entries []EntryJSON   `json:"entries"`
	Next    *uint64       `json:"next"`
}

func (s *Server) registerAudit() {
	s.Handle(Route{Pattern: "GET /v1/log/checkpoint", Roles: auditRoles, Handler: s.checkpoint})
	s.Handle(Route{Pattern: "GET /v1/log/entries", Roles: auditRoles, Handler: s.entries})
	s.registerNotes()
}

func (s *Server) checkpoint(w http.ResponseWriter, r *http.Request) error {
	note, err := s.cfg.Log.Checkpoint(r.Context())
	if errors.Is(err, store.ErrNotFound) {
		return NotFound("this node has not signed a checkpoint yet")
	}
	if err != nil {
		return fmt.Errorf("read checkpoint: %w", err)
	}
	w.Header().Set("Cache-Control", "no-store")
	writeText(w, http.StatusOK, "text/plain; charset=utf-8", note)
	return nil
}

type entriesQuery struct {
	node     ledger.NodeID
	from, to uint64
	limit    int
}

func (s *Server) parseEntriesQuery(q url.Values) (entriesQuery, error) {
	out := entriesQuery{node: s.cfg.Log.Node(), from: 1, to: math.MaxUint64, limit: defaultPageSize}
	var errs []FieldError
	bad := func(name, format string, args ...any) {
		errs = append(errs, FieldError{Parameter: name, Detail: fmt.Sprintf(format, args...)})
	}
	for name, vs := range q {
		switch name {
		case "node", "from", "to", "limit":
			if len(vs) > 1 {
				bad(name, "given %d times; give it once", len(vs))
			}
		default:
			bad(name, "unknown parameter; the parameters are node, from, to and limit")
		}
	}
	seq := func(name string, dst *uint64) {
		v := q.Get(name)
		if v == "" {
			return
		}
		n, err := strconv.ParseUint(v, 10, 64)
		if err != nil || n == 0 {
			bad(name, "must be a sequence number (a positive decimal integer), got %q", v)
			return
		}
		*dst = n
	}
	seq("from", &out.from)
	seq("to", &out.to)
	if v := q.Get("node"); v != "" {
		id, err := ledger.ParseNodeID(v)
		if err != nil {
			bad("node", "must be a node id (32 hex characters), got %q", v)
		}
		out.node = id
	}
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > s.cfg.MaxPageSize {
			bad("limit", "must be an integer from 1 to %d, got %q", s.cfg.MaxPageSize, v)
		} else {
			out.limit = n
		}
	}
	if len(errs) == 0 && out.from > out.to {
		bad("to", "must not be below from (%d), got %d", out.from, out.to)
	}
	if len(errs) > 0 {
		p := NewProblem(TypeInvalidParameter, "%s", describeField(errs[0]))
		if len(errs) > 1 {
			p.Detail = fmt.Sprintf("%d query parameters are invalid", len(errs))
		}
		p.Errors = errs
		return out, p
	}
	return out, nil
}

func (s *Server) entries(w http.ResponseWriter, r *http.Request) error {
	q, err := s.parseEntriesQuery(r.URL.Query())
	if err != nil {
		return err
	}
	// Ask for one more than a page to know whether another page follows.
	es, err := s.cfg.Log.Entries(r.Context(), q.node, q.from, q.to, q.limit+1)
	if err != nil {
		return fmt.Errorf("read entries: %w", err)
	}
	page := EntryPage{Node: q.node, Entries: make([]EntryJSON, 0, min(len(es), q.limit))}
	if len(es) > q.limit {
		next := es[q.limit].Seq
		page.Next = &next
		es = es[:q.limit]
	}
	for _, e := range es {
		page.Entries = append(page.Entries, EntryJSON{
			Event: e.Event, Node: e.Node, Seq: e.Seq, Prev: e.Prev, HLC: e.HLC,
			Kind: e.Kind, Key: e.Key, Body: e.Body, Sig: e.Sig,
			Hash: e.Hash(), Encoded: e.Encode(),
		})
	}
	return WriteJSON(w, http.StatusOK, page)
}

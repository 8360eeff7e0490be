package api

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"

	"canopy/auth"
	"canopy/ledger"
	"canopy/store"
)

// IdempotencyView is the view whose row, keyed by Idempotency-Key, names the
// entry that key created (maintained by package views in the same
// transaction as the entry).
const IdempotencyView = "idempotency"

// Members the mutation helper adds to every entry body it appends.
const (
	memberIdempotencyKey = "idempotency_key"
	memberRequestHash    = "request_hash"
	memberEntry          = "entry"
)

// MaxIdempotencyKeyLen bounds the Idempotency-Key header.
const MaxIdempotencyKeyLen = 255

// Mutation is what a mutation route appends.
type Mutation struct {
	Kind string // entry kind with its format version, e.g. "order.created/v1"
	Key  string // the entity the entry is about
	// Body must encode to a JSON object without the members
	// "idempotency_key" and "request_hash", which the helper adds.
	Body any
}

// RenderFunc builds a mutation's response from its entry alone. It must be
// a pure function of the entry, so that a replay is byte-identical to the
// first response. body must encode to a JSON object without an "entry"
// member: the helper adds the entry's ref there. The entry's body carries
// the members "idempotency_key" and "request_hash" besides what Prepare put
// there, so decode it leniently (no DisallowUnknownFields).
type RenderFunc func(e *ledger.Entry) (status int, body any, err error)

// MutationRoute declares a route that appends one entry per request, with
// Idempotency-Key semantics (Stripe's): the key is required on POST (on
// other methods it is optional and, when absent, every request appends);
// the same key with the same parsed request answers the first response
// again with Idempotent-Replayed: true; the same key with a different
// request is refused with idempotency-key-reused; concurrent requests with
// one key run one at a time.
type MutationRoute[Req any] struct {
	Pattern string      // e.g. "POST /v1/orders"
	Roles   []auth.Role // must not be empty
	MaxBody int64       // 0: Config.MaxBodyBytes
	// Screen, if set, sees the raw request (path, query, headers and body)
	// before it is decoded and may refuse it; see Route.Screen.
	Screen func(r *http.Request, body []byte) error
	// Lock, if set, is called after the Idempotency-Key check and before
	// Prepare; the request holds what it returns until its entry is
	// appended, so Prepare's reads and the append are atomic among requests
	// that lock the same thing (e.g. one order). It may read r.PathValue.
	Lock func(r *http.Request) (unlock func(), err error)
	// EmptyBody lets a request without a body (Content-Length 0) decode as
	// the zero Req, e.g. "POST /v1/lots/{id}/close".
	EmptyBody bool
	// Prepare validates the decoded request and says what to append; it may
	// read r.PathValue and DeviceFrom(r.Context()). An error is answered as
	// a problem and nothing is appended or remembered.
	Prepare func(r *http.Request, req *Req) (Mutation, error)
	Render  RenderFunc
	// Divert, if set, is called after Lock and before Prepare (so after the
	// Idempotency-Key is checked and a replay answered); when it returns
	// handled, it has answered the request itself (e.g. by passing it on to
	// another node) and nothing is appended or remembered here. An error is
	// answered as a problem.
	Divert func(w http.ResponseWriter, r *http.Request, req *Req) (handled bool, err error)
}

// errDiverted tells mutate that Divert answered the request.
var errDiverted = errors.New("api: request diverted")

// HandleMutation registers a mutation route on s. It panics on a route
// declared without roles, Prepare or Render, like Handle.
func HandleMutation[Req any](s *Server, m MutationRoute[Req]) {
	if len(m.Roles) == 0 || m.Prepare == nil || m.Render == nil {
		panic("api: mutation route " + m.Pattern + " needs roles, Prepare and Render")
	}
	method, path, _ := strings.Cut(m.Pattern, " ")
	wildcards := patternWildcards(path)
	s.Handle(Route{Pattern: m.Pattern, Roles: m.Roles, MaxBody: m.MaxBody, Screen: m.Screen, Handler: func(w http.ResponseWriter, r *http.Request) error {
		key, err := idempotencyKey(r, method == http.MethodPost)
		if err != nil {
			return err
		}
		var req Req
		if !(m.EmptyBody && r.ContentLength == 0) {
			if err := DecodeJSON(r, &req); err != nil {
				return err
			}
		}
		hash, err := requestHash(s.cfg.FingerprintKey, method, m.Pattern, wildcards, r, &req)
		if err != nil {
			return err
		}
		prepare := func() (Mutation, func(), error) {
			unlock := func() {}
			if m.Lock != nil {
				var err error
				if unlock, err = m.Lock(r); err != nil {
					return Mutation{}, nil, err
				}
			}
			if m.Divert != nil {
				handled, err := m.Divert(w, r, &req)
				if err != nil || handled {
					unlock()
					if err == nil {
						err = errDiverted
					}
					return Mutation{}, nil, err
				}
			}
			mu, err := m.Prepare(r, &req)
			if err != nil {
				unlock()
				return Mutation{}, nil, err
			}
			return mu, unlock, nil
		}
		return s.mutate(w, r, key, hash, prepare, m.Render)
	}})
}

// idempotencyKey returns the request's Idempotency-Key, or "" when it is
// absent and not required.
func idempotencyKey(r *http.Request, required bool) (string, error) {
	values := r.Header.Values("Idempotency-Key")
	if len(values) == 0 {
		if required {
			return "", NewProblem(TypeIdempotencyNeeded, "send an Idempotency-Key header (a unique value such as a UUID) with every %s to %s", r.Method, r.URL.Path)
		}
		return "", nil
	}
	if len(values) > 1 {
		return "", NewProblem(TypeIdempotencyBadKey, "send exactly one Idempotency-Key header")
	}
	if err := ValidateIdempotencyKey(values[0]); err != nil {
		return "", NewProblem(TypeIdempotencyBadKey, "%s", err.Error())
	}
	return values[0], nil
}

// ValidateIdempotencyKey checks a key is 1 to 255 printable ASCII
// characters (0x20 to 0x7E).
func ValidateIdempotencyKey(k string) error {
	if k == "" {
		return errors.New("the Idempotency-Key is empty")
	}
	if len(k) > MaxIdempotencyKeyLen {
		return fmt.Errorf("the Idempotency-Key is %d bytes long; at most %d are allowed", len(k), MaxIdempotencyKeyLen)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; c < 0x20 || c > 0x7e {
			return fmt.Errorf("the Idempotency-Key has byte 0x%02x at offset %d; only printable ASCII is allowed", c, i)
		}
	}
	return nil
}

// patternWildcards lists the names of a path pattern's wildcards in order.
func patternWildcards(path string) []string {
	var names []string
	for seg := range strings.SplitSeq(path, "/") {
		if strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}") {
			name := strings.TrimSuffix(strings.TrimSuffix(seg[1:len(seg)-1], "..."), "$")
			if name != "" {
				names = append(names, name)
			}
		}
	}
	return names
}

// requestHash is the request fingerprint: SHA-256 over the method, the
// route pattern, the path values and the canonical JSON of the parsed
// request, each length-prefixed — or, when key is not empty, HMAC-SHA256
// keyed by it over the same bytes, so that the fingerprint kept in the
// entry cannot be used to guess personal data of the request. Key order
// and whitespace of the body do not change it; anything the handler can
// see does.
func requestHash(key []byte, method, pattern string, wildcards []string, r *http.Request, req any) (string, error) {
	canon, err := canonicalJSON(req)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if len(key) > 0 {
		h = hmac.New(sha256.New, key)
	}
	field := func(s []byte) {
		var n [8]byte
		binary.BigEndian.PutUint64(n[:], uint64(len(s)))
		h.Write(n[:])
		h.Write(s)
	}
	field([]byte("canopy-request/v1"))
	field([]byte(method))
	field([]byte(pattern))
	for _, name := range wildcards {
		field([]byte(name))
		field([]byte(r.PathValue(name)))
	}
	field(canon)
	return hex.EncodeToString(h.Sum(nil)), nil
}

// canonicalJSON encodes v with every object's members sorted by key and no
// insignificant whitespace: v is encoded, decoded generically (numbers kept
// as written) and encoded again, which sorts the keys of maps, of members
// held as any or json.RawMessage, and of struct fields alike.
func canonicalJSON(v any) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, errorf("encode request: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var generic any
	if err := dec.Decode(&generic); err != nil {
		return nil, errorf("re-decode request: %w", err)
	}
	out, err := json.Marshal(generic)
	if err != nil {
		return nil, errorf("re-encode request: %w", err)
	}
	return out, nil
}

// idempotencyRecord is the part of an idempotency view row the API reads.
type idempotencyRecord struct {
	RequestHash string     `json:"request_hash"`
	Entry       ledger.Ref `json:"entry"`
}

// mutate runs the idempotent append-and-render sequence.
func (s *Server) mutate(w http.ResponseWriter, r *http.Request, key, hash string,
	prepare func() (Mutation, func(), error), render RenderFunc) error {
	ctx := r.Context()
	if key != "" {
		unlock, err := s.locks.Lock(ctx, key)
		if err != nil {
			return err
		}
		defer unlock()
		replayed, err := s.replay(w, r, key, hash, render)
		if err != nil || replayed {
			return err
		}
	}
	m, unlock, err := prepare()
	if errors.Is(err, errDiverted) {
		return nil
	}
	if err != nil {
		return err
	}
	defer unlock()
	body, err := json.Marshal(m.Body)
	if err != nil {
		return errorf("encode %s body: %w", m.Kind, err)
	}
	if key != "" {
		body, err = prependMembers(body, map[string]string{memberIdempotencyKey: key, memberRequestHash: hash})
		if err != nil {
			return errorf("%s body: %w", m.Kind, err)
		}
	}
	e, err := s.cfg.Appender.Append(ctx, m.Kind, m.Key, body)
	if err != nil {
		return fmt.Errorf("append %s: %w", m.Kind, err)
	}
	resp, status, err := renderResponse(e, render)
	if err != nil {
		return err
	}
	writeJSONBytes(w, status, resp)
	return nil
}

// replay answers from the entry a key already created, if there is one.
func (s *Server) replay(w http.ResponseWriter, r *http.Request, key, hash string, render RenderFunc) (bool, error) {
	ctx := r.Context()
	row, err := s.cfg.Views.View(ctx, IdempotencyView, key)
	if errors.Is(err, store.ErrNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read idempotency row: %w", err)
	}
	var rec idempotencyRecord
	if err := json.Unmarshal(row, &rec); err != nil {
		return false, errorf("idempotency row %q: %w", key, err)
	}
	if rec.RequestHash != hash {
		p := NewProblem(TypeIdempotencyReused, "the Idempotency-Key %q was already used for a different request (entry %s seq %d); use a new key for a new request", key, rec.Entry.Node, rec.Entry.Seq)
		p.Extensions = map[string]any{memberEntry: rec.Entry}
		return false, p
	}
	e, err := s.cfg.Log.Entry(ctx, rec.Entry.Node, rec.Entry.Seq)
	if err != nil {
		return false, fmt.Errorf("load entry %s/%d of idempotency key: %w", rec.Entry.Node, rec.Entry.Seq, err)
	}
	if e.Hash() != rec.Entry.Hash {
		return false, errorf("entry %s/%d does not have the hash the idempotency row names", rec.Entry.Node, rec.Entry.Seq)
	}
	resp, status, err := renderResponse(e, render)
	if err != nil {
		return false, err
	}
	s.metrics.replays.Inc()
	s.log.LogAttrs(ctx, slog.LevelDebug, "idempotent replay", slog.String(logKeyPath, r.URL.Path))
	w.Header().Set("Idempotent-Replayed", "true")
	writeJSONBytes(w, status, resp)
	return true, nil
}

// renderResponse renders e and puts its ref under "entry".
func renderResponse(e *ledger.Entry, render RenderFunc) ([]byte, int, error) {
	status, body, err := render(e)
	if err != nil {
		return nil, 0, fmt.Errorf("render %s: %w", e.Kind, err)
	}
	b, err := json.Marshal(body)
	if err != nil {
		return nil, 0, errorf("encode %s response: %w", e.Kind, err)
	}
	ref, err := json.Marshal(e.Ref())
	if err != nil {
		return nil, 0, errorf("encode entry ref: %w", err)
	}
	b, err = prependRaw(b, []string{memberEntry}, [][]byte{ref})
	if err != nil {
		return nil, 0, errorf("%s response: %w", e.Kind, err)
	}
	return b, status, nil
}

// prependMembers inserts string members at the front of a JSON object.
func prependMembers(obj []byte, members map[string]string) ([]byte, error) {
	names := sortedKeys(members)
	values := make([][]byte, len(names))
	for i, n := range names {
		values[i], _ = json.Marshal(members[n])
	}
	return prependRaw(obj, names, values)
}

// prependRaw inserts encoded members at the front of the JSON object obj,
// refusing an obj that is not an object or already has one of the names.
func prependRaw(obj []byte, names []string, values [][]byte) ([]byte, error) {
	var existing map[string]json.RawMessage
	if err := json.Unmarshal(obj, &existing); err != nil || existing == nil {
		return nil, fmt.Errorf("not a JSON object: %.40s", obj)
	}
	var b bytes.Buffer
	b.WriteByte('{')
	for i, n := range names {
		if _, dup := existing[n]; dup {
			return nil, fmt.Errorf("already has the member %q", n)
		}
		if i > 0 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(n)
		b.Write(k)
		b.WriteByte(':')
		b.Write(values[i])
	}
	rest := bytes.TrimSpace(obj)[1:] // after '{'
	if len(existing) > 0 {
		b.WriteByte(',')
	}
	b.Write(bytes.TrimLeft(rest, " \t\r\n"))
	return b.Bytes(), nil
}

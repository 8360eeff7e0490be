package api

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"

	"canopy/auth"
	"canopy/store"
)

// ContentTypeProblem is the media type of every error response (RFC 9457).
const ContentTypeProblem = "application/problem+json"

// typePrefix opens every problem type URI. The full list, with the status
// each one is answered with, is the problemTypes table below and the
// Problem schema of openapi.yaml.
const typePrefix = "urn:canopy:problem:"

// Problem type URIs. Clients switch on these, never on titles or details.
const (
	TypeTokenMissing     = typePrefix + "token-missing"
	TypeTokenMalformed   = typePrefix + "token-malformed"
	TypeTokenForged      = typePrefix + "token-forged"
	TypeTokenExpired     = typePrefix + "token-expired"
	TypeTokenNotYetValid = typePrefix + "token-not-yet-valid"
	TypeTokenWrongEvent  = typePrefix + "token-wrong-event"
	TypeTokenWrongKind   = typePrefix + "token-wrong-purpose"
	TypeTokenUnknownRole = typePrefix + "token-unknown-role"
	TypeTokenRejected    = typePrefix + "token-rejected"
	TypeTokenRevoked     = typePrefix + "token-revoked"
	TypeForbiddenRole    = typePrefix + "forbidden-role"

	TypeMalformedJSON     = typePrefix + "malformed-json"
	TypeEmptyBody         = typePrefix + "empty-body"
	TypeUnknownField      = typePrefix + "unknown-field"
	TypeWrongFieldType    = typePrefix + "wrong-field-type"
	TypeInvalidValue      = typePrefix + "invalid-value"
	TypeTrailingData      = typePrefix + "trailing-data"
	TypeBodyUnreadable    = typePrefix + "body-unreadable"
	TypeInvalidParameter  = typePrefix + "invalid-parameter"
	TypeValidationFailed  = typePrefix + "validation-failed"
	TypeBodyTooLarge      = typePrefix + "body-too-large"
	TypeUnsupportedMedia  = typePrefix + "unsupported-media-type"
	TypeIdempotencyNeeded = typePrefix + "idempotency-key-required"
	TypeIdempotencyBadKey = typePrefix + "idempotency-key-invalid"
	TypeIdempotencyReused = typePrefix + "idempotency-key-reused"

	TypeNotFound         = typePrefix + "not-found"
	TypeRouteNotFound    = typePrefix + "route-not-found"
	TypeMethodNotAllowed = typePrefix + "method-not-allowed"
	TypeConflict         = typePrefix + "conflict"

	// Point of sale (package posapi).
	TypeCardNumberRefused   = typePrefix + "card-number-refused"
	TypeIllegalTransition   = typePrefix + "illegal-transition"
	TypeOrderState          = typePrefix + "order-state"
	TypeRefundAbovePaid     = typePrefix + "refund-above-paid"
	TypeOverpayment         = typePrefix + "overpayment"
	TypeUnknownSKU          = typePrefix + "unknown-sku"
	TypeUnknownVendor       = typePrefix + "unknown-vendor"
	TypeVendorMismatch      = typePrefix + "vendor-mismatch"
	TypeAmountOutOfRange    = typePrefix + "amount-out-of-range"
	TypePriceOverrideDenied = typePrefix + "price-override-forbidden"

	// Doors (package doorapi).
	TypeTicketTooLong    = typePrefix + "ticket-too-long"
	TypeTicketMissing    = typePrefix + "ticket-missing"
	TypeInvalidDoor      = typePrefix + "invalid-door"
	TypeInvalidDirection = typePrefix + "invalid-direction"

	// Auctions (package auctionapi).
	TypeBidBelowIncrement = typePrefix + "bid-below-increment"
	TypeBidBelowStart     = typePrefix + "bid-below-start-price"
	TypeLotClosed         = typePrefix + "lot-closed"

	// Sync between nodes (package replica).
	TypeNodeUnauthenticated = typePrefix + "node-unauthenticated"
	TypeSyncVersion         = typePrefix + "sync-version"
	TypeSyncMalformed       = typePrefix + "sync-malformed"

	TypeStoreUnavailable = typePrefix + "store-unavailable"
	TypeTimeout          = typePrefix + "timeout"
	TypeNotReady         = typePrefix + "not-ready"
	TypeInternal         = typePrefix + "internal"
)

// problemTypes gives every problem type its status and title. Titles never
// change for a type (RFC 9457 §3.1.3); the detail explains the occurrence.
var problemTypes = map[string]struct {
	status int
	title  string
}{
	TypeTokenMissing:     {401, "A device token is required"},
	TypeTokenMalformed:   {401, "The device token is malformed"},
	TypeTokenForged:      {401, "The device token's signature does not verify"},
	TypeTokenExpired:     {401, "The device token has expired"},
	TypeTokenNotYetValid: {401, "The device token is not valid yet"},
	TypeTokenWrongEvent:  {401, "The device token is for another event"},
	TypeTokenWrongKind:   {401, "The token is not a device token"},
	TypeTokenUnknownRole: {401, "The device token carries an unknown role"},
	TypeTokenRejected:    {401, "The device token was refused"},
	TypeTokenRevoked:     {401, "The device token has been revoked"},
	TypeForbiddenRole:    {403, "The device's role may not do this"},

	TypeMalformedJSON:     {400, "The request body is not valid JSON"},
	TypeEmptyBody:         {400, "The request body is empty"},
	TypeUnknownField:      {400, "The request body has an unknown field"},
	TypeWrongFieldType:    {400, "A field of the request body has the wrong type"},
	TypeInvalidValue:      {400, "A value in the request body cannot be parsed"},
	TypeTrailingData:      {400, "The request body has data after the JSON value"},
	TypeBodyUnreadable:    {400, "The request body could not be read"},
	TypeInvalidParameter:  {400, "A query parameter is invalid"},
	TypeValidationFailed:  {422, "The request is not valid"},
	TypeBodyTooLarge:      {413, "The request body is too large"},
	TypeUnsupportedMedia:  {415, "The request body's media type is not supported"},
	TypeIdempotencyNeeded: {400, "An Idempotency-Key header is required"},
	TypeIdempotencyBadKey: {400, "The Idempotency-Key header is invalid"},
	TypeIdempotencyReused: {422, "The Idempotency-Key was used for a different request"},

	TypeNotFound:         {404, "Not found"},
	TypeRouteNotFound:    {404, "No such route"},
	TypeMethodNotAllowed: {405, "Method not allowed"},
	TypeConflict:         {409, "Conflict"},

	TypeCardNumberRefused:   {422, "The request contains what looks like a card number"},
	TypeIllegalTransition:   {409, "The order cannot move to that state"},
	TypeOrderState:          {409, "The order's state does not allow this"},
	TypeRefundAbovePaid:     {422, "The refund is above what was paid"},
	TypeOverpayment:         {422, "The payment is above what is owed"},
	TypeUnknownSKU:          {422, "The SKU is unknown or inactive"},
	TypeUnknownVendor:       {422, "The vendor is unknown or inactive"},
	TypeVendorMismatch:      {422, "The SKU belongs to another vendor"},
	TypeAmountOutOfRange:    {422, "An amount or total is out of range"},
	TypePriceOverrideDenied: {403, "The device may not set a manual price"},

	TypeTicketTooLong:    {422, "The ticket string is too long"},
	TypeTicketMissing:    {422, "The scanned ticket string is missing"},
	TypeInvalidDoor:      {422, "The door name is missing or invalid"},
	TypeInvalidDirection: {422, "The direction must be in or out"},

	TypeBidBelowIncrement: {422, "The bid does not beat the high bid by the increment"},
	TypeBidBelowStart:     {422, "The bid is below the lot's starting price"},
	TypeLotClosed:         {409, "The lot is closed"},

	TypeNodeUnauthenticated: {401, "The calling node is not authenticated"},
	TypeSyncVersion:         {400, "Unknown sync protocol version"},
	TypeSyncMalformed:       {400, "The entry stream is malformed"},

	TypeStoreUnavailable: {503, "Storage is unavailable"},
	TypeTimeout:          {503, "The request ran out of time"},
	TypeNotReady:         {503, "The node is not ready"},
	TypeInternal:         {500, "Internal error"},
}

// FieldError names one invalid part of a request: Pointer is a JSON Pointer
// (RFC 6901) into the body, Parameter a query parameter name.
type FieldError struct {
	Pointer   string `json:"pointer,omitempty"`
	Parameter string `json:"parameter,omitempty"`
	Detail    string `json:"detail"`
}

// Problem is an RFC 9457 problem details object. It is also an error: a
// handler returns one to answer with it.
type Problem struct {
	Type     string
	Title    string
	Status   int
	Detail   string
	Instance string
	// Errors is the "errors" extension member: the invalid fields.
	Errors []FieldError
	// Extensions are further members; they never replace the ones above.
	Extensions map[string]any

	header http.Header // response headers that go with the problem
	cause  error       // logged for 5xx, never sent
}

// NewProblem returns a problem of a known type with the given detail. It
// panics on an unknown type: types are constants of this package.
func NewProblem(typ, format string, args ...any) *Problem {
	t, ok := problemTypes[typ]
	if !ok {
		panic("api: unknown problem type " + typ)
	}
	return &Problem{Type: typ, Title: t.title, Status: t.status, Detail: fmt.Sprintf(format, args...)}
}

// NotFound returns a 404 problem.
func NotFound(format string, args ...any) *Problem {
	return NewProblem(TypeNotFound, format, args...)
}

// Conflict returns a 409 problem.
func Conflict(format string, args ...any) *Problem {
	return NewProblem(TypeConflict, format, args...)
}

// Invalid returns a 422 validation problem listing the invalid fields.
func Invalid(errs ...FieldError) *Problem {
	p := NewProblem(TypeValidationFailed, "%d field(s) are invalid", len(errs))
	if len(errs) == 1 {
		p.Detail = describeField(errs[0])
	}
	p.Errors = errs
	return p
}

func describeField(f FieldError) string {
	switch {
	case f.Pointer != "":
		return f.Pointer + ": " + f.Detail
	case f.Parameter != "":
		return "parameter " + f.Parameter + ": " + f.Detail
	}
	return f.Detail
}

// Validation collects field errors while a handler checks a request.
//
//	var v api.Validation
//	if req.Qty <= 0 { v.Field("/qty", "must be positive, got %d", req.Qty) }
//	if err := v.Err(); err != nil { return err }
type Validation struct {
	errs []FieldError
}

// Field records that the body member at the JSON Pointer is invalid.
func (v *Validation) Field(pointer, format string, args ...any) {
	v.errs = append(v.errs, FieldError{Pointer: pointer, Detail: fmt.Sprintf(format, args...)})
}

// Err returns nil if nothing was recorded, or the 422 problem listing them.
func (v *Validation) Err() error {
	if len(v.errs) == 0 {
		return nil
	}
	return Invalid(v.errs...)
}

// Error implements error.
func (p *Problem) Error() string {
	if p.Detail == "" {
		return fmt.Sprintf("%d %s", p.Status, p.Title)
	}
	return fmt.Sprintf("%d %s: %s", p.Status, p.Title, p.Detail)
}

// Unwrap returns the error that caused the problem, if any.
func (p *Problem) Unwrap() error { return p.cause }

// Header returns the response headers sent with the problem (Retry-After,
// Allow, WWW-Authenticate…), creating them on first use.
func (p *Problem) Header() http.Header {
	if p.header == nil {
		p.header = http.Header{}
	}
	return p.header
}

// MarshalJSON writes the standard members first, then "errors", then the
// extension members in key order.
func (p *Problem) MarshalJSON() ([]byte, error) {
	var b bytes.Buffer
	b.WriteByte('{')
	member := func(name string, v any) error {
		if b.Len() > 1 {
			b.WriteByte(',')
		}
		k, _ := json.Marshal(name)
		val, err := json.Marshal(v)
		if err != nil {
			return fmt.Errorf("problem member %q: %w", name, err)
		}
		b.Write(k)
		b.WriteByte(':')
		b.Write(val)
		return nil
	}
	std := []struct {
		name string
		v    any
		skip bool
	}{
		{"type", p.Type, false},
		{"title", p.Title, false},
		{"status", p.Status, false},
		{"detail", p.Detail, p.Detail == ""},
		{"instance", p.Instance, p.Instance == ""},
		{"errors", p.Errors, len(p.Errors) == 0},
	}
	reserved := map[string]bool{}
	for _, m := range std {
		reserved[m.name] = true
		if m.skip {
			continue
		}
		if err := member(m.name, m.v); err != nil {
			return nil, err
		}
	}
	for _, k := range sortedKeys(p.Extensions) {
		if reserved[k] {
			continue
		}
		if err := member(k, p.Extensions[k]); err != nil {
			return nil, err
		}
	}
	b.WriteByte('}')
	return b.Bytes(), nil
}

// problemFor maps any error a handler returns to the problem answered for
// it. It is the one place where errors become statuses.
func (s *Server) problemFor(err error) *Problem {
	var p *Problem
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &p):
		if p.Status == http.StatusServiceUnavailable && p.Header().Get("Retry-After") == "" {
			p.Header().Set("Retry-After", s.retryAfter())
		}
		return p
	case errors.As(err, &tooLarge):
		return NewProblem(TypeBodyTooLarge, "the request body is larger than %d bytes", tooLarge.Limit)
	case errors.Is(err, store.ErrUnavailable):
		p = NewProblem(TypeStoreUnavailable, "the node cannot make writes durable right now (disk full or failing); nothing was written, retry later")
		p.cause = err
		p.Header().Set("Retry-After", s.retryAfter())
		return p
	case errors.Is(err, context.DeadlineExceeded), errors.Is(err, context.Canceled):
		p = NewProblem(TypeTimeout, "the request was cancelled or ran out of time before it completed")
		p.Header().Set("Retry-After", s.retryAfter())
		return p
	case errors.Is(err, store.ErrNotFound):
		return NotFound("the requested resource does not exist")
	case errors.Is(err, store.ErrConflict):
		return Conflict("the request conflicts with what is already stored")
	}
	if p := authProblem(err); p != nil {
		return p
	}
	p = NewProblem(TypeInternal, "an internal error occurred; it has been logged")
	p.cause = err
	return p
}

// authProblem maps the errors of canopy/auth to their problems, or nil.
func authProblem(err error) *Problem {
	var typ string
	switch {
	case errors.Is(err, auth.ErrExpired):
		typ = TypeTokenExpired
	case errors.Is(err, auth.ErrNotYetValid):
		typ = TypeTokenNotYetValid
	case errors.Is(err, auth.ErrWrongEvent):
		typ = TypeTokenWrongEvent
	case errors.Is(err, auth.ErrBadSignature):
		typ = TypeTokenForged
	case errors.Is(err, auth.ErrMalformed):
		typ = TypeTokenMalformed
	case errors.Is(err, auth.ErrWrongPurpose):
		typ = TypeTokenWrongKind
	case errors.Is(err, auth.ErrUnknownRole):
		typ = TypeTokenUnknownRole
	case errors.Is(err, auth.ErrRevoked):
		typ = TypeTokenRevoked
	default:
		return nil
	}
	p := NewProblem(typ, "%s", err.Error())
	p.Header().Set("WWW-Authenticate", `Bearer realm="canopy", error="invalid_token"`)
	return p
}

func (s *Server) retryAfter() string {
	sec := int(s.cfg.RetryAfter.Seconds())
	if sec < 1 {
		sec = 1
	}
	return strconv.Itoa(sec)
}

// writeProblem answers r with the problem for err. Server errors are logged
// with an incident id that the response carries as its instance; their
// internal text is never sent.
func (s *Server) writeProblem(w http.ResponseWriter, r *http.Request, err error) {
	p := s.problemFor(err)
	out := *p
	if out.Instance == "" {
		out.Instance = r.URL.Path
	}
	if out.Status >= 500 {
		if out.Status == http.StatusInternalServerError || p.cause != nil {
			id := incidentID()
			out.Instance = "urn:canopy:incident:" + id
			s.log.LogAttrs(r.Context(), slog.LevelError, "request failed",
				slog.String(logKeyIncident, id),
				slog.String(logKeyMethod, r.Method),
				slog.String(logKeyPath, r.URL.Path),
				slog.Int(logKeyStatus, out.Status),
				slog.Any(logKeyError, err))
		}
	}
	body, merr := json.Marshal(&out)
	if merr != nil {
		// An extension member that cannot be encoded: answer plainly.
		s.log.LogAttrs(r.Context(), slog.LevelError, "encode problem", slog.Any(logKeyError, merr))
		fallback := NewProblem(TypeInternal, "an internal error occurred; it has been logged")
		fallback.Instance = out.Instance
		body, _ = json.Marshal(fallback)
		out.Status = fallback.Status
	}
	h := w.Header()
	for k, v := range p.header {
		h[k] = v
	}
	h.Set("Content-Type", ContentTypeProblem)
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(out.Status)
	_, _ = w.Write(append(body, '\n'))
}

func incidentID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

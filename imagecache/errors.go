package imagecache

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
)

// Error codes of the OCI distribution spec (section "Error Codes") used by
// the pull side.
const (
	CodeBlobUnknown     = "BLOB_UNKNOWN"
	CodeDigestInvalid   = "DIGEST_INVALID"
	CodeManifestInvalid = "MANIFEST_INVALID"
	CodeManifestUnknown = "MANIFEST_UNKNOWN"
	CodeNameInvalid     = "NAME_INVALID"
	CodeNameUnknown     = "NAME_UNKNOWN"
	CodeUnsupported     = "UNSUPPORTED"
	CodeDenied          = "DENIED"
	// CodeUnavailable goes with 503 (the distribution registry's code).
	CodeUnavailable = "UNAVAILABLE"
)

// Error is a registry error: an HTTP status and one spec error code.
type Error struct {
	Status  int
	Code    string
	Message string
}

func (e *Error) Error() string { return fmt.Sprintf("%s: %s", e.Code, e.Message) }

func errorf(status int, code, format string, args ...any) *Error {
	return &Error{Status: status, Code: code, Message: fmt.Sprintf(format, args...)}
}

// Sentinel errors.
var (
	// ErrNotFound means the upstream answered that the content does not exist.
	ErrNotFound = errors.New("not found upstream")
	// ErrUnavailable means no mirror of the upstream answered in time.
	ErrUnavailable = errors.New("upstream unavailable")
	// ErrDigestMismatch means upstream content did not match its digest.
	ErrDigestMismatch = errors.New("content does not match its digest")
	// ErrTooLarge means upstream content exceeded a size limit.
	ErrTooLarge = errors.New("content exceeds the size limit")
	// ErrStore means the cache's disk failed (full, read-only, ...).
	ErrStore = errors.New("image store")

	// errStored tells joinFlight's caller the blob is stored now.
	errStored = errors.New("blob stored meanwhile")
)

// writeError writes the spec's error JSON: {"errors":[{code,message,detail}]}.
func writeError(w http.ResponseWriter, r *http.Request, e *Error) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Del("Content-Length")
	w.WriteHeader(e.Status)
	if r.Method == http.MethodHead {
		return
	}
	body := struct {
		Errors []errorBody `json:"errors"`
	}{[]errorBody{{Code: e.Code, Message: e.Message}}}
	_ = json.NewEncoder(w).Encode(body)
}

type errorBody struct {
	Code    string `json:"code"`
	Message string `json:"message"`
	Detail  any    `json:"detail,omitempty"`
}

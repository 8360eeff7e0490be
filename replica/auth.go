package replica

import (
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"canopy/auth"
)

// Headers a node authenticates a sync request with: its enrolment (signed
// by the event key) and its signature over the request line and body hash.
const (
	headerEnrolment = "Canopy-Node-Enrolment"
	headerSignature = "Canopy-Node-Signature"
)

// ErrUnauthenticated is returned for a request without a valid node
// enrolment and signature.
var ErrUnauthenticated = errors.New("replica: node not authenticated")

// signedMessage is what a node signs. The path is taken from "/v1/sync/"
// on, so a hub serving many events under a prefix
// (/v1/events/<slug>/v1/sync/…) verifies the same bytes the node signed.
func signedMessage(method, path string, bodyHash [32]byte) []byte {
	if i := strings.Index(path, "/v1/sync/"); i >= 0 {
		path = path[i:]
	}
	return fmt.Appendf(nil, "canopy-sync-v1\n%s\n%s\n%x\n", method, path, bodyHash)
}

// sign adds a node's credentials to a request whose body hashes to bodyHash.
// Sync requests are idempotent (they only ever add signed entries), so a
// replayed request does no harm and no timestamp is needed — which also
// keeps nodes with skewed clocks talking.
func sign(req *http.Request, key ed25519.PrivateKey, enrolment string, bodyHash [32]byte) {
	req.Header.Set(headerEnrolment, enrolment)
	sig := ed25519.Sign(key, signedMessage(req.Method, req.URL.Path, bodyHash))
	req.Header.Set(headerSignature, base64.RawURLEncoding.EncodeToString(sig))
}

// Sign adds a node's credentials to a sync request with the given body
// (nil for none or a stream, which is signed as empty: its entries are
// self-authenticating).
func Sign(req *http.Request, key ed25519.PrivateKey, enrolment string, body []byte) {
	h := emptyHash
	if body != nil {
		h = sha256.Sum256(body)
	}
	sign(req, key, enrolment, h)
}

// authenticate checks a request's node credentials against the event key
// and returns the calling node's enrolment.
func authenticate(ev *auth.Event, now time.Time, req *http.Request, bodyHash [32]byte) (*auth.Enrolment, error) {
	tok := req.Header.Get(headerEnrolment)
	sigText := req.Header.Get(headerSignature)
	if tok == "" || sigText == "" {
		return nil, fmt.Errorf("%w: missing %s or %s", ErrUnauthenticated, headerEnrolment, headerSignature)
	}
	enr, err := auth.VerifyEnrolment(ev, tok, now)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrUnauthenticated, err)
	}
	sig, err := base64.RawURLEncoding.DecodeString(sigText)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: malformed signature", ErrUnauthenticated)
	}
	if !ed25519.Verify(enr.PublicKey, signedMessage(req.Method, req.URL.Path, bodyHash), sig) {
		return nil, fmt.Errorf("%w: signature of node %s does not verify", ErrUnauthenticated, enr.Node)
	}
	return enr, nil
}

// emptyHash is the body hash of a request without a body.
var emptyHash = sha256.Sum256(nil)

// Authenticate checks the node credentials of a request with the given body
// (nil for none), as Sign made them, against the event key at time now, and
// returns the calling node's enrolment; an error wraps ErrUnauthenticated.
// Routes outside this package that only nodes may call (e.g. a bid
// forwarded to a lot's home edge) use it.
func Authenticate(ev *auth.Event, now time.Time, req *http.Request, body []byte) (*auth.Enrolment, error) {
	h := emptyHash
	if body != nil {
		h = sha256.Sum256(body)
	}
	return authenticate(ev, now, req, h)
}

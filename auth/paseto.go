package auth

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"strings"

	"aidanwoods.dev/go-paseto"
)

// b64 is PASETO's (and PASERK's) encoding: unpadded base64url, canonical.
var b64 = base64.RawURLEncoding.Strict()

// v4PublicHeader starts every token Canopy signs.
const v4PublicHeader = "v4.public."

// signV4Public signs payload, a JSON object, as a PASETO v4.public token
// with the given footer and implicit assertion. It signs exactly the bytes
// given: the library re-encodes claims with sorted keys, so a payload not in
// that canonical form (compact, keys in order) is refused rather than
// silently changed. v4.public signatures are deterministic (Ed25519).
func signV4Public(key ed25519.PrivateKey, payload, footer, implicit []byte) (string, error) {
	sk, err := paseto.NewV4AsymmetricSecretKeyFromEd25519(key)
	if err != nil {
		return "", fmt.Errorf("%w: signing key: %v", ErrInvalidArguments, err)
	}
	tok, err := paseto.NewTokenFromClaimsJSON(payload, footer)
	if err != nil {
		return "", fmt.Errorf("%w: payload is not a JSON object: %v", ErrInvalidArguments, err)
	}
	if got := tok.ClaimsJSON(); !bytes.Equal(got, payload) {
		return "", fmt.Errorf("%w: payload is not canonical JSON (compact, keys sorted): would sign %s", ErrInvalidArguments, got)
	}
	return tok.V4Sign(sk, implicit), nil
}

// verifyV4Public checks a PASETO v4.public token against pub, the expected
// footer and the implicit assertion, and returns the signed payload bytes
// exactly as they appear in the token. It is the one verification path for
// every token Canopy reads; it checks no claims. Errors wrap ErrMalformed
// (not a v4.public token, bad encoding, footer not the expected one) or
// ErrBadSignature (signature does not verify, or the signed payload is not
// a JSON object).
func verifyV4Public(pub ed25519.PublicKey, token string, footer, implicit []byte) ([]byte, error) {
	pk, err := paseto.NewV4AsymmetricPublicKeyFromEd25519(pub)
	if err != nil {
		return nil, fmt.Errorf("%w: verification key: %v", ErrInvalidArguments, err)
	}
	if !strings.HasPrefix(token, v4PublicHeader) {
		return nil, fmt.Errorf("%w: not a PASETO v4.public token", ErrMalformed)
	}
	parts := strings.Split(token[len(v4PublicHeader):], ".")
	if len(parts) > 2 {
		return nil, fmt.Errorf("%w: token has %d parts, want 3 or 4", ErrMalformed, len(parts)+2)
	}
	raw, err := b64.DecodeString(parts[0])
	if err != nil {
		return nil, fmt.Errorf("%w: payload encoding: %v", ErrMalformed, err)
	}
	if len(raw) < ed25519.SignatureSize {
		return nil, fmt.Errorf("%w: payload is %d bytes, shorter than a signature", ErrMalformed, len(raw))
	}
	var gotFooter []byte
	if len(parts) == 2 {
		if gotFooter, err = b64.DecodeString(parts[1]); err != nil {
			return nil, fmt.Errorf("%w: footer encoding: %v", ErrMalformed, err)
		}
	}
	if !bytes.Equal(gotFooter, footer) {
		return nil, fmt.Errorf("%w: unexpected footer %q", ErrMalformed, gotFooter)
	}
	payload := raw[:len(raw)-ed25519.SignatureSize]

	// The library verifies the signature, then parses the payload as a JSON
	// object. The event key never signs anything else, so either failure
	// means the token was not made with the key: a forgery or tampering.
	if _, err := paseto.NewParserWithoutExpiryCheck().ParseV4Public(pk, token, implicit); err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadSignature, err)
	}
	return payload, nil
}

// signClaims encodes claims (a struct whose JSON field names are in sorted
// order) and signs them with no footer or implicit assertion.
func signClaims(key ed25519.PrivateKey, claims any) (string, error) {
	payload, err := json.Marshal(claims)
	if err != nil {
		return "", fmt.Errorf("encode claims: %w", err)
	}
	return signV4Public(key, payload, nil, nil)
}

// openClaims verifies token with pub and decodes its payload into claims.
func openClaims(pub ed25519.PublicKey, token string, claims any) error {
	payload, err := verifyV4Public(pub, token, nil, nil)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(payload, claims); err != nil {
		return fmt.Errorf("%w: claims: %v", ErrMalformed, err)
	}
	return nil
}

package auth

import (
	"crypto/ed25519"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// pasetoVector is one entry of PASETO's official test-vectors/v4.json.
type pasetoVector struct {
	Name       string  `json:"name"`
	ExpectFail bool    `json:"expect-fail"`
	PublicKey  string  `json:"public-key"`
	SecretKey  string  `json:"secret-key"`
	Key        string  `json:"key"`
	Token      string  `json:"token"`
	Payload    *string `json:"payload"`
	Footer     string  `json:"footer"`
	Implicit   string  `json:"implicit-assertion"`
}

// loadV4Vectors reads the vectors shipped with the go-paseto module in the
// module cache (they are not copied into this repository).
func loadV4Vectors(t *testing.T) []pasetoVector {
	t.Helper()
	out, err := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", "aidanwoods.dev/go-paseto").Output()
	if err != nil {
		t.Fatalf("locate aidanwoods.dev/go-paseto: %v", err)
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		t.Fatal("go list gave no directory for aidanwoods.dev/go-paseto (module not downloaded?)")
	}
	data, err := os.ReadFile(filepath.Join(dir, "test-vectors", "v4.json"))
	if err != nil {
		t.Fatalf("read PASETO v4 test vectors: %v", err)
	}
	var doc struct {
		Tests []pasetoVector `json:"tests"`
	}
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatalf("parse v4.json: %v", err)
	}
	return doc.Tests
}

func mustHex(t *testing.T, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestPASETOv4PublicVectors runs every official v4.public vector through
// verifyV4Public and signV4Public, the functions all our tokens go through.
func TestPASETOv4PublicVectors(t *testing.T) {
	vectors := loadV4Vectors(t)
	var suiteKey ed25519.PublicKey // the public key the v4.public vectors share
	for _, v := range vectors {
		if v.PublicKey != "" {
			suiteKey = mustHex(t, v.PublicKey)
			break
		}
	}
	if suiteKey == nil {
		t.Fatal("no v4.public vector with a public key")
	}

	var valid, failing int
	for _, v := range vectors {
		if v.PublicKey == "" && !strings.HasPrefix(v.Token, "v4.public.") {
			continue // v4.local: not ours
		}
		if v.ExpectFail {
			failing++
		} else {
			valid++
		}
		t.Run(v.Name, func(t *testing.T) {
			footer, implicit := []byte(v.Footer), []byte(v.Implicit)
			if v.ExpectFail {
				// A vector meant to fail must fail with its own key (if it
				// has one), with the suite's key, and with its local key
				// misused as a public key.
				keys := []ed25519.PublicKey{suiteKey}
				if v.PublicKey != "" {
					keys = append(keys, mustHex(t, v.PublicKey))
				}
				if len(v.Key) == 2*ed25519.PublicKeySize {
					keys = append(keys, mustHex(t, v.Key))
				}
				for _, k := range keys {
					payload, err := verifyV4Public(k, v.Token, footer, implicit)
					if err == nil {
						t.Fatalf("accepted a token meant to fail: payload %q", payload)
					}
					if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrBadSignature) {
						t.Fatalf("err = %v, want ErrMalformed or ErrBadSignature", err)
					}
				}
				return
			}
			if v.Payload == nil {
				t.Fatal("valid vector without payload")
			}
			pub := ed25519.PublicKey(mustHex(t, v.PublicKey))
			payload, err := verifyV4Public(pub, v.Token, footer, implicit)
			if err != nil {
				t.Fatalf("verify: %v", err)
			}
			if string(payload) != *v.Payload {
				t.Fatalf("payload = %q, want %q", payload, *v.Payload)
			}

			secret := ed25519.PrivateKey(mustHex(t, v.SecretKey))
			tok, err := signV4Public(secret, []byte(*v.Payload), footer, implicit)
			if err != nil {
				t.Fatalf("sign: %v", err)
			}
			if tok != v.Token {
				t.Fatalf("signing reproduced\n%s\nwant\n%s", tok, v.Token)
			}

			// The same token with the wrong footer or implicit assertion,
			// or under another key, must not verify.
			if _, err := verifyV4Public(pub, v.Token, append(footer, 'x'), implicit); err == nil {
				t.Error("accepted with another footer")
			}
			if _, err := verifyV4Public(pub, v.Token, footer, append(implicit, 'x')); !errors.Is(err, ErrBadSignature) {
				t.Errorf("other implicit assertion: err = %v, want ErrBadSignature", err)
			}
			other := otherKey(t).Public().(ed25519.PublicKey)
			if _, err := verifyV4Public(other, v.Token, footer, implicit); !errors.Is(err, ErrBadSignature) {
				t.Errorf("other key: err = %v, want ErrBadSignature", err)
			}
		})
	}
	if valid < 3 || failing < 2 {
		t.Fatalf("ran %d valid and %d failing v4.public vectors; the vector file looks incomplete", valid, failing)
	}
}

func TestSignV4PublicRefusesNonCanonicalPayload(t *testing.T) {
	k := otherKey(t)
	for _, p := range []string{`{"b":1,"a":2}`, `{ "a":1}`, `[1]`, `nope`} {
		if _, err := signV4Public(k, []byte(p), nil, nil); !errors.Is(err, ErrInvalidArguments) {
			t.Errorf("signV4Public(%s): err = %v, want ErrInvalidArguments", p, err)
		}
	}
}

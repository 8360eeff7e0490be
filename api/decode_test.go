package api

import (
	"bytes"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"canopy/ledger"
)

type decodeTarget struct {
	Name  string            `json:"name"`
	Qty   int               `json:"qty"`
	Price *int64            `json:"price,omitempty"`
	Tags  map[string]string `json:"tags,omitempty"`
	Items []struct {
		SKU string `json:"sku"`
		N   uint16 `json:"n"`
	} `json:"items,omitempty"`
	Node *ledger.NodeID `json:"node,omitempty"`
	OK   bool           `json:"ok,omitempty"`
}

func decodeStatus(ct string, body []byte) (int, string, error) {
	r := httptest.NewRequest("POST", "/x", bytes.NewReader(body))
	if ct != "" {
		r.Header.Set("Content-Type", ct)
	}
	r.Body = http.MaxBytesReader(httptest.NewRecorder(), r.Body, 4096)
	var v decodeTarget
	err := DecodeJSON(r, &v)
	if err == nil {
		return 0, "", nil
	}
	var p *Problem
	var tooLarge *http.MaxBytesError
	switch {
	case errors.As(err, &p):
		return p.Status, p.Type, nil
	case errors.As(err, &tooLarge):
		return 413, TypeBodyTooLarge, nil
	}
	return 0, "", err
}

func TestDecodeJSON(t *testing.T) {
	cases := []struct {
		ct, body string
		typ      string
	}{
		{"application/json", `{"name":"a","qty":1}`, ""},
		{"application/json; charset=UTF-8", `{"name":"a"}`, ""},
		{"Application/JSON", `{"items":[{"sku":"x","n":2}]}`, ""},
		{"application/json", `{"node":"000102030405060708090a0b0c0d0e0f"}`, ""},
		{"application/json", `{"node":"nothex"}`, TypeInvalidValue},
		{"application/json", `{"items":[{"sku":"x","n":70000}]}`, TypeWrongFieldType},
		{"application/json", `{"items":[{"sku":"x","extra":1}]}`, TypeUnknownField},
		{"application/json", `[]`, TypeWrongFieldType},
		{"application/json", `"a"`, TypeWrongFieldType},
		{"application/json", `{} x`, TypeTrailingData},
		{"application/json", `{}{}`, TypeTrailingData},
		{"application/json", "{}\n\t ", ""},
		{"application/json", ``, TypeEmptyBody},
		{"application/json", `nul`, TypeMalformedJSON},
		{"application/json", ` null `, TypeMalformedJSON},
		{"application/json", strings.Repeat(" ", 5000), TypeBodyTooLarge},
		{"", `{}`, TypeUnsupportedMedia},
		{"application/x-www-form-urlencoded", `a=b`, TypeUnsupportedMedia},
		{"application/json; charset", `{}`, TypeUnsupportedMedia},
		{"application/merge-patch+json", `{}`, TypeUnsupportedMedia},
	}
	for _, c := range cases {
		_, typ, err := decodeStatus(c.ct, []byte(c.body))
		if err != nil {
			t.Errorf("%q %q: not a problem: %v", c.ct, c.body, err)
			continue
		}
		if typ != c.typ {
			t.Errorf("%q %.40q: got %q, want %q", c.ct, c.body, typ, c.typ)
		}
	}
}

// FuzzDecodeJSON checks that any body and content type either decodes or
// is refused with a client-error problem, never a panic or a server error,
// and that what decodes has a canonical form that decodes to a value of
// the same canonical form (so a replayed request fingerprints the same).
func FuzzDecodeJSON(f *testing.F) {
	for _, seed := range []string{
		`{"name":"a","qty":1}`, `{"tags":{"a":"b"},"items":[{"sku":"s","n":1}]}`, `{"node":"000102030405060708090a0b0c0d0e0f"}`,
		`{"price":null}`, `null`, `[]`, `{} {}`, `{"qty":1e3}`, "{\"name\":\"\xff\"}", `{"name":"\ud800"}`, ``, `{"a":`,
	} {
		f.Add("application/json", []byte(seed))
	}
	f.Add("text/plain", []byte(`{}`))
	f.Add("application/json; charset=utf-16", []byte(`{}`))
	f.Fuzz(func(t *testing.T, ct string, body []byte) {
		status, _, err := decodeStatus(ct, body)
		if err != nil {
			t.Fatalf("not a problem: %v", err)
		}
		if status != 0 && (status < 400 || status > 499) {
			t.Fatalf("status %d for client input", status)
		}
		if status != 0 {
			return
		}
		var v decodeTarget
		if err := decodeJSONBytes(body, &v); err != nil {
			t.Fatalf("decoded once, not twice: %v", err)
		}
		canon, err := canonicalJSON(&v)
		if err != nil {
			t.Fatal(err)
		}
		var again decodeTarget
		if err := decodeJSONBytes(canon, &again); err != nil {
			t.Fatalf("canonical form %s does not decode: %v", canon, err)
		}
		canon2, _ := canonicalJSON(&again)
		if !bytes.Equal(canon, canon2) {
			t.Fatalf("canonical form is not stable: %s vs %s", canon, canon2)
		}
	})
}

package views_test

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"canopy/ledger"
	"canopy/store"
	"canopy/views"
)

// parsedRows is what Idempotency.Rows returned before it skipped bodies
// that cannot name the key: always parse.
func parsedRows(body []byte) []string {
	var m struct {
		Key string `json:"idempotency_key"`
	}
	if json.Unmarshal(body, &m) != nil || m.Key == "" {
		return nil
	}
	return []string{m.Key}
}

func checkRows(t *testing.T, body []byte) {
	t.Helper()
	s := store.Stored{Entry: &ledger.Entry{Kind: "t/v1", Key: "k", Body: body}}
	got, want := views.Idempotency{}.Rows(s), parsedRows(body)
	if !slices.Equal(got, want) {
		t.Fatalf("Rows(%q) = %q, parsing gives %q", body, got, want)
	}
}

// TestIdempotencyRowsSkipsOnlyKeyless: the pre-check that skips parsing
// gives the same rows as parsing, for bodies that name the key in any case,
// through escapes or the Kelvin sign, and for bodies that do not.
func TestIdempotencyRowsSkipsOnlyKeyless(t *testing.T) {
	for _, body := range []string{
		`{"idempotency_key":"a","request_hash":"h"}`,
		`{"IDEMPOTENCY_KEY":"b"}`,
		`{"Idempotency_Key":"c"}`,
		`{"idempotency\u005fkey":"d"}`,
		`{"\u0069dempotency_key":"e"}`,
		"{\"idempotency_\u212aey\":\"f\"}", // Kelvin sign K matches k
		`{"note":"no key here"}`,
		`{"note":"idempotency_ in a value","x":1}`,
		`{"idempotency_key":""}`,
		`{"idempotency_key":`,
		`not json`,
		``,
		`i`,
		`{"idempotency":"x"}`,
	} {
		checkRows(t, []byte(body))
	}
}

// FuzzIdempotencyRows: for any body, the pre-check never changes the rows.
func FuzzIdempotencyRows(f *testing.F) {
	f.Add([]byte(`{"idempotency_key":"a"}`))
	f.Add([]byte(`{"IDEMPOTENCY_\u212aEY":"a"}`))
	f.Add([]byte(`{"note":"x"}`))
	f.Fuzz(func(t *testing.T, body []byte) { checkRows(t, body) })
}

// BenchmarkIdempotencyRowsKeyless: a body without the key, as most
// entries are (it used to be parsed every time).
func BenchmarkIdempotencyRowsKeyless(b *testing.B) {
	body := []byte(`{"note":"` + strings.Repeat("a", 150) + `"}`)
	s := store.Stored{Entry: &ledger.Entry{Kind: "t/v1", Key: "k", Body: body}}
	var r views.Idempotency
	for b.Loop() {
		if r.Rows(s) != nil {
			b.Fatal("rows for a body without the key")
		}
	}
}

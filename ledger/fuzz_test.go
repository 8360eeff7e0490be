package ledger

import (
	"bytes"
	"encoding/hex"
	"encoding/json"
	"os"
	"strings"
	"testing"
)

// goldenSeeds returns the golden vectors' encoded entries and checkpoint
// notes, for fuzz corpora.
func goldenSeeds(f *testing.F) (entries, notes [][]byte) {
	f.Helper()
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		f.Fatal(err)
	}
	var vf vectorFile
	if err := json.Unmarshal(raw, &vf); err != nil {
		f.Fatal(err)
	}
	for _, e := range vf.Entries {
		b, err := hex.DecodeString(e.Encoded)
		if err != nil {
			f.Fatal(err)
		}
		entries = append(entries, b)
	}
	for _, c := range vf.Checkpoints {
		notes = append(notes, []byte(c.Note))
	}
	return entries, notes
}

// Decode never panics, and whatever decodes re-encodes to the same bytes.
func FuzzDecode(f *testing.F) {
	entries, _ := goldenSeeds(f)
	for _, b := range entries {
		f.Add(b)
		f.Add(b[:len(b)-1])
	}
	f.Add([]byte("canopy-entry\x00\x02"))
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		e, err := Decode(b)
		if err != nil {
			if e != nil {
				t.Fatal("Decode returned an entry and an error")
			}
			return
		}
		if !bytes.Equal(e.Encode(), b) {
			t.Fatalf("re-encoding differs:\n in %x\nout %x", b, e.Encode())
		}
		// Verify must not panic either.
		_ = e.Verify(pubOf(vectorKey()))
	})
}

// ParseCheckpointBody and OpenCheckpoint never panic; a parsed body
// re-formats to a prefix of its text (the rest being extension lines), and
// a note that opens is one our signer would produce (when it carries only
// our signature and no extensions).
func FuzzCheckpoint(f *testing.F) {
	_, notes := goldenSeeds(f)
	for _, n := range notes {
		f.Add(n)
		body, _, _ := strings.Cut(string(n), "\n\n")
		f.Add([]byte(body + "\n"))
		f.Add([]byte(body + "\nextension\n"))
	}
	f.Add([]byte("o\n0\n47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU=\n"))
	key := vectorKey()
	pub := pubOf(key)
	f.Fuzz(func(t *testing.T, b []byte) {
		if cp, err := ParseCheckpointBody(string(b)); err == nil {
			if !strings.HasPrefix(string(b), cp.Body()) {
				t.Fatalf("body %q parsed as %+v, which formats as %q", b, cp, cp.Body())
			}
		}
		cp, err := OpenCheckpoint(b, testEvent, pub)
		if err != nil {
			return
		}
		if cp.Origin != Origin(testEvent, NodeIDOf(pub)) {
			t.Fatalf("opened a checkpoint with origin %q", cp.Origin)
		}
		if !strings.HasPrefix(string(b), cp.Body()) {
			t.Fatalf("note %q opened as %+v", b, cp)
		}
		if strings.Count(string(b), "\n") == 5 {
			ours, err := SignCheckpoint(key, testEvent, cp.Size, cp.Root)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(ours, b) {
				t.Fatalf("note %q opened but differs from our signature %q", b, ours)
			}
		}
	})
}

package ledger

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/mod/sumdb/note"
	"golang.org/x/mod/sumdb/tlog"
)

var update = flag.Bool("update", false, "rewrite testdata/vectors.json from the code")

const vectorsPath = "testdata/vectors.json"

// The golden file's shape. Byte strings are lower-case hex; text fields are
// the exact UTF-8 strings.
type vectorFile struct {
	Description     string              `json:"description"`
	Seed            string              `json:"seed"`
	PublicKey       string              `json:"public_key"`
	NodeID          string              `json:"node_id"`
	Event           string              `json:"event"`
	Origin          string              `json:"origin"`
	NoteVerifierKey string              `json:"note_verifier_key"`
	Entries         []vectorEntry       `json:"entries"`
	Roots           []vectorRoot        `json:"roots"`
	Checkpoints     []vectorCheckpoint  `json:"checkpoints"`
	Inclusion       []vectorInclusion   `json:"inclusion_proofs"`
	Consistency     []vectorConsistency `json:"consistency_proofs"`
}

type vectorEntry struct {
	Seq        uint64 `json:"seq"`
	Prev       string `json:"prev"`
	HLCWall    int64  `json:"hlc_wall"`
	HLCLogical uint32 `json:"hlc_logical"`
	Kind       string `json:"kind"`
	Key        string `json:"key"`
	Body       string `json:"body"`
	BodyHex    string `json:"body_hex"`
	Framing    string `json:"framing"`
	Signature  string `json:"signature"`
	Encoded    string `json:"encoded"`
	Hash       string `json:"hash"`
	LeafHash   string `json:"leaf_hash"`
}

type vectorRoot struct {
	Size int64  `json:"size"`
	Root string `json:"root"`
}

type vectorCheckpoint struct {
	Size uint64 `json:"size"`
	Root string `json:"root"`
	Body string `json:"body"`
	Note string `json:"note"`
}

type vectorInclusion struct {
	Proof     InclusionProof `json:"proof"`
	EntryHash string         `json:"entry_hash"`
	Root      string         `json:"root"`
}

type vectorConsistency struct {
	Proof   ConsistencyProof `json:"proof"`
	OldRoot string           `json:"old_root"`
	NewRoot string           `json:"new_root"`
}

// vectorEntries are the golden entries' contents: an empty key and body,
// non-ASCII text, two entries in one millisecond.
var vectorEntries = []struct {
	wall      int64
	logical   uint32
	kind, key string
	body      string
}{
	{1767261600000, 0, "order.created/v1", "order-0001", `{"vendor":"v-tacos","lines":[{"sku":"taco","qty":2}],"total":{"amount":1200,"currency":"EUR"}}`},
	{1767261601500, 0, "payment.recorded/v1", "order-0001", `{"method":"cash","amount":1500,"change":300}`},
	{1767261601500, 1, "node.heartbeat/v1", "", ``},
	{1767261602000, 0, "catalog.sku.set/v1", "sku-crêpe", `{"name":"Crêpe au sucre — 🥞","price":450,"note":"ünïcödé <&>"}`},
	{1767261602000, 7, "checkin.scanned/v1", "ticket-7f3a", `{"door":"north","direction":"in"}`},
	{1767261605123, 0, "receipt.issued/v1", "order-0001", `{"order":"order-0001","total":1200}`},
	{1767261609999, 4294967295, "bid.placed/v1", "lot-12", `{"amount":5000,"paddle":"p-42"}`},
}

func vectorKey() ed25519.PrivateKey { return seedKey(1) }

// buildVectors produces the golden file from the code under test.
func buildVectors(tb testing.TB) vectorFile {
	tb.Helper()
	key := vectorKey()
	pub := pubOf(key)
	node := NodeIDOf(pub)
	origin := Origin(testEvent, node)
	vkey, err := note.NewEd25519VerifierKey(origin, pub)
	if err != nil {
		tb.Fatal(err)
	}
	vf := vectorFile{
		Description: "Canopy ledger golden vectors; see ledger/FORMAT.md. Byte strings are lower-case hex. " +
			"The key is ed25519.NewKeyFromSeed(seed); entries form one log (seq 1..7); roots[n] is the root over entries 1..n.",
		Seed:            hex.EncodeToString(key.Seed()),
		PublicKey:       hex.EncodeToString(pub),
		NodeID:          node.String(),
		Event:           testEvent,
		Origin:          origin,
		NoteVerifierKey: vkey,
	}
	var prev Hash
	var hs []Hash
	for i, v := range vectorEntries {
		e := &Entry{Event: testEvent, Seq: uint64(i + 1), Prev: prev, HLC: HLC{Wall: v.wall, Logical: v.logical},
			Kind: v.kind, Key: v.key, Body: []byte(v.body)}
		if err := e.Sign(key); err != nil {
			tb.Fatal(err)
		}
		h := e.Hash()
		vf.Entries = append(vf.Entries, vectorEntry{
			Seq: e.Seq, Prev: e.Prev.String(), HLCWall: e.HLC.Wall, HLCLogical: e.HLC.Logical,
			Kind: e.Kind, Key: e.Key, Body: string(e.Body), BodyHex: hex.EncodeToString(e.Body),
			Framing: hex.EncodeToString(e.Framing()), Signature: hex.EncodeToString(e.Sig),
			Encoded: hex.EncodeToString(e.Encode()), Hash: h.String(), LeafHash: LeafHash(h).String(),
		})
		prev = h
		hs = append(hs, h)
	}
	tree := treeOfHashes(tb, hs)
	for n := int64(0); n <= int64(len(hs)); n++ {
		r, err := TreeRoot(n, tree)
		if err != nil {
			tb.Fatal(err)
		}
		vf.Roots = append(vf.Roots, vectorRoot{Size: n, Root: r.String()})
	}
	root := func(n int64) Hash { r, _ := TreeRoot(n, tree); return r }
	for _, n := range []uint64{3, 7} {
		msg, err := SignCheckpoint(key, testEvent, n, root(int64(n)))
		if err != nil {
			tb.Fatal(err)
		}
		cp := Checkpoint{Origin: origin, Size: n, Root: root(int64(n))}
		vf.Checkpoints = append(vf.Checkpoints, vectorCheckpoint{Size: n, Root: cp.Root.String(), Body: cp.Body(), Note: string(msg)})
	}
	for _, c := range []struct{ size, index int64 }{{7, 2}, {7, 6}, {3, 0}} {
		p, err := ProveInclusion(c.size, c.index, tree)
		if err != nil {
			tb.Fatal(err)
		}
		vf.Inclusion = append(vf.Inclusion, vectorInclusion{Proof: p, EntryHash: hs[c.index].String(), Root: root(c.size).String()})
	}
	for _, c := range []struct{ old, new int64 }{{3, 7}, {4, 7}, {1, 3}} {
		p, err := ProveConsistency(c.old, c.new, tree)
		if err != nil {
			tb.Fatal(err)
		}
		vf.Consistency = append(vf.Consistency, vectorConsistency{Proof: p, OldRoot: root(c.old).String(), NewRoot: root(c.new).String()})
	}
	return vf
}

func marshalVectors(tb testing.TB, vf vectorFile) []byte {
	tb.Helper()
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(vf); err != nil {
		tb.Fatal(err)
	}
	return buf.Bytes()
}

// The code reproduces testdata/vectors.json byte for byte (go test -update
// rewrites it).
func TestGoldenVectors(t *testing.T) {
	got := marshalVectors(t, buildVectors(t))
	if *update {
		if err := os.MkdirAll(filepath.Dir(vectorsPath), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(vectorsPath, got, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatalf("%v (run go test ./ledger -run TestGoldenVectors -update)", err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("%s differs from what the code produces; if the format change is intended, run with -update\n%s", vectorsPath, firstDiff(got, want))
	}
}

func firstDiff(a, b []byte) string {
	la, lb := bytes.Split(a, []byte("\n")), bytes.Split(b, []byte("\n"))
	for i := 0; i < len(la) && i < len(lb); i++ {
		if !bytes.Equal(la[i], lb[i]) {
			return fmt.Sprintf("line %d:\n code: %s\n file: %s", i+1, la[i], lb[i])
		}
	}
	return fmt.Sprintf("line counts differ: code %d, file %d", len(la), len(lb))
}

// The golden file checked with independent code only: its own framing
// writer, crypto/ed25519, crypto/sha256, x/mod's tlog and note. Nothing from
// package ledger is called. Another implementation can do the same.
func TestGoldenVectorsIndependently(t *testing.T) {
	raw, err := os.ReadFile(vectorsPath)
	if err != nil {
		t.Fatal(err)
	}
	// Decode into plain maps so ledger's types do not take part.
	var vf struct {
		Seed            string
		PublicKey       string `json:"public_key"`
		NodeID          string `json:"node_id"`
		Event           string
		Origin          string
		NoteVerifierKey string `json:"note_verifier_key"`
		Entries         []map[string]any
		Roots           []struct {
			Size int64
			Root string
		}
		Checkpoints []struct {
			Size       uint64
			Root       string
			Body, Note string
		}
		Inclusion []struct {
			Proof struct {
				Index, Size int64
				Hashes      []string
			}
			EntryHash string `json:"entry_hash"`
			Root      string
		} `json:"inclusion_proofs"`
		Consistency []struct {
			Proof struct {
				Old, New int64
				Hashes   []string
			}
			OldRoot string `json:"old_root"`
			NewRoot string `json:"new_root"`
		} `json:"consistency_proofs"`
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.UseNumber()
	if err := dec.Decode(&vf); err != nil {
		t.Fatal(err)
	}

	unhex := func(s string) []byte {
		t.Helper()
		b, err := hex.DecodeString(s)
		if err != nil {
			t.Fatalf("hex %q: %v", s, err)
		}
		return b
	}
	h32 := func(s string) tlog.Hash {
		t.Helper()
		var h tlog.Hash
		if b := unhex(s); len(b) != 32 {
			t.Fatalf("hash %q: %d bytes", s, len(b))
		} else {
			copy(h[:], b)
		}
		return h
	}

	priv := ed25519.NewKeyFromSeed(unhex(vf.Seed))
	pub := priv.Public().(ed25519.PublicKey)
	if !bytes.Equal(pub, unhex(vf.PublicKey)) {
		t.Fatal("public key does not derive from the seed")
	}
	idSum := sha256.Sum256(pub)
	if hex.EncodeToString(idSum[:16]) != vf.NodeID {
		t.Fatalf("node id %s, want first 16 bytes of SHA-256(pub) %x", vf.NodeID, idSum[:16])
	}
	if want := "canopy/" + vf.Event + "/" + vf.NodeID; vf.Origin != want {
		t.Fatalf("origin %q, want %q", vf.Origin, want)
	}
	if len(vf.Entries) < 5 {
		t.Fatalf("only %d entries", len(vf.Entries))
	}

	str := func(m map[string]any, k string) string { return m[k].(string) }
	num := func(m map[string]any, k string) uint64 {
		t.Helper()
		n, err := parseUint(m[k].(json.Number))
		if err != nil {
			t.Fatalf("%s: %v", k, err)
		}
		return n
	}
	var hashes []tlog.Hash
	var stored []tlog.Hash
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			out[i] = stored[x]
		}
		return out, nil
	})
	prev := make([]byte, 32)
	sawEmptyKey, sawNonASCII := false, false
	for i, m := range vf.Entries {
		seq := num(m, "seq")
		if seq != uint64(i+1) {
			t.Fatalf("entry %d: seq %d", i, seq)
		}
		if !bytes.Equal(unhex(str(m, "prev")), prev) {
			t.Fatalf("seq %d: prev is not the previous entry's hash", seq)
		}
		body := []byte(str(m, "body"))
		if !bytes.Equal(body, unhex(str(m, "body_hex"))) {
			t.Fatalf("seq %d: body and body_hex differ", seq)
		}
		sawEmptyKey = sawEmptyKey || str(m, "key") == ""
		for _, c := range body {
			sawNonASCII = sawNonASCII || c >= 0x80
		}
		// The framing, written out from FORMAT.md.
		var f []byte
		f = append(f, "canopy-entry\x00\x01"...)
		f = binary.BigEndian.AppendUint16(f, uint16(len(vf.Event)))
		f = append(f, vf.Event...)
		f = append(f, unhex(vf.NodeID)...)
		f = binary.BigEndian.AppendUint64(f, seq)
		f = append(f, prev...)
		f = binary.BigEndian.AppendUint64(f, num(m, "hlc_wall"))
		f = binary.BigEndian.AppendUint32(f, uint32(num(m, "hlc_logical")))
		f = binary.BigEndian.AppendUint16(f, uint16(len(str(m, "kind"))))
		f = append(f, str(m, "kind")...)
		f = binary.BigEndian.AppendUint16(f, uint16(len(str(m, "key"))))
		f = append(f, str(m, "key")...)
		f = binary.BigEndian.AppendUint32(f, uint32(len(body)))
		f = append(f, body...)
		if !bytes.Equal(f, unhex(str(m, "framing"))) {
			t.Fatalf("seq %d: framing differs from FORMAT.md's layout:\n got %x\nfile %s", seq, f, str(m, "framing"))
		}
		sig := unhex(str(m, "signature"))
		if !ed25519.Verify(pub, f, sig) {
			t.Fatalf("seq %d: signature does not verify", seq)
		}
		if !bytes.Equal(sig, ed25519.Sign(priv, f)) {
			t.Fatalf("seq %d: signature is not the deterministic Ed25519 signature", seq)
		}
		encoded := append(append([]byte{}, f...), sig...)
		if !bytes.Equal(encoded, unhex(str(m, "encoded"))) {
			t.Fatalf("seq %d: encoded is not framing || signature", seq)
		}
		h := sha256.Sum256(encoded)
		if hex.EncodeToString(h[:]) != str(m, "hash") {
			t.Fatalf("seq %d: hash is not SHA-256(encoded)", seq)
		}
		leaf := sha256.Sum256(append([]byte{0}, h[:]...))
		if hex.EncodeToString(leaf[:]) != str(m, "leaf_hash") || tlog.Hash(leaf) != tlog.RecordHash(h[:]) {
			t.Fatalf("seq %d: leaf hash is not SHA-256(0x00 || hash)", seq)
		}
		more, err := tlog.StoredHashes(int64(i), h[:], reader)
		if err != nil {
			t.Fatal(err)
		}
		stored = append(stored, more...)
		hashes = append(hashes, tlog.Hash(h))
		prev = h[:]
	}
	if !sawEmptyKey || !sawNonASCII {
		t.Fatalf("vectors lack an empty key (%v) or a non-ASCII body (%v)", sawEmptyKey, sawNonASCII)
	}

	if len(vf.Roots) != len(hashes)+1 {
		t.Fatalf("%d roots for %d entries", len(vf.Roots), len(hashes))
	}
	roots := map[int64]tlog.Hash{}
	for _, r := range vf.Roots {
		want, err := tlog.TreeHash(r.Size, reader)
		if err != nil {
			t.Fatal(err)
		}
		if h32(r.Root) != want {
			t.Fatalf("root of size %d: file %s, tlog %x", r.Size, r.Root, want)
		}
		roots[r.Size] = want
	}

	verifier, err := note.NewVerifier(vf.NoteVerifierKey)
	if err != nil {
		t.Fatal(err)
	}
	if vkey, _ := note.NewEd25519VerifierKey(vf.Origin, pub); vkey != vf.NoteVerifierKey {
		t.Fatalf("note verifier key %q, want %q", vf.NoteVerifierKey, vkey)
	}
	for _, c := range vf.Checkpoints {
		n, err := note.Open([]byte(c.Note), note.VerifierList(verifier))
		if err != nil {
			t.Fatalf("checkpoint %d: %v", c.Size, err)
		}
		root := roots[int64(c.Size)]
		want := fmt.Sprintf("%s\n%d\n%s\n", vf.Origin, c.Size, base64.StdEncoding.EncodeToString(root[:]))
		if n.Text != want || c.Body != want || h32(c.Root) != root {
			t.Fatalf("checkpoint %d: text %q, want %q", c.Size, n.Text, want)
		}
	}
	if len(vf.Inclusion) == 0 || len(vf.Consistency) == 0 {
		t.Fatal("no proofs in the vectors")
	}
	for _, p := range vf.Inclusion {
		var proof tlog.RecordProof
		for _, s := range p.Proof.Hashes {
			proof = append(proof, h32(s))
		}
		if h32(p.Root) != roots[p.Proof.Size] || h32(p.EntryHash) != hashes[p.Proof.Index] {
			t.Fatalf("inclusion %d in %d: root or entry hash differ from the entries", p.Proof.Index, p.Proof.Size)
		}
		if err := tlog.CheckRecord(proof, p.Proof.Size, h32(p.Root), p.Proof.Index, tlog.RecordHash(unhex(p.EntryHash))); err != nil {
			t.Fatalf("inclusion %d in %d: %v", p.Proof.Index, p.Proof.Size, err)
		}
	}
	for _, p := range vf.Consistency {
		var proof tlog.TreeProof
		for _, s := range p.Proof.Hashes {
			proof = append(proof, h32(s))
		}
		if h32(p.OldRoot) != roots[p.Proof.Old] || h32(p.NewRoot) != roots[p.Proof.New] {
			t.Fatalf("consistency %d → %d: roots differ from the entries", p.Proof.Old, p.Proof.New)
		}
		if err := tlog.CheckTree(proof, p.Proof.New, h32(p.NewRoot), p.Proof.Old, h32(p.OldRoot)); err != nil {
			t.Fatalf("consistency %d → %d: %v", p.Proof.Old, p.Proof.New, err)
		}
	}
}

func parseUint(n json.Number) (uint64, error) {
	var v uint64
	_, err := fmt.Sscan(n.String(), &v)
	return v, err
}

package ledger

import (
	"errors"
	"fmt"
	"strings"
	"testing"

	"pgregory.net/rapid"
)

// logWithCheckpoints returns n entries and checkpoints at the given sizes.
func logWithCheckpoints(tb testing.TB, n int, sizes ...int) ([]*Entry, [][]byte) {
	tb.Helper()
	key := seedKey(1)
	entries := makeLog(tb, key, testEvent, n)
	hs := hashesOf(entries)
	var cps [][]byte
	for _, s := range sizes {
		msg, err := SignCheckpoint(key, testEvent, uint64(s), RootOf(hs[:s]))
		if err != nil {
			tb.Fatal(err)
		}
		cps = append(cps, msg)
	}
	return entries, cps
}

func TestVerifyLogGood(t *testing.T) {
	entries, cps := logWithCheckpoints(t, 20, 0, 1, 7, 7, 16, 20)
	if err := VerifyLog(testEvent, pubOf(seedKey(1)), entries, cps); err != nil {
		t.Fatal(err)
	}
	enc := make([][]byte, len(entries))
	for i, e := range entries {
		enc[i] = e.Encode()
	}
	if err := VerifyEncodedLog(testEvent, pubOf(seedKey(1)), enc, cps); err != nil {
		t.Fatal(err)
	}
	if err := VerifyLog(testEvent, pubOf(seedKey(1)), nil, nil); err != nil {
		t.Fatalf("empty log: %v", err)
	}
}

// problems returns the LogError's problems as strings, failing if err is
// not a *LogError.
func problems(t *testing.T, err error) []string {
	t.Helper()
	var le *LogError
	if !errors.As(err, &le) {
		t.Fatalf("err = %v (%T), want *LogError", err, err)
	}
	var out []string
	for _, p := range le.Problems {
		out = append(out, p.Error())
	}
	return out
}

func wantProblems(t *testing.T, err error, want ...string) {
	t.Helper()
	got := problems(t, err)
	if len(got) != len(want) {
		t.Fatalf("got %d problems, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i := range want {
		if !strings.Contains(got[i], want[i]) {
			t.Errorf("problem %d = %q, want it to contain %q", i, got[i], want[i])
		}
	}
}

func TestVerifyLogReportsEveryProblem(t *testing.T) {
	key := seedKey(1)
	pub := pubOf(key)
	entries, cps := logWithCheckpoints(t, 20, 5, 12, 20)

	// seq 8: a body changed after signing (bad signature, and seq 9's prev
	// no longer matches); seq 14: re-signed with a wrong prev.
	entries[7].Body = []byte(`{"n":"tampered"}`)
	h8 := entries[7].Hash()
	e14 := *entries[13]
	e14.Prev = Hash{0xaa}
	if err := e14.Sign(key); err != nil {
		t.Fatal(err)
	}
	entries[13] = &e14
	err := VerifyLog(testEvent, pub, entries, cps)
	wantProblems(t, err,
		"entry seq 8: ledger: signature does not verify",
		fmt.Sprintf("entry seq 9: ledger: prev does not match the previous entry's hash: prev is %s, hash of seq 8 is %s", entries[8].Prev, h8),
		fmt.Sprintf("entry seq 14: ledger: prev does not match the previous entry's hash: prev is %s, hash of seq 13 is %s", e14.Prev, entries[12].Hash()),
		"entry seq 15: ledger: prev does not match",
		"checkpoint #2 (size 12): ledger: checkpoint root does not match the entries: root",
		"checkpoint #3 (size 20): ledger: checkpoint root does not match the entries: root",
	)
	if !strings.Contains(problems(t, err)[4], "does not match entries 1..12") {
		t.Errorf("root problem does not name the range: %s", problems(t, err)[4])
	}
	for _, sentinel := range []error{ErrBadSignature, ErrBrokenChain, ErrRootMismatch} {
		if !errors.Is(err, sentinel) {
			t.Errorf("errors.Is(err, %v) = false", sentinel)
		}
	}
	if !strings.HasPrefix(err.Error(), "log canopy/"+testEvent+"/"+NodeIDOf(pub).String()+": 6 problems\n  entry seq 8") {
		t.Errorf("Error() = %q", err.Error())
	}
}

func TestVerifyLogStructure(t *testing.T) {
	key := seedKey(1)
	pub := pubOf(key)
	entries, _ := logWithCheckpoints(t, 6)

	// A missing entry (seq 3) is a gap and a broken chain, once.
	gap := append(append([]*Entry{}, entries[:2]...), entries[3:]...)
	wantProblems(t, VerifyLog(testEvent, pub, gap, nil),
		"entry seq 4 (position 3): ledger: seq is not contiguous: seq is 4, want 3",
		"entry seq 4 (position 3): ledger: prev does not match",
	)

	// Entries of another event and another author.
	other := makeLog(t, seedKey(2), testEvent, 1)[0]
	elsewhere := makeLog(t, key, "other-market", 1)[0]
	wantProblems(t, VerifyLog(testEvent, pub, []*Entry{elsewhere, entries[1]}, nil),
		`entry seq 1: ledger: entry of another event: event is "other-market", want "night-market-2026"`,
		"entry seq 2: ledger: prev does not match",
	)
	wantProblems(t, VerifyLog(testEvent, pub, []*Entry{other}, nil),
		"entry seq 1: ledger: node id does not match the public key: author is "+other.Node.String(),
	)

	// A log not starting at seq 1, and a nil entry.
	wantProblems(t, VerifyLog(testEvent, pub, entries[1:3], nil),
		"entry seq 2 (position 1): ledger: seq is not contiguous: seq is 2, want 1",
		"entry seq 2 (position 1): ledger: prev does not match the previous entry's hash: prev is",
	)
	wantProblems(t, VerifyLog(testEvent, pub, []*Entry{entries[0], nil, entries[2]}, nil),
		"entry at position 2: ledger: malformed entry: missing",
	)

	// An entry that does not decode.
	enc := [][]byte{entries[0].Encode(), []byte("junk"), entries[2].Encode()}
	_, cps := logWithCheckpoints(t, 6, 3)
	wantProblems(t, VerifyEncodedLog(testEvent, pub, enc, cps),
		"entry at position 2: ledger: malformed entry: bad magic",
		"checkpoint #1 (size 3): root not checked",
	)
}

func TestVerifyLogCheckpoints(t *testing.T) {
	key := seedKey(1)
	pub := pubOf(key)
	entries, cps := logWithCheckpoints(t, 10, 4, 8, 10)
	hs := hashesOf(entries)

	// Out of order, and beyond the log.
	wantProblems(t, VerifyLog(testEvent, pub, entries[:9], [][]byte{cps[1], cps[0], cps[2]}),
		"checkpoint #2 (size 4): ledger: checkpoints disagree with each other: size is below checkpoint #1's size 8",
		"checkpoint #3 (size 10): ledger: checkpoint covers entries the log lacks: the log has only 9 entries",
	)

	// Two histories: the same size with another root (a fork).
	fork, err := SignCheckpoint(key, testEvent, 8, RootOf(append(append([]Hash{}, hs[:7]...), Hash{1})))
	if err != nil {
		t.Fatal(err)
	}
	wantProblems(t, VerifyLog(testEvent, pub, entries, [][]byte{cps[1], fork}),
		"checkpoint #2 (size 8): ledger: checkpoints disagree with each other: root",
		"checkpoint #2 (size 8): ledger: checkpoint root does not match the entries: root",
	)

	// Another node's checkpoint, and garbage.
	theirs, _ := SignCheckpoint(seedKey(2), testEvent, 4, RootOf(hs[:4]))
	wantProblems(t, VerifyLog(testEvent, pub, entries, [][]byte{theirs, []byte("not a note")}),
		"checkpoint #1: ledger: checkpoint signature does not verify",
		"checkpoint #2: ledger: malformed checkpoint",
	)

	// A bad public key is one problem, not a panic.
	if err := VerifyLog(testEvent, pub[:5], entries, cps); err == nil {
		t.Fatal("short public key accepted")
	}
}

func TestVerifyLogBoundsProblems(t *testing.T) {
	entries, _ := logWithCheckpoints(t, MaxLogProblems+30)
	for _, e := range entries {
		e.Sig[0] ^= 1
	}
	var le *LogError
	if !errors.As(VerifyLog(testEvent, pubOf(seedKey(1)), entries, nil), &le) {
		t.Fatal("want *LogError")
	}
	// Each entry: a bad signature, and every one after the first a broken chain.
	if len(le.Problems) != MaxLogProblems || le.Omitted != 2*len(entries)-1-MaxLogProblems {
		t.Fatalf("%d problems, %d omitted", len(le.Problems), le.Omitted)
	}
	if !strings.HasSuffix(le.Error(), fmt.Sprintf("… and %d more", le.Omitted)) {
		t.Fatalf("Error() does not count the omitted problems")
	}
}

// Property: changing any single byte of any encoded entry or checkpoint
// note makes the log fail verification.
func TestVerifyLogRejectsAnyByteChange(t *testing.T) {
	pub := pubOf(seedKey(1))
	entries, cps := logWithCheckpoints(t, 9, 1, 4, 9)
	enc := make([][]byte, len(entries))
	for i, e := range entries {
		enc[i] = e.Encode()
	}
	if err := VerifyEncodedLog(testEvent, pub, enc, cps); err != nil {
		t.Fatal(err)
	}
	rapid.Check(t, func(rt *rapid.T) {
		es := cloneAll(enc)
		cs := cloneAll(cps)
		var target []byte
		if rapid.Bool().Draw(rt, "inCheckpoint") {
			target = cs[rapid.IntRange(0, len(cs)-1).Draw(rt, "checkpoint")]
		} else {
			target = es[rapid.IntRange(0, len(es)-1).Draw(rt, "entry")]
		}
		off := rapid.IntRange(0, len(target)-1).Draw(rt, "offset")
		old := target[off]
		target[off] = rapid.Byte().Filter(func(b byte) bool { return b != old }).Draw(rt, "value")
		if err := VerifyEncodedLog(testEvent, pub, es, cs); err == nil {
			rt.Fatalf("byte %d changed from %#x to %#x and the log still verifies", off, old, target[off])
		}
	})
}

func cloneAll(bs [][]byte) [][]byte {
	out := make([][]byte, len(bs))
	for i, b := range bs {
		out[i] = append([]byte(nil), b...)
	}
	return out
}

package ledger

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/json"
	"errors"
	"testing"

	"golang.org/x/mod/sumdb/tlog"
	"pgregory.net/rapid"
)

// syntheticHashes returns n distinct entry hashes without signing entries.
func syntheticHashes(n int) []Hash {
	out := make([]Hash, n)
	for i := range out {
		var b [8]byte
		binary.BigEndian.PutUint64(b[:], uint64(i))
		out[i] = sha256.Sum256(b[:])
	}
	return out
}

func treeOfHashes(tb testing.TB, hs []Hash) memHashes {
	tb.Helper()
	var m memHashes
	for i, h := range hs {
		stored, err := StoredHashes(int64(i), h, m)
		if err != nil {
			tb.Fatal(err)
		}
		if want := tlog.StoredHashIndex(0, int64(i)); int64(len(m)) != want {
			tb.Fatalf("leaf %d: stored hashes start at %d, tlog says %d", i, len(m), want)
		}
		m = append(m, toTlog(stored)...)
	}
	return m
}

func TestLeafHashIsRFC6962(t *testing.T) {
	h := sha256.Sum256([]byte("entry"))
	want := sha256.Sum256(append([]byte{0x00}, h[:]...))
	if got := LeafHash(h); got != want {
		t.Fatalf("LeafHash = %s, want SHA-256(0x00||h) = %x", got, want)
	}
}

func TestEmptyRoot(t *testing.T) {
	const want = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
	if EmptyRoot.String() != want || RootOf(nil) != EmptyRoot {
		t.Fatalf("empty root %s, RootOf(nil) %s, want %s", EmptyRoot, RootOf(nil), want)
	}
	r, err := TreeRoot(0, memHashes(nil))
	if err != nil || r != EmptyRoot {
		t.Fatalf("TreeRoot(0) = %s, %v", r, err)
	}
}

// RootOf (in memory, our code) and TreeRoot (tlog over stored hashes) agree
// for every size up to 70, and with a hand-written RFC 6962 MTH.
func TestRootOfMatchesTlog(t *testing.T) {
	hs := syntheticHashes(70)
	m := treeOfHashes(t, hs)
	for n := 0; n <= len(hs); n++ {
		want, err := TreeRoot(int64(n), m)
		if err != nil {
			t.Fatal(err)
		}
		if got := RootOf(hs[:n]); got != want {
			t.Fatalf("size %d: RootOf %s, tlog %s", n, got, want)
		}
		if got := mth(hs[:n]); got != want {
			t.Fatalf("size %d: recursive MTH %s, tlog %s", n, got, want)
		}
	}
}

// mth is RFC 6962 section 2.1 transcribed literally.
func mth(d []Hash) Hash {
	switch len(d) {
	case 0:
		return sha256.Sum256(nil)
	case 1:
		return sha256.Sum256(append([]byte{0}, d[0][:]...))
	}
	k := 1
	for k*2 < len(d) {
		k *= 2
	}
	l, r := mth(d[:k]), mth(d[k:])
	return sha256.Sum256(append(append([]byte{1}, l[:]...), r[:]...))
}

func TestProofArgumentErrors(t *testing.T) {
	m := treeOfHashes(t, syntheticHashes(4))
	for _, c := range []struct{ size, index int64 }{{4, 4}, {4, -1}, {0, 0}} {
		if _, err := ProveInclusion(c.size, c.index, m); err == nil {
			t.Errorf("ProveInclusion(%d, %d) succeeded", c.size, c.index)
		}
	}
	for _, c := range []struct{ old, new int64 }{{0, 4}, {5, 4}, {-1, 2}} {
		if _, err := ProveConsistency(c.old, c.new, m); err == nil {
			t.Errorf("ProveConsistency(%d, %d) succeeded", c.old, c.new)
		}
	}
	// A reader that lacks the hashes gives an error, not a panic.
	if _, err := ProveInclusion(8, 3, m); err == nil {
		t.Error("ProveInclusion beyond the stored tree succeeded")
	}
	if _, err := TreeRoot(-1, m); err == nil {
		t.Error("TreeRoot(-1) succeeded")
	}
	if _, err := StoredHashes(-1, Hash{}, m); err == nil {
		t.Error("StoredHashes(-1) succeeded")
	}
	// Malformed proofs are rejected with ErrProof.
	root := RootOf(syntheticHashes(4))
	bad := []InclusionProof{{Index: 5, Size: 4}, {Index: 0, Size: 4, Hashes: make([]Hash, 200)}, {Index: 0, Size: 4}}
	for _, p := range bad {
		if err := VerifyInclusion(p, root, syntheticHashes(1)[0]); !errors.Is(err, ErrProof) {
			t.Errorf("VerifyInclusion(%+v) = %v, want ErrProof", p, err)
		}
	}
	if err := VerifyConsistency(ConsistencyProof{Old: 0, New: 4}, EmptyRoot, root); !errors.Is(err, ErrProof) {
		t.Errorf("VerifyConsistency from 0 = %v, want ErrProof", err)
	}
}

func TestProofJSON(t *testing.T) {
	m := treeOfHashes(t, syntheticHashes(5))
	p, err := ProveInclusion(5, 4, m)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(p)
	if err != nil {
		t.Fatal(err)
	}
	var back InclusionProof
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := VerifyInclusion(back, RootOf(syntheticHashes(5)), syntheticHashes(5)[4]); err != nil {
		t.Fatalf("round-tripped proof %s: %v", b, err)
	}
	// An equal-size consistency proof has no hashes and marshals as [].
	c, err := ProveConsistency(5, 5, m)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = json.Marshal(c)
	if string(b) != `{"old":5,"new":5,"hashes":[]}` {
		t.Fatalf("consistency JSON %s", b)
	}
}

// Property: inclusion and consistency proofs for random sizes verify with
// our verifier and with tlog's, and fail for a wrong leaf or root.
func TestProofsProperty(t *testing.T) {
	all := syntheticHashes(300)
	m := treeOfHashes(t, all)
	roots := make([]Hash, len(all)+1)
	for n := range roots {
		roots[n] = RootOf(all[:n])
	}
	rapid.Check(t, func(rt *rapid.T) {
		size := rapid.Int64Range(1, int64(len(all))).Draw(rt, "size")
		index := rapid.Int64Range(0, size-1).Draw(rt, "index")
		p, err := ProveInclusion(size, index, m)
		if err != nil {
			rt.Fatal(err)
		}
		if err := VerifyInclusion(p, roots[size], all[index]); err != nil {
			rt.Fatalf("inclusion of %d in %d: %v", index, size, err)
		}
		if err := tlog.CheckRecord(toTlog(p.Hashes), size, tlog.Hash(roots[size]), index, tlog.RecordHash(all[index][:])); err != nil {
			rt.Fatalf("tlog.CheckRecord: %v", err)
		}
		other := rapid.Int64Range(0, int64(len(all))-1).Filter(func(i int64) bool { return i != index }).Draw(rt, "other")
		if err := VerifyInclusion(p, roots[size], all[other]); !errors.Is(err, ErrProof) {
			rt.Fatalf("inclusion with leaf %d instead of %d: %v", other, index, err)
		}
		wrongSize := rapid.Int64Range(0, int64(len(all))).Filter(func(n int64) bool { return n != size }).Draw(rt, "wrongSize")
		if err := VerifyInclusion(p, roots[wrongSize], all[index]); !errors.Is(err, ErrProof) {
			rt.Fatalf("inclusion against root of size %d: %v", wrongSize, err)
		}
		if len(p.Hashes) > 0 {
			i := rapid.IntRange(0, len(p.Hashes)-1).Draw(rt, "flip")
			q := p
			q.Hashes = append([]Hash(nil), p.Hashes...)
			q.Hashes[i][0] ^= 1
			if err := VerifyInclusion(q, roots[size], all[index]); !errors.Is(err, ErrProof) {
				rt.Fatalf("inclusion with hash %d changed: %v", i, err)
			}
		}

		old := rapid.Int64Range(1, size).Draw(rt, "old")
		c, err := ProveConsistency(old, size, m)
		if err != nil {
			rt.Fatal(err)
		}
		if err := VerifyConsistency(c, roots[old], roots[size]); err != nil {
			rt.Fatalf("consistency %d → %d: %v", old, size, err)
		}
		if err := tlog.CheckTree(toTlog(c.Hashes), size, tlog.Hash(roots[size]), old, tlog.Hash(roots[old])); err != nil {
			rt.Fatalf("tlog.CheckTree: %v", err)
		}
		var fake Hash
		fake[0] = 0xff
		if err := VerifyConsistency(c, fake, roots[size]); !errors.Is(err, ErrProof) {
			rt.Fatalf("consistency with a wrong old root: %v", err)
		}
		if err := VerifyConsistency(c, roots[old], fake); !errors.Is(err, ErrProof) {
			rt.Fatalf("consistency with a wrong new root: %v", err)
		}
		if old > 1 {
			if err := VerifyConsistency(c, roots[old-1], roots[size]); !errors.Is(err, ErrProof) {
				rt.Fatalf("consistency with the root of size %d for %d: %v", old-1, old, err)
			}
		}
	})
}

package replica

import (
	"crypto/ed25519"
	"crypto/sha256"
	"fmt"
	"testing"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
)

// TestFrontierRoots: a frontier read from stored tree hashes at any size
// and extended leaf by leaf has the same root as the tree computed in
// memory by ledger.RootOf, at every size.
func TestFrontierRoots(t *testing.T) {
	const n = 70
	var hashes []ledger.Hash
	stored := map[int64]tlog.Hash{}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(idx))
		for i, x := range idx {
			h, ok := stored[x]
			if !ok {
				return nil, fmt.Errorf("no stored hash %d", x)
			}
			out[i] = h
		}
		return out, nil
	})
	read := func(idx []int64) ([]ledger.Hash, error) {
		hs, err := reader.ReadHashes(idx)
		out := make([]ledger.Hash, len(hs))
		for i, h := range hs {
			out[i] = ledger.Hash(h)
		}
		return out, err
	}
	for i := range n {
		h := ledger.Hash(sha256.Sum256([]byte{byte(i)}))
		hs, err := ledger.StoredHashes(int64(i), h, reader)
		if err != nil {
			t.Fatal(err)
		}
		for k, sh := range hs {
			stored[tlog.StoredHashCount(int64(i))+int64(k)] = tlog.Hash(sh)
		}
		hashes = append(hashes, h)
	}
	for start := 0; start <= n; start++ {
		f, err := loadFrontier(uint64(start), read)
		if err != nil {
			t.Fatal(err)
		}
		if got, want := f.root(), ledger.RootOf(hashes[:start]); got != want {
			t.Fatalf("loaded at %d: root %s, want %s", start, got, want)
		}
		for size := start + 1; size <= n; size++ {
			f.push(hashes[size-1])
			if got, want := f.root(), ledger.RootOf(hashes[:size]); got != want {
				t.Fatalf("loaded at %d, pushed to %d: root %s, want %s", start, size, got, want)
			}
		}
	}
}

// TestCheckpointSize reads a checkpoint note's size without its key and
// rejects what is not a note.
func TestCheckpointSize(t *testing.T) {
	key := ledger.Hash(sha256.Sum256([]byte("seed")))
	note, err := ledger.SignCheckpoint(ed25519Key(key), "ev", 42, ledger.EmptyRoot)
	if err != nil {
		t.Fatal(err)
	}
	if size, ok := checkpointSize(note); !ok || size != 42 {
		t.Fatalf("checkpointSize = %d, %v; want 42", size, ok)
	}
	for _, bad := range []string{"", "canopy/ev/x\n42\n", "no\n\nsig", "o\nx\nroot\n\n— sig\n"} {
		if size, ok := checkpointSize([]byte(bad)); ok {
			t.Errorf("checkpointSize(%q) = %d, true; want false", bad, size)
		}
	}
}

func ed25519Key(seed ledger.Hash) ed25519.PrivateKey { return ed25519.NewKeyFromSeed(seed[:]) }

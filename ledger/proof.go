package ledger

import (
	"crypto/sha256"
	"errors"
	"fmt"

	"golang.org/x/mod/sumdb/tlog"
)

// Each author's log is an RFC 6962 Merkle tree: leaf i (0-based) is the
// entry with seq i+1, and the leaf's record data is its 32-byte entry hash.
// Tree hashes, stored-hash layout and proofs are those of
// golang.org/x/mod/sumdb/tlog, so any RFC 6962 tooling can check them.

// ErrProof is wrapped by every error of VerifyInclusion and VerifyConsistency.
var ErrProof = errors.New("ledger: proof does not verify")

// maxProofHashes bounds the hashes a proof may carry: a tree of 2^63 leaves
// needs at most 63 for inclusion and 126 for consistency.
const maxProofHashes = 128

// LeafHash returns the Merkle leaf hash of an entry: SHA-256(0x00 || entryHash).
func LeafHash(entryHash Hash) Hash {
	return Hash(tlog.RecordHash(entryHash[:]))
}

// EmptyRoot is the root of the tree with no leaves: SHA-256 of the empty
// string (RFC 6962, section 2.1).
var EmptyRoot = Hash(sha256.Sum256(nil))

// StoredHashes returns the tree hashes a writer must store when it appends
// the entry with the given hash at leaf index (seq-1). They are stored at
// tlog.StoredHashIndex(0, index) onwards; r must return the hashes stored
// for earlier leaves.
func StoredHashes(index int64, entryHash Hash, r tlog.HashReader) ([]Hash, error) {
	if index < 0 {
		return nil, fmt.Errorf("stored hashes: negative leaf index %d", index)
	}
	th, err := tlog.StoredHashesForRecordHash(index, tlog.Hash(LeafHash(entryHash)), r)
	if err != nil {
		return nil, fmt.Errorf("stored hashes for leaf %d: %w", index, err)
	}
	return fromTlog(th), nil
}

// TreeRoot returns the root of the tree of the first size leaves, reading
// stored hashes from r. The root of the empty tree is EmptyRoot.
func TreeRoot(size int64, r tlog.HashReader) (Hash, error) {
	if size < 0 {
		return Hash{}, fmt.Errorf("tree root: negative size %d", size)
	}
	h, err := tlog.TreeHash(size, r)
	if err != nil {
		return Hash{}, fmt.Errorf("tree root of size %d: %w", size, err)
	}
	return Hash(h), nil
}

// RootOf returns the Merkle root over the given entry hashes, in log order,
// computed in memory (RFC 6962 MTH with LeafHash leaves). It does not use
// tlog, so verifiers and tests can cross-check the two.
func RootOf(entryHashes []Hash) Hash {
	if len(entryHashes) == 0 {
		return EmptyRoot
	}
	// stack holds the roots of complete subtrees of strictly decreasing
	// size, like the binary digits of the number of leaves so far.
	type subtree struct {
		h    Hash
		size int
	}
	var stack []subtree
	for _, eh := range entryHashes {
		cur := subtree{LeafHash(eh), 1}
		for len(stack) > 0 && stack[len(stack)-1].size == cur.size {
			top := stack[len(stack)-1]
			stack = stack[:len(stack)-1]
			cur = subtree{nodeHash(top.h, cur.h), 2 * cur.size}
		}
		stack = append(stack, cur)
	}
	// Fold the incomplete right edge: the smallest subtrees hang off the
	// right-most path.
	root := stack[len(stack)-1].h
	for i := len(stack) - 2; i >= 0; i-- {
		root = nodeHash(stack[i].h, root)
	}
	return root
}

// nodeHash is RFC 6962's interior node hash: SHA-256(0x01 || left || right).
func nodeHash(left, right Hash) Hash {
	var b [1 + 2*HashSize]byte
	b[0] = 0x01
	copy(b[1:], left[:])
	copy(b[1+HashSize:], right[:])
	return sha256.Sum256(b[:])
}

// InclusionProof proves that the entry at leaf Index (seq Index+1) is in the
// tree of Size leaves. Hashes are in tlog.RecordProof order and marshal as
// lower-case hex strings.
type InclusionProof struct {
	Index  int64  `json:"index"`
	Size   int64  `json:"size"`
	Hashes []Hash `json:"hashes"`
}

// ConsistencyProof proves that the tree of Old leaves is a prefix of the
// tree of New leaves. Hashes are in tlog.TreeProof order and marshal as
// lower-case hex strings.
type ConsistencyProof struct {
	Old    int64  `json:"old"`
	New    int64  `json:"new"`
	Hashes []Hash `json:"hashes"`
}

// ProveInclusion returns the proof that leaf index is in the tree of size
// leaves, reading stored hashes from r.
func ProveInclusion(size, index int64, r tlog.HashReader) (InclusionProof, error) {
	if index < 0 || index >= size {
		return InclusionProof{}, fmt.Errorf("prove inclusion: leaf index %d not in a tree of size %d", index, size)
	}
	p, err := tlog.ProveRecord(size, index, r)
	if err != nil {
		return InclusionProof{}, fmt.Errorf("prove inclusion of leaf %d in size %d: %w", index, size, err)
	}
	return InclusionProof{Index: index, Size: size, Hashes: fromTlog(p)}, nil
}

// ProveConsistency returns the proof that the tree of oldSize leaves is a
// prefix of the tree of newSize leaves, reading stored hashes from r.
// oldSize must be at least 1.
func ProveConsistency(oldSize, newSize int64, r tlog.HashReader) (ConsistencyProof, error) {
	if oldSize < 1 || oldSize > newSize {
		return ConsistencyProof{}, fmt.Errorf("prove consistency: sizes %d → %d: want 1 <= old <= new", oldSize, newSize)
	}
	p, err := tlog.ProveTree(newSize, oldSize, r)
	if err != nil {
		return ConsistencyProof{}, fmt.Errorf("prove consistency %d → %d: %w", oldSize, newSize, err)
	}
	return ConsistencyProof{Old: oldSize, New: newSize, Hashes: fromTlog(p)}, nil
}

// VerifyInclusion checks that p proves the entry with hash entryHash is leaf
// p.Index of the tree of p.Size leaves whose root is root. Errors wrap ErrProof.
func VerifyInclusion(p InclusionProof, root Hash, entryHash Hash) error {
	if p.Index < 0 || p.Index >= p.Size {
		return fmt.Errorf("%w: inclusion proof for leaf %d in a tree of size %d", ErrProof, p.Index, p.Size)
	}
	if len(p.Hashes) > maxProofHashes {
		return fmt.Errorf("%w: inclusion proof has %d hashes", ErrProof, len(p.Hashes))
	}
	err := tlog.CheckRecord(toTlog(p.Hashes), p.Size, tlog.Hash(root), p.Index, tlog.Hash(LeafHash(entryHash)))
	if err != nil {
		return fmt.Errorf("%w: entry %s is not leaf %d of the tree of size %d with root %s",
			ErrProof, entryHash, p.Index, p.Size, root)
	}
	return nil
}

// VerifyConsistency checks that p proves the tree of p.Old leaves with root
// oldRoot is a prefix of the tree of p.New leaves with root newRoot. Errors
// wrap ErrProof.
func VerifyConsistency(p ConsistencyProof, oldRoot, newRoot Hash) error {
	if p.Old < 1 || p.Old > p.New {
		return fmt.Errorf("%w: consistency proof for sizes %d → %d: want 1 <= old <= new", ErrProof, p.Old, p.New)
	}
	if len(p.Hashes) > maxProofHashes {
		return fmt.Errorf("%w: consistency proof has %d hashes", ErrProof, len(p.Hashes))
	}
	err := tlog.CheckTree(toTlog(p.Hashes), p.New, tlog.Hash(newRoot), p.Old, tlog.Hash(oldRoot))
	if err != nil {
		return fmt.Errorf("%w: tree of size %d with root %s is not a prefix of the tree of size %d with root %s",
			ErrProof, p.Old, oldRoot, p.New, newRoot)
	}
	return nil
}

func fromTlog(hs []tlog.Hash) []Hash {
	out := make([]Hash, len(hs))
	for i, h := range hs {
		out[i] = Hash(h)
	}
	return out
}

func toTlog(hs []Hash) []tlog.Hash {
	out := make([]tlog.Hash, len(hs))
	for i, h := range hs {
		out[i] = tlog.Hash(h)
	}
	return out
}

// memHashes is an in-memory stored-hash array: the tlog layout of a whole
// tree, for verifiers that hold a log in memory.
type memHashes []tlog.Hash

// ReadHashes implements tlog.HashReader.
func (m memHashes) ReadHashes(indexes []int64) ([]tlog.Hash, error) {
	out := make([]tlog.Hash, len(indexes))
	for i, x := range indexes {
		if x < 0 || x >= int64(len(m)) {
			return nil, fmt.Errorf("stored hash %d not present (have %d)", x, len(m))
		}
		out[i] = m[x]
	}
	return out, nil
}

// appendLeaf adds the next leaf's stored hashes; n is the number of leaves
// already in the tree.
func (m *memHashes) appendLeaf(n int64, entryHash Hash) error {
	hs, err := tlog.StoredHashesForRecordHash(n, tlog.Hash(LeafHash(entryHash)), *m)
	if err != nil {
		return err
	}
	*m = append(*m, hs...)
	return nil
}

// Interface guards
var _ tlog.HashReader = memHashes(nil)

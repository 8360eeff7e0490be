package ledger

import (
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
)

// Errors a LogError's problems wrap, besides ErrBadSignature, ErrMalformed,
// ErrUnknownVersion and the checkpoint errors. Callers test them with errors.Is.
var (
	ErrWrongEvent      = errors.New("ledger: entry of another event")
	ErrSeqGap          = errors.New("ledger: seq is not contiguous")
	ErrBrokenChain     = errors.New("ledger: prev does not match the previous entry's hash")
	ErrRootMismatch    = errors.New("ledger: checkpoint root does not match the entries")
	ErrMissingEntries  = errors.New("ledger: checkpoint covers entries the log lacks")
	ErrCheckpointOrder = errors.New("ledger: checkpoints disagree with each other")
)

// MaxLogProblems bounds the problems a LogError lists; the rest are counted.
const MaxLogProblems = 100

// LogError lists every problem found in one author's log, in log order:
// entries first, then checkpoints. Each problem names where it is (entry seq
// or position, checkpoint number and size) and what is wrong.
type LogError struct {
	Origin   string  // the log's origin, canopy/<event>/<node>
	Problems []error // at most MaxLogProblems
	Omitted  int     // problems found beyond MaxLogProblems
}

// Error lists the problems, one a line.
func (e *LogError) Error() string {
	var b strings.Builder
	n := len(e.Problems) + e.Omitted
	fmt.Fprintf(&b, "log %s: %d problem", e.Origin, n)
	if n != 1 {
		b.WriteString("s")
	}
	for _, p := range e.Problems {
		b.WriteString("\n  ")
		b.WriteString(p.Error())
	}
	if e.Omitted > 0 {
		fmt.Fprintf(&b, "\n  … and %d more", e.Omitted)
	}
	return b.String()
}

// Unwrap returns the problems, so errors.Is finds any sentinel among them.
func (e *LogError) Unwrap() []error { return e.Problems }

// LogVerifier checks one author's log as it streams by: add the entries in
// log order with Entry (or EncodedEntry), the checkpoints in the order they
// were signed with Checkpoint, then call Finish. It keeps about two hashes
// per entry in memory. It is not safe for concurrent use.
type LogVerifier struct {
	event  string
	pub    ed25519.PublicKey
	node   NodeID
	origin string

	n        int64     // entries seen (tree size)
	lastSeq  uint64    // seq of the previous entry; 0 before the first
	lastHash Hash      // hash of the previous entry
	tree     memHashes // stored hashes of the tree so far
	// treeBroken is set once an entry could not be read: its leaf hash is
	// unknown, so no root over it can be computed.
	treeBroken bool

	cps []loggedCheckpoint

	problems []error
	omitted  int
}

type loggedCheckpoint struct {
	num    int  // 1-based position in the checkpoint stream
	opened bool // the note verified and parsed; cp is meaningful
	cp     Checkpoint
}

// NewLogVerifier returns a verifier of the log of pub's node in event.
func NewLogVerifier(event string, pub ed25519.PublicKey) *LogVerifier {
	v := &LogVerifier{event: event, pub: pub}
	if len(pub) != ed25519.PublicKeySize {
		v.problem(fmt.Errorf("public key has %d bytes, want %d", len(pub), ed25519.PublicKeySize))
		return v
	}
	v.node = NodeIDOf(pub)
	v.origin = Origin(event, v.node)
	if err := checkEventSlug(event); err != nil {
		v.problem(err)
	}
	return v
}

func (v *LogVerifier) problem(err error) {
	if len(v.problems) < MaxLogProblems {
		v.problems = append(v.problems, err)
	} else {
		v.omitted++
	}
}

// EncodedEntry decodes the next entry of the log and checks it like Entry.
// An entry that does not decode is a problem; the chain check of the entry
// after it is then skipped, since its predecessor's hash is unknown.
func (v *LogVerifier) EncodedEntry(b []byte) {
	e, err := Decode(b)
	if err != nil {
		v.problem(fmt.Errorf("entry at position %d: %w", v.n+1, err))
		v.skip()
		return
	}
	v.Entry(e)
}

// skip accounts for an entry that could not be read: it still takes a leaf
// position, but no hash is known for it, so roots are no longer computable.
func (v *LogVerifier) skip() {
	v.n++
	v.lastSeq++
	v.lastHash = Hash{}
	v.treeBroken = true
	v.tree = nil
}

// Entry checks the next entry of the log: its event, author, seq (one more
// than the previous entry's, 1 for the first), prev (the previous entry's
// hash, zero for seq 1), fields and signature.
func (v *LogVerifier) Entry(e *Entry) {
	pos := v.n + 1
	if e == nil {
		v.problem(fmt.Errorf("entry at position %d: %w: missing", pos, ErrMalformed))
		v.skip()
		return
	}
	where := fmt.Sprintf("entry seq %d", e.Seq)
	if int64(e.Seq) != pos {
		where = fmt.Sprintf("entry seq %d (position %d)", e.Seq, pos)
	}
	if e.Event != v.event {
		v.problem(fmt.Errorf("%s: %w: event is %q, want %q", where, ErrWrongEvent, e.Event, v.event))
	}
	if e.Node != v.node {
		v.problem(fmt.Errorf("%s: %w: author is %s, want %s", where, ErrWrongAuthor, e.Node, v.node))
	}
	if want := v.lastSeq + 1; e.Seq != want {
		v.problem(fmt.Errorf("%s: %w: seq is %d, want %d", where, ErrSeqGap, e.Seq, want))
	}
	fields := *e
	fields.Prev = Hash{} // a wrong prev is reported as a chain problem below
	if err := validateFields(&fields); err != nil {
		v.problem(fmt.Errorf("%s: %w", where, err))
	}
	switch {
	case pos == 1 && e.Prev != (Hash{}):
		v.problem(fmt.Errorf("%s: %w: prev is %s, want zero for the first entry", where, ErrBrokenChain, e.Prev))
	case pos > 1 && v.lastHash != (Hash{}) && e.Prev != v.lastHash:
		v.problem(fmt.Errorf("%s: %w: prev is %s, hash of seq %d is %s", where, ErrBrokenChain, e.Prev, v.lastSeq, v.lastHash))
	}
	if len(v.pub) == ed25519.PublicKeySize && e.Node == v.node {
		if len(e.Sig) != SigSize || !ed25519.Verify(v.pub, e.Framing(), e.Sig) {
			v.problem(fmt.Errorf("%s: %w", where, ErrBadSignature))
		}
	}
	h := e.Hash()
	if !v.treeBroken {
		if err := v.tree.appendLeaf(v.n, h); err != nil {
			v.problem(fmt.Errorf("%s: merkle tree: %v", where, err))
			v.treeBroken = true
		}
	}
	v.n++
	v.lastSeq = e.Seq
	v.lastHash = h
}

// Checkpoint opens the next signed checkpoint note and records it; its root
// is checked against the entries by Finish.
func (v *LogVerifier) Checkpoint(msg []byte) {
	num := len(v.cps) + 1
	cp, err := OpenCheckpoint(msg, v.event, v.pub)
	if err != nil {
		v.problem(fmt.Errorf("checkpoint #%d: %w", num, err))
		v.cps = append(v.cps, loggedCheckpoint{num: num})
		return
	}
	v.cps = append(v.cps, loggedCheckpoint{num: num, opened: true, cp: cp})
}

// Finish checks the checkpoints against the entries and each other, and
// returns a *LogError listing every problem found, or nil.
func (v *LogVerifier) Finish() error {
	var prev *loggedCheckpoint
	for i := range v.cps {
		c := &v.cps[i]
		if !c.opened {
			continue // reported by Checkpoint
		}
		where := fmt.Sprintf("checkpoint #%d (size %d)", c.num, c.cp.Size)
		if prev != nil {
			switch {
			case c.cp.Size < prev.cp.Size:
				v.problem(fmt.Errorf("%s: %w: size is below checkpoint #%d's size %d", where, ErrCheckpointOrder, prev.num, prev.cp.Size))
			case c.cp.Size == prev.cp.Size && c.cp.Root != prev.cp.Root:
				v.problem(fmt.Errorf("%s: %w: root %s differs from checkpoint #%d's root %s for the same size", where, ErrCheckpointOrder, c.cp.Root, prev.num, prev.cp.Root))
			}
		}
		prev = c
		size := int64(c.cp.Size)
		switch {
		case size > v.n:
			v.problem(fmt.Errorf("%s: %w: the log has only %d entries", where, ErrMissingEntries, v.n))
		case v.treeBroken:
			v.problem(fmt.Errorf("%s: root not checked: an entry of the log could not be read", where))
		default:
			root, err := TreeRoot(size, v.tree)
			if err != nil {
				v.problem(fmt.Errorf("%s: %v", where, err))
			} else if root != c.cp.Root {
				v.problem(fmt.Errorf("%s: %w: root %s does not match entries 1..%d (root %s)", where, ErrRootMismatch, c.cp.Root, size, root))
			}
		}
	}
	if len(v.problems) == 0 {
		return nil
	}
	return &LogError{Origin: v.origin, Problems: v.problems, Omitted: v.omitted}
}

// VerifyLog checks a whole log held in memory: the entries in log order and
// the signed checkpoint notes in the order they were signed. It returns nil
// or a *LogError listing every problem (see LogVerifier).
func VerifyLog(event string, pub ed25519.PublicKey, entries []*Entry, checkpoints [][]byte) error {
	v := NewLogVerifier(event, pub)
	for _, e := range entries {
		v.Entry(e)
	}
	for _, c := range checkpoints {
		v.Checkpoint(c)
	}
	return v.Finish()
}

// VerifyEncodedLog is VerifyLog over encoded entries; an entry that does not
// decode is one more problem.
func VerifyEncodedLog(event string, pub ed25519.PublicKey, entries [][]byte, checkpoints [][]byte) error {
	v := NewLogVerifier(event, pub)
	for _, b := range entries {
		v.EncodedEntry(b)
	}
	for _, c := range checkpoints {
		v.Checkpoint(c)
	}
	return v.Finish()
}

// Package replica is the sync protocol, both sides: nodes exchange version
// vectors over HTTP and stream each other the signed entries the other
// lacks, in frames that are authenticated and committed as they arrive, so
// a broken link loses at most what was in flight and the next exchange
// resumes from the vectors. Any node may relay any author's entries; a
// receiver trusts nothing it has not verified against the event key.
package replica

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"

	"canopy/ledger"
)

// ProtocolVersion is the major version of the sync protocol. A node
// meeting another major version refuses with ErrVersion.
const ProtocolVersion = 1

// streamMagic opens every entry stream; its last byte is ProtocolVersion.
var streamMagic = []byte("canopy-sync\x00\x01")

// ContentType is the media type of an entry stream.
const ContentType = "application/vnd.canopy.entries"

// Errors.
var (
	ErrVersion   = errors.New("replica: unknown sync protocol version")
	ErrMalformed = errors.New("replica: malformed stream")
)

// Frame types.
const (
	frameEntry      = 'E' // an encoded entry
	frameCheckpoint = 'C' // 16-byte node id + a signed checkpoint note (reserved; skipped by this version)
	frameEnd        = 'Z' // the sender has nothing more for now
)

// maxFrame bounds one frame (an entry is at most ~1 MiB of body).
const maxFrame = ledger.MaxBodyLen + 64<<10

// StreamWriter writes an entry stream; for tools and tests that speak the
// protocol directly.
type StreamWriter struct{ w *writer }

// NewStreamWriter starts an entry stream on w.
func NewStreamWriter(w io.Writer) (*StreamWriter, error) {
	sw, err := newWriter(w)
	if err != nil {
		return nil, err
	}
	return &StreamWriter{sw}, nil
}

// Entry writes one encoded entry.
func (s *StreamWriter) Entry(encoded []byte) error { return s.w.entry(encoded) }

// Checkpoint writes a checkpoint frame: a signed checkpoint note of node's
// log.
func (s *StreamWriter) Checkpoint(node ledger.NodeID, note []byte) error {
	return s.w.checkpoint(node, note)
}

// End writes an end frame.
func (s *StreamWriter) End() error { return s.w.end() }

// Flush flushes buffered frames.
func (s *StreamWriter) Flush() error { return s.w.flush() }

// writer writes an entry stream.
type writer struct {
	w *bufio.Writer
}

func newWriter(w io.Writer) (*writer, error) {
	bw := bufio.NewWriterSize(w, 64<<10)
	if _, err := bw.Write(streamMagic); err != nil {
		return nil, err
	}
	return &writer{w: bw}, nil
}

func (w *writer) frame(t byte, payload ...[]byte) error {
	n := 0
	for _, p := range payload {
		n += len(p)
	}
	var hdr [5]byte
	hdr[0] = t
	binary.BigEndian.PutUint32(hdr[1:], uint32(n))
	if _, err := w.w.Write(hdr[:]); err != nil {
		return err
	}
	for _, p := range payload {
		if _, err := w.w.Write(p); err != nil {
			return err
		}
	}
	return nil
}

func (w *writer) entry(encoded []byte) error { return w.frame(frameEntry, encoded) }

func (w *writer) end() error { return w.frame(frameEnd) }

func (w *writer) flush() error { return w.w.Flush() }

// reader reads an entry stream.
type reader struct {
	r *bufio.Reader
}

func newReader(r io.Reader) (*reader, error) {
	br := bufio.NewReaderSize(r, 64<<10)
	got := make([]byte, len(streamMagic))
	if _, err := io.ReadFull(br, got); err != nil {
		return nil, fmt.Errorf("%w: no stream header: %v", ErrMalformed, err)
	}
	if string(got[:len(got)-1]) != string(streamMagic[:len(streamMagic)-1]) {
		return nil, fmt.Errorf("%w: not a canopy entry stream", ErrMalformed)
	}
	if v := got[len(got)-1]; v != ProtocolVersion {
		return nil, fmt.Errorf("%w: peer speaks %d, this node %d", ErrVersion, v, ProtocolVersion)
	}
	return &reader{r: br}, nil
}

// next returns the next frame; io.EOF at a clean end of stream.
func (r *reader) next() (byte, []byte, error) {
	var hdr [5]byte
	if _, err := io.ReadFull(r.r, hdr[:]); err != nil {
		if errors.Is(err, io.EOF) {
			return 0, nil, io.EOF
		}
		return 0, nil, fmt.Errorf("%w: frame header: %v", ErrMalformed, err)
	}
	n := binary.BigEndian.Uint32(hdr[1:])
	if n > maxFrame {
		return 0, nil, fmt.Errorf("%w: frame of %d bytes", ErrMalformed, n)
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r.r, p); err != nil {
		return 0, nil, fmt.Errorf("%w: frame body: %v", ErrMalformed, err)
	}
	switch hdr[0] {
	case frameEntry, frameCheckpoint, frameEnd:
	default:
		return 0, nil, fmt.Errorf("%w: unknown frame type %q", ErrMalformed, hdr[0])
	}
	return hdr[0], p, nil
}

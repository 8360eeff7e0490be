package replica

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"sync/atomic"

	"canopy/journal"
	"canopy/ledger"
	"canopy/store"
)

// chunk is how many received entries are verified and stored together.
const chunk = 1024

// job is a chunk of authenticated entries queued in the journal.
type job struct {
	stored []store.Stored
	p      *journal.PendingIngest
	cps    []cpFrame     // checkpoints to take once stored is
	done   chan struct{} // closed when stored (so an end frame can wait)
}

// inFlight is how many chunks may be queued in the journal at once: the
// journal builds the next while it commits one, and commits several in one
// transaction.
const inFlight = 8

// receiver authenticates and stores the entries of one stream: it reads,
// authenticates and queues chunks in the journal while a goroutine waits
// for the chunks before to be stored.
type receiver struct {
	n        *Node
	ctx      context.Context
	peer     string
	onStored func(int)
	covers   *covers

	pending   []item    // received, not yet submitted
	pendingCP []cpFrame // checkpoints to take once pending is stored
	verifyErr error     // why a received entry was not authentic

	jobs      chan job
	finished  chan struct{}
	failed    atomic.Bool // the journal refused a chunk: queue no more
	added     int         // owned by the storing goroutine until finished
	ingestErr error       // likewise
}

// ingestStream verifies and stores the entries of a stream, a chunk at a
// time (and at every end frame), until the stream ends or an entry is
// refused. Reading and verifying the next chunk overlaps with storing the
// previous one. It returns how many were stored and why it stopped early,
// if it did; the entries before a refused one are stored. peer labels the
// metrics; onStored, if not nil, is told how many were stored after each
// chunk.
func (n *Node) ingestStream(ctx context.Context, rd *reader, peer string, onStored func(int)) (int, error) {
	r := &receiver{n: n, ctx: ctx, peer: peer, onStored: onStored, covers: newCovers(n),
		jobs: make(chan job, inFlight), finished: make(chan struct{})}
	go r.store()
	for {
		t, p, err := rd.next()
		if errors.Is(err, io.EOF) {
			r.covers.endAll(r.ended)
			return r.finish(r.submit(false))
		}
		if err != nil {
			r.covers.endAll(r.ended)
			return r.finish(errors.Join(err, r.submit(false)))
		}
		switch t {
		case frameEnd:
			// The sender has nothing more for now: store what came.
			r.covers.endAll(r.ended)
			if err := r.submit(true); err != nil {
				return r.finish(err)
			}
		case frameCheckpoint:
			if err := r.checkpoint(p); err != nil {
				return r.finish(errors.Join(err, r.submit(false)))
			}
		case frameEntry:
			if err := r.entry(p); err != nil {
				return r.finish(errors.Join(err, r.submit(false)))
			}
			if len(r.pending) >= chunk {
				if err := r.submit(false); err != nil {
					return r.finish(err)
				}
			}
		}
		if r.failed.Load() {
			return r.finish(nil)
		}
	}
}

func (r *receiver) checkpoint(p []byte) error {
	f, err := parseCheckpointFrame(p)
	if err != nil {
		return err
	}
	opened, err := r.covers.checkpoint(r.ctx, f, r.ended)
	if err != nil {
		return err
	}
	if !opened {
		r.pendingCP = append(r.pendingCP, f)
	}
	return nil
}

// entry takes an encoded entry: into its author's open cover, or the
// pending chunk. A cover it completes is verified and its entries join the
// pending chunk; one that does not match refuses the stream.
func (r *receiver) entry(p []byte) error {
	e, err := ledger.Decode(p)
	if err != nil {
		return fmt.Errorf("replica: entry: %w", err)
	}
	// Decode accepts only the canonical encoding, so p is e.Encode().
	it := item{e: e, hash: sha256.Sum256(p), size: len(p)}
	if err := r.covers.leaf(r.ctx, &it); err != nil {
		return err
	}
	cv, inside := r.covers.add(it, r.ended)
	if !inside {
		r.pending = append(r.pending, it)
		return nil
	}
	if cv == nil {
		return nil
	}
	ok, verr := r.covers.verify(r.ctx, cv)
	r.pending = append(r.pending, ok...)
	if verr != nil {
		r.verifyErr = verr
		return verr
	}
	r.pendingCP = append(r.pendingCP, cv.f)
	return nil
}

// ended takes the entries of a cover that did not complete: they are
// verified one by one.
func (r *receiver) ended(cv *cover) {
	r.pending = append(r.pending, cv.items...)
	r.pendingCP = append(r.pendingCP, cv.f)
}

// submit authenticates the pending entries and queues the authentic ones
// in the journal, a chunk per job; with wait, it returns once they are
// stored. Pending checkpoints go with the last job, unless a cover is
// still open (they may be about its entries).
func (r *receiver) submit(wait bool) error {
	if r.failed.Load() {
		r.pending = r.pending[:0]
		return nil
	}
	ok, verr := r.n.authors.checkAll(r.ctx, r.pending)
	var fe *ForkError
	if errors.As(verr, &fe) {
		r.n.reportFork(r.ctx, fe)
	}
	if verr != nil {
		r.verifyErr = verr
	}
	todo := r.pending[:ok]
	signed := 0
	for _, it := range todo {
		if !it.checked {
			signed++
		}
	}
	r.n.metrics().authentic.WithLabelValues(bySignature).Add(float64(signed))
	var last chan struct{}
	for first := true; first || len(todo) > 0; first = false {
		k := min(chunk, len(todo))
		j := job{stored: make([]store.Stored, k)}
		for i, it := range todo[:k] {
			j.stored[i] = store.Stored{Entry: it.e, Hash: it.hash}
		}
		todo = todo[k:]
		p, err := r.n.Journal.StartIngest(r.ctx, j.stored)
		if err != nil {
			r.failed.Store(true)
			return err
		}
		j.p = p
		if len(todo) == 0 {
			if verr == nil && len(r.covers.active) == 0 {
				j.cps, r.pendingCP = r.pendingCP, nil
			}
			if wait {
				j.done = make(chan struct{})
				last = j.done
			}
		}
		r.jobs <- j
	}
	r.pending = r.pending[:0]
	if last != nil {
		<-last
	}
	return verr
}

// store is the storing goroutine: it waits for each chunk queued in the
// journal, in order, counts what was stored and takes the chunk's
// checkpoints. After a refusal, chunks already queued are still waited
// for (and what they stored counted), but no checkpoint is taken.
func (r *receiver) store() {
	defer close(r.finished)
	for j := range r.jobs {
		fresh, err := j.p.Wait(r.ctx)
		r.added += len(fresh)
		if r.onStored != nil && len(fresh) > 0 {
			r.onStored(len(fresh))
		}
		r.n.ingested(fresh, r.peer)
		if r.ingestErr == nil {
			r.ingestErr = r.n.afterIngest(r.ctx, j.stored, j.cps, err)
			if r.ingestErr != nil {
				r.failed.Store(true)
			}
		}
		if j.done != nil {
			close(j.done)
		}
	}
}

// finish waits for the storing goroutine, counts a refusal and returns how
// many entries were stored and why the stream stopped early.
func (r *receiver) finish(err error) (int, error) {
	close(r.jobs)
	<-r.finished
	if refused := errors.Join(r.verifyErr, r.ingestErr); refused != nil && r.ctx.Err() == nil {
		r.n.metrics().refused.WithLabelValues(r.peer, RefusedReason(refused), sideReceived).Inc()
	}
	return r.added, errors.Join(err, r.ingestErr)
}

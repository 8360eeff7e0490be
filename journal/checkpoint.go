package journal

import (
	"context"
	"fmt"
	"time"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
	"canopy/store"
)

// checkpointLoop signs a checkpoint every CheckpointEvery while the log has
// grown since the last one, and at once when CheckpointEntries entries are
// not covered.
func (j *Journal) checkpointLoop() {
	defer j.cpWG.Done()
	t := time.NewTicker(j.cfg.CheckpointEvery)
	defer t.Stop()
	for {
		select {
		case <-j.closing:
			return
		case <-t.C:
		case <-j.cpNow:
		}
		if _, err := j.SignCheckpoint(context.Background()); err != nil {
			j.log.Warn("journal: checkpoint", "err", err)
		}
	}
}

// SignCheckpoint signs and stores a checkpoint covering every durable entry,
// unless the latest checkpoint already does, and returns the latest.
func (j *Journal) SignCheckpoint(ctx context.Context) (store.Checkpoint, error) {
	j.cpMu.Lock()
	defer j.cpMu.Unlock()
	size := j.Durable()
	j.mu.Lock()
	latest := j.checkpoint
	j.mu.Unlock()
	if size == 0 || size <= latest.Size {
		return latest, nil
	}
	reader := tlog.HashReaderFunc(func(idx []int64) ([]tlog.Hash, error) {
		hs, err := j.cfg.Store.ReadTreeHashes(ctx, j.cfg.Event, j.node, idx)
		out := make([]tlog.Hash, len(hs))
		for i, h := range hs {
			out[i] = tlog.Hash(h)
		}
		return out, err
	})
	root, err := tlog.TreeHash(int64(size), reader)
	if err != nil {
		return latest, fmt.Errorf("journal: tree root at %d: %w", size, err)
	}
	note, err := ledger.SignCheckpoint(j.cfg.Key, j.cfg.Event, size, ledger.Hash(root))
	if err != nil {
		return latest, fmt.Errorf("journal: sign checkpoint: %w", err)
	}
	cp := store.Checkpoint{Node: j.node, Size: size, Root: ledger.Hash(root), Note: note}
	if err := j.cfg.Store.Commit(ctx, &store.Batch{Event: j.cfg.Event, Checkpoints: []store.Checkpoint{cp}}); err != nil {
		return latest, fmt.Errorf("journal: store checkpoint: %w", err)
	}
	j.m.checkpoints.Inc()
	j.mu.Lock()
	j.checkpoint = cp
	j.mu.Unlock()
	return cp, nil
}

// Checkpoint returns the latest signed checkpoint, or ok=false if none has
// been signed yet.
func (j *Journal) Checkpoint() (store.Checkpoint, bool) {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.checkpoint, j.checkpoint.Size > 0
}

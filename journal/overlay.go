package journal

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
	"canopy/store"
)

// overlay holds the view rows and tree hashes of batches that are built but
// not yet committed, so the next batch can be built on top of them while the
// store is still writing. Each value is tagged with the batch that wrote it;
// a committed (or failed) batch drops only the values still carrying its tag.
type overlay struct {
	mu    sync.Mutex
	views map[viewKey]tagged
	tree  map[int64]taggedHash
}

type viewKey struct{ view, key string }

type tagged struct {
	value []byte
	tag   uint64
}

type taggedHash struct {
	hash ledger.Hash
	tag  uint64
}

func newOverlay() overlay {
	return overlay{views: map[viewKey]tagged{}, tree: map[int64]taggedHash{}}
}

func (o *overlay) putView(view, key string, v []byte, tag uint64) {
	o.mu.Lock()
	o.views[viewKey{view, key}] = tagged{v, tag}
	o.mu.Unlock()
}

func (o *overlay) putTree(i int64, h ledger.Hash, tag uint64) {
	o.mu.Lock()
	o.tree[i] = taggedHash{h, tag}
	o.mu.Unlock()
}

func (o *overlay) drop(tag uint64) {
	o.mu.Lock()
	defer o.mu.Unlock()
	for k, v := range o.views {
		if v.tag == tag {
			delete(o.views, k)
		}
	}
	for k, v := range o.tree {
		if v.tag == tag {
			delete(o.tree, k)
		}
	}
}

func (o *overlay) clear() {
	o.mu.Lock()
	o.views = map[viewKey]tagged{}
	o.tree = map[int64]taggedHash{}
	o.mu.Unlock()
}

// viewReader reads rows from the overlay, and the rest from the store in
// one round trip.
func (o *overlay) viewReader(j *Journal) func(ctx context.Context, keys []store.ViewKey) ([][]byte, error) {
	return func(ctx context.Context, keys []store.ViewKey) ([][]byte, error) {
		out := make([][]byte, len(keys))
		var missing []store.ViewKey
		var at []int
		o.mu.Lock()
		for i, k := range keys {
			if v, ok := o.views[viewKey{k.View, k.Key}]; ok {
				out[i] = v.value
				continue
			}
			missing = append(missing, k)
			at = append(at, i)
		}
		o.mu.Unlock()
		if len(missing) == 0 {
			return out, nil
		}
		vals, err := j.cfg.Store.ReadViews(ctx, j.cfg.Event, missing)
		if err != nil {
			return nil, err
		}
		for n, i := range at {
			out[i] = vals[n]
		}
		return out, nil
	}
}

// treeReader reads stored tree hashes from the overlay, else from the store.
func (o *overlay) treeReader(j *Journal) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		var missing []int64
		var at []int
		o.mu.Lock()
		for i, idx := range indexes {
			if v, ok := o.tree[idx]; ok {
				out[i] = tlog.Hash(v.hash)
			} else {
				missing = append(missing, idx)
				at = append(at, i)
			}
		}
		o.mu.Unlock()
		if len(missing) == 0 {
			return out, nil
		}
		hs, err := j.cfg.Store.ReadTreeHashes(context.Background(), j.cfg.Event, j.node, missing)
		if err != nil {
			return nil, err
		}
		if len(hs) != len(missing) {
			return nil, errors.New("journal: store returned the wrong number of tree hashes")
		}
		for k, h := range hs {
			out[at[k]] = tlog.Hash(h)
		}
		return out, nil
	})
}

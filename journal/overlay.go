package journal

import (
	"context"
	"errors"
	"sync"

	"golang.org/x/mod/sumdb/tlog"

	"canopy/ledger"
	"canopy/store"
)

// overlay holds what batches built but not yet committed will write — view
// rows, tree hashes and the heads of other authors' logs — so the next
// batch can be built on top of them while the store is still writing. Each
// value is tagged with the batch that wrote it; a committed (or failed)
// batch drops only the values still carrying its tag.
type overlay struct {
	mu    sync.Mutex
	views map[viewKey]tagged
	tree  map[treeKey]taggedHash
	heads map[ledger.NodeID]taggedHead
}

type viewKey struct{ view, key string }

type treeKey struct {
	node ledger.NodeID
	idx  int64
}

type tagged struct {
	value []byte
	tag   uint64
}

type taggedHash struct {
	hash ledger.Hash
	tag  uint64
}

type taggedHead struct {
	seq  uint64
	hash ledger.Hash
	tag  uint64
}

func newOverlay() overlay {
	return overlay{views: map[viewKey]tagged{}, tree: map[treeKey]taggedHash{}, heads: map[ledger.NodeID]taggedHead{}}
}

func (o *overlay) putView(view, key string, v []byte, tag uint64) {
	o.mu.Lock()
	o.views[viewKey{view, key}] = tagged{v, tag}
	o.mu.Unlock()
}

func (o *overlay) putTree(node ledger.NodeID, i int64, h ledger.Hash, tag uint64) {
	o.mu.Lock()
	o.tree[treeKey{node, i}] = taggedHash{h, tag}
	o.mu.Unlock()
}

func (o *overlay) putHead(node ledger.NodeID, seq uint64, h ledger.Hash, tag uint64) {
	o.mu.Lock()
	o.heads[node] = taggedHead{seq, h, tag}
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
	for k, v := range o.heads {
		if v.tag == tag {
			delete(o.heads, k)
		}
	}
}

func (o *overlay) clear() {
	o.mu.Lock()
	o.views = map[viewKey]tagged{}
	o.tree = map[treeKey]taggedHash{}
	o.heads = map[ledger.NodeID]taggedHead{}
	o.mu.Unlock()
}

// head returns an author's head: from the overlay, else from the store.
func (o *overlay) head(j *Journal, node ledger.NodeID) (uint64, ledger.Hash, error) {
	o.mu.Lock()
	h, ok := o.heads[node]
	o.mu.Unlock()
	if ok {
		return h.seq, h.hash, nil
	}
	return j.cfg.Store.Head(context.Background(), j.cfg.Event, node)
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

// treeReader reads an author's stored tree hashes from the overlay, else
// from the store.
func (o *overlay) treeReader(j *Journal, node ledger.NodeID) tlog.HashReader {
	return tlog.HashReaderFunc(func(indexes []int64) ([]tlog.Hash, error) {
		out := make([]tlog.Hash, len(indexes))
		var missing []int64
		var at []int
		o.mu.Lock()
		for i, idx := range indexes {
			if v, ok := o.tree[treeKey{node, idx}]; ok {
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
		hs, err := j.cfg.Store.ReadTreeHashes(context.Background(), j.cfg.Event, node, missing)
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

package reconcile

import (
	"bytes"
	"fmt"
	"sort"
	"time"

	"canopy/ledger"
)

// DefaultSkewThreshold is how far an entry's HLC may be from the entries
// it is judged against before it is a clock_skew item.
const DefaultSkewThreshold = 5 * time.Minute

// Reasons of clock_skew items.
const (
	ReasonAhead             = "ahead"
	ReasonBehindOwnPrevious = "behind_own_previous"
)

// meta is what the clock rules need of an entry.
type meta struct {
	ref ledger.Ref
	hlc ledger.HLC
}

func metaLess(a, b meta) bool {
	if c := a.hlc.Compare(b.hlc); c != 0 {
		return c < 0
	}
	if c := bytes.Compare(a.ref.Node[:], b.ref.Node[:]); c != 0 {
		return c < 0
	}
	return a.ref.Seq < b.ref.Seq
}

// skewItems applies the clock rules of the package documentation to a
// de-duplicated set of entries.
func skewItems(all []meta, threshold time.Duration) []Item {
	if len(all) == 0 {
		return nil
	}
	t := threshold.Milliseconds()
	sorted := append([]meta(nil), all...)
	sort.Slice(sorted, func(i, j int) bool { return metaLess(sorted[i], sorted[j]) })

	// origin[wall]: the author of the first entry, in (hlc, node, seq)
	// order, that carries the wall time — the node whose clock it came from.
	origin := map[int64]ledger.NodeID{}
	for _, m := range sorted {
		if _, ok := origin[m.hlc.Wall]; !ok {
			origin[m.hlc.Wall] = m.ref.Node
		}
	}

	// Each author's entries in seq order, for the previous entry.
	byAuthor := map[ledger.NodeID][]int{}
	for i, m := range sorted {
		byAuthor[m.ref.Node] = append(byAuthor[m.ref.Node], i)
	}
	prev := make([]int, len(sorted))
	for _, idx := range byAuthor {
		sort.Slice(idx, func(a, b int) bool { return sorted[idx[a]].ref.Seq < sorted[idx[b]].ref.Seq })
		for k, i := range idx {
			prev[i] = -1
			if k > 0 {
				prev[i] = idx[k-1]
			}
		}
	}

	// below[i] / above[i]: the nearest entry with a strictly lower / higher
	// HLC whose wall came from another node than entry i's author (-1: none).
	below := nearestOther(sorted, origin, false)
	above := nearestOther(sorted, origin, true)

	var items []Item
	for i, m := range sorted {
		p := -1
		if prev[i] >= 0 {
			p = prev[i]
		}
		if p >= 0 && m.hlc.Wall < sorted[p].hlc.Wall-t {
			pm := sorted[p]
			items = append(items, Item{
				Kind: KindClockSkew, Reason: ReasonBehindOwnPrevious, Entity: "node:" + m.ref.Node.String(),
				Entries: []EntryRef{refOf("flagged", m.ref, m.hlc), refOf("previous", pm.ref, pm.hlc)},
				Detail: fmt.Sprintf("entry %s has HLC %s, %s before the HLC %s of the same node's previous entry %s: a monotonic clock cannot go back; an HLC bug or tampering",
					refString(m.ref), m.hlc, dur(sorted[p].hlc.Wall-m.hlc.Wall), pm.hlc, refString(pm.ref)),
			})
		}
		if origin[m.hlc.Wall] != m.ref.Node || below[i] < 0 {
			continue // the wall was inherited from another node, or there is nothing to judge it by
		}
		base := sorted[below[i]]
		if p >= 0 && sorted[p].hlc.Wall > base.hlc.Wall {
			base = sorted[p]
		}
		if m.hlc.Wall-base.hlc.Wall <= t {
			continue
		}
		if a := above[i]; a >= 0 && sorted[a].hlc.Wall-m.hlc.Wall <= t {
			continue // another node's clock reached it soon after: a quiet spell, not a fast clock
		}
		ref := sorted[below[i]]
		basis := "the latest entry whose time came from another node"
		if base != ref {
			basis = "the same node's previous entry"
		}
		items = append(items, Item{
			Kind: KindClockSkew, Reason: ReasonAhead, Entity: "node:" + m.ref.Node.String(),
			Entries: []EntryRef{refOf("flagged", m.ref, m.hlc), refOf("reference", base.ref, base.hlc)},
			Detail: fmt.Sprintf("entry %s has HLC %s, %s ahead of %s (%s at %s), and no other node's clock came within %s above it: the node's clock runs fast",
				refString(m.ref), m.hlc, dur(m.hlc.Wall-base.hlc.Wall), basis, refString(base.ref), base.hlc, dur(t)),
		})
	}
	return items
}

// nearestOther returns, for every entry of sorted, the index of the nearest
// entry strictly below it (or above it, if up) in (hlc) order whose wall
// came from a node other than the entry's author, or -1. Walls are
// monotonic along the order, so the nearest such entry is also the one with
// the closest wall.
func nearestOther(sorted []meta, origin map[int64]ledger.NodeID, up bool) []int {
	n := len(sorted)
	out := make([]int, n)
	// best: the nearest entry seen so far; second: the nearest one whose
	// origin differs from best's.
	best, second := -1, -1
	at := func(k int) int {
		if up {
			return n - 1 - k
		}
		return k
	}
	for k := 0; k < n; {
		// A group of entries with equal HLC is judged before any of it is
		// added, so "strictly below/above" holds.
		end := k
		for end < n && sorted[at(end)].hlc == sorted[at(k)].hlc {
			end++
		}
		for g := k; g < end; g++ {
			i := at(g)
			author := sorted[i].ref.Node
			switch {
			case best >= 0 && origin[sorted[best].hlc.Wall] != author:
				out[i] = best
			case second >= 0 && origin[sorted[second].hlc.Wall] != author:
				out[i] = second
			default:
				out[i] = -1
			}
		}
		for g := k; g < end; g++ {
			i := at(g)
			if best >= 0 && origin[sorted[best].hlc.Wall] != origin[sorted[i].hlc.Wall] {
				second = best
			}
			best = i
		}
		k = end
	}
	return out
}

func dur(ms int64) string { return (time.Duration(ms) * time.Millisecond).String() }

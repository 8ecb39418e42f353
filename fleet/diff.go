package fleet

import (
	"context"
	"fmt"
	"maps"
	"slices"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/internal/textdiff"
)

// Change is what a new generation does to one node.
type Change string

const (
	Added     Change = "added"
	Removed   Change = "removed"
	Changed   Change = "changed"
	Unchanged Change = "unchanged"
)

// NodeDiff is one node's change between two generations.
type NodeDiff struct {
	Node   string `json:"node"`
	Change Change `json:"change"`
	// OutputsChanged says whether haproxy.cfg or the rules change (a node
	// file can change without them, and the agent then reloads nothing).
	OutputsChanged bool `json:"outputs_changed"`
	// Diff is the node file's, old to new (marked - and +).
	Diff string `json:"diff,omitempty"`
}

// Records are a compiled generation's node records, by node.
func (g *Generation) Records() map[string]store.GenNode {
	out := make(map[string]store.GenNode, len(g.Nodes))
	for _, n := range g.Nodes {
		out[n.Name] = n.Record()
	}
	return out
}

// Diff says what moving from the old node records to the new ones does to
// each node, in name order.
func Diff(old, new map[string]store.GenNode) []NodeDiff {
	names := map[string]bool{}
	for n := range old {
		names[n] = true
	}
	for n := range new {
		names[n] = true
	}
	var out []NodeDiff
	for _, n := range slices.Sorted(maps.Keys(names)) {
		o, inOld := old[n]
		w, inNew := new[n]
		d := NodeDiff{Node: n, Change: Changed, OutputsChanged: o.OutputsSHA256 != w.OutputsSHA256, Diff: textdiff.Unified(o.NodeFile, w.NodeFile)}
		switch {
		case !inOld:
			d.Change = Added
		case !inNew:
			d.Change = Removed
		case o.NodeSHA256 == w.NodeSHA256 && !d.OutputsChanged:
			d.Change = Unchanged
		}
		out = append(out, d)
	}
	return out
}

// Stable reads the fleet's stable generation's node records (0 and none
// when it has no stable generation yet).
func Stable(ctx context.Context, kv clientv3.KV, fleet string) (uint64, map[string]store.GenNode, error) {
	var ro store.Rollout
	rev, err := store.Get(ctx, kv, store.RolloutKey(fleet), &ro)
	if err != nil {
		return 0, nil, err
	}
	n := ro.StableNow()
	if rev == 0 || n == 0 {
		return 0, map[string]store.GenNode{}, nil
	}
	_, recs, err := ReadGeneration(ctx, kv, fleet, n)
	if err != nil {
		return 0, nil, fmt.Errorf("read the stable generation: %w", err)
	}
	out := make(map[string]store.GenNode, len(recs))
	for _, r := range recs {
		out[r.Node] = r
	}
	return n, out, nil
}

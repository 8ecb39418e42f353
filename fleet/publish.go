package fleet

import (
	"context"
	"errors"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/internal/version"
)

// batchBytes bounds one transaction's values, well under the server's
// 1.5 MiB request limit.
const batchBytes = 1 << 20

// batchOps is how many puts one transaction carries: under
// store.MaxTxnOps, with room for the compares that guard them.
const batchOps = 100

// Published says what Publish did.
type Published struct {
	Generation uint64
	// Unchanged: the newest generation already holds this fleet file, and
	// no new one was written.
	Unchanged bool
}

// Publish writes g as the fleet's next generation: its node records in
// batches, then its meta, so a generation with a meta is complete. Every
// key is created, never overwritten: a publish racing another for the same
// number fails instead of mixing the two.
func Publish(ctx context.Context, kv clientv3.KV, g *Generation, now time.Time) (Published, error) {
	fleet := g.Fleet.Name
	last, err := kv.Get(ctx, store.GensPrefix(fleet), clientv3.WithLastKey()...)
	if err != nil {
		return Published{}, fmt.Errorf("read the newest generation: %w", err)
	}
	var n uint64
	if len(last.Kvs) > 0 {
		n, _ = store.GenOf(fleet, string(last.Kvs[0].Key))
		var meta store.Generation
		rev, err := store.Get(ctx, kv, store.GenMeta(fleet, n), &meta)
		if err != nil {
			return Published{}, err
		}
		// A bad generation's file may be published again: a retry once
		// what failed around it (an agent, a backend) is fixed.
		if rev != 0 && meta.FleetSHA256 == g.Fleet.SHA256 && meta.Version == version.Get().String() && meta.State != store.Bad {
			return Published{Generation: n, Unchanged: true}, nil
		}
	}
	n++
	var ops []clientv3.Op
	var cmps []clientv3.Cmp
	size := 0
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		resp, err := kv.Txn(ctx).If(cmps...).Then(ops...).Commit()
		if err != nil {
			return fmt.Errorf("write generation %d: %w", n, err)
		}
		if !resp.Succeeded {
			return fmt.Errorf("write generation %d: %w", n, errTaken)
		}
		ops, cmps, size = ops[:0], cmps[:0], 0
		return nil
	}
	put := func(key string, v any) error {
		val, err := store.Encode(v)
		if err != nil {
			return err
		}
		if len(ops) == batchOps || size+len(val) > batchBytes {
			if err := flush(); err != nil {
				return err
			}
		}
		ops = append(ops, clientv3.OpPut(key, val))
		cmps = append(cmps, store.Unchanged(key, 0))
		size += len(val)
		return nil
	}
	for _, nd := range g.Nodes {
		if err := put(store.GenNodeKey(fleet, n, nd.Name), nd.Record()); err != nil {
			return Published{}, err
		}
	}
	if err := flush(); err != nil {
		return Published{}, err
	}
	meta := store.Generation{
		Number: n, Created: now.UTC(), FleetSHA256: g.Fleet.SHA256, Version: version.Get().String(),
		Nodes: len(g.Nodes), State: store.Published,
	}
	if err := put(store.GenMeta(fleet, n), meta); err != nil {
		return Published{}, err
	}
	return Published{Generation: n}, flush()
}

var errTaken = errors.New("another publish took this generation number at the same time; publish again")

// ReadGeneration reads generation n's meta and node records, in name order.
func ReadGeneration(ctx context.Context, kv clientv3.KV, fleet string, n uint64) (store.Generation, []store.GenNode, error) {
	var meta store.Generation
	rev, err := store.Get(ctx, kv, store.GenMeta(fleet, n), &meta)
	if err != nil {
		return meta, nil, err
	}
	if rev == 0 {
		return meta, nil, fmt.Errorf("fleet %s has no generation %d (fleet publish writes one)", fleet, n)
	}
	resp, err := kv.Get(ctx, store.GenNodesPrefix(fleet, n), clientv3.WithPrefix())
	if err != nil {
		return meta, nil, fmt.Errorf("read generation %d: %w", n, err)
	}
	nodes := make([]store.GenNode, len(resp.Kvs))
	for i, kv := range resp.Kvs {
		if err := store.Decode(kv.Key, kv.Value, &nodes[i]); err != nil {
			return meta, nil, err
		}
	}
	if len(nodes) != meta.Nodes {
		return meta, nil, fmt.Errorf("generation %d of fleet %s holds %d node records, its meta says %d", n, fleet, len(nodes), meta.Nodes)
	}
	return meta, nodes, nil
}

// Latest is the number of the fleet's newest complete generation (0: none).
func Latest(ctx context.Context, kv clientv3.KV, fleet string) (uint64, error) {
	last, err := kv.Get(ctx, store.GensPrefix(fleet), clientv3.WithLastKey()...)
	if err != nil {
		return 0, fmt.Errorf("read the newest generation: %w", err)
	}
	if len(last.Kvs) == 0 {
		return 0, nil
	}
	n, _ := store.GenOf(fleet, string(last.Kvs[0].Key))
	for ; n > 0; n-- {
		resp, err := kv.Get(ctx, store.GenMeta(fleet, n), clientv3.WithCountOnly())
		if err != nil {
			return 0, fmt.Errorf("read generation %d: %w", n, err)
		}
		if resp.Count > 0 {
			return n, nil
		}
	}
	return 0, nil
}

package fleet

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portstripe/portstripe/fleet/store"
)

// NodeState is where one node stands against its desired record.
type NodeState string

const (
	// Synced: the agent ACKed the desired generation and reports HAProxy
	// up and no drift.
	Synced NodeState = "SYNCED"
	// Applying: the agent has not answered the desired generation yet.
	Applying NodeState = "APPLYING"
	// Nacked: the agent refused the desired generation (Error says why) and
	// serves the one it applied before.
	Nacked NodeState = "NACKED"
	// Stale: the agent's status is older than store.StaleAfter: it is
	// stuck, or cannot reach the store.
	Stale NodeState = "STALE"
	// Drifted: the node runs the desired generation, but HAProxy is down or
	// the live state differs from it (Drift).
	Drifted NodeState = "DRIFTED"
	// Missing: no agent reports for the node (its status key, tied to the
	// agent's lease, is gone), or the node has no desired record.
	Missing NodeState = "MISSING"
)

// NodeStates are the states in the order fleet status groups them: the
// ones that need a look first.
var NodeStates = []NodeState{Nacked, Missing, Stale, Drifted, Applying, Synced}

// NodeStatus is one node's line in fleet status.
type NodeStatus struct {
	Node  string    `json:"node"`
	State NodeState `json:"state"`
	// Desired is the generation the node should run (0: none).
	Desired uint64 `json:"desired_generation"`
	// Applied is the generation the agent serves.
	Applied uint64 `json:"applied_generation"`
	// Detail is one line: the NACK's error, the drift, how old the status is.
	Detail  string    `json:"detail,omitempty"`
	Version string    `json:"portstripe_version,omitempty"`
	Updated time.Time `json:"updated_at,omitzero"`
}

// Judge says where a node stands, from its desired record and status
// (either may be nil) at now.
func Judge(d *store.Desired, s *store.Status, now time.Time) (NodeState, string) {
	switch {
	case s == nil:
		if d == nil {
			return Missing, "no desired record (not moved to a generation yet) and no agent"
		}
		return Missing, "no agent reports (no status key: the agent is not running or lost its lease)"
	case d == nil:
		return Missing, "an agent reports, but the node has no desired record (not in a rolled-out generation)"
	case now.Sub(s.UpdatedAt) > store.StaleAfter:
		return Stale, fmt.Sprintf("last status %s ago", now.Sub(s.UpdatedAt).Round(time.Second))
	case !s.StoreReachable:
		return Stale, "the agent reports the store unreachable; it serves its last applied generation"
	case s.Generation != d.Generation || s.NodeSHA256 != d.NodeSHA256:
		return Applying, fmt.Sprintf("desired generation %d, the agent answered %d last", d.Generation, s.Generation)
	case s.Result == store.NACK:
		return Nacked, s.Error
	case !s.HAProxyUp:
		return Drifted, "HAProxy is not running"
	case len(s.Drift) > 0:
		return Drifted, strings.Join(s.Drift, "; ")
	}
	return Synced, ""
}

// FleetStatus is a fleet's nodes and rollout, as fleet status shows them.
type FleetStatus struct {
	Fleet   string         `json:"fleet"`
	Rollout *store.Rollout `json:"rollout,omitempty"`
	// Stable is the generation aborts return to (0: none yet).
	Stable uint64            `json:"stable_generation"`
	Counts map[NodeState]int `json:"counts"`
	Nodes  []NodeStatus      `json:"nodes"`
}

// ReadStatus reads every desired record, status and the rollout of a fleet.
func ReadStatus(ctx context.Context, kv clientv3.KV, fleet string, now time.Time) (*FleetStatus, error) {
	desired, _, err := readAll[store.Desired](ctx, kv, store.DesiredPrefix(fleet))
	if err != nil {
		return nil, err
	}
	statuses, _, err := readAll[store.Status](ctx, kv, store.StatusPrefix(fleet))
	if err != nil {
		return nil, err
	}
	fs := &FleetStatus{Fleet: fleet, Counts: map[NodeState]int{}}
	var ro store.Rollout
	if rev, err := store.Get(ctx, kv, store.RolloutKey(fleet), &ro); err != nil {
		return nil, err
	} else if rev != 0 {
		fs.Rollout, fs.Stable = &ro, ro.StableNow()
	}
	names := map[string]bool{}
	// The nodes of the stable, the target and the newest generation are
	// the fleet's even before an agent or a desired key says so.
	latest, err := Latest(ctx, kv, fleet)
	if err != nil {
		return nil, err
	}
	for _, g := range slices.Compact(slices.Sorted(slices.Values([]uint64{fs.Stable, ro.Target, latest}))) {
		if g == 0 {
			continue
		}
		prefix := store.GenNodesPrefix(fleet, g)
		resp, err := kv.Get(ctx, prefix, clientv3.WithPrefix(), clientv3.WithKeysOnly())
		if err != nil {
			return nil, fmt.Errorf("read generation %d: %w", g, err)
		}
		for _, e := range resp.Kvs {
			names[strings.TrimPrefix(string(e.Key), prefix)] = true
		}
	}
	for n := range desired {
		names[n] = true
	}
	for n := range statuses {
		names[n] = true
	}
	for _, n := range slices.Sorted(maps.Keys(names)) {
		d, s := desired[n], statuses[n]
		st := NodeStatus{Node: n}
		st.State, st.Detail = Judge(d, s, now)
		if d != nil {
			st.Desired = d.Generation
		}
		if s != nil {
			st.Applied, st.Version, st.Updated = s.Applied, s.Version, s.UpdatedAt
		}
		fs.Counts[st.State]++
		fs.Nodes = append(fs.Nodes, st)
	}
	return fs, nil
}

// readAll reads every record under prefix, by the key's last segment (the
// node's name), with each key's ModRevision.
func readAll[T any](ctx context.Context, kv clientv3.KV, prefix string) (map[string]*T, map[string]int64, error) {
	resp, err := kv.Get(ctx, prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, nil, fmt.Errorf("read %s: %w", prefix, err)
	}
	out, revs := make(map[string]*T, len(resp.Kvs)), make(map[string]int64, len(resp.Kvs))
	for _, e := range resp.Kvs {
		v := new(T)
		if err := store.Decode(e.Key, e.Value, v); err != nil {
			return nil, nil, err
		}
		name := strings.TrimPrefix(string(e.Key), prefix)
		out[name], revs[name] = v, e.ModRevision
	}
	return out, revs, nil
}

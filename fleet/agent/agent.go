// Package agent is the fleet's node agent: the desired-state Source of
// `portstripe run --store`. It reads the node's desired key (store.Desired)
// at a revision R, compiles the inline node file with this portstripe's own
// loader and compiler (a file it refuses is never applied: it NACKs with
// the error line), hands the result to run's apply path, writes the node's
// status key (store.Status) under a lease kept alive, and watches the
// desired key from R+1 with WithRequireLeader. On ErrCompacted it reads
// again; when the store is out of reach it keeps serving what was applied
// last, says so (log, /readyz, portstripe_store_connected) and reconnects
// with jittered backoff, so a restarted store is not hit by every node at
// once.
package agent

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/internal/version"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/supervisor"
)

// Defaults of an Agent's timing.
const (
	// LeaseTTL is the status key's lease: the key goes away this long
	// after the agent stops answering.
	LeaseTTL = 15 * time.Second
	// OpTimeout bounds one store request; a store that does not answer
	// within it is out of reach.
	OpTimeout = 3 * time.Second
	// MinBackoff and MaxBackoff bound the wait between reconnects (it
	// doubles from the first to the second, each wait drawn between half
	// and all of it).
	MinBackoff = 250 * time.Millisecond
	MaxBackoff = 4 * time.Second
)

// Agent watches one node's desired key in one fleet. Its zero timing
// fields take the defaults above.
type Agent struct {
	// Store is the etcd client configuration (store.Options.Config).
	Store       clientv3.Config
	Fleet, Node string
	Log         *slog.Logger

	StatusInterval, LeaseTTL, OpTimeout, MinBackoff, MaxBackoff time.Duration

	init, start sync.Once
	desires     chan supervisor.Desire
	kick        chan struct{}

	mu sync.Mutex
	// pending is the last desired record handed to run, rev its key's
	// ModRevision (what the next read must pass to be new) in the
	// cluster whose id is cluster.
	pending *answer
	rev     int64
	cluster uint64
	// applied is the generation the node serves (0: unknown).
	applied   uint64
	drift     []string
	restarts  int
	lastOK    bool // the last pass succeeded
	connected bool
	// probe reads what the status reports of the live node (SetProbe);
	// nil reports HAProxy up when the last pass succeeded, no counters.
	probe func(ctx context.Context, p *plan.Plan) Reading
	// serving is the plan the machine runs after the last pass.
	serving *plan.Plan
	// outage is set when the store went out of reach; the next status
	// written says so (StoreReachable false) and clears it.
	outage  bool
	downErr error

	connectedGauge, generationGauge prometheus.Gauge
}

// Reading is what the agent reports of the live node.
type Reading struct {
	HAProxyUp              bool
	FirstPackets, Sessions uint64
}

// answer is one desired record and how the node answered it.
type answer struct {
	desired store.Desired
	// result is the compile (nil when this portstripe refused the file),
	// outputs its hash as this portstripe made it.
	result  *compiler.Result
	outputs string
	// status is "" until run's first pass on it, then ACK or NACK.
	status store.Result
	err    string
}

func (a *Agent) setup() {
	a.init.Do(a.defaults)
}

func (a *Agent) defaults() {
	set := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	set(&a.StatusInterval, store.StatusInterval)
	set(&a.LeaseTTL, LeaseTTL)
	set(&a.OpTimeout, OpTimeout)
	set(&a.MinBackoff, MinBackoff)
	set(&a.MaxBackoff, MaxBackoff)
	a.desires = make(chan supervisor.Desire)
	a.kick = make(chan struct{}, 1)
	a.connectedGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portstripe_store_connected", Help: "1 while the fleet store answers the node agent; 0 while it serves the last applied state without it.",
	})
	a.generationGauge = prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portstripe_fleet_generation", Help: "The fleet generation the node serves (0 until one is applied).",
	})
}

// Register adds portstripe_store_connected and portstripe_fleet_generation
// to reg.
func (a *Agent) Register(reg prometheus.Registerer) error {
	a.setup()
	for _, c := range []prometheus.Collector{a.connectedGauge, a.generationGauge} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// SetProbe sets what reads the live node for the status (LiveProbe), once
// the node has one.
func (a *Agent) SetProbe(probe func(ctx context.Context, p *plan.Plan) Reading) {
	a.mu.Lock()
	a.probe = probe
	a.mu.Unlock()
}

// Input is what the agent reads.
func (a *Agent) Input() string { return "desired node file from the store" }

// Watch starts the agent once (later calls return the same channel) and
// yields every new desired record, compiled or refused.
func (a *Agent) Watch(ctx context.Context) (<-chan supervisor.Desire, error) {
	a.setup()
	a.start.Do(func() { go a.loop(ctx) })
	return a.desires, nil
}

// First waits for the first desired record this portstripe compiles, for a
// node with nothing applied yet; refused ones are NACKed meanwhile.
func (a *Agent) First(ctx context.Context) (*compiler.Result, error) {
	desires, _ := a.Watch(ctx)
	a.Log.Info("nothing applied yet: waiting for this node's desired key", "key", store.DesiredKey(a.Fleet, a.Node))
	for {
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case d := <-desires:
			if d.Err == nil {
				return d.Result, nil
			}
			a.Log.Error(a.Input()+" refused; nothing applied yet, waiting for the next", "reason", d.Reason, "error", d.Err)
			a.Passed(supervisor.Pass{Err: d.Err})
		}
	}
}

// Ready is nil while the store answers.
func (a *Agent) Ready() error {
	a.mu.Lock()
	defer a.mu.Unlock()
	if a.connected {
		return nil
	}
	if a.downErr != nil {
		return fmt.Errorf("fleet store unreachable (serving the last applied state): %w", a.downErr)
	}
	return errors.New("fleet store not reached yet")
}

// Passed records how run's pass went: the answer to the pending desired
// record (once), drift, restarts; the status key is rewritten soon after.
func (a *Agent) Passed(p supervisor.Pass) {
	a.mu.Lock()
	if ans := a.pending; ans != nil && ans.status == "" && p.Desired == ans.result {
		if p.Err == nil {
			ans.status = store.ACK
			a.applied = ans.desired.Generation
			a.generationGauge.Set(float64(a.applied))
		} else {
			ans.status, ans.err = store.NACK, oneLine(p.Err)
		}
	}
	a.lastOK = p.Err == nil
	if p.Serving != nil {
		a.serving = p.Serving.Plan
	}
	if p.Err == nil {
		a.drift = p.Drift
	}
	if p.Restarted {
		a.restarts++
	}
	a.mu.Unlock()
	select {
	case a.kick <- struct{}{}:
	default:
	}
}

// loop runs sessions with the store until ctx ends, waiting a jittered,
// growing backoff after each that ended.
func (a *Agent) loop(ctx context.Context) {
	step := time.Duration(0)
	for {
		err := a.session(ctx)
		if ctx.Err() != nil {
			return
		}
		if a.setDown(err) {
			step = 0 // it had connected: start again from the shortest wait
		}
		step = min(max(2*step, a.MinBackoff), a.MaxBackoff)
		wait := step/2 + rand.N(step/2+1)
		select {
		case <-ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// setDown marks the store out of reach and reports whether it was
// connected until now. It is logged once per outage (and once when the
// store cannot be reached from the start).
func (a *Agent) setDown(err error) bool {
	a.mu.Lock()
	was, first := a.connected, !a.connected && !a.outage
	a.connected, a.outage, a.downErr = false, true, err
	a.mu.Unlock()
	a.connectedGauge.Set(0)
	if was || first {
		a.Log.Warn("fleet store unreachable; serving the last applied state, reconnecting", "error", err)
	}
	return was
}

func (a *Agent) setUp() {
	a.mu.Lock()
	was := a.connected
	a.connected, a.downErr = true, nil
	a.mu.Unlock()
	a.connectedGauge.Set(1)
	if !was {
		a.Log.Info("fleet store connected", "endpoints", a.Store.Endpoints, "fleet", a.Fleet, "node", a.Node)
	}
}

// session is one connection to the store: a lease for the status key, a
// read of the desired key, then its watch, until something fails.
func (a *Agent) session(ctx context.Context) error {
	cfg := a.Store
	cfg.Context = ctx
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = a.OpTimeout
	}
	// gRPC's own reconnects (a stream that broke while the session
	// lasts) back off up to 2 minutes by default: bound them as the
	// sessions are, jittered (±20%), so a restarted store is found again
	// within seconds but not by every node at once.
	cfg.DialOptions = append(slices.Clip(cfg.DialOptions), grpc.WithConnectParams(grpc.ConnectParams{
		Backoff:           backoff.Config{BaseDelay: a.MinBackoff, Multiplier: 1.6, Jitter: 0.2, MaxDelay: a.MaxBackoff},
		MinConnectTimeout: a.OpTimeout,
	}))
	cl, err := clientv3.New(cfg)
	if err != nil {
		return err
	}
	defer cl.Close()
	sctx, cancel := context.WithCancel(ctx)
	defer cancel()
	op, opCancel := context.WithTimeout(sctx, a.OpTimeout)
	lease, err := cl.Grant(op, int64(a.LeaseTTL/time.Second))
	opCancel()
	if err != nil {
		return fmt.Errorf("lease: %w", err)
	}
	defer func() {
		if ctx.Err() == nil {
			// A session that failed leaves its lease to run out: the
			// next one puts the status under a lease of its own.
			return
		}
		// The agent stops: its status key goes (MISSING) at once, not a
		// TTL later.
		rctx, rcancel := context.WithTimeout(context.Background(), time.Second)
		cl.Revoke(rctx, lease.ID)
		rcancel()
	}()
	alive, err := cl.KeepAlive(sctx, lease.ID)
	if err != nil {
		return fmt.Errorf("lease keepalive: %w", err)
	}
	rev, err := a.read(sctx, cl)
	if err != nil {
		return err
	}
	a.setUp()
	// A status write that fails says the store is out of reach (log,
	// /readyz, the gauge) but ends nothing: the lease, the watch and gRPC
	// carry on through a store's restart, and the next write that goes
	// through says it is back. A new session would add its lease, read
	// and watch to a store already struggling.
	written := ""
	status := func(always bool) {
		switch wrote, err := a.writeStatus(sctx, cl, lease.ID, &written, always); {
		case err != nil && ctx.Err() == nil:
			a.setDown(err)
		case wrote:
			a.setUp()
		}
	}
	status(true)
	key := store.DesiredKey(a.Fleet, a.Node)
	watch := cl.Watch(clientv3.WithRequireLeader(sctx), key, clientv3.WithRev(rev+1))
	tick := time.NewTicker(a.StatusInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case wr, ok := <-watch:
			if !ok {
				return errors.New("watch closed")
			}
			if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
				// The history since rev is gone: read the key as it is now.
				a.Log.Info("desired key's history compacted; reading it again", "compacted_to", wr.CompactRevision)
				if rev, err = a.read(sctx, cl); err != nil {
					return err
				}
				watch = cl.Watch(clientv3.WithRequireLeader(sctx), key, clientv3.WithRev(rev+1))
				continue
			}
			if err := wr.Err(); err != nil {
				return fmt.Errorf("watch: %w", err)
			}
			for _, ev := range wr.Events {
				if err := a.event(sctx, ev); err != nil {
					return err
				}
			}
		case _, ok := <-alive:
			if !ok {
				return errors.New("the status key's lease ran out: the store did not answer")
			}
		case <-a.kick:
			status(false)
		case <-tick.C:
			status(true)
		}
	}
}

// read reads the desired key, offers it when it is new, and returns the
// store's revision the read saw (what the watch starts after).
func (a *Agent) read(ctx context.Context, cl *clientv3.Client) (int64, error) {
	op, cancel := context.WithTimeout(ctx, a.OpTimeout)
	defer cancel()
	key := store.DesiredKey(a.Fleet, a.Node)
	resp, err := cl.Get(op, key)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	a.mu.Lock()
	if id := resp.Header.ClusterId; id != a.cluster {
		// Another cluster (rebuilt, restored from a snapshot) numbers
		// its revisions anew: what it holds is new whatever its revision.
		a.cluster, a.rev = id, 0
	}
	a.mu.Unlock()
	if len(resp.Kvs) == 0 {
		a.Log.Info("no desired state for this node in the store yet; watching for it", "key", key)
	} else if err := a.offer(ctx, resp.Kvs[0].ModRevision, resp.Kvs[0].Value); err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

func (a *Agent) event(ctx context.Context, ev *clientv3.Event) error {
	if ev.Type == mvccpb.DELETE {
		a.Log.Warn("desired key deleted; serving the last applied state until a new one is written", "key", string(ev.Kv.Key))
		return nil
	}
	return a.offer(ctx, ev.Kv.ModRevision, ev.Kv.Value)
}

// offer compiles a desired record at revision rev, unless it was offered
// already, and hands it to run (waiting while run applies the one before).
func (a *Agent) offer(ctx context.Context, rev int64, value []byte) error {
	a.mu.Lock()
	seen := rev <= a.rev
	a.mu.Unlock()
	if seen {
		return nil
	}
	ans := &answer{}
	reason := fmt.Sprintf("store generation (desired key revision %d)", rev)
	var err error
	if err = store.Decode([]byte(store.DesiredKey(a.Fleet, a.Node)), value, &ans.desired); err == nil {
		reason = fmt.Sprintf("store generation %d", ans.desired.Generation)
		ans.result, err = a.compile(ans.desired)
	}
	if ans.result != nil {
		ans.outputs = store.OutputsHash(store.Outputs(ans.result.Files))
	}
	a.mu.Lock()
	a.pending, a.rev = ans, rev
	a.mu.Unlock()
	a.Log.Info("desired state from the store", "generation", ans.desired.Generation, "node_sha256", ans.desired.NodeSHA256,
		"revision", rev, "compiled", err == nil)
	select {
	case a.desires <- supervisor.Desire{Result: ans.result, Err: err, Reason: reason}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// compile loads the inline node file as a local one is loaded (strict
// decoding, validation, the same compiler), under the source name the
// publisher compiled it with, so the same portstripe makes the same bytes.
func (a *Agent) compile(d store.Desired) (*compiler.Result, error) {
	n, err := node.Parse([]byte(d.NodeFile), store.Source(a.Fleet, a.Node), node.Options{})
	if err != nil {
		return nil, err
	}
	if n.SHA256 != d.NodeSHA256 {
		return nil, fmt.Errorf("desired node file's sha256 is %s, the record says %s: not what was published", n.SHA256, d.NodeSHA256)
	}
	if n.Name != a.Node {
		return nil, fmt.Errorf("name: the desired node file is node %q, this agent is node %q", n.Name, a.Node)
	}
	return compiler.FromNode(n)
}

// writeStatus writes the node's status under the lease once run has
// answered a desired record: on a tick always (the counters and the time
// move), on a pass only when it says something new since written (the
// last record this session wrote, without its time). It reports whether
// it wrote.
func (a *Agent) writeStatus(ctx context.Context, cl *clientv3.Client, lease clientv3.LeaseID, written *string, always bool) (bool, error) {
	a.mu.Lock()
	ans := a.pending
	if ans == nil || ans.status == "" {
		a.mu.Unlock()
		return false, nil
	}
	st := store.Status{
		Generation:     ans.desired.Generation,
		NodeSHA256:     ans.desired.NodeSHA256,
		OutputsSHA256:  ans.outputs,
		Result:         ans.status,
		Error:          ans.err,
		Version:        version.Get().Version,
		Applied:        a.applied,
		HAProxyUp:      a.lastOK,
		Drift:          a.drift,
		Restarts:       a.restarts,
		StoreReachable: !a.outage,
	}
	probe, serving := a.probe, a.serving
	a.mu.Unlock()
	op, cancel := context.WithTimeout(ctx, a.OpTimeout)
	defer cancel()
	if probe != nil && serving != nil {
		r := probe(op, serving)
		st.HAProxyUp, st.FirstPackets, st.Sessions = r.HAProxyUp, r.FirstPackets, r.Sessions
	}
	same, err := store.Encode(st)
	if err != nil {
		return false, err
	}
	if !always && same == *written {
		return false, nil
	}
	st.UpdatedAt = time.Now().UTC()
	val, err := store.Encode(st)
	if err != nil {
		return false, err
	}
	key := store.StatusKey(a.Fleet, a.Node)
	if _, err := cl.Put(op, key, val, clientv3.WithLease(lease)); err != nil {
		return false, fmt.Errorf("write %s: %w", key, err)
	}
	*written = same
	if !st.StoreReachable {
		a.mu.Lock()
		a.outage = false
		a.mu.Unlock()
	}
	return true, nil
}

// oneLine is an error as the status's one line (at most 500 bytes).
func oneLine(err error) string {
	s := strings.Join(strings.Fields(err.Error()), " ")
	if len(s) > 500 {
		s = s[:497] + "..."
	}
	return s
}

package fleet

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"

	"github.com/portstripe/portstripe/fleet/store"
)

// DefaultSettings are fleet rollout's defaults.
var DefaultSettings = store.Settings{
	Waves: []float64{0.01, 0.05, 0.25, 1}, Soak: 30 * time.Second, MaxFailed: 0.05,
	AckTimeout: 2 * time.Minute, Keep: 5,
}

// collapse is how far a node's traffic may fall during the soak, as a share
// of its own rate before it moved, before the node counts as unhealthy.
const collapse = 0.5

// electionTTL is how long (seconds) a controller that died keeps the lead:
// after that, another can resume or abort its rollout.
const electionTTL = 10

// ErrPaused is returned when a rollout stopped without a verdict: the soak
// was inconclusive or the controller was stopped. The rollout's Reason
// says why; fleet rollout --resume carries on.
var ErrPaused = errors.New("rollout paused")

// ErrAborted is returned when a rollout was aborted: its nodes are back on
// the stable generation and the target is marked bad.
var ErrAborted = errors.New("rollout aborted")

// Controller moves a fleet's nodes between generations. Only the
// controller that leads the fleet's election writes, and every write it
// makes is guarded by its lead, so one that lost the lead cannot interfere.
type Controller struct {
	Client *clientv3.Client
	Fleet  string
	// Poll is how often statuses are read during a soak (default 1s).
	Poll time.Duration
	// Log gets one line per step: waves moved and promoted, nodes that
	// ACKed or failed, the abort.
	Log func(format string, args ...any)
	// Now is the clock (default time.Now).
	Now func() time.Time

	election   *concurrency.Election
	rolloutRev int64
	// prev is the snapshot of every status taken when the last wave moved:
	// the start of the window the next wave's baselines are measured over.
	prev map[string]*store.Status
}

func (c *Controller) now() time.Time {
	if c.Now != nil {
		return c.Now().UTC()
	}
	return time.Now().UTC()
}

func (c *Controller) logf(format string, args ...any) {
	if c.Log != nil {
		c.Log(format, args...)
	}
}

// Lead makes c the fleet's controller, or fails at once if another one
// leads. The lead is given up by the returned function, and lost when the
// process dies (the election key's lease ends within electionTTL).
func (c *Controller) Lead(ctx context.Context) (func(), error) {
	s, err := concurrency.NewSession(c.Client, concurrency.WithTTL(electionTTL), concurrency.WithContext(ctx))
	if err != nil {
		return nil, fmt.Errorf("join the election of fleet %s: %w", c.Fleet, err)
	}
	e := concurrency.NewElection(s, store.ElectionPrefix(c.Fleet))
	host, _ := os.Hostname()
	if leader, err := e.Leader(ctx); err == nil {
		s.Close()
		return nil, fmt.Errorf("another controller (%s) leads fleet %s: wait for it, or stop it (fleet rollout --resume or --abort then takes over)", leader.Kvs[0].Value, c.Fleet)
	} else if !errors.Is(err, concurrency.ErrElectionNoLeader) {
		s.Close()
		return nil, fmt.Errorf("read the election of fleet %s: %w", c.Fleet, err)
	}
	if err := e.Campaign(ctx, fmt.Sprintf("%s pid %d", host, os.Getpid())); err != nil {
		s.Close()
		return nil, fmt.Errorf("campaign for fleet %s: %w", c.Fleet, err)
	}
	c.election = e
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = e.Resign(ctx)
		s.Close()
	}, nil
}

// txn commits ops if cmps hold and c still leads.
func (c *Controller) txn(ctx context.Context, cmps []clientv3.Cmp, ops ...clientv3.Op) error {
	if c.election == nil {
		return errors.New("the controller does not lead the fleet (Lead first)")
	}
	lead := clientv3.Compare(clientv3.CreateRevision(c.election.Key()), "=", c.election.Rev())
	resp, err := c.Client.Txn(ctx).If(append(cmps, lead)...).Then(ops...).Commit()
	if err != nil {
		return err
	}
	if !resp.Succeeded {
		// Say which check failed: the lead is lost when the store was away
		// longer than the election session's TTL.
		if got, err := c.Client.Get(ctx, c.election.Key()); err == nil && (len(got.Kvs) == 0 || got.Kvs[0].CreateRevision != c.election.Rev()) {
			return fmt.Errorf("the controller lost the lead of fleet %s (its election key expired, as when the store is unreachable for longer than %d s): run fleet rollout --resume", c.Fleet, electionTTL)
		}
		return store.ErrConflict
	}
	return nil
}

// save writes the rollout record (compare-and-swap on its last write).
func (c *Controller) save(ctx context.Context, ro *store.Rollout) error {
	ro.UpdatedAt = c.now()
	val, err := store.Encode(ro)
	if err != nil {
		return err
	}
	key := store.RolloutKey(c.Fleet)
	if err := c.txn(ctx, []clientv3.Cmp{store.Unchanged(key, c.rolloutRev)}, clientv3.OpPut(key, val)); err != nil {
		return fmt.Errorf("write %s: %w", key, err)
	}
	resp, err := c.Client.Get(ctx, key)
	if err != nil {
		return fmt.Errorf("read %s: %w", key, err)
	}
	c.rolloutRev = resp.Kvs[0].ModRevision
	return nil
}

// load reads the rollout record.
func (c *Controller) load(ctx context.Context) (*store.Rollout, error) {
	var ro store.Rollout
	rev, err := store.Get(ctx, c.Client, store.RolloutKey(c.Fleet), &ro)
	if err != nil {
		return nil, err
	}
	c.rolloutRev = rev
	if rev == 0 {
		return nil, nil
	}
	return &ro, nil
}

// mark sets generation n's state and reason.
func (c *Controller) mark(ctx context.Context, n uint64, state store.GenState, reason string) error {
	var meta store.Generation
	key := store.GenMeta(c.Fleet, n)
	rev, err := store.Get(ctx, c.Client, key, &meta)
	if err != nil || rev == 0 {
		return cmp.Or(err, fmt.Errorf("fleet %s has no generation %d", c.Fleet, n))
	}
	meta.State, meta.Reason = state, reason
	val, err := store.Encode(meta)
	if err != nil {
		return err
	}
	if err := c.txn(ctx, []clientv3.Cmp{store.Unchanged(key, rev)}, clientv3.OpPut(key, val)); err != nil {
		return fmt.Errorf("mark generation %d %s: %w", n, state, err)
	}
	return nil
}

// CheckSettings says what is wrong with rollout settings, or nil.
func CheckSettings(s store.Settings) error {
	if len(s.Waves) == 0 {
		return errors.New("--waves: give at least one share, ending at 100%")
	}
	for i, w := range s.Waves {
		if w <= 0 || w > 1 || (i > 0 && w <= s.Waves[i-1]) {
			return fmt.Errorf("--waves: %g%% after %s: shares grow, from above 0 to 100%%", w*100, shares(s.Waves[:i]))
		}
	}
	if s.Waves[len(s.Waves)-1] != 1 {
		return errors.New("--waves: the last wave is 100% (every node)")
	}
	if s.Soak < 0 || s.AckTimeout <= 0 {
		return errors.New("--soak is 0 or more and --ack-timeout more than 0")
	}
	if s.MaxFailed < 0 || s.MaxFailed >= 1 {
		return errors.New("--max-failed is a share from 0% up to, not including, 100%")
	}
	if s.Keep < 1 {
		return errors.New("--keep is at least 1 (the stable generation)")
	}
	return nil
}

func shares(ws []float64) string {
	if len(ws) == 0 {
		return "the start"
	}
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprintf("%g%%", w*100)
	}
	return strings.Join(parts, ",")
}

// Waves splits a generation's nodes into waves: the nodes in an order that
// takes one from each label group in turn (groups of nodes with the same
// labels), cut at each share of the fleet. The first wave, the canary,
// holds at least one node, and so each wave spans the labels as far as
// its size allows.
func Waves(nodes []store.GenNode, ws []float64) [][]string {
	groups := map[string][]string{}
	for _, n := range nodes {
		k := labelKey(n.Labels)
		groups[k] = append(groups[k], n.Node)
	}
	keys := slices.Sorted(maps.Keys(groups))
	var order []string
	for i := 0; len(order) < len(nodes); i++ {
		for _, k := range keys {
			if g := groups[k]; i < len(g) {
				if i == 0 {
					slices.Sort(g)
				}
				order = append(order, g[i])
			}
		}
	}
	var waves [][]string
	done := 0
	for _, w := range ws {
		end := min(len(order), max(done+1, int(math.Ceil(w*float64(len(order))-1e-9))))
		if end > done {
			waves = append(waves, order[done:end])
			done = end
		}
	}
	return waves
}

func labelKey(labels map[string]string) string {
	var b strings.Builder
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		fmt.Fprintf(&b, "%s=%s,", k, labels[k])
	}
	return b.String()
}

// Start leads the fleet and rolls generation target out (0: the newest).
func (c *Controller) Start(ctx context.Context, target uint64, s store.Settings) (*store.Rollout, error) {
	if err := CheckSettings(s); err != nil {
		return nil, err
	}
	release, err := c.Lead(ctx)
	if err != nil {
		return nil, err
	}
	defer release()
	prev, err := c.load(ctx)
	if err != nil {
		return nil, err
	}
	if prev != nil && !prev.Phase.Done() {
		return nil, fmt.Errorf("a rollout of generation %d is %s (%s): fleet rollout --resume carries it on, --abort returns its nodes to generation %d", prev.Target, prev.Phase, prev.Reason, prev.Stable)
	}
	var stable uint64
	if prev != nil {
		stable = prev.StableNow()
	}
	if target == 0 {
		if target, err = Latest(ctx, c.Client, c.Fleet); err != nil {
			return nil, err
		}
		if target == 0 {
			return nil, fmt.Errorf("fleet %s has no generation: fleet publish writes one", c.Fleet)
		}
	}
	meta, nodes, err := ReadGeneration(ctx, c.Client, c.Fleet, target)
	if err != nil {
		return nil, err
	}
	switch {
	case meta.State == store.Bad:
		return nil, fmt.Errorf("generation %d is bad (%s): publish a fixed fleet file as a new generation", target, meta.Reason)
	case target == stable:
		return nil, fmt.Errorf("generation %d is already the stable one: nothing to roll out", target)
	}
	head, err := c.Client.Get(ctx, store.RolloutKey(c.Fleet), clientv3.WithCountOnly())
	if err != nil {
		return nil, fmt.Errorf("read the store's revision: %w", err)
	}
	ro := &store.Rollout{
		Target: target, Stable: stable, Phase: store.Moving, Settings: s,
		StartRevision: head.Header.Revision, Started: c.now(),
	}
	for _, w := range Waves(nodes, s.Waves) {
		ro.Waves = append(ro.Waves, store.Wave{Nodes: w, State: store.WavePending})
	}
	if err := c.save(ctx, ro); err != nil {
		return nil, err
	}
	if err := c.mark(ctx, target, store.Rolling, ""); err != nil {
		return nil, err
	}
	c.logf("rollout of generation %d (stable: %d): %d nodes in %d waves (%s), soak %s", target, stable, len(nodes), len(ro.Waves), waveSizes(ro.Waves), s.Soak)
	return ro, c.run(ctx, ro, nodes)
}

func waveSizes(ws []store.Wave) string {
	parts := make([]string, len(ws))
	for i, w := range ws {
		parts[i] = fmt.Sprint(len(w.Nodes))
	}
	return strings.Join(parts, "+")
}

// Resume leads the fleet and carries on its paused or interrupted rollout:
// the current wave is moved again where it was not, and soaked again.
func (c *Controller) Resume(ctx context.Context) (*store.Rollout, error) {
	ro, release, err := c.unfinished(ctx, "resume (fleet rollout starts one)")
	if err != nil {
		return ro, err
	}
	defer release()
	_, nodes, err := ReadGeneration(ctx, c.Client, c.Fleet, ro.Target)
	if err != nil {
		return nil, err
	}
	c.logf("resuming the rollout of generation %d at wave %d of %d (%s)", ro.Target, ro.Current+1, len(ro.Waves), ro.Phase)
	ro.Phase, ro.Reason = store.Moving, ""
	return ro, c.run(ctx, ro, nodes)
}

// Abort leads the fleet and aborts its rollout: every moved node back to
// what it ran before, the target marked bad.
func (c *Controller) Abort(ctx context.Context, reason string) (*store.Rollout, error) {
	ro, release, err := c.unfinished(ctx, "abort")
	if err != nil {
		return ro, err
	}
	defer release()
	return ro, c.abort(ctx, ro, reason)
}

// unfinished leads the fleet and reads its rollout, which must not be over
// for what (the error says "no rollout to <what>").
func (c *Controller) unfinished(ctx context.Context, what string) (*store.Rollout, func(), error) {
	release, err := c.Lead(ctx)
	if err != nil {
		return nil, nil, err
	}
	ro, err := c.load(ctx)
	if err == nil && (ro == nil || ro.Phase.Done()) {
		err = fmt.Errorf("fleet %s has no rollout to %s", c.Fleet, what)
	}
	if err != nil {
		release()
		return ro, nil, err
	}
	return ro, release, nil
}

// run moves and soaks the waves from the current one on.
func (c *Controller) run(ctx context.Context, ro *store.Rollout, nodes []store.GenNode) error {
	records := make(map[string]store.GenNode, len(nodes))
	for _, n := range nodes {
		records[n.Node] = n
	}
	for ; ro.Current < len(ro.Waves); ro.Current++ {
		w := &ro.Waves[ro.Current]
		if w.State == store.WavePromoted {
			continue
		}
		if err := c.baseline(ctx, ro, w); err != nil {
			return c.pause(ro, err)
		}
		w.State, ro.Phase = store.WaveMoving, store.Moving
		if err := c.save(ctx, ro); err != nil {
			return err
		}
		before, err := c.setDesired(ctx, w.Nodes, func(n string) (store.Desired, bool) {
			return store.DesiredOf(ro.Target, records[n]), true
		})
		if err != nil {
			return c.pause(ro, err)
		}
		from := map[string]uint64{}
		for n, g := range before {
			switch {
			case g != ro.Target:
				from[n] = g
			case w.From != nil && w.From[n] != 0:
				from[n] = w.From[n] // moved by this rollout before a resume
			default:
				from[n] = ro.Stable
			}
		}
		w.From = from
		w.State, w.Moved, ro.Phase = store.WaveSoaking, c.now(), store.Soaking
		if err := c.save(ctx, ro); err != nil {
			return err
		}
		c.logf("wave %d of %d: %d nodes moved to generation %d", ro.Current+1, len(ro.Waves), len(w.Nodes), ro.Target)
		failed, idle, err := c.soak(ctx, ro, w, records)
		if err != nil {
			return c.pause(ro, err)
		}
		allowed := 0
		if ro.Current > 0 {
			allowed = int(math.Floor(ro.Settings.MaxFailed * float64(len(w.Nodes))))
		}
		if len(failed) > allowed {
			w.State = store.WaveFailed
			return c.abort(ctx, ro, failReason(ro, failed, allowed))
		}
		if len(idle) > 0 && !ro.Settings.AllowIdle {
			ro.Phase = store.Paused
			ro.Reason = fmt.Sprintf("inconclusive: %d nodes of wave %d saw no traffic during the soak (%s): no data is not a pass; resume when they carry traffic, or roll out with --allow-idle", len(idle), ro.Current+1, clipList(idle))
			if err := c.save(ctx, ro); err != nil {
				return err
			}
			return fmt.Errorf("%w: %s", ErrPaused, ro.Reason)
		}
		if len(failed) > 0 {
			c.logf("wave %d: %d failed nodes (within --max-failed) go back to what they ran before: %s", ro.Current+1, len(failed), clipList(slices.Sorted(maps.Keys(failed))))
			if err := c.rollBack(ctx, ro, slices.Sorted(maps.Keys(failed))); err != nil {
				return err
			}
		}
		w.State, w.Promoted = store.WavePromoted, c.now()
		if err := c.save(ctx, ro); err != nil {
			return err
		}
		c.logf("wave %d of %d promoted", ro.Current+1, len(ro.Waves))
	}
	return c.promote(ctx, ro, records)
}

func failReason(ro *store.Rollout, failed map[string]string, allowed int) string {
	names := slices.Sorted(maps.Keys(failed))
	what := "the canary wave"
	if ro.Current > 0 {
		what = fmt.Sprintf("wave %d (%d failed, --max-failed allows %d)", ro.Current+1, len(failed), allowed)
	}
	return fmt.Sprintf("%s: node %s %s", what, names[0], failed[names[0]])
}

func clipList(names []string) string {
	if len(names) > 5 {
		return strings.Join(names[:5], ", ") + fmt.Sprintf(" and %d more", len(names)-5)
	}
	return strings.Join(names, ", ")
}

// pause records that the rollout stopped without a verdict, and why.
func (c *Controller) pause(ro *store.Rollout, cause error) error {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ro.Phase = store.Paused
	ro.Reason = "controller stopped: " + cause.Error()
	if errors.Is(cause, context.Canceled) {
		ro.Reason = "controller stopped"
	}
	if err := c.save(ctx, ro); err != nil {
		return fmt.Errorf("%w (and recording the pause failed: %v)", cause, err)
	}
	return fmt.Errorf("%w: %s; fleet rollout --resume carries on, --abort returns the moved nodes", ErrPaused, ro.Reason)
}

// snapshot reads every status of the fleet.
func (c *Controller) snapshot(ctx context.Context) (map[string]*store.Status, error) {
	s, _, err := readAll[store.Status](ctx, c.Client, store.StatusPrefix(c.Fleet))
	return s, err
}

// baseline records each node's counters before its wave moves, and its
// traffic rate over the window since the previous wave moved; with no
// such window (the canary, a resumed rollout) the controller watches one
// soak's length first.
func (c *Controller) baseline(ctx context.Context, ro *store.Rollout, w *store.Wave) error {
	if w.Baselines != nil {
		return nil
	}
	if c.prev == nil {
		var err error
		if c.prev, err = c.snapshot(ctx); err != nil {
			return err
		}
		if ro.Settings.Soak > 0 {
			c.logf("wave %d: measuring the nodes' traffic for %s before they move", ro.Current+1, ro.Settings.Soak)
			if err := sleep(ctx, ro.Settings.Soak); err != nil {
				return err
			}
		}
	}
	cur, err := c.snapshot(ctx)
	if err != nil {
		return err
	}
	w.Baselines = map[string]store.Baseline{}
	for _, n := range w.Nodes {
		s := cur[n]
		if s == nil {
			continue
		}
		b := store.Baseline{At: s.UpdatedAt, FirstPackets: s.FirstPackets, Sessions: s.Sessions, Restarts: s.Restarts}
		if p := c.prev[n]; p != nil {
			b.Rate = rate(p, s)
		}
		w.Baselines[n] = b
	}
	c.prev = cur
	return nil
}

// rate is a node's first packets and sessions per second between two of
// its statuses (by its own clock); 0 when they are not apart in time or
// the counters went back (the agent restarted).
func rate(from, to *store.Status) float64 {
	dt := to.UpdatedAt.Sub(from.UpdatedAt).Seconds()
	if dt <= 0 || to.FirstPackets < from.FirstPackets || to.Sessions < from.Sessions {
		return 0
	}
	return float64(to.FirstPackets-from.FirstPackets+to.Sessions-from.Sessions) / dt
}

func sleep(ctx context.Context, d time.Duration) error {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-t.C:
		return nil
	}
}

// soak watches a moved wave until every node in it either ACKed and stayed
// healthy for the soak, or failed. It returns the failed nodes (with why),
// and the nodes that passed but saw no traffic to judge by. A canary node
// that fails ends the soak at once, as does a later wave failing more than
// --max-failed allows.
func (c *Controller) soak(ctx context.Context, ro *store.Rollout, w *store.Wave, records map[string]store.GenNode) (map[string]string, []string, error) {
	type watch struct {
		ack   *store.Status // the status that ACKed
		ackAt time.Time     // when the controller saw it: the soak's start
		done  bool
	}
	s := ro.Settings
	allowed := 0
	if ro.Current > 0 {
		allowed = int(math.Floor(s.MaxFailed * float64(len(w.Nodes))))
	}
	poll := cmp.Or(c.Poll, time.Second)
	watching := make(map[string]*watch, len(w.Nodes))
	for _, n := range w.Nodes {
		watching[n] = &watch{}
	}
	failed := map[string]string{}
	var idle []string
	deadline := w.Moved.Add(s.AckTimeout)
	for {
		statuses, err := c.snapshot(ctx)
		if err != nil {
			return nil, nil, err
		}
		now := c.now()
		open := 0
		for _, n := range w.Nodes {
			wn := watching[n]
			if wn.done {
				continue
			}
			why, passed := judgeSoak(statuses[n], wn.ack, records[n], w.Baselines[n], ro.Target, s, now.Sub(wn.ackAt), now.After(deadline))
			switch {
			case why != "":
				failed[n], wn.done = why, true
				c.logf("wave %d: node %s %s", ro.Current+1, n, why)
			case passed == passedIdle:
				idle, wn.done = append(idle, n), true
			case passed == passedTraffic:
				wn.done = true
			default:
				if wn.ack == nil && statuses[n] != nil && statuses[n].Generation == ro.Target && statuses[n].Result == store.ACK {
					wn.ack, wn.ackAt = statuses[n], now
				}
				open++
			}
		}
		if len(failed) > allowed || open == 0 {
			return failed, idle, nil
		}
		if err := sleep(ctx, poll); err != nil {
			return nil, nil, err
		}
	}
}

type soakResult int

const (
	soaking soakResult = iota
	passedTraffic
	passedIdle
)

// judgeSoak judges one node of a soaking wave from its status now, the
// status it ACKed with (nil: not yet) and how long ago that was: why it
// failed (empty: it did not), or whether it passed the soak.
func judgeSoak(st, ack *store.Status, rec store.GenNode, base store.Baseline, target uint64, s store.Settings, soaked time.Duration, late bool) (string, soakResult) {
	switch {
	case st == nil && ack != nil:
		return "stopped reporting during the soak (its agent's status key is gone)", soaking
	case st == nil:
		if late {
			return fmt.Sprintf("did not ACK within --ack-timeout %s (no agent reports)", s.AckTimeout), soaking
		}
		return "", soaking
	case st.Generation != target || st.NodeSHA256 != rec.NodeSHA256:
		if ack != nil {
			return fmt.Sprintf("went from generation %d to %d during the soak", target, st.Generation), soaking
		}
		if late {
			return fmt.Sprintf("did not ACK within --ack-timeout %s (it answered generation %d last)", s.AckTimeout, st.Generation), soaking
		}
		return "", soaking
	case st.Result == store.NACK:
		return "NACKed: " + st.Error, soaking
	case !st.HAProxyUp:
		return "is unhealthy: HAProxy is not running", soaking
	case len(st.Drift) > 0:
		return "is unhealthy: drift: " + strings.Join(st.Drift, "; "), soaking
	case ack == nil:
		return "", soaking // ACKed just now; its soak starts
	case st.Restarts > ack.Restarts:
		return fmt.Sprintf("is unhealthy: HAProxy restarted %d times during the soak", st.Restarts-ack.Restarts), soaking
	case st.FirstPackets < ack.FirstPackets || st.Sessions < ack.Sessions:
		return "is unhealthy: its agent restarted during the soak (counters went back)", soaking
	case soaked < s.Soak:
		return "", soaking
	}
	moved := st.FirstPackets - ack.FirstPackets + st.Sessions - ack.Sessions
	if r := rate(ack, st); base.Rate > 0 && r < collapse*base.Rate {
		return fmt.Sprintf("is unhealthy: traffic collapsed to %.1f/s from %.1f/s before it moved (first packets + sessions)", r, base.Rate), soaking
	}
	if moved == 0 {
		return "", passedIdle
	}
	return "", passedTraffic
}

// setDesired writes the desired record want(node) for each node (a false
// second value deletes the key), compare-and-swap on each key's last
// write, in batches that fit a transaction; records already right are left
// alone. It returns the generation each node's key named before (nodes
// without a key left out).
func (c *Controller) setDesired(ctx context.Context, nodes []string, want func(string) (store.Desired, bool)) (map[string]uint64, error) {
	current, revs, err := readAll[store.Desired](ctx, c.Client, store.DesiredPrefix(c.Fleet))
	if err != nil {
		return nil, err
	}
	before := map[string]uint64{}
	for _, n := range nodes {
		if d := current[n]; d != nil {
			before[n] = d.Generation
		}
	}
	var cmps []clientv3.Cmp
	var ops []clientv3.Op
	flush := func() error {
		if len(ops) == 0 {
			return nil
		}
		if err := c.txn(ctx, cmps, ops...); err != nil {
			return fmt.Errorf("move nodes: %w", err)
		}
		cmps, ops = cmps[:0], ops[:0]
		return nil
	}
	for _, n := range nodes {
		d, keep := want(n)
		key := store.DesiredKey(c.Fleet, n)
		cur := current[n]
		switch {
		case keep && cur != nil && *cur == d, !keep && cur == nil:
			continue
		case keep:
			val, err := store.Encode(d)
			if err != nil {
				return nil, err
			}
			ops = append(ops, clientv3.OpPut(key, val))
		default:
			ops = append(ops, clientv3.OpDelete(key))
		}
		cmps = append(cmps, store.Unchanged(key, revs[n]))
		if len(ops) == batchOps {
			if err := flush(); err != nil {
				return nil, err
			}
		}
	}
	return before, flush()
}

// rollBack sets nodes back to the generation they ran before the rollout
// moved them (From; the stable one for a node no wave recorded), deleting
// the desired key of a node that had none or whose generation lacks it.
func (c *Controller) rollBack(ctx context.Context, ro *store.Rollout, nodes []string) error {
	prev := func(n string) uint64 {
		for _, w := range ro.Waves {
			if g, ok := w.From[n]; ok {
				return g
			}
			if slices.Contains(w.Nodes, n) && w.From != nil {
				return 0 // moved from no desired key
			}
		}
		return ro.Stable
	}
	records := map[uint64]map[string]store.GenNode{}
	for _, n := range nodes {
		g := prev(n)
		if _, ok := records[g]; ok || g == 0 {
			continue
		}
		_, recs, err := ReadGeneration(ctx, c.Client, c.Fleet, g)
		if err != nil {
			return err
		}
		records[g] = map[string]store.GenNode{}
		for _, r := range recs {
			records[g][r.Node] = r
		}
	}
	_, err := c.setDesired(ctx, nodes, func(n string) (store.Desired, bool) {
		g := prev(n)
		r, ok := records[g][n]
		return store.DesiredOf(g, r), ok
	})
	return err
}

// abort returns every node the rollout moved to the stable generation and
// marks the target bad.
func (c *Controller) abort(ctx context.Context, ro *store.Rollout, reason string) error {
	var moved []string
	for i, w := range ro.Waves {
		if i <= ro.Current && w.State != store.WavePending {
			moved = append(moved, w.Nodes...)
		}
	}
	c.logf("aborting the rollout of generation %d: %s; %d moved nodes go back to what they ran before: %s", ro.Target, reason, len(moved), backTo(ro.Stable))
	if err := c.rollBack(ctx, ro, moved); err != nil {
		return fmt.Errorf("abort: %w", err)
	}
	if err := c.mark(ctx, ro.Target, store.Bad, "rollout aborted: "+reason); err != nil {
		return err
	}
	ro.Phase, ro.Reason, ro.Aborted = store.Aborted, reason, c.now()
	if err := c.save(ctx, ro); err != nil {
		return err
	}
	return fmt.Errorf("%w: %s; %d moved nodes are back on what they ran before (%s); generation %d is marked bad", ErrAborted, reason, len(moved), backTo(ro.Stable), ro.Target)
}

// backTo says where rolled-back nodes go, for most of them.
func backTo(stable uint64) string {
	if stable == 0 {
		return "the fleet has no stable generation yet: their desired keys are deleted"
	}
	return fmt.Sprintf("the stable generation %d", stable)
}

// promote makes the target the stable generation: nodes it does not hold
// lose their desired records, older generations beyond --keep are deleted
// and the store's history is compacted to the rollout's start.
func (c *Controller) promote(ctx context.Context, ro *store.Rollout, records map[string]store.GenNode) error {
	current, _, err := readAll[store.Desired](ctx, c.Client, store.DesiredPrefix(c.Fleet))
	if err != nil {
		return err
	}
	var gone []string
	for n := range current {
		if _, ok := records[n]; !ok {
			gone = append(gone, n)
		}
	}
	slices.Sort(gone)
	if _, err := c.setDesired(ctx, gone, func(string) (store.Desired, bool) { return store.Desired{}, false }); err != nil {
		return err
	}
	if err := c.mark(ctx, ro.Target, store.Stable, ""); err != nil {
		return err
	}
	ro.Phase, ro.Promoted = store.Promoted, c.now()
	if err := c.save(ctx, ro); err != nil {
		return err
	}
	c.logf("generation %d is stable on %d nodes", ro.Target, len(records))
	return c.prune(ctx, ro)
}

// prune deletes the generations older than the newest --keep (never the
// stable one, nor one a desired key names) and compacts the store to the rollout's start revision.
func (c *Controller) prune(ctx context.Context, ro *store.Rollout) error {
	first, err := c.Client.Get(ctx, store.GensPrefix(c.Fleet), clientv3.WithFirstKey()...)
	if err != nil {
		return fmt.Errorf("read the oldest generation: %w", err)
	}
	if len(first.Kvs) > 0 {
		oldest, _ := store.GenOf(c.Fleet, string(first.Kvs[0].Key))
		newest, err := Latest(ctx, c.Client, c.Fleet)
		if err != nil {
			return err
		}
		desired, _, err := readAll[store.Desired](ctx, c.Client, store.DesiredPrefix(c.Fleet))
		if err != nil {
			return err
		}
		inUse := map[uint64]bool{}
		for _, d := range desired {
			inUse[d.Generation] = true
		}
		for n := oldest; n+uint64(ro.Settings.Keep) <= newest && n < ro.Target; n++ {
			if inUse[n] {
				continue // a node left behind (a failure within --max-failed) still runs it
			}
			if err := c.txn(ctx, nil, clientv3.OpDelete(store.GenPrefix(c.Fleet, n), clientv3.WithPrefix())); err != nil {
				return fmt.Errorf("delete generation %d: %w", n, err)
			}
		}
	}
	if _, err := c.Client.Compact(ctx, ro.StartRevision); err != nil && !errors.Is(err, rpctypes.ErrCompacted) {
		return fmt.Errorf("compact the store to revision %d: %w", ro.StartRevision, err)
	}
	return nil
}

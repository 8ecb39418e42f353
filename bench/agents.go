package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portstripe/portstripe/fleet"
	"github.com/portstripe/portstripe/fleet/agent"
	"github.com/portstripe/portstripe/fleet/agent/agenttest"
	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/internal/etcdtest"
	"github.com/portstripe/portstripe/internal/nodegen"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/supervisor"
)

// agentsResult is the fleet agents section: one etcd member (Debian's
// etcd-server, fsync on) on loopback and N real agents (fleet/agent: their
// own etcd connection, lease, watch, the node compiler, status writes),
// whose apply is a recording fake.
type agentsResult struct {
	Agents int
	Waves  string
	// Rollout is publish start → the rollout promoted (every agent ACKed
	// the generation), Publish the publish alone.
	Rollout, Publish time.Duration
	// Down is how long the store was killed; Resync is from the store
	// answering again until every agent rewrote its status, ResyncACK
	// until every agent ACKed a generation published and written to every
	// desired key from that moment.
	Down, Resync, ResyncACK time.Duration
	// Noticed is how many agents had noticed the outage (a status write
	// failed) by the restart.
	Noticed int
	// RSS of the etcd process: before any agent, and with every agent
	// connected (after the rollout).
	RSSIdle, RSSAgents int64
	// Applies is how many desired states the fakes were handed.
	Applies int64
	// Load is the 1-minute load average when the section ended: the
	// cores are shared with whatever else runs.
	Load string
}

// benchT is what etcdtest needs of a test, for the benchmark program:
// Fatal ends the section with the error (agentsSection recovers it).
type benchT struct {
	dir      string
	cleanups []func()
}

type benchFatal struct{ msg string }

func (t *benchT) Helper()                        {}
func (t *benchT) Fatal(args ...any)              { panic(benchFatal{fmt.Sprint(args...)}) }
func (t *benchT) Fatalf(format string, a ...any) { panic(benchFatal{fmt.Sprintf(format, a...)}) }
func (t *benchT) Skipf(format string, a ...any)  { panic(benchFatal{fmt.Sprintf(format, a...)}) }
func (t *benchT) Cleanup(fn func())              { t.cleanups = append(t.cleanups, fn) }
func (t *benchT) TempDir() string                { d, _ := os.MkdirTemp(t.dir, "etcd-"); return d }
func (t *benchT) cleanup() {
	for i := len(t.cleanups) - 1; i >= 0; i-- {
		t.cleanups[i]()
	}
}

// agents runs the section, turning a failure inside etcdtest into an error.
func (r *run) agents(ctx context.Context) (err error) {
	bt := &benchT{dir: r.tmp}
	defer bt.cleanup()
	defer func() {
		if p := recover(); p != nil {
			f, ok := p.(benchFatal)
			if !ok {
				panic(p)
			}
			err = errors.New(f.msg)
		}
	}()
	return r.agentsIn(ctx, bt)
}

func (r *run) agentsIn(ctx context.Context, bt *benchT) error {
	n := r.n(1000, 200)
	res := agentsResult{Agents: n, Waves: "1%,5%,25%,100%"}
	c := etcdtest.Start(bt, etcdtest.Options{})
	cl := c.Client()
	res.RSSIdle = rss(c.PID(0))
	text := string(nodegen.Fleet(n))
	gen := func(delay string) (*fleet.Generation, error) {
		fl, err := node.ParseFleet([]byte(strings.Replace(text, "inspect_delay: 5s", "inspect_delay: "+delay, 1)), "bench-fleet.yaml")
		if err != nil {
			return nil, err
		}
		return fleet.Compile(fl)
	}
	g1, err := gen("5s")
	if err != nil {
		return err
	}
	name := g1.Fleet.Name
	actx, stop := context.WithCancel(ctx)
	defer stop()
	var applies atomic.Int64
	agents := make([]*agent.Agent, 0, n)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer stop()
	quiet := slog.New(slog.DiscardHandler)
	for _, nd := range g1.Nodes {
		a := &agent.Agent{Store: c.Config(), Fleet: name, Node: nd.Name, Log: quiet}
		agents = append(agents, a)
		wg.Add(1)
		go func() {
			defer wg.Done()
			agenttest.Serve(actx, a, func(supervisor.Desire) { applies.Add(1) })
		}()
	}
	settings := store.Settings{Waves: []float64{0.01, 0.05, 0.25, 1}, AllowIdle: true, AckTimeout: time.Minute, MaxFailed: 0.05, Keep: 5}
	rollout := func(g *fleet.Generation) (pub, all time.Duration, err error) {
		// A controller of its own for each, as each `fleet rollout` is.
		ctl := &fleet.Controller{Client: cl, Fleet: name, Poll: 100 * time.Millisecond}
		start := time.Now()
		p, err := fleet.Publish(ctx, cl, g, time.Now())
		if err != nil {
			return 0, 0, err
		}
		pub = time.Since(start)
		if _, err := ctl.Start(ctx, p.Generation, settings); err != nil {
			return 0, 0, fmt.Errorf("rollout of generation %d: %w", p.Generation, err)
		}
		if err := allStatuses(ctx, cl, name, n, func(s store.Status) bool { return s.Generation == p.Generation && s.Result == store.ACK }); err != nil {
			return 0, 0, err
		}
		return pub, time.Since(start), nil
	}
	// The first generation reaches agents with nothing applied.
	if _, _, err := rollout(g1); err != nil {
		return err
	}
	g2, err := gen("4s")
	if err != nil {
		return err
	}
	if res.Publish, res.Rollout, err = rollout(g2); err != nil {
		return err
	}
	r.log.Info("fleet agents: rollout", "agents", n, "publish", res.Publish, "publish_to_all_acked", res.Rollout)
	res.RSSAgents = rss(c.PID(0))

	// The store restarted under them.
	readyBefore := 0
	for _, a := range agents {
		if a.Ready() == nil {
			readyBefore++
		}
	}
	res.Down = 2 * time.Second
	c.Kill(0)
	time.Sleep(res.Down) // the outage itself, not a synchronisation
	for _, a := range agents {
		if a.Ready() != nil {
			res.Noticed++
		}
	}
	c.Restart(0)
	back := time.Now()
	g3, err := gen("3s")
	if err != nil {
		return err
	}
	resynced := make(chan error, 1)
	go func() {
		err := allStatuses(ctx, cl, name, n, func(s store.Status) bool { return s.UpdatedAt.After(back) })
		if err == nil {
			res.Resync = time.Since(back)
		}
		resynced <- err
	}()
	// The next update, written as soon as the store answers: every
	// node's desired key at once (what the last wave of a rollout does).
	p3, err := fleet.Publish(ctx, cl, g3, time.Now())
	if err != nil {
		return err
	}
	var ops []clientv3.Op
	for _, nd := range g3.Nodes {
		val, err := store.Encode(store.DesiredOf(p3.Generation, nd.Record()))
		if err != nil {
			return err
		}
		ops = append(ops, clientv3.OpPut(store.DesiredKey(name, nd.Name), val))
	}
	for chunk := range slices.Chunk(ops, store.MaxTxnOps) {
		if _, err := cl.Txn(ctx).Then(chunk...).Commit(); err != nil {
			return fmt.Errorf("write the desired keys: %w", err)
		}
	}
	if err := allStatuses(ctx, cl, name, n, func(s store.Status) bool { return s.Generation == p3.Generation && s.Result == store.ACK }); err != nil {
		return err
	}
	res.ResyncACK = time.Since(back)
	if err := <-resynced; err != nil {
		return err
	}
	res.Applies = applies.Load()
	if b, err := os.ReadFile("/proc/loadavg"); err == nil {
		res.Load = strings.Fields(string(b))[0]
	}
	r.log.Info("fleet agents: store restart", "down", res.Down, "ready_before", readyBefore, "noticed_outage", res.Noticed,
		"all_status_rewritten", res.Resync, "all_acked_new_generation", res.ResyncACK)
	r.rep.agents = &res
	return nil
}

// allStatuses polls the fleet's status keys until n of them satisfy ok
// (bounded: a hang is an error, not a figure).
func allStatuses(ctx context.Context, cl *clientv3.Client, fleetName string, n int, ok func(store.Status) bool) error {
	deadline := time.Now().Add(2 * time.Minute)
	for {
		resp, err := cl.Get(ctx, store.StatusPrefix(fleetName), clientv3.WithPrefix())
		good := 0
		if err == nil {
			for _, kv := range resp.Kvs {
				var s store.Status
				if store.Decode(kv.Key, kv.Value, &s) == nil && ok(s) {
					good++
				}
			}
			if good >= n {
				return nil
			}
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("only %d of %d agents' statuses as wanted after 2 minutes (%v)", good, n, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// rss is a process's resident set size in bytes (0 if unknown).
func rss(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			f := strings.Fields(v)
			kb, _ := strconv.ParseInt(f[0], 10, 64)
			return kb << 10
		}
	}
	return 0
}

func (rep *report) writeAgents(w writer) {
	a := rep.agents
	if a == nil {
		return
	}
	w("## 9. Fleet agents: a rollout and a store restart\n\n")
	w("One etcd member (Debian's etcd-server %s, fsync on, its own data directory) on 127.0.0.1 and %d node agents in this process: the real `fleet/agent` code, each with its own etcd connection, status lease and watch, compiling its node file with the node compiler; only the apply is a fake that records the desired state and answers as a successful apply (no HAProxy, no iptables). ", etcdVersion(), a.Agents)
	w("The fleet is `internal/nodegen.Fleet(%d)` (section 8's); a generation changes `haproxy.inspect_delay` in the shared plan, so every node's files change. ", a.Agents)
	w("The rollout is `fleet.Controller` with waves %s, no soak, no wait between waves (`--soak 0s --allow-idle`), statuses read every 100 ms. The 1-minute load average when the section ended: %s (on %s cores shared with whatever else runs).\n\n", a.Waves, a.Load, rep.machine.Cores)
	w("| what | measured |\n|---|---|\n")
	w("| publish (%d node records, then the meta) | %s |\n", a.Agents, ms(a.Publish))
	w("| publish → every agent ACKed (rollout promoted) | **%s** |\n", ms(a.Rollout))
	w("| store killed for %s, restarted: until every agent rewrote its status | **%s** (%d of %d agents had noticed the outage by then, by a failed status write; their sessions ride out the restart: lease, watch and status writes resume as gRPC reconnects, bounded to 4 s and jittered) |\n", a.Down, ms(a.Resync), a.Noticed, a.Agents)
	w("| … until every agent ACKed a generation published and written to every desired key (one batch, as a last wave) the moment the store answered | %s |\n", ms(a.ResyncACK))
	w("| etcd RSS: no agent / %d agents connected | %.0f MB / %.0f MB: **%.2f MB per agent** |\n\n", a.Agents, float64(a.RSSIdle)/1e6, float64(a.RSSAgents)/1e6, float64(a.RSSAgents-a.RSSIdle)/1e6/float64(a.Agents))
}

// etcdVersion is the etcd server's version line's number.
func etcdVersion() string {
	out, err := exec.Command(etcdtest.Binary, "--version").Output()
	if err != nil {
		return "?"
	}
	first, _, _ := strings.Cut(string(out), "\n")
	return strings.TrimSpace(strings.TrimPrefix(first, "etcd Version:"))
}

// writeAgentsTargets adds issue 16's goals for the agents to the targets.
func (rep *report) writeAgentsTargets(w writer) {
	a := rep.agents
	if a == nil {
		return
	}
	w("| a generation rolled out to %d agents, publish → all ACKed < 5 s without waits between waves (issue 16) | %s (waves %s; section 9) | %s |\n", a.Agents, ms(a.Rollout), a.Waves, verdict(a.Rollout < 5*time.Second))
	w("| store restart with %d agents connected: all resynced < 15 s (issue 16) | %s until every status was rewritten, %s until every agent ACKed a new generation (store down %s; section 9) | %s |\n", a.Agents, ms(a.Resync), ms(a.ResyncACK), a.Down, verdict(a.Resync < 15*time.Second))
	w("| etcd memory per connected agent (issue 16: measured, no goal) | %.2f MB (section 9) | |\n", float64(a.RSSAgents-a.RSSIdle)/1e6/float64(a.Agents))
}

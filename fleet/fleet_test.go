package fleet

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portstripe/portstripe/fixtures"
	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/internal/etcdtest"
	"github.com/portstripe/portstripe/internal/nodegen"
	"github.com/portstripe/portstripe/node"
)

func compileText(t *testing.T, text string) *Generation {
	t.Helper()
	fl, err := node.ParseFleet([]byte(text), "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := Compile(fl)
	if err != nil {
		t.Fatal(err)
	}
	return g
}

func TestCompileRefusesTheWholeGeneration(t *testing.T) {
	bad := strings.Replace(string(fixtures.Fleet), "[198.51.100.21]", "[198.51.100.21, 300.1.1.1]", 1)
	bad = strings.Replace(bad, "[198.51.100.22]", "[nope]", 1)
	fl, err := node.ParseFleet([]byte(bad), "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	g, err := Compile(fl)
	if g != nil || err == nil || !node.IsInputError(err) {
		t.Fatalf("Compile = %v, %v; want no generation and an input error", g, err)
	}
	if want := `nodes[2].addresses[1]: "300.1.1.1" is not an IP address`; !strings.HasPrefix(err.Error(), want) || !strings.Contains(err.Error(), "and 1 more nodes fail") {
		t.Errorf("error %q; want the first failing node's (%s …) and the count of the others", err, want)
	}
}

func TestCompileIsTheNodeCompilers(t *testing.T) {
	g := compileText(t, string(fixtures.Fleet))
	big := compileText(t, string(nodegen.Fleet(100)))
	for _, n := range append(g.Nodes, big.Nodes...) {
		// The agent parses the node file it gets under the same source:
		// it must compile to the very same outputs.
		again, err := node.Parse(n.File, store.Source(g.Fleet.Name, n.Name), node.Options{})
		if err != nil {
			t.Fatalf("%s: its node file does not parse alone: %v", n.Name, err)
		}
		if again.SHA256 != n.Result.Node.SHA256 || again.SettingsSHA256 != n.Result.Node.SettingsSHA256 {
			t.Errorf("%s: node and settings sha256 %.12s %.12s from its file, %.12s %.12s in the generation", n.Name,
				again.SHA256, again.SettingsSHA256, n.Result.Node.SHA256, n.Result.Node.SettingsSHA256)
		}
		if !strings.Contains(string(n.Result.Files["haproxy.cfg"]), "# node: "+n.Name) {
			t.Errorf("%s: haproxy.cfg is not this node's", n.Name)
		}
	}
}

func TestWavesSpreadAcrossLabels(t *testing.T) {
	var nodes []store.GenNode
	regions := []string{"eu", "us", "ap", "sa"}
	for i := range 200 {
		nodes = append(nodes, store.GenNode{Node: fmt.Sprintf("n%03d", i), Labels: map[string]string{"region": regions[i%4]}})
	}
	waves := Waves(nodes, []float64{0.01, 0.05, 0.25, 1})
	var sizes []int
	seen := map[string]bool{}
	for _, w := range waves {
		sizes = append(sizes, len(w))
		for _, n := range w {
			if seen[n] {
				t.Errorf("%s is in two waves", n)
			}
			seen[n] = true
		}
	}
	if fmt.Sprint(sizes) != "[2 8 40 150]" || len(seen) != 200 {
		t.Errorf("wave sizes %v over %d nodes; want [2 8 40 150]: 1%%, 5%%, 25%%, 100%% of 200", sizes, len(seen))
	}
	region := map[string]string{}
	for _, n := range nodes {
		region[n.Node] = n.Labels["region"]
	}
	if region[waves[0][0]] == region[waves[0][1]] {
		t.Errorf("the canary %v is in one region; want it spread", waves[0])
	}
	if one := Waves(nodes[:3], []float64{0.01, 1}); len(one[0]) != 1 {
		t.Errorf("canary of 3 nodes at 1%%: %v; want one node", one[0])
	}
}

func TestJudge(t *testing.T) {
	now := time.Now()
	d := &store.Desired{Generation: 2, NodeSHA256: "a"}
	ok := store.Status{Generation: 2, NodeSHA256: "a", Result: store.ACK, HAProxyUp: true, StoreReachable: true, UpdatedAt: now}
	with := func(f func(*store.Status)) *store.Status { s := ok; f(&s); return &s }
	for _, c := range []struct {
		d    *store.Desired
		s    *store.Status
		want NodeState
	}{
		{d, &ok, Synced},
		{d, nil, Missing},
		{d, with(func(s *store.Status) { s.Generation = 1 }), Applying},
		{d, with(func(s *store.Status) { s.Result, s.Error = store.NACK, "haproxy -c: boom" }), Nacked},
		{d, with(func(s *store.Status) { s.UpdatedAt = now.Add(-time.Minute) }), Stale},
		{d, with(func(s *store.Status) { s.Drift = []string{"nat PORTSTRIPE: 2 rules missing"} }), Drifted},
		{d, with(func(s *store.Status) { s.HAProxyUp = false }), Drifted},
	} {
		if got, why := Judge(c.d, c.s, now); got != c.want {
			t.Errorf("Judge(%+v) = %s (%s); want %s", c.s, got, why, c.want)
		}
	}
}

// agent is a fake node agent: it answers its desired key and writes its
// status every few milliseconds, as the real one does every StatusInterval.
type agent struct {
	name string
	mu   sync.Mutex
	// nack makes it refuse generations from this one on (0: never).
	nack uint64
	// traffic is how many first packets per second it counts; after, when
	// set, says it for the generation applied.
	traffic float64
	after   func(gen uint64) float64
	seen    uint64 // the highest generation it was ever asked to run
	// counted is its first packets so far, at last.
	counted float64
	last    time.Time
}

func (a *agent) run(ctx context.Context, t *testing.T, c *clientv3.Client, fleet string) {
	var applied uint64
	for ctx.Err() == nil {
		var d store.Desired
		rev, err := store.Get(ctx, c, store.DesiredKey(fleet, a.name), &d)
		if err != nil {
			return
		}
		if rev == 0 {
			sleep(ctx, 10*time.Millisecond)
			continue
		}
		a.mu.Lock()
		a.seen = max(a.seen, d.Generation)
		st := store.Status{Generation: d.Generation, NodeSHA256: d.NodeSHA256, OutputsSHA256: d.OutputsSHA256,
			Result: store.ACK, HAProxyUp: true, StoreReachable: true, UpdatedAt: time.Now().UTC(), Version: "test"}
		if a.nack != 0 && d.Generation >= a.nack {
			st.Result, st.Error = store.NACK, "haproxy -c: config refused (fake)"
		} else {
			applied = d.Generation
		}
		st.Applied = applied
		// By the clock, not per write: a loaded machine that writes less
		// often must not look like traffic falling.
		perSecond := a.traffic
		if a.after != nil {
			perSecond = a.after(applied)
		}
		if !a.last.IsZero() {
			a.counted += perSecond * st.UpdatedAt.Sub(a.last).Seconds()
		}
		a.last = st.UpdatedAt
		st.FirstPackets = uint64(a.counted)
		a.mu.Unlock()
		val, _ := store.Encode(st)
		if _, err := c.Put(ctx, store.StatusKey(fleet, a.name), val); err != nil {
			return
		}
		sleep(ctx, 10*time.Millisecond)
	}
}

type bed struct {
	t      *testing.T
	client *clientv3.Client
	agents map[string]*agent
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func newBed(t *testing.T) *bed {
	cl := etcdtest.Start(t, etcdtest.Options{})
	b := &bed{t: t, client: cl.Client(), agents: map[string]*agent{}}
	for _, n := range []string{"ams-1", "ams-2", "fra-1", "fra-2"} {
		b.agents[n] = &agent{name: n, traffic: 500}
	}
	return b
}

func (b *bed) start() {
	ctx, cancel := context.WithCancel(context.Background())
	b.cancel = cancel
	for _, a := range b.agents {
		b.wg.Go(func() { a.run(ctx, b.t, b.client, "eu") })
	}
	b.t.Cleanup(func() { cancel(); b.wg.Wait() })
}

func (b *bed) publish(text string) uint64 {
	b.t.Helper()
	p, err := Publish(context.Background(), b.client, compileText(b.t, text), time.Now())
	if err != nil {
		b.t.Fatal(err)
	}
	return p.Generation
}

// promoted publishes the example fleet and rolls it out: the stable
// generation a test's next rollout starts from.
func (b *bed) promoted(s store.Settings) uint64 {
	b.t.Helper()
	gen := b.publish(string(fixtures.Fleet))
	if ro, err := b.controller().Start(context.Background(), 0, s); err != nil || ro.Phase != store.Promoted {
		b.t.Fatalf("rolling out the example fleet: %v", err)
	}
	return gen
}

// setTraffic sets every agent's first packets per second.
func (b *bed) setTraffic(perSecond float64) {
	for _, a := range b.agents {
		a.mu.Lock()
		a.traffic = perSecond
		a.mu.Unlock()
	}
}

// changed is the example fleet with another inspect delay: a new
// generation for every node.
func changed(delay string) string {
	return strings.Replace(string(fixtures.Fleet), "inspect_delay: 5s", "inspect_delay: "+delay, 1)
}

func (b *bed) controller() *Controller {
	return &Controller{Client: b.client, Fleet: "eu", Poll: 20 * time.Millisecond, Log: b.t.Logf}
}

func fastSettings() store.Settings {
	s := DefaultSettings
	s.Waves, s.Soak, s.AckTimeout = []float64{0.25, 0.5, 1}, 200*time.Millisecond, 5*time.Second
	return s
}

func (b *bed) desired() map[string]uint64 {
	b.t.Helper()
	d, _, err := readAll[store.Desired](context.Background(), b.client, store.DesiredPrefix("eu"))
	if err != nil {
		b.t.Fatal(err)
	}
	out := map[string]uint64{}
	for n, r := range d {
		out[n] = r.Generation
	}
	return out
}

func (b *bed) meta(n uint64) store.Generation {
	b.t.Helper()
	var m store.Generation
	if _, err := store.Get(context.Background(), b.client, store.GenMeta("eu", n), &m); err != nil {
		b.t.Fatal(err)
	}
	return m
}

func TestPublishWritesAGenerationOnce(t *testing.T) {
	b := newBed(t)
	ctx := context.Background()
	if n := b.publish(string(fixtures.Fleet)); n != 1 {
		t.Fatalf("first generation %d, want 1", n)
	}
	meta, nodes, err := ReadGeneration(ctx, b.client, "eu", 1)
	if err != nil || meta.State != store.Published || len(nodes) != 4 || meta.Nodes != 4 {
		t.Fatalf("generation 1: %+v, %d nodes, %v; want 4 nodes, published", meta, len(nodes), err)
	}
	p, err := Publish(ctx, b.client, compileText(t, string(fixtures.Fleet)), time.Now())
	if err != nil || !p.Unchanged || p.Generation != 1 {
		t.Errorf("publishing the same file again: %+v, %v; want generation 1 unchanged", p, err)
	}
	if n := b.publish(strings.Replace(string(fixtures.Fleet), "maxconn: 16384", "maxconn: 8192", 1)); n != 2 {
		t.Errorf("a changed fleet file became generation %d, want 2", n)
	}
	if d := b.desired(); len(d) != 0 {
		t.Errorf("publish moved nodes: %v", d)
	}
}

func TestRolloutPromotes(t *testing.T) {
	b := newBed(t)
	b.start()
	gen := b.publish(string(fixtures.Fleet))
	ro, err := b.controller().Start(context.Background(), 0, fastSettings())
	if err != nil {
		t.Fatalf("rollout: %v", err)
	}
	if ro.Phase != store.Promoted || len(ro.Waves) != 3 || len(ro.Waves[0].Nodes) != 1 {
		t.Errorf("rollout %s in %d waves (canary %v); want promoted in 3 waves, a canary of one", ro.Phase, len(ro.Waves), ro.Waves[0].Nodes)
	}
	for n, g := range b.desired() {
		if g != gen {
			t.Errorf("%s desires generation %d, want %d", n, g, gen)
		}
	}
	if m := b.meta(gen); m.State != store.Stable {
		t.Errorf("generation %d is %s, want stable", gen, m.State)
	}
	fs, err := ReadStatus(context.Background(), b.client, "eu", time.Now())
	if err != nil || fs.Counts[Synced] != 4 || fs.Stable != gen {
		t.Errorf("fleet status: %+v, %v; want 4 nodes SYNCED on stable generation %d", fs, err, gen)
	}
}

func TestRolloutAbortsOnACanaryNACK(t *testing.T) {
	b := newBed(t)
	b.start()
	stable := b.promoted(fastSettings())
	for _, a := range b.agents {
		a.mu.Lock()
		a.nack = stable + 1
		a.mu.Unlock()
	}
	bad := b.publish(changed("4s"))
	ro, err := b.controller().Start(context.Background(), 0, fastSettings())
	if !errors.Is(err, ErrAborted) || ro.Phase != store.Aborted || !strings.Contains(ro.Reason, "canary") || !strings.Contains(ro.Reason, "NACKed: haproxy -c") {
		t.Fatalf("rollout: %v, phase %s (%s); want aborted at the canary naming the NACK", err, ro.Phase, ro.Reason)
	}
	for n, g := range b.desired() {
		if g != stable {
			t.Errorf("%s desires generation %d after the abort, want the stable %d", n, g, stable)
		}
	}
	reached := 0
	for _, a := range b.agents {
		a.mu.Lock()
		if a.seen == bad {
			reached++
		}
		a.mu.Unlock()
	}
	if reached != 1 {
		t.Errorf("the bad generation reached %d nodes; want the canary only", reached)
	}
	if m := b.meta(bad); m.State != store.Bad || !strings.Contains(m.Reason, "NACKed") {
		t.Errorf("generation %d is %s (%s), want bad with the reason", bad, m.State, m.Reason)
	}
	if _, err := b.controller().Start(context.Background(), bad, fastSettings()); err == nil || !strings.Contains(err.Error(), "is bad") {
		t.Errorf("rolling out the bad generation again: %v; want a refusal", err)
	}
}

func TestRolloutAbortsWhenTrafficCollapses(t *testing.T) {
	b := newBed(t)
	b.start()
	stable := b.promoted(fastSettings())
	for _, a := range b.agents {
		a.mu.Lock()
		a.after = func(gen uint64) float64 {
			if gen > stable {
				return 0 // the new generation routes nobody
			}
			return 500
		}
		a.mu.Unlock()
	}
	b.publish(changed("4s"))
	ro, err := b.controller().Start(context.Background(), 0, fastSettings())
	if !errors.Is(err, ErrAborted) || !strings.Contains(ro.Reason, "traffic collapsed") {
		t.Fatalf("rollout: %v (%s); want aborted for collapsed traffic", err, ro.Reason)
	}
}

func TestRolloutPausesWithoutTraffic(t *testing.T) {
	b := newBed(t)
	b.setTraffic(0)
	b.start()
	gen := b.publish(string(fixtures.Fleet))
	ro, err := b.controller().Start(context.Background(), 0, fastSettings())
	if !errors.Is(err, ErrPaused) || ro.Phase != store.Paused || !strings.Contains(ro.Reason, "no traffic") || ro.Current != 0 {
		t.Fatalf("idle rollout: %v, %s at wave %d (%s); want paused at the canary", err, ro.Phase, ro.Current+1, ro.Reason)
	}
	if moved := len(b.desired()); moved != 1 {
		t.Errorf("%d nodes moved; want the canary only", moved)
	}
	if _, err := b.controller().Start(context.Background(), 0, fastSettings()); err == nil || !strings.Contains(err.Error(), "--resume") {
		t.Errorf("a second rollout over the paused one: %v; want a refusal pointing at --resume", err)
	}
	b.setTraffic(300)
	ro, err = b.controller().Resume(context.Background())
	if err != nil || ro.Phase != store.Promoted {
		t.Fatalf("resume with traffic: %v, %s", err, ro.Phase)
	}
	if m := b.meta(gen); m.State != store.Stable {
		t.Errorf("generation %d is %s after the resumed rollout, want stable", gen, m.State)
	}
}

func TestRolloutAllowIdle(t *testing.T) {
	b := newBed(t)
	b.setTraffic(0)
	b.start()
	b.publish(string(fixtures.Fleet))
	s := fastSettings()
	s.AllowIdle = true
	if ro, err := b.controller().Start(context.Background(), 0, s); err != nil || ro.Phase != store.Promoted {
		t.Fatalf("idle rollout with --allow-idle: %v, %s; want promoted", err, ro.Phase)
	}
}

func TestOneControllerAtATime(t *testing.T) {
	b := newBed(t)
	first := b.controller()
	release, err := first.Lead(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer release()
	b.publish(string(fixtures.Fleet))
	if _, err := b.controller().Start(context.Background(), 0, fastSettings()); err == nil || !strings.Contains(err.Error(), "another controller") {
		t.Errorf("a second controller: %v; want a refusal naming the other", err)
	}
	if len(b.desired()) != 0 {
		t.Error("the second controller moved nodes")
	}
}

func TestRolloutMaxFailedLaterWaves(t *testing.T) {
	b := newBed(t)
	b.start()
	first := b.promoted(fastSettings())
	// The waves of the example fleet at 25%, 50%, 100%: [fra-1] [ams-1]
	// [fra-2 ams-2]. ams-2 refuses everything newer.
	b.agents["ams-2"].mu.Lock()
	b.agents["ams-2"].nack = first + 1
	b.agents["ams-2"].mu.Unlock()
	second := b.publish(changed("4s"))
	s := fastSettings()
	s.MaxFailed = 0.5
	ro, err := b.controller().Start(context.Background(), 0, s)
	if err != nil || ro.Phase != store.Promoted {
		t.Fatalf("one NACK in the last wave of two, --max-failed 50%%: %v, %s; want promoted", err, ro.Phase)
	}
	want := map[string]uint64{"fra-1": second, "ams-1": second, "fra-2": second, "ams-2": first}
	if got := b.desired(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("desired generations %v; want %v (the failed node back on the stable one alone)", got, want)
	}
	b.publish(changed("3s"))
	s.MaxFailed = 0
	ro, err = b.controller().Start(context.Background(), 0, s)
	if !errors.Is(err, ErrAborted) || ro.Current != 2 || !strings.Contains(ro.Reason, "wave 3 (1 failed, --max-failed allows 0)") {
		t.Fatalf("the same with --max-failed 0: %v at wave %d (%s); want aborted at wave 3", err, ro.Current+1, ro.Reason)
	}
	if got := b.desired(); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("desired generations after the abort %v; want each node back on what it ran before, %v", got, want)
	}
}

func TestPromotionPrunesAndCompacts(t *testing.T) {
	b := newBed(t)
	b.start()
	ctx := context.Background()
	s := fastSettings()
	s.Keep = 1
	first := b.promoted(s)
	second := b.publish(changed("4s"))
	ro, err := b.controller().Start(ctx, 0, s)
	if err != nil {
		t.Fatal(err)
	}
	if n, err := b.client.Get(ctx, store.GenPrefix("eu", first), clientv3.WithPrefix(), clientv3.WithCountOnly()); err != nil || n.Count != 0 {
		t.Errorf("generation %d after promoting %d with --keep 1: %v keys (%v); want it deleted", first, second, n.Count, err)
	}
	if _, _, err := ReadGeneration(ctx, b.client, "eu", second); err != nil {
		t.Errorf("the stable generation: %v", err)
	}
	if _, err := b.client.Get(ctx, store.RolloutKey("eu"), clientv3.WithRev(ro.StartRevision-1)); !errors.Is(err, rpctypes.ErrCompacted) {
		t.Errorf("reading before the rollout's start revision %d: %v; want the history compacted", ro.StartRevision, err)
	}
}

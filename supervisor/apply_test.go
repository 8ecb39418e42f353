package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/routing"
)

// fakeRules records what apply would do to the iptables backend;
// installed text is what Observe returns, and Canonical is the identity.
type fakeRules struct {
	installed []byte
	missing   []string // hooks without the jump
	applied   int
	failApply error
}

func (f *fakeRules) Name() string    { return node.IPTables }
func (f *fakeRules) Files() []string { return iptables.Files }
func (f *fakeRules) Parse(files map[string][]byte) firewall.State {
	return iptables.ParseFiles(files)
}
func (f *fakeRules) Apply(_ context.Context, files map[string][]byte) error {
	if f.failApply != nil {
		return f.failApply
	}
	f.applied++
	f.installed, f.missing = files[iptables.RulesFile], nil
	return nil
}
func (f *fakeRules) Observe(context.Context) (firewall.State, error) {
	st := firewall.State{Missing: f.missing}
	if f.installed != nil {
		st = iptables.ParseFiles(map[string][]byte{iptables.RulesFile: f.installed})
		st.Missing = f.missing
	} else {
		st.Missing = []string{"PREROUTING", "OUTPUT"}
	}
	return st, nil
}
func (f *fakeRules) Canonical(_ context.Context, files map[string][]byte) (firewall.State, error) {
	st := iptables.ParseFiles(files)
	st.Hooks = []string{"PREROUTING", "OUTPUT"}
	return st, nil
}
func (f *fakeRules) Restore(ctx context.Context, was firewall.State) error {
	if was.Saved == nil {
		return f.Clean(ctx)
	}
	f.installed, f.missing = was.Saved[iptables.RulesFile], was.Missing
	return nil
}
func (f *fakeRules) Clean(ctx context.Context) error {
	// As iptables under exec.CommandContext: nothing runs once ctx ends.
	if err := ctx.Err(); err != nil {
		return err
	}
	f.installed, f.missing = nil, nil
	return nil
}
func (f *fakeRules) Counters(context.Context, *plan.Plan) ([]firewall.Counter, error) {
	return nil, nil
}

// fakeProxy is a HAProxy that runs the configuration it last loaded from
// dir: reloads, starts and runtime API calls change what Observe says.
type fakeProxy struct {
	dir        string
	alive      bool
	running    []byte // the config the worker loaded
	servers    map[string]haproxy.Stat
	reloads    int
	starts     int
	stops      int
	setAddr    []string // runtime API calls, addresses and states
	failReload error
	failStart  error
	onStart    func(context.Context) error // replaces Start when set
}

func (f *fakeProxy) Check(context.Context, string) error { return nil }
func (f *fakeProxy) Observe(context.Context) ProxyState {
	if !f.alive {
		return ProxyState{Err: errors.New("connection refused")}
	}
	return ProxyState{Alive: true, ConfigHash: haproxy.ReadConfigHash(f.running), Servers: maps.Clone(f.servers)}
}
func (f *fakeProxy) load() {
	f.running, _ = os.ReadFile(filepath.Join(f.dir, compiler.HAProxyFile))
	f.servers = map[string]haproxy.Stat{}
	for _, l := range strings.Split(string(f.running), "\n") {
		w := strings.Fields(l)
		if len(w) >= 3 && w[0] == "server" {
			st := haproxy.Stat{Proxy: w[1], Name: w[1], Type: haproxy.StatServer, Addr: w[2], Status: "no check"}
			if len(w) > 3 && w[3] == "disabled" {
				st.Status = "MAINT"
			}
			f.servers[w[1]] = st
		}
	}
}
func (f *fakeProxy) Start(ctx context.Context) error {
	if f.onStart != nil {
		return f.onStart(ctx)
	}
	if f.failStart != nil {
		return f.failStart
	}
	f.starts++
	f.alive = true
	f.load()
	return nil
}
func (f *fakeProxy) Stop(context.Context) error {
	f.stops++
	f.alive = false
	return nil
}
func (f *fakeProxy) Reload(context.Context) error {
	if f.failReload != nil {
		return f.failReload
	}
	f.reloads++
	f.load()
	return nil
}
func (f *fakeProxy) SetServerAddr(_ context.Context, b, s string, a netip.AddrPort) error {
	f.setAddr = append(f.setAddr, b+"/"+s+" "+a.String())
	st := f.servers[b]
	st.Addr = a.String()
	f.servers[b] = st
	return nil
}
func (f *fakeProxy) SetServerState(_ context.Context, b, s string, enabled bool) error {
	f.setAddr = append(f.setAddr, fmt.Sprintf("%s/%s enabled=%v", b, s, enabled))
	st := f.servers[b]
	st.Status = map[bool]string{true: "no check", false: "MAINT"}[enabled]
	f.servers[b] = st
	return nil
}
func (f *fakeProxy) FrontendsUp(context.Context, []string) error {
	if !f.alive {
		return errors.New("no worker")
	}
	return nil
}

const testNode = `name: t
addresses: [198.51.100.2]
services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443, tcp: 127.0.0.1:1194}
  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}
`

func compile(t testing.TB, yaml string) *compiler.Result {
	t.Helper()
	n, err := node.Parse([]byte(yaml), "t.yaml", node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := compiler.FromNode(n)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func newApplier(t *testing.T) (*Applier, *fakeRules, *fakeProxy) {
	dir := t.TempDir()
	r, p := &fakeRules{}, &fakeProxy{dir: dir}
	return &Applier{Dir: dir, Firewalls: map[string]firewall.Backend{node.IPTables: r}, Proxy: p, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, r, p
}

func TestApplyTwiceChangesNothing(t *testing.T) {
	a, rules, proxy := newApplier(t)
	res := compile(t, testNode)
	if _, err := a.Apply(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	c, err := a.Apply(context.Background(), res)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Nothing || rules.applied != 1 || proxy.starts != 1 || proxy.reloads != 0 {
		t.Errorf("second apply: %+v, rules applied %d times, %d starts, %d reloads; want nothing, 1, 1, 0", c, rules.applied, proxy.starts, proxy.reloads)
	}
}

func TestAddressOnlyChangeUsesRuntimeAPI(t *testing.T) {
	a, rules, proxy := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	c, err := a.Apply(context.Background(), compile(t, strings.Replace(testNode, "127.0.0.1:22", "127.0.0.2:2222", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Reload || proxy.reloads != 0 || len(proxy.setAddr) != 1 || proxy.setAddr[0] != "ssh/ssh 127.0.0.2:2222" {
		t.Errorf("change %+v, reloads %d, runtime calls %v; want one set server and no reload", c, proxy.reloads, proxy.setAddr)
	}
	if rules.applied != 1 {
		t.Errorf("rules applied %d times, want 1 (they did not change)", rules.applied)
	}
}

func TestNewServiceReloads(t *testing.T) {
	a, _, proxy := newApplier(t)
	a.Apply(context.Background(), compile(t, testNode))
	c, err := a.Apply(context.Background(), compile(t, testNode+"  - {name: web, kind: tls, tcp: 127.0.0.1:8443}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Reload || proxy.reloads != 1 || !strings.Contains(c.ReloadReason, "beyond server addresses") {
		t.Errorf("change %+v, %d reloads; want a reload with its reason", c, proxy.reloads)
	}
}

// TestFailedReloadRollsBack: the previous files and rules come back.
func TestFailedReloadRollsBack(t *testing.T) {
	a, rules, proxy := newApplier(t)
	first := compile(t, testNode)
	a.Apply(context.Background(), first)
	before := rules.installed
	proxy.failReload = errors.New("master refused the configuration")
	_, err := a.Apply(context.Background(), compile(t, strings.Replace(testNode, "1-29999", "1-20000", 1)+"striped: {tcp: [\"1-1000\"]}\n"))
	if err == nil || !strings.Contains(err.Error(), "master refused") {
		t.Fatalf("apply: %v, want the reload error", err)
	}
	if string(rules.installed) != string(before) {
		t.Error("rules were not rolled back")
	}
	cfg, _ := os.ReadFile(filepath.Join(a.Dir, compiler.HAProxyFile))
	if string(cfg) != string(first.Files[compiler.HAProxyFile]) {
		t.Error("haproxy.cfg was not rolled back")
	}
}

func TestStateChangeUsesRuntimeAPI(t *testing.T) {
	a, _, proxy := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	disabled := strings.Replace(testNode, "tcp: 127.0.0.1:22}", "tcp: 127.0.0.1:22, disabled: true}", 1)
	c, err := a.Apply(context.Background(), compile(t, disabled))
	if err != nil {
		t.Fatal(err)
	}
	if c.Reload || len(proxy.setAddr) != 1 || proxy.setAddr[0] != "ssh/ssh enabled=false" {
		t.Errorf("change %+v, runtime calls %v; want one disable and no reload", c, proxy.setAddr)
	}
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	if proxy.reloads != 0 || proxy.setAddr[len(proxy.setAddr)-1] != "ssh/ssh enabled=true" {
		t.Errorf("re-enable: %d reloads, runtime calls %v", proxy.reloads, proxy.setAddr)
	}
}

// TestRebootIsRepaired: after a reboot (nat table empty, no HAProxy, state
// directory intact) the same node file is not "nothing to change": the
// rules and jumps go back and a master is started.
func TestRebootIsRepaired(t *testing.T) {
	a, rules, proxy := newApplier(t)
	res := compile(t, testNode)
	if _, err := a.Apply(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	rules.installed, proxy.alive = nil, false
	c, err := a.Apply(context.Background(), res)
	if err != nil {
		t.Fatal(err)
	}
	if c.Nothing || !c.Start || len(c.Jumps) != 2 || len(c.Rules) == 0 || len(c.Files) != 0 {
		t.Errorf("change %+v; want rules, both jumps and a start, no files", c)
	}
	if rules.applied != 2 || proxy.starts != 2 || !proxy.alive {
		t.Errorf("rules applied %d times, %d starts; want 2 and 2", rules.applied, proxy.starts)
	}
}

// TestDriftIsSeen: a missing jump, a deleted state file and a worker on
// another configuration are each a change, named by What.
func TestDriftIsSeen(t *testing.T) {
	a, rules, proxy := newApplier(t)
	res := compile(t, testNode)
	if _, err := a.Apply(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	rules.missing = []string{"PREROUTING"}
	os.Remove(filepath.Join(a.Dir, compiler.PlanFile))
	proxy.running = []byte("global\n    description portstripe-config sha256:0000\n")
	c, err := a.Plan(context.Background(), res)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(c.What(), ","); got != "jumps,files,haproxy_config" {
		t.Errorf("What() = %s, want jumps,files,haproxy_config (change %+v)", got, c)
	}
	if _, err := a.Apply(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	if c, _ := a.Plan(context.Background(), res); !c.Nothing {
		t.Errorf("after the repair: %+v, want nothing", c)
	}
}

// TestFailedFirstApplyLeavesNothing: when HAProxy cannot start on a node
// where portstripe never ran, no rule, jump or file is left behind.
func TestFailedFirstApplyLeavesNothing(t *testing.T) {
	a, rules, proxy := newApplier(t)
	proxy.failStart = errors.New("start haproxy: cannot bind socket [198.51.100.2:20000]")
	_, err := a.Apply(context.Background(), compile(t, testNode))
	if err == nil || !strings.Contains(err.Error(), "cannot bind") {
		t.Fatalf("apply: %v, want the start error", err)
	}
	if rules.installed != nil || len(rules.missing) != 0 {
		t.Errorf("rules left: %q (jumps missing %q)", rules.installed, rules.missing)
	}
	if entries, _ := os.ReadDir(a.Dir); len(entries) != 0 {
		t.Errorf("%d files left in the state directory", len(entries))
	}
}

// TestUnchangedFilesKeepPrev: applying the same node again (a reboot, a
// repair) rewrites no file, so *.prev still holds the real previous version.
func TestUnchangedFilesKeepPrev(t *testing.T) {
	a, rules, proxy := newApplier(t)
	first := compile(t, testNode)
	second := compile(t, strings.Replace(testNode, "127.0.0.1:22", "127.0.0.2:2222", 1))
	for _, res := range []*compiler.Result{first, second} {
		if _, err := a.Apply(context.Background(), res); err != nil {
			t.Fatal(err)
		}
	}
	rules.installed, proxy.alive = nil, false
	c, err := a.Apply(context.Background(), second)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Files) != 0 {
		t.Errorf("files rewritten though they did not change: %v", c.Files)
	}
	for n, want := range first.Files {
		if got, _ := os.ReadFile(filepath.Join(a.Dir, n+".prev")); string(got) != string(want) {
			t.Errorf("%s.prev no longer holds the first version", n)
		}
	}
}

// TestSignalMidApplyStillRollsBack: a SIGTERM that cancels the apply's
// context while HAProxy starts must not leave the rules it loaded: the
// rollback runs on a context of its own.
func TestSignalMidApplyStillRollsBack(t *testing.T) {
	a, rules, proxy := newApplier(t)
	ctx, cancel := context.WithCancel(context.Background())
	proxy.onStart = func(context.Context) error {
		cancel() // the signal arrives while the master starts
		return fmt.Errorf("start haproxy: %w", context.Canceled)
	}
	_, err := a.Apply(ctx, compile(t, testNode))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("apply: %v, want the cancellation", err)
	}
	if rules.installed != nil {
		t.Errorf("rules left after a cancelled first apply: %q (apply: %v)", rules.installed, err)
	}
}

// fakeRoutes is a reply route held in memory.
type fakeRoutes struct{ now routing.Observed }

func (f *fakeRoutes) Observe(plan.ReplyRoute) (routing.Observed, error) { return f.now, nil }
func (f *fakeRoutes) Ensure(plan.ReplyRoute) error {
	f.now = routing.Observed{Rule: true, Route: true}
	return nil
}
func (f *fakeRoutes) Remove(plan.ReplyRoute) error {
	f.now = routing.Observed{}
	return nil
}

const transparentNode = `name: t
addresses: [198.51.100.2]
haproxy: {user: root}
services:
  - {name: ssh, kind: ssh, tcp: 203.0.113.20:22, client_address: transparent}
`

// TestReplyRouteDrift: a transparent node's apply adds the reply route, a
// lost ip rule is drift that the next apply repairs, a failed apply puts
// the route back as it was, and a node without transparent backends has it
// removed.
func TestReplyRouteDrift(t *testing.T) {
	ctx := context.Background()
	a, _, proxy := newApplier(t)
	routes := &fakeRoutes{}
	a.Routes = routes
	res := compile(t, transparentNode)
	c, err := a.Apply(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Routes) != 2 || routes.now != (routing.Observed{Rule: true, Route: true}) {
		t.Fatalf("first apply: routes %q, kernel %+v; want both added", c.Routes, routes.now)
	}
	routes.now.Rule = false // someone ran `ip rule flush`
	c, err = a.Plan(ctx, res)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"+ ip rule fwmark 0x5053 lookup 20563 priority 20563"}; c.Nothing || !slices.Equal(c.Routes, want) || !slices.Equal(c.What(), []string{"routes"}) {
		t.Fatalf("plan after the rule went: routes %q, what %q; want %q", c.Routes, c.What(), want)
	}
	if _, err := a.Apply(ctx, res); err != nil || !routes.now.Rule {
		t.Fatalf("repair: %v, kernel %+v", err, routes.now)
	}
	proxy.failReload = errors.New("master refused the configuration")
	if _, err := a.Apply(ctx, compile(t, testNode)); err == nil {
		t.Fatal("apply with a failing reload succeeded")
	}
	if routes.now != (routing.Observed{Rule: true, Route: true}) {
		t.Errorf("rollback left the reply route %+v, want it back", routes.now)
	}
	proxy.failReload = nil
	if _, err := a.Apply(ctx, compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	if routes.now != (routing.Observed{}) {
		t.Errorf("a node without transparent backends left the reply route %+v", routes.now)
	}
}

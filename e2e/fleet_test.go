//go:build e2e

package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/etcdtest"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/node"
)

// The fleet test runs a fleet as an operator would: a 3-member etcd
// cluster in a namespace of its own (the store host), three nodes, each a
// node namespace with its own HAProxy, rules, sshd and `portstripe run
// --store` agent, and a client namespace in front of it; `portstripe fleet
// publish` and `fleet rollout` run on the store host. Real clients (ssh,
// ssh-keyscan) check each node through its striped ports.

const (
	fleetName     = "e2e"
	fleetSSHPort  = 1022 // a striped TCP port the SSH clients use
	fleetDeadline = 60 * time.Second
)

// The store host's members listen on these addresses (its lo); each node
// reaches them through a veth of its own.
var fleetStoreHosts = []string{"203.0.113.1", "203.0.113.2", "203.0.113.3"}

// fleetNode is one node of the fleet.
type fleetNode struct {
	name, addr, dir string
	client, ns      testbed.Netns
	sshd            *sshd
	agent           *liveRun
}

type fleetBed struct {
	t     *testing.T
	dir   string
	start time.Time
	store testbed.Netns
	etcd  *etcdtest.Cluster
	cl    *clientv3.Client
	nodes []*fleetNode
}

// newFleetBed builds the store host with its etcd cluster and n nodes with
// sshd on 127.0.0.1:22; the agents are not started yet.
func newFleetBed(t *testing.T, n int) *fleetBed {
	t.Helper()
	b := &fleetBed{t: t, dir: t.TempDir(), start: time.Now()}
	st, del, err := testbed.NewNetns(nsPrefix + "s")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := del(); err != nil {
			t.Error(err)
		}
	})
	b.store = st
	for _, h := range fleetStoreHosts {
		mustIP(t, "-n", string(st), "addr", "add", h+"/32", "dev", "lo")
	}
	for i := 1; i <= n; i++ {
		pair := testenv.Pair(t, nsPrefix)
		fn := &fleetNode{name: fmt.Sprintf("n%d", i), addr: fmt.Sprintf("198.51.100.%d", 10+i),
			dir: filepath.Join(b.dir, fmt.Sprintf("n%d", i)), client: pair.Client, ns: pair.Node}
		if err := os.MkdirAll(fn.dir, 0o755); err != nil {
			t.Fatal(err)
		}
		// The node's own address, reached from its client over the
		// pair's veth (the node answers ARP for it).
		mustIP(t, "-n", string(fn.ns), "addr", "add", fn.addr+"/32", "dev", "lo")
		// A link to the store host: the node's 203.0.113.1i, routes to
		// the members' addresses.
		vs, vn := fmt.Sprintf("fs%d-%d", i, os.Getpid()), fmt.Sprintf("fn%d-%d", i, os.Getpid())
		own := fmt.Sprintf("203.0.113.%d", 10+i)
		for _, step := range [][]string{
			{"link", "add", vs, "type", "veth", "peer", "name", vn},
			{"link", "set", vs, "netns", string(st)},
			{"link", "set", vn, "netns", string(fn.ns)},
			{"-n", string(st), "link", "set", vs, "up"},
			{"-n", string(fn.ns), "link", "set", vn, "up"},
			{"-n", string(fn.ns), "addr", "add", own + "/32", "dev", vn},
			{"-n", string(fn.ns), "route", "add", "203.0.113.0/30", "dev", vn},
			{"-n", string(st), "route", "add", own + "/32", "dev", vs},
		} {
			mustIP(t, step...)
		}
		fn.sshd = startSSHD(t, fn.ns, fn.dir)
		b.nodes = append(b.nodes, fn)
	}
	b.etcd = etcdtest.Start(t, etcdtest.Options{Members: 3, Netns: st, Hosts: fleetStoreHosts})
	b.cl = b.etcd.Client()
	b.logf("store: 3 etcd members on %s", b.etcd.StoreURL())
	return b
}

func mustIP(t *testing.T, args ...string) {
	t.Helper()
	testenv.Run(t, "ip", args...)
}

// logf logs with the time since the bed was built, for the timelines.
func (b *fleetBed) logf(format string, args ...any) {
	b.t.Helper()
	b.t.Logf("[%7.3fs] %s", time.Since(b.start).Seconds(), fmt.Sprintf(format, args...))
}

// fleetPlan is one version of the shared plan.
type fleetPlan struct {
	listenPort int
	ssh        bool
	// delay is haproxy.inspect_delay: a change every node must apply.
	delay string
}

// file writes the fleet file of plan p: every node gets the plan, its own
// address, a label of its own (so the canary is n1: the first label
// group) and HAProxy's sockets in its directory.
func (b *fleetBed) file(p fleetPlan) string {
	var s strings.Builder
	fmt.Fprintf(&s, `name: %s
plan:
  striped: {tcp: ["1000-2000"], udp: ["1000-2000"]}
  haproxy:
    listen_port: %d
    inspect_delay: %s
    timeouts: {connect: 2s, client: 1m, server: 1m}
    maxconn: 1000
  defaults: {tcp: reject, udp: reject}
  services:
    - {name: openvpn_ecc, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060, tcp: "127.0.0.1:5060"}
`, fleetName, p.listenPort, p.delay)
	if p.ssh {
		fmt.Fprintf(&s, "    - {name: ssh, kind: ssh, tcp: %q}\n", sshBackend)
	}
	s.WriteString("nodes:\n")
	for i, n := range b.nodes {
		fmt.Fprintf(&s, `  - name: %s
    addresses: [%s]
    labels: {region: r%d}
    overrides:
      haproxy: {run_dir: %s, master_socket: %s, runtime_socket: %s}
`, n.name, n.addr, i+1, n.dir, filepath.Join(n.dir, "master.sock"), filepath.Join(n.dir, "runtime.sock"))
	}
	path := filepath.Join(b.dir, "fleet.yaml")
	if err := os.WriteFile(path, []byte(s.String()), 0o600); err != nil {
		b.t.Fatal(err)
	}
	return path
}

// cli runs portstripe on the store host.
func (b *fleetBed) cli(args ...string) (string, error) {
	return b.store.Run(cliPath, append(args, "--store", b.etcd.StoreURL())...)
}

// publish publishes plan p and returns the generation's number.
func (b *fleetBed) publish(p fleetPlan) uint64 {
	b.t.Helper()
	out, err := b.cli("fleet", "publish", "-f", b.file(p))
	if err != nil {
		b.t.Fatalf("fleet publish: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := b.cl.Get(ctx, store.GensPrefix(fleetName), clientv3.WithPrefix(), clientv3.WithKeysOnly(),
		clientv3.WithSort(clientv3.SortByKey, clientv3.SortDescend), clientv3.WithLimit(1))
	if err != nil || len(resp.Kvs) == 0 {
		b.t.Fatalf("no generation in the store after fleet publish (%v):\n%s", err, out)
	}
	gen, _ := store.GenOf(fleetName, string(resp.Kvs[0].Key))
	b.logf("published generation %d: %s", gen, strings.TrimSpace(out))
	return gen
}

// rollout rolls the newest generation out (canary n1, then the rest, a
// short soak: the nodes carry no traffic, so --allow-idle) and returns its
// output and error (exit 1 when aborted).
func (b *fleetBed) rollout() (string, error) {
	b.t.Helper()
	b.settle()
	b.logf("fleet rollout started")
	out, err := b.cli("fleet", "rollout", "--fleet", fleetName, "--waves", "1%,100%", "--soak", "2s",
		"--allow-idle", "--poll", "200ms", "--ack-timeout", "30s")
	b.logf("fleet rollout ended (%v):\n%s", err, strings.TrimSpace(out))
	return out, err
}

// settle waits until every node that reports has reported after the
// test's last connections, so the rollout's baseline window sees none of
// them: the nodes are idle during the rollouts (--allow-idle), and a
// burst of test traffic counted just inside the window would read as
// traffic that collapsed after the move.
func (b *fleetBed) settle() {
	b.t.Helper()
	since := time.Now()
	for _, n := range b.nodes {
		if b.status(n) == nil {
			continue
		}
		b.waitStatus(n, "a status newer than the test's traffic", func(s *store.Status) bool { return s.UpdatedAt.After(since) })
	}
}

// status reads a node's status key (nil when there is none).
func (b *fleetBed) status(n *fleetNode) *store.Status {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var st store.Status
	rev, err := store.Get(ctx, b.cl, store.StatusKey(fleetName, n.name), &st)
	if err != nil || rev == 0 {
		return nil
	}
	return &st
}

// waitStatus waits until node n's status satisfies ok.
func (b *fleetBed) waitStatus(n *fleetNode, what string, ok func(*store.Status) bool) *store.Status {
	b.t.Helper()
	var st *store.Status
	if _, err := liveWaitFor(fleetDeadline, 100*time.Millisecond, func() error {
		if st = b.status(n); st != nil && ok(st) {
			return nil
		}
		return fmt.Errorf("%s: status %+v", n.name, st)
	}); err != nil {
		agentLog := ""
		if n.agent != nil {
			agentLog = testbed.Tail(n.agent.proc.LogText(), 15)
		}
		b.t.Fatalf("%s never reported %s: %v\n%s", n.name, what, err, agentLog)
	}
	return st
}

// waitACK waits until every node ACKed generation gen and serves it.
func (b *fleetBed) waitACK(gen uint64) {
	b.t.Helper()
	for _, n := range b.nodes {
		b.waitStatus(n, fmt.Sprintf("ACK of generation %d", gen), func(s *store.Status) bool {
			return s.Result == store.ACK && s.Generation == gen && s.Applied == gen && s.HAProxyUp
		})
	}
	b.logf("every node ACKed generation %d", gen)
}

// startAgents starts every node's `portstripe run --store`.
func (b *fleetBed) startAgents() {
	b.t.Helper()
	for _, n := range b.nodes {
		b.startAgent(n, "agent.log")
	}
}

// startAgent starts n's `portstripe run --store`, logging to n.dir/log.
func (b *fleetBed) startAgent(n *fleetNode, log string) {
	b.t.Helper()
	r := &liveRun{t: b.t, node: n.ns, stateDir: filepath.Join(n.dir, "state")}
	args := []string{"run", "--store", b.etcd.StoreURL(), "--fleet", fleetName, "--node", n.name,
		"--dir", r.stateDir, "--metrics", "127.0.0.1:0", "--period", reconcilePeriod.String()}
	r.proc = testenv.Start(b.t, "agent "+n.name, n.ns.Command(cliPath, args...), filepath.Join(n.dir, log))
	n.agent = r
}

// metricsAddr waits for the agent's /metrics address (served once it has
// a state to serve).
func (n *fleetNode) metricsAddr(t *testing.T) string {
	t.Helper()
	if n.agent.metrics != "" {
		return n.agent.metrics
	}
	if err := n.agent.proc.WaitLog(`msg="serving /metrics, /healthz and /readyz"`, fleetDeadline); err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(n.agent.proc.LogText(), "\n") {
		if _, addr, ok := strings.Cut(l, `msg="serving /metrics, /healthz and /readyz" addr=`); ok {
			n.agent.metrics = strings.Fields(addr)[0]
		}
	}
	return n.agent.metrics
}

// metric reads one sample of the node's /metrics.
func (n *fleetNode) metric(t *testing.T, sample string) float64 {
	t.Helper()
	n.metricsAddr(t)
	v, ok := liveMetric(n.agent.scrape(), sample)
	if !ok {
		t.Fatalf("%s: no %s on /metrics", n.name, sample)
	}
	return v
}

// readyz returns the agent's /readyz code and body.
func (n *fleetNode) readyz(t *testing.T) (int, string) {
	t.Helper()
	code, body, err := liveHTTPGet(n.ns, "http://"+n.metricsAddr(t)+"/readyz")
	if err != nil {
		t.Fatalf("%s: GET /readyz: %v", n.name, err)
	}
	return code, strings.TrimSpace(body)
}

// sshWorks checks node n through its striped port as a user would: a
// client speaking first gets an OpenSSH banner, and the real ssh client
// proves n's own host key (its sshd, not another node's) and reaches
// authentication.
func (b *fleetBed) sshWorks(n *fleetNode, what string) {
	b.t.Helper()
	var banner string
	took, err := liveWaitFor(fleetDeadline, 200*time.Millisecond, func() error {
		var err error
		banner, err = liveSSHBannerAt(n.client, n.addr, fleetSSHPort)
		return err
	})
	if err != nil {
		b.t.Fatalf("%s: %s: no SSH banner through striped tcp %d: %v", n.name, what, fleetSSHPort, err)
	}
	ok, out, err := sshClientTo(n.client, netip.MustParseAddr(n.addr), n.dir, fleetSSHPort, n.sshd.hostKey, filepath.Join(n.dir, "ssh.log"))
	if err != nil || !ok {
		b.t.Fatalf("%s: %s: ssh through striped tcp %d did not prove the host key: %v\n%s", n.name, what, fleetSSHPort, err, out)
	}
	b.logf("%s: %s: %q, and ssh proved %s's host key and reached authentication through %s:%d (after %s)",
		n.name, what, banner, n.name, n.addr, fleetSSHPort, took.Round(time.Millisecond))
}

// vpnWorks: real OpenVPN 2.6 clients of the fleet's openvpn_ecc
// (tls-crypt) reach node n's own servers through a striped TCP port and a
// striped UDP port, as in the single-node suite.
func (b *fleetBed) vpnWorks(n *fleetNode) {
	b.t.Helper()
	p, err := newPKI(filepath.Join(n.dir, "pki-ecc"), "ecc")
	if err != nil {
		b.t.Fatal(err)
	}
	in := &instance{service: "openvpn_ecc", alg: "ecc", mode: "tls-crypt", udpPort: 5060,
		tcpAddr: netip.MustParseAddrPort("127.0.0.1:5060"), pki: p, anyAddress: true}
	// The node's address is on lo, not on the veth the client comes in
	// by: --multihome answers from the address a datagram came to.
	for _, proto := range []string{"udp", "tcp"} {
		args := in.serverArgs(proto)
		if proto == "udp" {
			args = append(args, "--multihome")
		}
		srv := testenv.Start(b.t, n.name+" openvpn_ecc/"+proto, n.ns.Command("openvpn", args...), filepath.Join(n.dir, "openvpn_ecc-"+proto+".log"))
		if err := srv.WaitLog("Initialization Sequence Completed", 15*time.Second); err != nil {
			b.t.Fatal(err)
		}
	}
	// HAProxy checks the TCP backend every 2 s: the new server is routed
	// to once it is UP.
	rt := haproxy.NewRuntime(filepath.Join(n.dir, "runtime.sock"), nil)
	if _, err := liveWaitFor(fleetDeadline, 200*time.Millisecond, func() error {
		stats, err := rt.ShowStat(context.Background())
		if err != nil {
			return err
		}
		for _, st := range stats {
			if st.Type == haproxy.StatServer && st.Proxy == "openvpn_ecc" && strings.HasPrefix(st.Status, "UP") {
				return nil
			}
		}
		return errors.New("openvpn_ecc not UP")
	}); err != nil {
		b.t.Fatalf("%s: HAProxy never saw the OpenVPN TCP server up: %v", n.name, err)
	}
	for i, proto := range []string{"tcp", "udp"} {
		port := 1194 + i
		log := filepath.Join(n.dir, "openvpn-client-"+proto+".log")
		cmd := n.client.Command("openvpn", in.clientArgsTo(netip.MustParseAddr(n.addr), proto, port, 41001+i, n.name+"-"+proto)...)
		ok, detail, err := testbed.WatchLines(cmd, log, "Initialization Sequence Completed", 25*time.Second)
		if err != nil || !ok {
			b.t.Errorf("%s: OpenVPN client over striped %s %d did not connect: %v %s", n.name, proto, port, err, detail)
			continue
		}
		b.logf("%s: a real OpenVPN tls-crypt client connected through striped %s %d", n.name, proto, port)
	}
}

// sshRefused checks that node n does not take SSH on its striped port yet.
func (b *fleetBed) sshRefused(n *fleetNode) {
	b.t.Helper()
	if banner, err := liveSSHBannerAt(n.client, n.addr, fleetSSHPort); err == nil {
		b.t.Fatalf("%s answered SSH (%q) on tcp %d before the fleet had an SSH service", n.name, banner, fleetSSHPort)
	}
}

// TestFleet: agents on three nodes follow a fleet through its generations
// (an SSH service added to the shared plan reaches every node), one etcd
// member killed, the whole store down and back, a node file a node's
// compiler refuses (NACK), and a generation one node's HAProxy cannot
// take, stopped at the canary and rolled back.
func TestFleet(t *testing.T) {
	b := newFleetBed(t, 3)
	n1, n2 := b.nodes[0], b.nodes[1]
	base := fleetPlan{listenPort: liveListenPort, delay: "5s"}

	// Agents start on nodes with nothing applied: they wait for the store.
	b.startAgents()
	gen1 := b.publish(base)
	if out, err := b.rollout(); err != nil || !strings.Contains(out, fmt.Sprintf("promoted: generation %d", gen1)) {
		t.Fatalf("rollout of generation %d: %v\n%s", gen1, err, out)
	}
	b.waitACK(gen1)
	for _, n := range b.nodes {
		b.sshRefused(n)
		if v := n.metric(t, "portstripe_fleet_generation"); v != float64(gen1) {
			t.Errorf("%s: portstripe_fleet_generation %v, want %d", n.name, v, gen1)
		}
	}

	// The change: an SSH backend added to the shared plan.
	withSSH := base
	withSSH.ssh = true
	gen2 := b.publish(withSSH)
	if out, err := b.rollout(); err != nil {
		t.Fatalf("rollout of generation %d: %v\n%s", gen2, err, out)
	}
	b.waitACK(gen2)
	for _, n := range b.nodes {
		b.sshWorks(n, fmt.Sprintf("generation %d", gen2))
		b.vpnWorks(n)
	}
	if out, err := b.cli("fleet", "status", "--fleet", fleetName); err != nil || strings.Count(out, "SYNCED") == 0 {
		t.Errorf("fleet status after generation %d: %v\n%s", gen2, err, out)
	} else {
		b.logf("fleet status:\n%s", strings.TrimSpace(out))
	}

	// One member killed: the fleet keeps working (a rollout through the
	// other two).
	b.etcd.Kill(0)
	b.etcd.WaitHealthy()
	b.logf("etcd member m0 killed")
	gen3 := b.publish(fleetPlan{listenPort: liveListenPort, delay: "4s", ssh: true})
	if out, err := b.rollout(); err != nil {
		t.Fatalf("rollout with a member down: %v\n%s", err, out)
	}
	b.waitACK(gen3)
	b.etcd.Restart(0)

	// The store down entirely: nodes keep serving and say so; after the
	// restart they resync.
	b.etcd.KillAll()
	b.logf("every etcd member killed")
	for _, n := range b.nodes {
		if _, err := liveWaitFor(fleetDeadline, 100*time.Millisecond, func() error {
			if v := n.metric(t, "portstripe_store_connected"); v != 0 {
				return fmt.Errorf("portstripe_store_connected %v", v)
			}
			return nil
		}); err != nil {
			t.Fatalf("%s never noticed the store was down: %v\n%s", n.name, err, testbed.Tail(n.agent.proc.LogText(), 10))
		}
		if code, body := n.readyz(t); code != http.StatusServiceUnavailable || !strings.Contains(body, "fleet store unreachable") {
			t.Errorf("%s: /readyz with the store down: %d %q", n.name, code, body)
		}
		if !strings.Contains(n.agent.proc.LogText(), "fleet store unreachable; serving the last applied state") {
			t.Errorf("%s: no outage line in the agent's log", n.name)
		}
		b.sshWorks(n, "store down")
	}
	// An agent (re)started while the store is down serves the state its
	// last apply left in --dir: a node rebooting during an outage.
	n3 := b.nodes[2]
	n3.agent.proc.Stop()
	b.startAgent(n3, "agent-restarted.log")
	if err := n3.agent.proc.WaitLog(`msg="node applied" reason=start result=unchanged`, fleetDeadline); err != nil {
		t.Fatalf("n3's agent restarted with the store down did not adopt its applied state: %v", err)
	}
	if !strings.Contains(n3.agent.proc.LogText(), "serving the state applied in --dir until the store says otherwise") {
		t.Errorf("n3's restarted agent did not say it serves the applied state:\n%s", testbed.Tail(n3.agent.proc.LogText(), 10))
	}
	if code, body := n3.readyz(t); code != http.StatusServiceUnavailable || !strings.Contains(body, "fleet store") {
		t.Errorf("n3: /readyz of an agent started with the store down: %d %q", code, body)
	}
	b.sshWorks(n3, "agent restarted with the store down")
	restarted := time.Now()
	b.etcd.RestartAll()
	b.logf("every etcd member restarted")
	for _, n := range b.nodes {
		st := b.waitStatus(n, "a status after the outage", func(s *store.Status) bool {
			return s.UpdatedAt.After(restarted) && s.Result == store.ACK && s.Generation == gen3
		})
		b.logf("%s resynced: status ACK generation %d, store_reachable %v", n.name, st.Generation, st.StoreReachable)
		if _, err := liveWaitFor(fleetDeadline, 100*time.Millisecond, func() error {
			if code, body := n.readyz(t); code != http.StatusOK {
				return fmt.Errorf("/readyz %d %s", code, body)
			}
			return nil
		}); err != nil {
			t.Errorf("%s: not ready after the store came back: %v", n.name, err)
		}
	}
	gen4 := b.publish(fleetPlan{listenPort: liveListenPort, delay: "5s", ssh: true})
	if out, err := b.rollout(); err != nil {
		t.Fatalf("rollout after the outage: %v\n%s", err, out)
	}
	b.waitACK(gen4)

	// A node file n2's compiler refuses (a key this portstripe does not
	// know, as a newer publisher might write): NACK, n2 keeps serving.
	b.refusedByCompiler(n2, gen4)

	// A generation n1's HAProxy cannot take: another program on n1 holds
	// the port the new plan gives HAProxy's first frontend. n1 is the
	// canary: the rollout stops there and rolls back.
	b.badGeneration(n1, gen4)
}

// refusedByCompiler writes a desired record for n whose node file has a
// key this portstripe refuses, then puts the stable record back.
func (b *fleetBed) refusedByCompiler(n *fleetNode, stable uint64) {
	t := b.t
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var rec store.GenNode
	if rev, err := store.Get(ctx, b.cl, store.GenNodeKey(fleetName, stable, n.name), &rec); err != nil || rev == 0 {
		t.Fatalf("generation %d's record of %s: %v", stable, n.name, err)
	}
	refused := rec.NodeFile + "tunnels: {mtu: 1400}\n"
	d := store.Desired{Generation: stable + 100, NodeSHA256: store.SHA256([]byte(refused)), NodeFile: refused}
	if _, err := node.Parse([]byte(refused), store.Source(fleetName, n.name), node.Options{}); err == nil {
		t.Fatal("the test's refused node file compiles")
	}
	val, _ := store.Encode(d)
	if _, err := b.cl.Put(ctx, store.DesiredKey(fleetName, n.name), val); err != nil {
		t.Fatal(err)
	}
	b.logf("%s: desired record with an unknown key written (generation %d)", n.name, d.Generation)
	st := b.waitStatus(n, "NACK", func(s *store.Status) bool { return s.Generation == d.Generation })
	if st.Result != store.NACK || !strings.HasPrefix(st.Error, "tunnels:") || st.Applied != stable {
		t.Errorf("%s: status after a refused node file: %+v, want NACK with tunnels: …, generation %d still applied", n.name, st, stable)
	}
	b.logf("%s NACKed: %s", n.name, st.Error)
	b.sshWorks(n, "after the NACK")
	val, _ = store.Encode(store.DesiredOf(stable, rec))
	if _, err := b.cl.Put(ctx, store.DesiredKey(fleetName, n.name), val); err != nil {
		t.Fatal(err)
	}
	b.waitStatus(n, "ACK of the stable generation again", func(s *store.Status) bool { return s.Generation == stable && s.Result == store.ACK })
}

// badGeneration publishes a plan moving HAProxy's frontends to a port
// another program holds on n only, rolls it out, and checks it stopped at
// the canary n and rolled back to stable.
func (b *fleetBed) badGeneration(n *fleetNode, stable uint64) {
	t := b.t
	t.Helper()
	const badListen = 21000
	squatter := testenv.Start(t, "squatter on "+n.name, n.ns.Command("socat", fmt.Sprintf("TCP-LISTEN:%d,bind=%s,fork", badListen, n.addr), "SYSTEM:true"),
		filepath.Join(n.dir, "squatter.log"))
	defer squatter.Stop()
	if err := squatter.WaitFor(10*time.Second, func() error {
		c, err := liveDial(n.ns, fmt.Sprintf("%s:%d", n.addr, badListen), time.Second)
		if err == nil {
			c.Close()
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	bad := b.publish(fleetPlan{listenPort: badListen, delay: "5s", ssh: true})
	out, err := b.rollout()
	if testbed.ExitCode(err) != 1 || !strings.Contains(out, "aborting the rollout of generation") {
		t.Fatalf("rollout of the bad generation %d: %v, want an abort (exit 1):\n%s", bad, err, out)
	}
	st := b.waitStatus(n, "ACK of the stable generation after the rollback", func(s *store.Status) bool {
		return s.Generation == stable && s.Result == store.ACK
	})
	b.logf("%s back on generation %d (applied %d)", n.name, st.Generation, st.Applied)
	agentLog := n.agent.proc.LogText()
	for _, l := range strings.Split(agentLog, "\n") {
		if strings.Contains(l, fmt.Sprintf("generation=%d", bad)) || (strings.Contains(l, "apply failed") && strings.Contains(l, "store generation")) ||
			strings.Contains(l, fmt.Sprintf("reason=\"store generation %d\"", stable)) {
			b.logf("%s agent: %s", n.name, l)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	var meta store.Generation
	if _, err := store.Get(ctx, b.cl, store.GenMeta(fleetName, bad), &meta); err != nil || meta.State != store.Bad {
		t.Errorf("generation %d after the abort: %+v (%v), want state bad", bad, meta, err)
	} else {
		b.logf("generation %d marked %s: %s", bad, meta.State, meta.Reason)
	}
	for _, o := range b.nodes {
		if o == n {
			continue
		}
		if s := b.status(o); s == nil || s.Generation != stable || s.Result != store.ACK {
			t.Errorf("%s was moved by the aborted rollout: %+v", o.name, s)
		}
	}
	for _, o := range b.nodes {
		b.sshWorks(o, "after the rollback")
	}
}

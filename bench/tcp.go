package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"time"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/supervisor"
)

// benchNode is the node file the TCP, reload and UDP sections apply: the
// seed's two striped OpenVPN instances plus SSH and TLS on every striped
// port, backends on the node's loopback: the bench's counting backend, not
// health-checked (a check's connections would be counted, and it is no
// sshd or TLS server).
func benchNode(dir string, inspectDelay string) []byte {
	return []byte(benchNodeFile(dir, inspectDelay).YAML())
}

func benchNodeFile(dir string, inspectDelay string) testbed.NodeFile {
	return testbed.NodeFile{Name: "bench", Striped: "1-29999", ListenPort: listenPort, InspectDelay: inspectDelay, MaxConn: 4000, Dir: dir,
		Services: []string{
			fmt.Sprintf("  - {name: openvpn_rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: %d, tcp: \"127.0.0.1:%d\", check: none}\n", udpRSA, portRSA),
			fmt.Sprintf("  - {name: openvpn_ecc, kind: openvpn, tls: {mode: tls-crypt}, udp: %d, tcp: \"127.0.0.1:%d\", check: none}\n", udpECC, portECC),
			fmt.Sprintf("  - {name: ssh, kind: ssh, tcp: \"127.0.0.1:%d\", check: none}\n", portSSH),
			fmt.Sprintf("  - {name: web, kind: tls, tcp: \"127.0.0.1:%d\", check: none}\n", portTLS),
		}}
}

func compileNode(data []byte, source string) (*compiler.Result, error) {
	n, err := node.Parse(data, source, node.Options{})
	if err != nil {
		return nil, err
	}
	return compiler.FromNode(n)
}

// variant is a change to the emitted haproxy.cfg, tried to close a gap.
type variant struct {
	name, desc string
	edit       func(string) string
}

func addAfter(cfg, anchor, line string) string {
	return strings.Replace(cfg, anchor+"\n", anchor+"\n"+line+"\n", 1)
}

func nbthread1(cfg string) string  { return addAfter(cfg, "    master-worker", "    nbthread 1") }
func spliceAuto(cfg string) string { return addAfter(cfg, "    mode tcp", "    option splice-auto") }

// deferAccept adds defer-accept to every bind: the kernel hands a
// connection over only once its first data is in (or after a retransmit).
func deferAccept(cfg string) string {
	lines := strings.Split(cfg, "\n")
	for i, l := range lines {
		if strings.HasPrefix(strings.TrimSpace(l), "bind ") {
			lines[i] = l + " defer-accept"
		}
	}
	return strings.Join(lines, "\n")
}

func variants(quick bool) []variant {
	vs := []variant{
		{"portstripe", "iptables DNAT + HAProxy, haproxy.cfg as emitted (nbthread unset: one thread per CPU)", nil},
		{"portstripe nbthread 1", "as emitted plus `nbthread 1` in global", nbthread1},
		{"portstripe splice-auto", "as emitted plus `option splice-auto` in defaults", spliceAuto},
		{"portstripe tuned", "nbthread 1 + splice-auto", func(s string) string { return spliceAuto(nbthread1(s)) }},
		{"portstripe defer-accept", "as emitted plus `defer-accept` on every bind: the kernel hands over a connection once its first data is in", deferAccept},
	}
	if quick {
		return []variant{vs[0], vs[3]}
	}
	return vs
}

// pathResult is one path's TCP numbers.
type pathResult struct {
	Name, Desc       string
	Lat              []int64 // one worker, sorted
	PerProbe         map[string][]int64
	Load             []int64 // N workers, sorted
	ConnPerSec       float64
	Attempts, Failed int
	Errors           map[string]int
	BulkMBs          float64
	BulkErr          string
	RoundP99         []time.Duration // one client, per round
	Threads          int             // HAProxy: most threads seen in a worker
	Pinned           bool            // proxy on proxyCPU, load on loadCPU
	loadOK           int
	loadTime         time.Duration
}

type haproxyProc struct {
	proc *testbed.Proc
	h    *supervisor.HAProxy
}

// startHAProxy checks cfg with haproxy -c and starts a master-worker
// HAProxy on it in the node namespace, on the CPUs listed in cpus (taskset
// -c syntax; "" for all).
func (r *run) startHAProxy(ctx context.Context, name, cfg, dir, masterSock, cpus string) (*haproxyProc, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	path := filepath.Join(dir, "haproxy.cfg")
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		return nil, err
	}
	if _, err := r.pair.Node.Run("haproxy", "-c", "-q", "-f", path); err != nil {
		return nil, err
	}
	runtime := ""
	for _, l := range strings.Split(cfg, "\n") {
		if f := strings.Fields(l); len(f) > 2 && f[0] == "stats" && f[1] == "socket" {
			runtime = f[2]
		}
	}
	// The stats socket sits in the node file's haproxy.run_dir, which
	// holds the workers' chroot too.
	if err := haproxy.PrepareRunDir(filepath.Dir(runtime)); err != nil {
		return nil, err
	}
	h := &supervisor.HAProxy{
		Config:        path,
		MasterSocket:  masterSock,
		RuntimeSocket: runtime,
		Log:           slog.New(slog.NewTextHandler(io.Discard, nil)),
	}
	os.Remove(h.MasterSocket)
	p, err := testbed.Start("haproxy "+name, onCPUs(r.pair.Node, cpus, "haproxy", "-W", "-S", h.MasterSocket+",mode,600", "-f", path), filepath.Join(dir, "haproxy.log"))
	if err != nil {
		return nil, err
	}
	err = p.WaitFor(10*time.Second, func() error {
		if !h.Alive(ctx) {
			return fmt.Errorf("master socket not answering")
		}
		return h.FrontendsUp(ctx, []string{"fe_striped"})
	})
	if err != nil {
		p.Stop()
		return nil, err
	}
	return &haproxyProc{p, h}, nil
}

func (r *run) rules() (*iptables.Manager, error) {
	return iptables.New(iptables.Options{Netns: string(r.pair.Node)})
}

// tcpPaths measures every path: direct, DNAT only, portstripe (as emitted
// and with the variants tried), sslh-select and sslh-fork.
func (r *run) tcpPaths(ctx context.Context) error {
	node := testbed.NodeAddr.String()
	at := func(port int) string { return net.JoinHostPort(node, strconv.Itoa(port)) }
	res, err := compileNode(benchNode(filepath.Join(r.tmp, "tcp"), "5s"), "bench.yaml")
	if err != nil {
		return err
	}
	rules, err := r.rules()
	if err != nil {
		return err
	}
	if err := rules.Apply(ctx, res.Files[compiler.RulesFile]); err != nil {
		return err
	}
	if _, err := r.pair.Node.Run("iptables", "-t", "nat", "-A", "PREROUTING", "-d", node, "-p", "tcp", "--dport", strconv.Itoa(portDNATOnly),
		"-m", "comment", "--comment", "bench: DNAT only", "-j", "DNAT", "--to-destination", ":"+strconv.Itoa(portSSH)); err != nil {
		return err
	}
	// Striped ports the probes arrive on: all four land on fe_striped.
	striped := r.pk.tcpProbes(at(443), at(1194), at(22), at(8443))
	r.rep.haproxyCfg = string(res.Files[compiler.HAProxyFile])
	r.rep.rounds = r.n(5, 2)

	type path struct {
		name, desc string
		probes     []Probe
		start      func(cpus string) (stop func(), err error)
		pinned     bool // proxy on proxyCPU, client and backend on loadCPU
	}
	direct := r.pk.tcpProbes(at(portRSA), at(portECC), at(portSSH), at(portTLS))
	paths := []path{
		{"direct", "client → tiny backend on the node, no NAT, no proxy", direct, nil, false},
		{"DNAT only", "one iptables DNAT rule (reserved port → backend), no proxy", r.pk.tcpProbes(at(portDNATOnly), at(portDNATOnly), at(portDNATOnly), at(portDNATOnly)), nil, false},
	}
	haproxyStart := map[string]func(string) (func(), error){}
	for i, v := range variants(r.cfg.quick) {
		cfg := r.rep.haproxyCfg
		if v.edit != nil {
			cfg = v.edit(cfg)
		}
		if v.edit != nil {
			r.rep.variantCfgs = append(r.rep.variantCfgs, [2]string{v.name, cfg})
		}
		dir := filepath.Join(r.tmp, fmt.Sprintf("haproxy-%d", i))
		start := func(cpus string) (func(), error) {
			h, err := r.startHAProxy(ctx, v.name, cfg, dir, filepath.Join(dir, "master.sock"), cpus)
			if err != nil {
				return nil, err
			}
			return h.proc.Stop, nil
		}
		haproxyStart[v.name] = start
		paths = append(paths, path{v.name, v.desc, striped, start, false})
	}
	// sslh reads a configuration file rather than flags: on the command
	// line every protocol gets a libwrap service (hosts.allow and
	// hosts.deny read per connection), logs every connection, and
	// sslh-select forks a process per SSH connection. Here none of that:
	// log_level 0, no service, fork false, numeric (no DNS lookups).
	sslhCfg := filepath.Join(r.tmp, "sslh.cfg")
	if err := os.WriteFile(sslhCfg, []byte(r.sslhConfig(node)), 0o600); err != nil {
		return err
	}
	r.rep.sslhCfg = r.sslhConfig(node)
	sslhStart := map[string]func(string) (func(), error){}
	for _, bin := range []string{"sslh-select", "sslh"} {
		name := map[string]string{"sslh-select": "sslh-select", "sslh": "sslh-fork"}[bin]
		start := func(cpus string) (func(), error) {
			p, err := testbed.Start(name, onCPUs(r.pair.Node, cpus, bin, "-F"+sslhCfg), filepath.Join(r.tmp, name+".log"))
			if err != nil {
				return nil, err
			}
			return func() {
				p.Stop()
				r.rep.sslhLog[name] = append(r.rep.sslhLog[name], sslhLogLines(p.LogText())...)
			}, nil
		}
		sslhStart[name] = start
		paths = append(paths, path{name, fmt.Sprintf("sslh 1.20 (%s), probes openvpn, ssh, tls", name),
			r.pk.tcpProbes(at(portSSLH), at(portSSLH), at(portSSLH), at(portSSLH)), start, false})
	}
	// sslh-select as Debian's /etc/default/sslh runs it, from flags: every
	// connection logged and checked against hosts.allow/deny (libwrap),
	// a fork per SSH connection. The comparison an operator who installs
	// sslh and edits DAEMON_OPTS gets.
	cmdline := func(cpus string) (func(), error) {
		p, err := testbed.Start(sslhCmdline, onCPUs(r.pair.Node, cpus, "sslh-select", "-f", "-n", "-t", "5",
			"-p", at(portSSLH), "--openvpn", loopback(portRSA), "--ssh", loopback(portSSH), "--tls", loopback(portTLS)),
			filepath.Join(r.tmp, "sslh-cmdline.log"))
		if err != nil {
			return nil, err
		}
		return func() {
			p.Stop()
			r.rep.sslhCmdlineLines += len(sslhLogLines(p.LogText()))
		}, nil
	}
	paths = append(paths, path{sslhCmdline, "sslh 1.20 (sslh-select) started from flags, as /etc/default/sslh does: `-f -n -t 5 -p ADDR --openvpn … --ssh … --tls …`",
		r.pk.tcpProbes(at(portSSLH), at(portSSLH), at(portSSLH), at(portSSLH)), cmdline, false})
	r.rep.sslhLog = map[string][]string{}
	// Pinned: the same paths with the proxy alone on proxyCPU and the
	// load generator and the backend on loadCPU.
	if runtime.NumCPU() >= 2 {
		for _, name := range []string{"direct", "portstripe", "portstripe nbthread 1", "sslh-select", "sslh-fork"} {
			for _, p := range paths {
				if p.name == name && !p.pinned {
					p.pinned = true
					p.name += " (pinned)"
					paths = append(paths, p)
					break
				}
			}
		}
	}
	// Rounds interleave the paths, so that a slow minute of a shared
	// machine spreads over all of them instead of skewing one.
	results := make([]pathResult, len(paths))
	rounds := r.n(5, 2)
	for round := range rounds {
		for i, p := range paths {
			pr := &results[i]
			pr.Name, pr.Desc, pr.Pinned = p.name, p.desc, p.pinned
			proxyCPUs, loadCPUs := "", ""
			if p.pinned {
				proxyCPUs, loadCPUs = proxyCPU, loadCPU
			}
			if err := r.pinBackend(loadCPUs); err != nil {
				return err
			}
			r.clientCPUs = loadCPUs
			stop := func() {}
			if p.start != nil {
				if stop, err = p.start(proxyCPUs); err != nil {
					return fmt.Errorf("%s: %w", p.name, err)
				}
			}
			err := r.measurePath(pr, p.probes, round, rounds, !p.pinned)
			if strings.HasPrefix(p.name, "portstripe") {
				pr.Threads = max(pr.Threads, r.haproxyThreads())
			}
			stop()
			if err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
	}
	r.clientCPUs = ""
	if err := r.pinBackend(""); err != nil {
		return err
	}
	// Paired: direct, DNAT only and portstripe alternated connection by
	// connection by one client, for the added p99 (see paired.go).
	pairPaths := []PairPath{{Name: "direct", Probes: paths[0].probes}, {Name: "DNAT only", Probes: paths[1].probes}, {Name: "portstripe", Probes: striped}}
	for _, pinned := range []bool{false, true} {
		if pinned && runtime.NumCPU() < 2 {
			continue
		}
		pr, err := r.measurePaired(pairPaths, haproxyStart["portstripe"], pinned)
		if err != nil {
			return fmt.Errorf("paired: %w", err)
		}
		r.rep.paired = append(r.rep.paired, pr)
	}
	for i := range results {
		pr := &results[i]
		pr.Lat, pr.Load = sorted(pr.Lat), sorted(pr.Load)
		for k, v := range pr.PerProbe {
			pr.PerProbe[k] = sorted(v)
		}
		pr.ConnPerSec = float64(pr.loadOK) / pr.loadTime.Seconds()
		r.log.Info("measured", "path", pr.Name, "p50", pct(pr.Lat, 0.5), "p99", pct(pr.Lat, 0.99),
			"conn/s", int(pr.ConnPerSec), "failed", pr.Failed, "MB/s", int(pr.BulkMBs), "threads", pr.Threads)
	}
	for _, pr := range results {
		if pr.Pinned {
			r.rep.pinned = append(r.rep.pinned, pr)
		} else {
			r.rep.paths = append(r.rep.paths, pr)
		}
	}
	if _, err := r.pair.Node.Run("iptables", "-t", "nat", "-D", "PREROUTING", "-d", node, "-p", "tcp", "--dport", strconv.Itoa(portDNATOnly),
		"-m", "comment", "--comment", "bench: DNAT only", "-j", "DNAT", "--to-destination", ":"+strconv.Itoa(portSSH)); err != nil {
		return err
	}
	return rules.Clean(ctx)
}

// warmUp returns once every probe has answered, retried while the proxy
// starts.
func (r *run) warmUp(probes []Probe) error {
	for try := 0; ; try++ {
		w, err := r.client(ClientSpec{Mode: "conn", Probes: probes, Workers: 1, Count: 2 * len(probes), Duration: 5 * time.Second, Timeout: 2 * time.Second}, nil)
		if err == nil && w.Failures == 0 {
			return nil
		}
		if err == nil {
			err = fmt.Errorf("warm-up: %d of %d failed: %v", w.Failures, w.Attempts, w.Errors)
		}
		if try == 25 {
			return err
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (r *run) measurePath(pr *pathResult, probes []Probe, round, rounds int, bulk bool) error {
	if err := r.warmUp(probes); err != nil {
		return err
	}
	r.log.Info("measuring", "path", pr.Name, "round", round+1)
	lat, err := r.client(ClientSpec{Mode: "conn", Probes: probes, Workers: 1, Count: r.n(1200, 400), Duration: r.d(2500*time.Millisecond, time.Second), Timeout: 3 * time.Second}, nil)
	if err != nil {
		return err
	}
	pr.Lat = append(pr.Lat, lat.Latencies...)
	pr.RoundP99 = append(pr.RoundP99, pct(sorted(lat.Latencies), 0.99))
	if pr.PerProbe == nil {
		pr.PerProbe = map[string][]int64{}
	}
	for k, v := range lat.PerProbe {
		pr.PerProbe[k] = append(pr.PerProbe[k], v...)
	}
	load, err := r.client(ClientSpec{Mode: "conn", Probes: probes, Workers: r.cfg.workers, Count: r.n(15000, 4000), Duration: r.d(3*time.Second, 1500*time.Millisecond), Timeout: 3 * time.Second}, nil)
	if err != nil {
		return err
	}
	pr.Load = append(pr.Load, load.Latencies...)
	pr.loadOK += len(load.Latencies)
	pr.loadTime += load.Elapsed
	pr.Attempts += lat.Attempts + load.Attempts
	pr.Failed += lat.Failures + load.Failures
	for k, v := range load.Errors {
		if pr.Errors == nil {
			pr.Errors = map[string]int{}
		}
		pr.Errors[k] += v
	}
	for k, v := range lat.Errors {
		if pr.Errors == nil {
			pr.Errors = map[string]int{}
		}
		pr.Errors[k] += v
	}
	if round != 0 || !bulk {
		return nil
	}
	var ssh Probe
	for _, p := range probes {
		if p.Name == "ssh" {
			ssh = p
		}
	}
	b, err := r.client(ClientSpec{Mode: "bulk", Probes: []Probe{ssh}, Bytes: int64(r.n(256, 64)) << 20, Duration: 60 * time.Second, Timeout: 3 * time.Second}, nil)
	if err != nil {
		pr.BulkErr = err.Error()
	} else {
		pr.BulkMBs = float64(b.Bytes) / (1 << 20) / b.Elapsed.Seconds()
	}
	return nil
}

// The pinned paths' CPUs (taskset -c lists): the proxy alone on one, the
// load generator and the tiny backend together on the other.
const proxyCPU, loadCPU = "1", "0"

// onCPUs is ns.Command(name, args...) started by taskset on cpus ("": no
// taskset). The affinity holds for every thread and child the program
// makes: HAProxy's workers, sslh-fork's children.
func onCPUs(ns testbed.Netns, cpus, name string, args ...string) *exec.Cmd {
	if cpus == "" {
		return ns.Command(name, args...)
	}
	return ns.Command("taskset", append([]string{"-c", cpus, name}, args...)...)
}

// pinBackend moves every thread of the running tiny backend to cpus, or
// back to all CPUs ("").
func (r *run) pinBackend(cpus string) error {
	if cpus == "" {
		cpus = fmt.Sprintf("0-%d", runtime.NumCPU()-1)
	}
	if r.backend == nil || r.backendCPUs == cpus {
		return nil
	}
	// `ip netns exec` execs the backend: its pid is the backend's.
	out, err := exec.Command("taskset", "-a", "-p", "-c", cpus, strconv.Itoa(r.backend.Cmd.Process.Pid)).CombinedOutput()
	if err != nil {
		return fmt.Errorf("taskset the backend: %v: %s", err, strings.TrimSpace(string(out)))
	}
	r.backendCPUs = cpus
	return nil
}

// haproxyThreads is the most threads of a running HAProxy worker in the
// node namespace (0 if none): what nbthread came to.
func (r *run) haproxyThreads() int {
	out, err := exec.Command("ip", "netns", "pids", string(r.pair.Node)).Output()
	if err != nil {
		return 0
	}
	most := 0
	for _, pid := range strings.Fields(string(out)) {
		comm, _ := os.ReadFile("/proc/" + pid + "/comm")
		if strings.TrimSpace(string(comm)) != "haproxy" {
			continue
		}
		status, _ := os.ReadFile("/proc/" + pid + "/status")
		for _, l := range strings.Split(string(status), "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == "Threads:" {
				n, _ := strconv.Atoi(f[1])
				most = max(most, n)
			}
		}
	}
	return most
}

func loopback(port int) string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(port)) }

// sslhCmdline names the path of sslh-select run from its command line.
const sslhCmdline = "sslh-select (flags)"

// sslhConfig is sslh's configuration file for the bench: the same three
// probes as the command line, listening on the node's address.
func (r *run) sslhConfig(node string) string {
	return fmt.Sprintf(`verbose: false;
foreground: true;
inetd: false;
numeric: true;
transparent: false;
timeout: 5;
listen: ( { host: "%s"; port: "%d"; } );
protocols: (
  { name: "openvpn"; host: "127.0.0.1"; port: "%d"; log_level: 0; },
  { name: "ssh"; host: "127.0.0.1"; port: "%d"; log_level: 0; fork: false; },
  { name: "tls"; host: "127.0.0.1"; port: "%d"; log_level: 0; }
);
`, node, portSSLH, portRSA, portSSH, portTLS)
}

// sslhLogLines are what sslh logged besides its start line: its errors.
func sslhLogLines(log string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(log), "\n") {
		if l != "" && !strings.Contains(l, " started") {
			out = append(out, l)
		}
	}
	return out
}

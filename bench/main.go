// Command bench measures what port striping costs, side by side in one run
// on this machine: TCP set-up latency and connection rate, bulk throughput,
// failed connections across HAProxy reloads, compile and apply time as the
// node grows, UDP first-datagram classification, the CPU a reconcile pass
// of `portstripe run` costs, new UDP flows per second as the decision lists
// grow (no classification vs iptables vs nftables), TCP over IPv6 vs IPv4,
// and fleet compile of thousands of nodes. It writes BENCHMARKS.md and PNG
// plots (see -out).
//
//	sudo go run ./bench          # full run
//	sudo go run ./bench -quick   # CI smoke, under 2 minutes
//
// It runs as root, inside network namespaces it creates (addresses from
// 198.51.100.0/24 and 2001:db8::/32 only) and removes again, also on
// SIGINT or a panic.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
)

// nsPrefix names every namespace the benchmark creates.
const nsPrefix = "psbench-"

// sectionNames are the sections -only selects, in the order they run.
var sectionNames = []string{"tcp", "reload", "udp", "tcp6", "lists", "scale", "reconcile", "kinds", "fleet", "agents"}

type config struct {
	quick   bool
	out     string
	workers int
	packets string
	only    string
}

func main() {
	var (
		c    config
		role = flag.String("role", "", "internal: backend or client (the benchmark runs itself in its namespaces)")
		spec = flag.String("spec", "", "internal: client spec (JSON)")
		tcp  = flag.String("tcp", "", "internal: backend TCP ports")
		udp  = flag.String("udp", "", "internal: backend UDP ports")
	)
	flag.BoolVar(&c.quick, "quick", false, "smaller counts and shorter loops (CI smoke test, under 2 minutes)")
	flag.StringVar(&c.out, "out", ".", "directory for BENCHMARKS.md and the plots")
	flag.IntVar(&c.workers, "workers", 8, "concurrent client workers for the connection-rate runs")
	flag.StringVar(&c.packets, "packets", "", "directory of captured first packets, run from the repository root (default: fixtures/first-packets)")
	flag.StringVar(&c.only, "only", "", "run only these sections (comma list of "+strings.Join(sectionNames, ",")+"); the report then covers only them")
	flag.Parse()
	var err error
	switch *role {
	case "backend":
		err = backendMain(*tcp, *udp)
	case "client":
		err = clientMain(*spec)
	case "":
		err = orchestrate(c)
	default:
		err = fmt.Errorf("unknown -role %q", *role)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

// run is the state of one benchmark run.
type run struct {
	cfg     config
	log     *slog.Logger
	tmp     string
	exe     string // this program, re-executed in the namespaces
	cli     string // the portstripe CLI, built for the reload and reconcile sections
	pk      packets
	pair    *testbed.Pair
	started time.Time
	// backend is the tiny backend; backendCPUs its affinity as last set.
	backend     *testbed.Proc
	backendCPUs string
	clientCPUs  string // taskset -c list for client processes ("": all)
	command     string
	rep         report
}

func orchestrate(c config) (err error) {
	defer testbed.Guard()
	defer testbed.RunAll()
	stop := testbed.HandleSignals("bench")
	defer stop()
	workersFlag = c.workers
	r := &run{cfg: c, started: time.Now(), log: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	r.command = "go run ./bench" + strings.TrimPrefix(strings.Join(append([]string{""}, os.Args[1:]...), " "), "")
	if err := preflight(); err != nil {
		return err
	}
	// Fail now, not after minutes of measuring, if the report cannot be written.
	if err := os.MkdirAll(c.out, 0o755); err != nil {
		return fmt.Errorf("-out: %w", err)
	}
	for _, ns := range testbed.RemoveStale(nsPrefix) {
		r.log.Warn("removed a namespace left by an earlier run", "netns", ns)
	}
	if r.exe, err = os.Executable(); err != nil {
		return err
	}
	if r.tmp, err = os.MkdirTemp("", "portstripe-bench-"); err != nil {
		return err
	}
	defer testbed.AtExit(func() { os.RemoveAll(r.tmp) })()
	if r.pk, err = loadPackets(c.packets); err != nil {
		return err
	}
	r.rep.machine = machineInfo()
	sections := map[string]bool{}
	for _, s := range sectionNames {
		sections[s] = c.only == ""
	}
	for _, s := range splitList(c.only) {
		if _, ok := sections[s]; !ok {
			return fmt.Errorf("-only: unknown section %q (sections: %s)", s, strings.Join(sectionNames, ","))
		}
		sections[s] = true
	}
	ctx := context.Background()
	if sections["tcp"] || sections["reload"] || sections["udp"] || sections["tcp6"] || sections["kinds"] {
		if r.pair, err = testbed.NewPair(nsPrefix); err != nil {
			return err
		}
		defer r.pair.Close()
		if err := r.tune(r.pair); err != nil {
			return err
		}
		if r.backend, err = r.startBackend(r.pair.Node, []int{portRSA, portECC, portSSH, portTLS}, []int{udpRSA, udpECC}); err != nil {
			return err
		}
	}
	if sections["tcp"] {
		if err := r.tcpPaths(ctx); err != nil {
			return fmt.Errorf("tcp: %w", err)
		}
	}
	if sections["reload"] {
		if err := r.reloads(ctx); err != nil {
			return fmt.Errorf("reload: %w", err)
		}
	}
	if sections["udp"] {
		if err := r.udp(ctx); err != nil {
			return fmt.Errorf("udp: %w", err)
		}
	}
	if sections["tcp6"] {
		if err := r.tcpFamilies(ctx); err != nil {
			return fmt.Errorf("tcp6: %w", err)
		}
	}
	if sections["lists"] {
		if err := r.lists(ctx); err != nil {
			return fmt.Errorf("lists: %w", err)
		}
	}
	if sections["scale"] {
		if err := r.scale(ctx); err != nil {
			return fmt.Errorf("scale: %w", err)
		}
	}
	if sections["reconcile"] {
		if err := r.reconcile(); err != nil {
			return fmt.Errorf("reconcile: %w", err)
		}
	}
	if sections["kinds"] {
		if err := r.kinds(ctx); err != nil {
			return fmt.Errorf("kinds: %w", err)
		}
	}
	if sections["fleet"] {
		if err := r.fleetCompile(); err != nil {
			return fmt.Errorf("fleet: %w", err)
		}
	}
	if sections["agents"] {
		if err := r.agents(ctx); err != nil {
			return fmt.Errorf("agents: %w", err)
		}
	}
	r.rep.elapsed = time.Since(r.started)
	r.rep.command = r.command
	r.rep.date = r.started.UTC().Format("2006-01-02 15:04 UTC")
	r.rep.quick = c.quick
	path, err := r.rep.write(c.out)
	if err != nil {
		return err
	}
	r.log.Info("wrote the report", "file", path, "elapsed", time.Since(r.started).Round(time.Second))
	return nil
}

// n picks the full or the quick value.
func (r *run) n(full, quick int) int {
	if r.cfg.quick {
		return quick
	}
	return full
}

func (r *run) d(full, quick time.Duration) time.Duration {
	if r.cfg.quick {
		return quick
	}
	return full
}

func preflight() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the benchmark creates network namespaces and must run as root")
	}
	tools := map[string]string{
		"ip": "iproute2", "iptables": "iptables", "iptables-restore": "iptables",
		"haproxy": "haproxy", "nft": "nftables", "sslh-select": "sslh", "sslh": "sslh", "sysctl": "procps", "go": "golang (Go 1.26)", "etcd": "etcd-server",
	}
	var missing []string
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (%s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %s; on Debian: echo \"sslh sslh/inetd_or_standalone select standalone\" | debconf-set-selections; DEBIAN_FRONTEND=noninteractive apt-get install -y haproxy iptables nftables sslh", strings.Join(missing, ", "))
	}
	return nil
}

// tune widens a pair's client port range and shortens conntrack's
// TIME_WAIT memory on its node, so that tens of thousands of short
// connections neither run out of ports nor fill the conntrack table.
// Both are per-namespace settings; the host is not touched.
func (r *run) tune(p *testbed.Pair) error {
	for _, ns := range []testbed.Netns{p.Client, p.Node} {
		for k, v := range map[string]string{
			"net.ipv4.ip_local_port_range": "1024 65000",
			"net.ipv4.tcp_tw_reuse":        "1",
			"net.core.somaxconn":           "4096",
			"net.ipv4.tcp_max_syn_backlog": "4096",
		} {
			if err := ns.Sysctl(k, v); err != nil {
				return err
			}
		}
	}
	// The conntrack sysctls appear once nf_conntrack is loaded; a nat rule
	// in the namespace loads it.
	if _, err := p.Node.Run("iptables", "-t", "nat", "-A", "OUTPUT", "-d", "198.51.100.254", "-p", "tcp", "--dport", "9", "-j", "RETURN"); err != nil {
		return err
	}
	for k, v := range map[string]string{
		"net.netfilter.nf_conntrack_tcp_timeout_time_wait": "1",
		"net.netfilter.nf_conntrack_tcp_timeout_close":     "1",
		"net.netfilter.nf_conntrack_tcp_timeout_fin_wait":  "1",
		"net.netfilter.nf_conntrack_udp_timeout":           "5",
		"net.netfilter.nf_conntrack_udp_timeout_stream":    "5",
	} {
		if err := p.Node.Sysctl(k, v); err != nil {
			r.log.Warn("conntrack sysctl not set", "key", k, "error", err)
		}
	}
	return nil
}

// The tiny backend's ports on the node: TCP in the reserved range (so
// direct connections are not DNATed), UDP where the node file's listeners are.
const (
	portRSA, portECC, portSSH, portTLS = 31194, 35060, 30022, 38443
	udpRSA, udpECC                     = 443, 5060
	portDNATOnly                       = 40000 // DNATed straight to the SSH backend
	portSSLH                           = 30443
	listenPort                         = 20000
)

// startBackend starts the tiny backend in ns on these TCP and UDP ports.
func (r *run) startBackend(ns testbed.Netns, tcp, udp []int) (*testbed.Proc, error) {
	list := func(ports []int) string {
		s := make([]string, len(ports))
		for i, p := range ports {
			s[i] = strconv.Itoa(p)
		}
		return strings.Join(s, ",")
	}
	cmd := ns.Command(r.exe, "-role", "backend", "-tcp", list(tcp), "-udp", list(udp))
	p, err := testbed.Start("backend", cmd, filepath.Join(r.tmp, "backend-"+string(ns)+".log"))
	if err != nil {
		return nil, err
	}
	err = p.WaitFor(30*time.Second, func() error {
		if strings.Contains(p.LogText(), "ready") {
			return nil
		}
		return fmt.Errorf("no ready line yet")
	})
	if err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

// client runs one client process in the client namespace and returns its
// result. stdin, when not nil, is handed the process's standard input
// (closing it stops a UntilEOF loop).
func (r *run) client(s ClientSpec, stdin func(io.WriteCloser)) (ClientResult, error) {
	return r.clientIn(r.pair.Client, s, stdin)
}

// clientIn is client in the namespace ns.
func (r *run) clientIn(ns testbed.Netns, s ClientSpec, stdin func(io.WriteCloser)) (ClientResult, error) {
	var res ClientResult
	js, err := jsonString(s)
	if err != nil {
		return res, err
	}
	cmd := onCPUs(ns, r.clientCPUs, r.exe, "-role", "client", "-spec", js)
	var stdout, stderr strings.Builder
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var in io.WriteCloser
	if stdin != nil {
		if in, err = cmd.StdinPipe(); err != nil {
			return res, err
		}
	}
	if err := cmd.Start(); err != nil {
		return res, err
	}
	kill := testbed.AtExit(func() { cmd.Process.Kill() })
	if stdin != nil {
		stdin(in)
	}
	err = cmd.Wait()
	kill()
	if err != nil {
		return res, fmt.Errorf("client %s: %v: %s", s.Mode, err, strings.TrimSpace(stderr.String()))
	}
	if err := jsonUnmarshal(stdout.String(), &res); err != nil {
		return res, fmt.Errorf("client %s output: %w", s.Mode, err)
	}
	return res, nil
}

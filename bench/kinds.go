package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/testbed"
)

// The classification section (issue 15): what telling protocols apart
// costs HAProxy per connection, and how it grows with the number of
// signatures a first packet is tried against. One frontend classifies for
// 5 and for 30 services; beside them a bare pass-through HAProxy (`mode
// tcp`, the same binds, no inspection: every connection to one backend at
// once). The three are measured in the same rounds, interleaved, with the
// same first packets.

// kindCounts are the node sizes measured: the goal is judged at
// goalServices; the largest, far beyond it, shows the slope (the cost per
// signature tried) above the machine's noise.
var kindCounts = []int{5, 15, 30, 150}

const goalServices = 30

// kindsBackendBase is the first of the classification nodes' backend
// ports: one per service, in the reserved range (no DNAT reaches them).
const kindsBackendBase = 32000

// kindsResult is one path of the section: its pooled numbers, and its
// connection rate in every round (to pair it with pass-through's).
type kindsResult struct {
	pathResult
	Services int       // 0: pass-through
	TLSOnly  bool      // every client a ClientHello for the last TLS service, not the four first packets in turn
	Rates    []float64 // conn/s per round
	// HAProxy's CPU time (master and workers) over the connections it
	// handled: the proxy's own cost per connection, which the machine's
	// other load disturbs far less than a rate.
	CPU   time.Duration
	Conns int
}

// CPUPerConn is HAProxy's CPU time per connection.
func (p kindsResult) CPUPerConn() time.Duration {
	if p.Conns == 0 {
		return 0
	}
	return p.CPU / time.Duration(p.Conns)
}

// kindsReport is the section's numbers and the configurations measured.
type kindsReport struct {
	Paths    []kindsResult
	Frontend string   // the goal's node's fe_striped, as emitted
	Passthru string   // the pass-through frontend
	Services []string // the goal's node's services
}

// kindService is the node-file line of the i-th of n services: the
// bench node's OpenVPN, SSH and HTTP services first, then services of
// other kinds, and last the TLS service the probes' ClientHello (SNI
// www.example.org) is for, so that it is tried against every signature
// of the node before its own.
func kindService(i, n int) string {
	port := kindsBackendBase + i
	switch {
	case i == n-1:
		return fmt.Sprintf("{name: web, kind: tls, sni: [www.example.org], tcp: \"127.0.0.1:%d\", check: none}", port)
	case i == 0:
		return fmt.Sprintf("{name: openvpn_rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: %d, tcp: \"127.0.0.1:%d\", check: none}", udpRSA, port)
	case i == 1:
		return fmt.Sprintf("{name: openvpn_ecc, kind: openvpn, tls: {mode: tls-crypt}, udp: %d, tcp: \"127.0.0.1:%d\", check: none}", udpECC, port)
	case i == 2:
		return fmt.Sprintf("{name: ssh, kind: ssh, tcp: \"127.0.0.1:%d\", check: none}", port)
	case i == 3:
		return fmt.Sprintf("{name: plain_http, kind: http, tcp: \"127.0.0.1:%d\", check: none}", port)
	case i-4 < len(otherKinds):
		return fmt.Sprintf("{name: %s, tcp: \"127.0.0.1:%d\", check: none}", otherKinds[i-4], port)
	}
	return fmt.Sprintf("{name: site%02d, kind: tls, sni: [site%02d.example.net], tcp: \"127.0.0.1:%d\", check: none}", i, i, port)
}

// otherKinds are the services of other kinds (name, kind, settings)
// after the bench node's in a larger node.
var otherKinds = []string{
	"socks5, kind: socks5", "xmpp, kind: xmpp", "tinc, kind: tinc", "rdp, kind: rdp",
	"h2_any, kind: tls, alpn: [h2]", "h2_site, kind: tls, sni: [h2.example.net], alpn: [h2]",
	"kb, kind: custom, custom: {prefix: 4b4250524f544f2f3120}",
	"kbre, kind: custom, custom: {regex: '^KBRE/[0-9]'}",
}

// kindsNode is the bench node with n services.
func kindsNode(dir string, n int) []byte {
	var svcs []string
	for i := range n {
		svcs = append(svcs, "  - "+kindService(i, n)+"\n")
	}
	return []byte(testbed.NodeFile{Name: "bench", Striped: "1-29999", ListenPort: listenPort, InspectDelay: "5s", MaxConn: 4000, Dir: dir,
		Services: svcs}.YAML())
}

// passThrough turns an emitted haproxy.cfg into the bare pass-through:
// fe_striped keeps its binds and sends every connection to backend at
// once; nothing else changes (global, defaults, backends).
func passThrough(cfg, backend string) string {
	var out []string
	in := false
	for _, l := range strings.Split(cfg, "\n") {
		switch {
		case strings.HasPrefix(l, "frontend fe_striped"):
			in = true
			out = append(out, l)
			continue
		case in && (l == "" || !strings.HasPrefix(l, " ")):
			out = append(out, "    default_backend "+backend)
			in = false
		case in && !strings.HasPrefix(strings.TrimSpace(l), "bind "):
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

// frontend returns the named frontend's block of cfg.
func frontend(cfg, name string) string {
	_, rest, ok := strings.Cut(cfg, "frontend "+name+"\n")
	if !ok {
		return ""
	}
	block, _, _ := strings.Cut(rest, "\n\n")
	return "frontend " + name + "\n" + block + "\n"
}

func (r *run) kinds(ctx context.Context) error {
	// A pair of its own: after the tcp section, the shared pair's
	// pass-through connections timed out (something that section leaves
	// behind; its own results are unaffected).
	pair, err := testbed.NewPair(nsPrefix)
	if err != nil {
		return err
	}
	defer pair.Close()
	if err := r.tune(pair); err != nil {
		return err
	}
	shared := r.pair
	r.pair = pair
	defer func() { r.pair = shared }()
	most := slices.Max(kindCounts)
	var ports []string
	for i := range most {
		ports = append(ports, strconv.Itoa(kindsBackendBase+i))
	}
	backend, err := testbed.Start("kinds backend", r.pair.Node.Command(r.exe, "-role", "backend", "-tcp", strings.Join(ports, ",")),
		filepath.Join(r.tmp, "kinds-backend.log"))
	if err != nil {
		return err
	}
	defer backend.Stop()
	if err := backend.WaitLog("ready", 10*time.Second); err != nil {
		return err
	}
	type path struct {
		res    kindsResult
		cfg    string
		probes []Probe
	}
	node := testbed.NodeAddr.String()
	at := func(port int) string { return net.JoinHostPort(node, strconv.Itoa(port)) }
	mix := r.pk.tcpProbes(at(443), at(1194), at(22), at(8443))
	tlsOnly := []Probe{{Name: "tls", Addr: at(8443), Packet: r.pk.tlsHello}}
	var paths []*path
	var rulesFile []byte
	for _, n := range kindCounts {
		dir := filepath.Join(r.tmp, fmt.Sprintf("kinds-%d", n))
		res, err := compileNode(kindsNode(dir, n), fmt.Sprintf("kinds-%d.yaml", n))
		if err != nil {
			return fmt.Errorf("%d services: %w", n, err)
		}
		cfg := string(res.Files[compiler.HAProxyFile])
		if n == goalServices {
			r.rep.kinds.Frontend = frontend(cfg, "fe_striped")
			for i := range n {
				r.rep.kinds.Services = append(r.rep.kinds.Services, kindService(i, n))
			}
		}
		if n == most {
			rulesFile = res.Files[compiler.RulesFile]
			pt := passThrough(cfg, "ssh")
			r.rep.kinds.Passthru = frontend(pt, "fe_striped")
			paths = append([]*path{{kindsResult{pathResult: pathResult{Name: "pass-through"}}, pt, mix}}, paths...)
			// The worst case for the largest nodes: TLS clients only,
			// each tried against every signature before its own.
			paths = append(paths, &path{kindsResult{pathResult: pathResult{Name: "pass-through, TLS only"}, TLSOnly: true}, pt, tlsOnly})
		}
		paths = append(paths, &path{kindsResult{pathResult: pathResult{Name: fmt.Sprintf("%d services", n)}, Services: n}, cfg, mix})
		if n >= goalServices {
			paths = append(paths, &path{kindsResult{pathResult: pathResult{Name: fmt.Sprintf("%d services, TLS only", n)}, Services: n, TLSOnly: true}, cfg, tlsOnly})
		}
	}
	// The paths of one probe set together, pass-through first.
	slices.SortStableFunc(paths, func(a, b *path) int {
		if a.res.TLSOnly != b.res.TLSOnly {
			if b.res.TLSOnly {
				return -1
			}
			return 1
		}
		return a.res.Services - b.res.Services
	})
	rules, err := r.rules()
	if err != nil {
		return err
	}
	if err := rules.Apply(ctx, rulesFile); err != nil {
		return err
	}
	defer rules.Clean(ctx)
	rounds := r.n(9, 2)
	for round := range rounds {
		for i, p := range paths {
			dir := filepath.Join(r.tmp, fmt.Sprintf("kinds-haproxy-%d", i))
			h, err := r.startHAProxy(ctx, p.res.Name, p.cfg, dir, filepath.Join(dir, "master.sock"), "")
			if err != nil {
				return fmt.Errorf("%s: %w", p.res.Name, err)
			}
			ok, took, attempts := p.res.loadOK, p.res.loadTime, p.res.Attempts
			pid := h.proc.Cmd.Process.Pid // `ip netns exec` execs the master
			self0, workers0, err := processCPU(pid)
			if err == nil {
				err = r.measurePath(&p.res.pathResult, p.probes, round, rounds, false)
			}
			self1, workers1, cpuErr := processCPU(pid)
			h.proc.Stop()
			if err == nil {
				err = cpuErr
			}
			if err != nil {
				return fmt.Errorf("%s: %w", p.res.Name, err)
			}
			p.res.CPU += self1 + workers1 - self0 - workers0
			p.res.Conns += p.res.Attempts - attempts
			p.res.Rates = append(p.res.Rates, float64(p.res.loadOK-ok)/(p.res.loadTime-took).Seconds())
		}
	}
	for _, p := range paths {
		pr := &p.res
		pr.Lat, pr.Load = sorted(pr.Lat), sorted(pr.Load)
		for k, v := range pr.PerProbe {
			pr.PerProbe[k] = sorted(v)
		}
		pr.ConnPerSec = float64(pr.loadOK) / pr.loadTime.Seconds()
		r.log.Info("measured", "path", pr.Name, "conn/s", int(pr.ConnPerSec), "haproxy CPU/conn", pr.CPUPerConn(), "p50", pct(pr.Lat, 0.5), "failed", pr.Failed)
		r.rep.kinds.Paths = append(r.rep.kinds.Paths, *pr)
	}
	return nil
}

// roundRatios are a path's connection rate over pass-through's, round by
// round (the two measured minutes apart at most), sorted.
func (k *kindsReport) roundRatios(p kindsResult) []float64 {
	base := k.passThrough(p.TLSOnly)
	var out []float64
	for i := range min(len(p.Rates), len(base.Rates)) {
		if base.Rates[i] > 0 {
			out = append(out, p.Rates[i]/base.Rates[i])
		}
	}
	slices.Sort(out)
	return out
}

// passThrough is the pass-through path of the same clients.
func (k *kindsReport) passThrough(tlsOnly bool) kindsResult {
	for _, p := range k.Paths {
		if p.Services == 0 && p.TLSOnly == tlsOnly {
			return p
		}
	}
	return kindsResult{}
}

// goal is the goal's node's path and its round ratios to pass-through
// (nil when not measured).
func (k *kindsReport) goal() (*kindsResult, []float64) {
	for i, p := range k.Paths {
		if rs := k.roundRatios(p); p.Services == goalServices && !p.TLSOnly && len(rs) > 0 {
			return &k.Paths[i], rs
		}
	}
	return nil, nil
}

func (rep *report) writeKinds(w writer) {
	k := &rep.kinds
	if len(k.Paths) == 0 {
		return
	}
	counts := make([]string, len(kindCounts))
	for i, n := range kindCounts {
		counts[i] = strconv.Itoa(n)
	}
	w("## 7. Classification cost: %s services on one frontend\n\n", strings.Join(counts, ", "))
	w("What telling protocols apart costs HAProxy (issue 15). HAProxy configurations on the same binds, the same DNAT rules (`portstripe compile` of the largest node, one `iptables-restore`), the same tiny backend and the same four first packets as section 1 (OpenVPN tls-auth and tls-crypt, an SSH banner, a TLS ClientHello with SNI www.example.org), aimed at striped ports 443, 1194, 22 and 8443: ")
	w("**pass-through** (fe_striped with its binds only and `default_backend ssh`: HAProxy connects to the backend at once, inspects nothing), and fe_striped as `portstripe compile` emits it for nodes of %s services (the larger ones add services of other kinds, then TLS services by SNI; the ClientHello's own service comes last of its family, so it is tried after every other signature). ", strings.Join(counts, ", "))
	w("The **TLS only** rows are the worst case of the larger nodes: every client sends the ClientHello, whose service is the last of its family, so that each connection is tried against every other signature first; they are compared with a pass-through measured with the same clients. ")
	w("Measured in %d interleaved rounds (each configuration once per round, HAProxy restarted each time, %d concurrent clients for the rate); the ratio is taken round by round against pass-through's rate of the same round, and the median of those is the figure.\n\n", len(k.Paths[0].Rates), rep.workers())
	w("| path | conn/s (%d clients, pooled) | × pass-through (median of rounds; min – max) | classification cost | HAProxy CPU per connection | × pass-through | p50 set-up (1 client) | p99 (1 client) | failed |\n|---|---|---|---|---|---|---|---|---|\n", rep.workers())
	for _, p := range k.Paths {
		base := k.passThrough(p.TLSOnly)
		ratio, cost, cpuRatio := "1", "–", "1"
		if p.Services > 0 {
			rs := k.roundRatios(p)
			if len(rs) > 0 {
				ratio = fmt.Sprintf("%.3f (%.3f – %.3f)", median(rs), rs[0], rs[len(rs)-1])
				cost = fmt.Sprintf("%.1f%%", 100*(1-median(rs)))
			}
			if base.CPUPerConn() > 0 {
				cpuRatio = fmt.Sprintf("%.2f", float64(p.CPUPerConn())/float64(base.CPUPerConn()))
			}
		}
		w("| %s | %.0f | %s | %s | %.1f µs | %s | %s | %s | %d of %d |\n", p.Name, p.ConnPerSec, ratio, cost,
			float64(p.CPUPerConn())/1e3, cpuRatio, ms(pct(p.Lat, 0.5)), ms(pct(p.Lat, 0.99)), p.Failed, p.Attempts)
	}
	w("\nHAProxy CPU per connection: utime+stime of the master and its workers (`/proc/PID/stat`, 10 ms ticks) over each measurement (warm-up, one-client and %d-client runs), divided by the connections made, pooled over the rounds: what HAProxy itself spends, which the other load of a shared machine disturbs far less than a rate. The rate HAProxy sustains is the inverse of that, and the goal is judged on it: the rates measured here are set by the load generator, the tiny backend and the machine's other load as much as by HAProxy, and their rounds scatter far more than 5%%.\n", rep.workers())
	for _, p := range k.Paths {
		if base := k.passThrough(true); p.TLSOnly && p.Services == slices.Max(kindCounts) && base.Conns > 0 && p.Conns > 0 {
			add := p.CPUPerConn() - base.CPUPerConn()
			w("\nWith TLS clients only, the %d-service node costs HAProxy %+.1f µs of CPU per connection over pass-through: about %.2f µs per service whose signature is tried before the ClientHello's own (%d).\n",
				p.Services, float64(add)/1e3, float64(add)/1e3/float64(p.Services-1), p.Services-1)
		}
	}
	w("\nPer first packet, one client (p50): how the set-up time grows with the signatures tried before the packet's own.\n\n| path | openvpn-tls-auth | openvpn-tls-crypt | ssh | tls |\n|---|---|---|---|---|\n")
	for _, p := range k.Paths {
		w("| %s |", p.Name)
		for _, name := range []string{"openvpn-tls-auth", "openvpn-tls-crypt", "ssh", "tls"} {
			w(" %s |", ms(pct(p.PerProbe[name], 0.5)))
		}
		w("\n")
	}
	w("\nThe %d-service node's services (the %d-service node has %d more TLS services by SNI before `web`):\n\n```yaml\n", goalServices, slices.Max(kindCounts), slices.Max(kindCounts)-goalServices)
	for _, s := range k.Services {
		w("- %s\n", s)
	}
	w("```\n\nIts fe_striped, as emitted:\n\n```\n%s```\n\nThe pass-through frontend:\n\n```\n%s```\n\n", k.Frontend, k.Passthru)
}

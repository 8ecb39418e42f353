package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"time"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/testbed"
)

// udpResult is one UDP path: closed-loop datagrams (each a new flow) per
// second, and the round trip.
type udpResult struct {
	Name, Desc         string
	Attempts, Failures int
	PerSec             float64
	PerSecNoLoss       float64
	RTT                []int64
}

const udpTimeout = 100 * time.Millisecond

// udp compares first-datagram classification by the compiled u32 rules
// with one plain DNAT rule for the same ports.
func (r *run) udp(ctx context.Context) error {
	res, err := compileNode(benchNode(filepath.Join(r.tmp, "udp"), "5s"), "bench.yaml")
	if err != nil {
		return err
	}
	rules, err := r.rules()
	if err != nil {
		return err
	}
	node := testbed.NodeAddr.String()
	probes := []Probe{
		{Name: "openvpn-tls-auth", Addr: net.JoinHostPort(node, "0"), Packet: r.pk.udpAuth},
		{Name: "openvpn-tls-crypt", Addr: net.JoinHostPort(node, "0"), Packet: r.pk.udpCrypt},
	}
	workers := 4
	spec := func(from, to int) ClientSpec {
		return ClientSpec{Mode: "udp", Probes: probes, Workers: workers, Count: min(r.n(48000, 8000), workers*(to-from+1)),
			Duration: r.d(20*time.Second, 4*time.Second), Timeout: udpTimeout, PortFrom: from, PortTo: to}
	}
	measure := func(name, desc string, s ClientSpec) error {
		r.log.Info("measuring", "udp path", name)
		cr, err := r.client(s, nil)
		if err != nil {
			return err
		}
		ur := udpResult{Name: name, Desc: desc, Attempts: cr.Attempts, Failures: cr.Failures, RTT: sorted(cr.Latencies)}
		ur.PerSec = float64(len(cr.Latencies)) / cr.Elapsed.Seconds()
		// A lost datagram stalls its worker for the timeout; without those
		// stalls the loop would have run this fast.
		busy := cr.Elapsed - time.Duration(cr.Failures)*udpTimeout/time.Duration(workers)
		ur.PerSecNoLoss = float64(len(cr.Latencies)) / busy.Seconds()
		r.rep.udp = append(r.rep.udp, ur)
		r.log.Info("measured", "udp path", name, "datagrams/s", int(ur.PerSec), "lost", ur.Failures)
		return nil
	}
	if err := rules.Apply(ctx, res.Files[compiler.RulesFile]); err != nil {
		return err
	}
	if err := measure("portstripe u32", "compiled rules: jump chain, port range, u32 (+length) match per signature, DNAT to the instance's port", spec(1000, 14999)); err != nil {
		return err
	}
	if err := rules.Clean(ctx); err != nil {
		return err
	}
	plain := []string{"-t", "nat", "PREROUTING", "-d", node, "-p", "udp", "--dport", "1:29999", "-j", "DNAT", "--to-destination", ":" + strconv.Itoa(udpRSA)}
	add := append([]string{plain[0], plain[1], "-A"}, plain[2:]...)
	del := append([]string{plain[0], plain[1], "-D"}, plain[2:]...)
	if _, err := r.pair.Node.Run("iptables", add...); err != nil {
		return err
	}
	err = measure("plain DNAT", "one rule: -p udp --dport 1:29999 -j DNAT (no classification)", spec(15000, 29000))
	if _, derr := r.pair.Node.Run("iptables", del...); derr != nil && err == nil {
		err = fmt.Errorf("remove the plain DNAT rule: %w", derr)
	}
	return err
}

package main

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/nftables"
	"github.com/portstripe/portstripe/node"
)

// tcpFamilies measures the same striped TCP path over IPv4 and IPv6 in
// interleaved rounds: the bench node with both of the pair's addresses,
// compiled for the nftables backend (one table inet classifies both
// families alike), HAProxy as emitted (its frontends bind on both
// addresses), the client connecting to testbed.NodeAddr or NodeAddr6.
func (r *run) tcpFamilies(ctx context.Context) error {
	if err := r.pair.AddIPv6(); err != nil {
		return err
	}
	dir := filepath.Join(r.tmp, "tcp6")
	f := benchNodeFile(dir, "5s")
	f.IPv6, f.Firewall = true, node.NFTables
	res, err := compileNode([]byte(f.YAML()), "bench-dual-stack.yaml")
	if err != nil {
		return err
	}
	fw := nftables.New(nftables.Options{Netns: string(r.pair.Node)})
	if err := fw.Apply(ctx, res.Files); err != nil {
		return err
	}
	defer fw.Clean(ctx)
	h, err := r.startHAProxy(ctx, "dual-stack", string(res.Files[compiler.HAProxyFile]), dir, filepath.Join(dir, "master.sock"), "")
	if err != nil {
		return err
	}
	defer h.proc.Stop()
	probes := func(a string) []Probe {
		at := func(port int) string { return net.JoinHostPort(a, strconv.Itoa(port)) }
		return r.pk.tcpProbes(at(443), at(1194), at(22), at(8443))
	}
	paths := []struct {
		name   string
		probes []Probe
	}{
		{"IPv4", probes(testbed.NodeAddr.String())},
		{"IPv6", probes(testbed.NodeAddr6.String())},
	}
	results := make([]pathResult, len(paths))
	rounds := r.n(6, 1) // even: each family goes first as often
	for round := range rounds {
		// The family that goes first alternates from round to round.
		for k := range paths {
			i := (k + round + 1) % len(paths)
			p, pr := paths[i], &results[i]
			pr.Name = p.name
			pr.Desc = fmt.Sprintf("client → %s, nft DNAT (portstripe.nft) → HAProxy as emitted → tiny backend on 127.0.0.1", p.probes[0].Addr)
			if err := r.measurePath(pr, p.probes, round, rounds, false); err != nil {
				return fmt.Errorf("%s: %w", p.name, err)
			}
		}
	}
	for i := range results {
		pr := &results[i]
		pr.Lat, pr.Load = sorted(pr.Lat), sorted(pr.Load)
		pr.ConnPerSec = float64(pr.loadOK) / pr.loadTime.Seconds()
		r.log.Info("measured", "family", pr.Name, "p50", pct(pr.Lat, 0.5), "conn/s", int(pr.ConnPerSec), "failed", pr.Failed)
	}
	r.rep.families = results
	return nil
}

func (rep *report) writeFamilies(w writer) {
	if len(rep.families) != 2 {
		return
	}
	v4, v6 := rep.families[0], rep.families[1]
	w("## 11. TCP over IPv6 vs IPv4\n\n")
	w("The bench node (section 1's services) with both addresses, %s and %s, compiled with `firewall: nftables`: `portstripe.nft` (one `table inet portstripe`: `ip daddr @node4` / `ip6 daddr @node6` → `tcp dport` map to the frontend) loaded with `nft -f`, and HAProxy on the emitted haproxy.cfg, whose frontends bind on both addresses. ", testbed.NodeAddr, testbed.NodeAddr6)
	w("The same first packets as section 1 on striped ports 443, 1194, 22 and 8443, connecting to the node's IPv4 or IPv6 address, the two families alternated round by round, the one that goes first alternating too (a run right after the other family's burst of connections is slower, whichever family it is) (%d rounds; one client, then %d clients). Backends on 127.0.0.1 for both.\n\n", len(v4.RoundP99), rep.workers())
	w("| family | p50 (1 client) | p99 (1 client) | p50 (%d clients) | p99 (%d clients) | conn/s (%d clients) | × IPv4 | failed |\n|---|---|---|---|---|---|---|---|\n", rep.workers(), rep.workers(), rep.workers())
	for _, p := range rep.families {
		failed := fmt.Sprintf("%d of %d", p.Failed, p.Attempts)
		if len(p.Errors) > 0 {
			failed += fmt.Sprintf(" %v", p.Errors)
		}
		w("| %s | %s | %s | %s | %s | %.0f | %.2f× | %s |\n", p.Name, ms(pct(p.Lat, 0.5)), ms(pct(p.Lat, 0.99)), ms(pct(p.Load, 0.5)), ms(pct(p.Load, 0.99)), p.ConnPerSec, p.ConnPerSec/v4.ConnPerSec, failed)
	}
	w("\nIPv6: %.2f× IPv4's connection rate.\n\n", v6.ConnPerSec/v4.ConnPerSec)
}

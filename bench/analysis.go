package main

import (
	"fmt"
	"strings"
	"time"
)

// cfgDiff lists the lines a variant adds to and removes from the emitted
// haproxy.cfg.
func cfgDiff(base, changed string) (added, removed []string) {
	count := map[string]int{}
	for _, l := range strings.Split(base, "\n") {
		count[l]++
	}
	for _, l := range strings.Split(changed, "\n") {
		if count[l] > 0 {
			count[l]--
			continue
		}
		added = append(added, l)
	}
	for _, l := range strings.Split(base, "\n") {
		if count[l] > 0 {
			count[l]--
			removed = append(removed, l)
		}
	}
	return added, removed
}

// writeTried says what each variant changed and what it bought.
func (rep *report) writeTried(w writer) {
	ps := rep.path("portstripe")
	direct := rep.path("direct")
	if ps == nil || direct == nil {
		return
	}
	w("## What was tried to close the gaps\n\n")
	w("Each variant is the emitted haproxy.cfg with one change, measured like the others in this run (section 1):\n\n")
	w("| variant | p99 added over direct (1 client, unpaired) | conn/s | × direct | × as emitted | bulk MB/s |\n|---|---|---|---|---|---|\n")
	for _, p := range rep.paths {
		if !strings.HasPrefix(p.Name, "portstripe") && p.Name != "DNAT only" {
			continue
		}
		w("| %s | %s | %.0f | %.2f× | %.2f× | %.0f |\n", p.Name, ms(pct(p.Lat, 0.99)-pct(direct.Lat, 0.99)), p.ConnPerSec, p.ConnPerSec/direct.ConnPerSec, p.ConnPerSec/ps.ConnPerSec, p.BulkMBs)
	}
	w("\n")
	for _, vc := range rep.variantCfgs {
		added, removed := cfgDiff(rep.haproxyCfg, vc[1])
		w("`%s` changes haproxy.cfg by:\n\n```diff\n", vc[0])
		for _, l := range removed {
			w("-%s\n", l)
		}
		for _, l := range added {
			w("+%s\n", l)
		}
		w("```\n\n")
	}
	w("%s\n", rep.conclusions())
}

// conclusions turns this run's numbers into the note on each target.
func (rep *report) conclusions() string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	direct, ps, dnat := rep.path("direct"), rep.path("portstripe"), rep.path("DNAT only")
	sel, fork := rep.path("sslh-select"), rep.path("sslh-fork")
	best := rep.best()
	span := func(p *pathResult) string {
		if len(p.RoundP99) == 0 {
			return "–"
		}
		lo, hi := p.RoundP99[0], p.RoundP99[0]
		for _, d := range p.RoundP99 {
			lo, hi = min(lo, d), max(hi, d)
		}
		return ms(lo) + " to " + ms(hi)
	}
	w("### Reading the numbers\n\n")
	w("- **Added set-up latency.** At the median, portstripe adds %s over direct (p50 %s vs %s): one more TCP connection (HAProxy to the backend over loopback), the first bytes inspected and copied twice, two more wake-ups. ",
		ms(pct(ps.Lat, 0.5)-pct(direct.Lat, 0.5)), ms(pct(ps.Lat, 0.5)), ms(pct(direct.Lat, 0.5)))
	w("The p99 is another matter: with one client, direct's own p99 per round ranged from %s (portstripe's: %s) while its p50 is %s. That tail is this %s-core machine's scheduling stalls, and the round-to-round spread is larger than the difference being judged. ",
		span(direct), span(ps), ms(pct(direct.Lat, 0.5)), rep.machine.Cores)
	if pr := rep.pairedRun(false); pr != nil && pr.index("portstripe") > 0 {
		j := pr.index("portstripe")
		pa := pr.P99Added[j]
		w("Compared between separate runs, the p99 target is decided by the machine's noise; so the target uses the paired run (section 1), one client alternating direct, DNAT only and portstripe connection by connection, %d pairs: there portstripe's p99 is %s against direct's %s, %s added [95%% interval %s to %s], %s the 1 ms target; per pair it adds %s at the median and %s at the p99. ",
			pr.Pairs, ms(pct(pr.Lat[j], 0.99)), ms(pct(pr.Lat[0], 0.99)), sms(pa.Add), sms(pa.Lo), sms(pa.Hi), map[bool]string{true: "within", false: "over"}[pa.Add <= time.Millisecond], sms(pct(pr.Added[j], 0.5)), sms(pct(pr.Added[j], 0.99)))
		w("The stalls do not hit every path alike: in the same stretch of time, %.2f%% of portstripe's set-ups took over 1 ms against %.2f%% of direct's, so on shared cores part of the added p99 is the proxy's (one more busy process competing for the %s cores), not only the machine's. ",
			100*over(pr.Lat[j], time.Millisecond), 100*over(pr.Lat[0], time.Millisecond), rep.machine.Cores)
		if pp := rep.pairedRun(true); pp != nil && pp.index("portstripe") > 0 {
			k := pp.index("portstripe")
			pk := pp.P99Added[k]
			w("With the proxy on a core of its own (paired, pinned) the stalls all but vanish (%.2f%% over 1 ms, direct %.2f%%) and portstripe adds %s at the p99 [%s to %s], %s per pair at the median: well within the target when HAProxy does not share a core with the load. ",
				100*over(pp.Lat[k], time.Millisecond), 100*over(pp.Lat[0], time.Millisecond), sms(pk.Add), sms(pk.Lo), sms(pk.Hi), sms(pct(pp.Added[k], 0.5)))
		}
		w("The p50 difference is the proxy's own cost; the p99 on shared cores is what 2 cores shared by the client, the backend and HAProxy give, and what would meet the target there is CPU for HAProxy apart from the load (a core of its own, as pinned), not a change to its configuration.\n")
	} else {
		w("So the p99 target is decided by the machine's noise here; the p50 difference is the proxy's real cost. To judge the p99 target, run the client, the backend and the proxy on dedicated cores (or machines), e.g. `taskset`, on a quiet host.\n")
	}
	if dnat != nil {
		w("- **Connection rate.** The DNAT rule alone reaches %.2f× direct; the HAProxy hop takes that to %.2f× as emitted. ", dnat.ConnPerSec/direct.ConnPerSec, ps.ConnPerSec/direct.ConnPerSec)
		if dnat.ConnPerSec/direct.ConnPerSec < 0.85 {
			w("Most of the gap is NAT and conntrack (per-connection conntrack entries, NAT on every packet), which every iptables-based design pays, sslh's transparent mode included; the HAProxy hop is the smaller part. ")
		}
		w("The load generator, the backend and HAProxy share %s cores, so the rate is bounded by CPU per connection.\n", rep.machine.Cores)
	}
	if sel != nil && fork != nil {
		w("- **Against sslh.** portstripe as emitted makes %.1f× sslh-select's and %.1f× sslh-fork's connections per second (p50 set-up %s against %s select, %s fork). ",
			ps.ConnPerSec/sel.ConnPerSec, ps.ConnPerSec/fork.ConnPerSec, ms(pct(ps.Lat, 0.5)), ms(pct(sel.Lat, 0.5)), ms(pct(fork.Lat, 0.5)))
		w("sslh-select and sslh-fork run without per-connection logging, libwrap checks or forks for SSH (see their settings in section 1), so they measure the proxy. ")
		if cl := rep.path(sslhCmdline); cl != nil {
			w("Started from flags, as Debian's /etc/default/sslh does, sslh-select logs every connection (%d lines in this run), checks hosts.allow/deny and forks for SSH: it makes %.0f connections/s, and portstripe %.1f× that. That is the comparison an operator who installs sslh gets, but the difference is mostly sslh's logging and checks, which its configuration file can switch off. ",
				rep.sslhCmdlineLines, cl.ConnPerSec, ps.ConnPerSec/cl.ConnPerSec)
		}
		if pps, psel, pfork := rep.pinnedPath("portstripe"), rep.pinnedPath("sslh-select"), rep.pinnedPath("sslh-fork"); pps != nil && psel != nil && pfork != nil {
			w("With the proxy alone on a core (pinned table), portstripe makes %.1f× sslh-select and %.1f× sslh-fork: ", pps.ConnPerSec/psel.ConnPerSec, pps.ConnPerSec/pfork.ConnPerSec)
			w("so the gap is not the shared cores. A single-threaded sslh-select on a core does about as little per connection as HAProxy (accept, one read, a probe, connect, copy), and sslh-fork's extra cost is one fork per connection, about 2× here. The 4× of the issue (sslh 1.20 on another machine, perhaps run with its command-line defaults) is not reproduced on this machine against an sslh configured for speed; what would close it is not in portstripe's configuration: HAProxy's per-connection work is already about that of the simplest proxy. ")
		}
		if sel.Failed > 0 {
			w("sslh-select closed %d of %d connections before any answer (%v). That is sslh-select 1.20, not the bench: with strace, when a connection is closed and its descriptor number reused for a new backend socket in the same select() round, sslh-select reads the new socket on the old round's readiness flag, read() returns EAGAIN, and it closes both sides; the client sees EOF. It needs concurrent connections (none with one client, none for sslh-fork or HAProxy on the same clients). ", sel.Failed, sel.Attempts, sel.Errors)
		}
		w("\n")
	}
	if best != nil && best != ps {
		w("- **Best variant: `%s`**, %.2f× direct (as emitted: %.2f×); its bulk throughput is %.0f MB/s (as emitted: %.0f). ", strings.TrimPrefix(best.Name, "portstripe "), best.ConnPerSec/direct.ConnPerSec, ps.ConnPerSec/direct.ConnPerSec, best.BulkMBs, ps.BulkMBs)
		w("Differences of about 10%% between variants are within this machine's run-to-run spread; only a variant that wins in repeated runs is worth an emitter change.\n")
	} else {
		w("- **No variant beat the emitted configuration** in this run.\n")
	}
	if v := rep.path("portstripe nbthread 1"); v != nil {
		w("- **Variants.** `nbthread 1` leaves a core to the client and backend but serialises HAProxy: %.2f× as emitted in conn/s, %.0f vs %.0f MB/s in bulk. ", v.ConnPerSec/ps.ConnPerSec, v.BulkMBs, ps.BulkMBs)
	}
	if v := rep.path("portstripe splice-auto"); v != nil {
		w("`option splice-auto`: %.0f vs %.0f MB/s in bulk; on veth and loopback splicing saves little, it may help on real NICs at high rates. ", v.BulkMBs, ps.BulkMBs)
	}
	if v := rep.path("portstripe defer-accept"); v != nil {
		w("`defer-accept` (one wake-up fewer per connection: accepted with its first bytes in): %.2f× as emitted in conn/s; it would also delay clients that wait for the server to speak first by a SYN-ACK retransmit, so it stays out unless it wins clearly. ", v.ConnPerSec/ps.ConnPerSec)
	}
	w("The emitted frontends fold every signature into one `tcp-request content accept if A || B || …` rule, evaluated once per data chunk (one rule per signature measured 0.70× direct against 0.83× for one rule, in the run that led to the change).\n")
	w("- **Reloads** lose nothing: `expose-fd listeners` hands the listening sockets to the new worker, and `portstripe apply` waits for `show proc` and `show stat` before it returns.\n")
	w("- **Rule count.** Rules grow with ranges and decision lists, never with ports (a striped 1-29999 is one rule per protocol; a naive per-port list is %d rules). In the *ranges* series the ranges of one decision list share `-m multiport --dports` rules (up to 15 ports, a range counting two), so 2-port ranges cost about one rule per 7 ranges per protocol.\n", rep.scale0Naive())
	if n := len(rep.scale); n > 0 {
		var calls, tot float64
		for _, p := range rep.scale {
			done := p.PerRuleDone
			if done == 0 {
				continue
			}
			calls += float64(p.PerRuleCalls)
			tot += float64(p.PerRule)
		}
		w("- **Apply time.** One `iptables-restore` stays far below one go-iptables call per rule: each call is an `iptables` process (about %.1f ms per call on average here), so per-rule apply grows linearly with a large constant, while the restore's cost is mostly fixed up to a few thousand rules. The seed node applies well inside the 100 ms target.\n", tot/calls/1e6)
	}
	if len(rep.udp) == 2 {
		u, p := rep.udp[0], rep.udp[1]
		w("- **UDP.** Classifying the first datagram with u32 runs at %.2f× a plain DNAT rule without timeout stalls (%.0f vs %.0f datagrams/s): the u32 matches are cheap next to conntrack and NAT. Lost datagrams (%d, %d) are not the rules' doing: every flow from one client port is DNATed to the same listener port, so conntrack sees colliding reply tuples, the likely reason a new flow is dropped now and then (the plain rule sends everything to one port, portstripe to two).\n",
			u.PerSecNoLoss/p.PerSecNoLoss, u.PerSecNoLoss, p.PerSecNoLoss, u.Failures, p.Failures)
	}
	return b.String()
}

func (rep *report) scale0Naive() int {
	for _, p := range rep.scale {
		if p.Series == "ranges" && p.X == 1 {
			return p.NaiveRules
		}
	}
	return 0
}

package main

import (
	"context"
	"fmt"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/internal/nodegen"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/nftables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// The classifications the lists section compares, in the order each round
// measures them.
const (
	classNone     = "no classification"
	classIPTables = "iptables"
	classNFTables = "nftables"
)

var classes = []string{classNone, classIPTables, classNFTables}

// How long one lists round lasts at most (a worker that uses up its
// (socket, port) pairs stops sooner).
const listsFull, listsQuick = 2 * time.Second, 400 * time.Millisecond

// The ports a lists run sends to.
const (
	caseLast    = "last range"
	caseTypical = "every dedicated range"
)

// listsRun is one classification at one node size, on one set of ports:
// its new flows per CPU-second in every round (see runUDPPaired).
type listsRun struct {
	Lists     int    // decision lists asked of nodegen.Lists
	PlanLists int    // UDP decision lists in the plan
	Case      string // caseLast or caseTypical
	Ports     string // the destination ports cycled through
	Class     string
	Rates     []float64 // answered datagrams per second, per round
	Ratios    []float64 // Rates over no classification's in the same round
	Attempts  int
	Failures  int
	// DNATPerDatagram is the DNAT rules' packet count over the datagrams
	// sent, for the classification at this node size (both port sets, all
	// rounds): 1 when every datagram was a new, classified flow.
	DNATPerDatagram float64
	Load            time.Duration // loading the classification into an empty namespace
	Rules           int           // rules (iptables) or list-chain rules (nftables) loaded
}

// Rate is the median of the rounds.
func (l listsRun) Rate() float64 { return medianFloat(l.Rates) }

// Ratio is the median of the rounds' ratios to no classification.
func (l listsRun) Ratio() float64 { return medianFloat(l.Ratios) }

// listsBed is one classification's own pair of namespaces, loaded once
// and measured in every round.
type listsBed struct {
	class   string
	pair    *testbed.Pair
	backend *testbed.Proc
	fw      firewall.Backend // nil for no classification
}

// lists measures new UDP flows per CPU-second through no classification,
// portstripe's iptables rules and its nftables table, as the node's
// decision lists grow. Each classification gets a pair of namespaces of its
// own, loaded once per node size, and one client alternates between the
// three datagram by datagram (A B C A B C …, see runUDPPaired), so a slow
// spell of the shared machine lands on all of them alike.
func (r *run) lists(ctx context.Context) error {
	sizes := []int{10, 100, 1000, 10000}
	if r.cfg.quick {
		sizes = []int{10, 1000}
	}
	r.rep.listsLoad[0] = loadAvg()
	for _, n := range sizes {
		if err := r.listsAt(ctx, n); err != nil {
			return fmt.Errorf("%d lists: %w", n, err)
		}
	}
	r.rep.listsLoad[1] = loadAvg()
	return nil
}

func (r *run) listsAt(ctx context.Context, n int) error {
	nd, err := node.Parse([]byte(nodegen.Lists(testbed.NodeAddr.String(), n)), fmt.Sprintf("lists-%d.yaml", n), node.Options{})
	if err != nil {
		return err
	}
	files := map[string]map[string][]byte{}
	var p *plan.Plan
	for _, fw := range []string{node.IPTables, node.NFTables} {
		nd.Firewall = fw
		res, err := compiler.FromNode(nd)
		if err != nil {
			return err
		}
		files[fw], p = res.Files, res.Plan
	}
	// Every datagram is rsa's first packet (see auth below): its listener
	// is the one the backend serves.
	rsa := int(nd.Services[0].UDP)
	// The plan's last UDP range is the last dispatch rule iptables walks
	// to; the dedicated ranges below it are all the others.
	var last plan.Range
	for _, rg := range p.Ranges {
		if rg.Proto == node.UDP && rg.From > last.From {
			last = rg
		}
	}
	var beds []*listsBed
	defer func() {
		for _, b := range beds {
			b.pair.Close()
		}
	}()
	runs := map[string]*listsRun{}
	key := func(c, class string) string { return c + "/" + class }
	cases := []string{caseLast}
	if last.From > 1 {
		cases = append(cases, caseTypical)
	}
	for _, class := range classes {
		b, load, rules, err := r.listsBed(ctx, class, files, rsa)
		if b != nil {
			beds = append(beds, b)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", class, err)
		}
		for _, c := range cases {
			runs[key(c, class)] = &listsRun{Lists: n, PlanLists: len(p.UDPLists()), Case: c, Class: class, Load: load, Rules: rules}
		}
	}
	to := net.JoinHostPort(testbed.NodeAddr.String(), "0")
	// tls-auth datagrams only: every classification then delivers them to
	// rsa's listener, as no classification does. (tls-crypt ones would
	// land on n listeners instead of one, which changes what delivery
	// costs, not what classification does.)
	auth := []Probe{{Name: "openvpn-tls-auth", Addr: to, Packet: r.pk.udpAuth}}
	specs := map[string]ClientSpec{
		caseLast:    {Probes: auth, PortFrom: int(last.From), PortTo: int(last.To)},
		caseTypical: {Probes: auth, PortFrom: 1, PortTo: int(last.From) - 1},
	}
	rounds := r.n(7, 1)
	for round := range rounds {
		for _, c := range cases {
			s := specs[c]
			s.Mode, s.Sockets = "udp-paired", 32
			s.Duration = r.d(listsFull, listsQuick)
			for _, b := range beds {
				s.Paths = append(s.Paths, PairPath{Name: b.class, Netns: string(b.pair.Client), Probes: s.Probes})
			}
			cr, err := r.clientIn(beds[0].pair.Client, s, nil)
			if err != nil {
				return err
			}
			if len(cr.PerPath) != len(beds) {
				return fmt.Errorf("client reported %d paths of %d", len(cr.PerPath), len(beds))
			}
			rates := make([]float64, len(beds))
			for j, t := range cr.PerPath {
				rates[j] = float64(t.Sent) / t.CPU.Seconds()
			}
			for j, b := range beds {
				lr := runs[key(c, b.class)]
				lr.Ports = fmt.Sprintf("%d-%d", s.PortFrom, s.PortTo)
				lr.Rates = append(lr.Rates, rates[j])
				lr.Ratios = append(lr.Ratios, rates[j]/rates[0])
				lr.Attempts += cr.PerPath[j].Sent + cr.PerPath[j].Failures
				lr.Failures += cr.PerPath[j].Failures
				r.log.Info("lists", "lists", n, "ports", c, "class", b.class, "round", round+1, "flows/cpu-s", int(rates[j]), "× none", fmt.Sprintf("%.2f", rates[j]/rates[0]), "failed", cr.PerPath[j].Failures)
			}
		}
	}
	for _, b := range beds {
		dn, err := b.dnatted(ctx, p)
		if err != nil {
			return fmt.Errorf("%s: counters: %w", b.class, err)
		}
		sent := 0
		for _, c := range cases {
			sent += runs[key(c, b.class)].Attempts
		}
		for _, c := range cases {
			runs[key(c, b.class)].DNATPerDatagram = float64(dn) / float64(sent)
		}
		r.log.Info("lists", "lists", n, "class", b.class, "DNATed", dn, "datagrams", sent)
		if dn != uint64(sent) {
			r.log.Warn("not every datagram was a new, classified flow: the rates count some that were not", "lists", n, "class", b.class, "DNATed", dn, "datagrams", sent)
		}
	}
	for _, c := range cases {
		for _, class := range classes {
			r.rep.lists = append(r.rep.lists, *runs[key(c, class)])
		}
	}
	return nil
}

// listsBed makes a pair for one classification: the tiny backend on the
// UDP listener port, then the classification loaded (timed, with the rules
// it holds).
func (r *run) listsBed(ctx context.Context, class string, files map[string]map[string][]byte, listener int) (*listsBed, time.Duration, int, error) {
	pair, err := testbed.NewPair(nsPrefix + "l")
	if err != nil {
		return nil, 0, 0, err
	}
	b := &listsBed{class: class, pair: pair}
	if err := r.tune(pair); err != nil {
		return b, 0, 0, err
	}
	// Flows of the last round have gone when this pair's turn comes again,
	// so a source port the kernel hands out again starts a new flow.
	if err := pair.Node.Sysctl("net.netfilter.nf_conntrack_udp_timeout", "1"); err != nil {
		return b, 0, 0, err
	}
	if b.backend, err = r.startBackend(pair.Node, nil, []int{listener}); err != nil {
		return b, 0, 0, err
	}
	t0 := time.Now()
	var rules int
	switch class {
	case classNone:
		rules = 1
		_, err = pair.Node.Run("iptables", "-t", "nat", "-A", "PREROUTING", "-d", testbed.NodeAddr.String(), "-p", "udp", "--dport", "1:29999",
			"-m", "comment", "--comment", noClassComment, "-j", "DNAT", "--to-destination", ":"+strconv.Itoa(listener))
	case classIPTables:
		if b.fw, err = iptables.NewBackend(iptables.Options{Netns: string(pair.Node)}); err == nil {
			err = b.fw.Apply(ctx, files[node.IPTables])
		}
		rules = countRules(files[node.IPTables][compiler.RulesFile])
	case classNFTables:
		b.fw = nftables.New(nftables.Options{Netns: string(pair.Node)})
		err = b.fw.Apply(ctx, files[node.NFTables])
		rules = strings.Count(string(files[node.NFTables][nftables.File]), " counter ")
	}
	return b, time.Since(t0), rules, err
}

// dnatted is how many datagrams the bed's DNAT rules have taken so far.
// Only a flow's first packet passes the nat table, so this counts new
// flows that were classified. nftables: the backend's Counters (one `nft
// -j list`); iptables: `iptables-save -c`, since the Manager's Counters
// lists chain by chain, one iptables-nft process (reading the whole
// ruleset) per list chain, which takes minutes at 10,000 lists.
func (b *listsBed) dnatted(ctx context.Context, p *plan.Plan) (uint64, error) {
	if b.class == classNFTables {
		cs, err := b.fw.Counters(ctx, p)
		var total uint64
		for _, c := range cs {
			if c.List != "" {
				total += c.Packets
			}
		}
		return total, err
	}
	out, err := b.pair.Node.Run("iptables-save", "-c", "-t", "nat")
	if err != nil {
		return 0, err
	}
	var total uint64
	for _, l := range strings.Split(out, "\n") {
		if !strings.Contains(l, " -j DNAT ") {
			continue
		}
		var pkts, bytes uint64
		if _, err := fmt.Sscanf(l, "[%d:%d]", &pkts, &bytes); err != nil {
			return 0, fmt.Errorf("iptables-save -c: %q: %w", l, err)
		}
		total += pkts
	}
	return total, nil
}

// noClassComment marks the one rule of no classification.
const noClassComment = "bench: no classification"

// listsRun returns the run of class at n lists on ports c, nil if none.
func (rep *report) listsRun(n int, c, class string) *listsRun {
	for i := range rep.lists {
		if l := &rep.lists[i]; l.Lists == n && l.Case == c && l.Class == class {
			return l
		}
	}
	return nil
}

// loadAvg is /proc/loadavg's first three fields: how busy the shared
// machine was.
func loadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "unknown"
	}
	f := strings.Fields(string(b))
	if len(f) < 3 {
		return "unknown"
	}
	return strings.Join(f[:3], " ")
}

func (rep *report) writeLists(w writer) {
	if len(rep.lists) == 0 {
		return
	}
	var sizes []int
	for _, l := range rep.lists {
		if !slices.Contains(sizes, l.Lists) {
			sizes = append(sizes, l.Lists)
		}
	}
	first := rep.lists[0]
	w("## 10. New UDP flows against decision lists: iptables vs nftables\n\n")
	w("Nodes from `nodegen.Lists(n)`: one striped tls-auth instance (rsa) and n-1 tls-crypt instances, each owning a dedicated range of its own, the ranges splitting ports 1-19999 evenly; rsa keeps the rest up to 29999, the plan's last range. ")
	w("Each dedicated range's list tries rsa, then its owner (whose default it is); the striped list tries rsa only. Every point compiles the node once per backend (`compiler.FromNode`) and loads it into a pair of namespaces of its own, with the tiny backend on rsa's listener: ")
	w("**%s**: one rule, `-p udp --dport 1:29999 -j DNAT` to rsa's listener (iptables-nft); **%s**: `rules.v4` loaded by `iptables.NewBackend` (the Manager: one `iptables-restore`, the jumps from PREROUTING and OUTPUT), a dispatch rule per range to the list's chain; **%s**: `portstripe.nft` loaded by `nftables.New` (one `nft -f`), `udp dport vmap @udp_lists` to the list's chain.\n\n", classNone, classIPTables, classNFTables)
	w("One client thread alternates between the three pairs, 32 datagrams at a time (A B C A B C …, the one that goes first rotating), open loop: it has 32 sockets per pair, opened in that pair's client namespace, one source port each, and sends a captured OpenVPN first datagram to each next destination port, moving to the next socket once the ports are used up, so no (source port, destination port) pair repeats in a round and every datagram is a new conntrack flow that goes through the nat table. ")
	w("Through a veth pair the node's whole receive path — conntrack, the nat table with the classification, the DNAT, the backend's socket — runs in the sending thread's softirq, inside its `sendto`; so the thread's CPU time around a pair's batch (`CLOCK_THREAD_CPUTIME_ID`; this kernel has no IRQ time accounting, so softirq work is charged to the thread it runs in) is what that pair's datagrams cost. ")
	w("**Flows per CPU-second** = datagrams sent through a pair over that CPU time: how many new flows one core classifies and delivers per second, the sender's own syscall included.\n\n")
	w("This rather than a closed loop like section 5's: on this shared machine a closed loop's round trip is mostly waiting for the CPU (the backend's and the client's wake-ups behind other work), which hides a cost of microseconds per flow; the CPU time of the thread doing the work does not depend on what else runs. ")
	w("The *DNATed per datagram* column checks that every datagram was a new flow and was classified: the packets the DNAT rules took (their counters, read once after the point's rounds: `iptables-save -c`, the nftables backend's Counters) over the datagrams sent, both port sets together; only a flow's first packet passes the nat table. *Failed*: sends that returned an error.\n\n")
	w("Ports: *%s* cycles through the plan's last UDP range (rsa's), the worst case for iptables, which walks every dispatch rule before it; *%s* cycles through ports 1 to the last range's start, so the dispatch rules walked average out over the table (a typical client: on a port somewhere in the table). ", caseLast, caseTypical)
	w("All datagrams are the captured tls-auth first packet, which every list sends to rsa's listener, so the three deliver to the same socket and differ only in classification (tls-crypt datagrams would spread over n listeners under classification and land on one without it: a difference in delivery, not classification). ")
	w("%d rounds of %s (wall clock) per port set and point; the table gives the median rate over the rounds and the median of the rounds' ratios to no classification. ", len(first.Rates), rep.listsDuration())
	w("The machine: %s cores shared with other work running (load average %s as the section started, %s as it ended), which slows the rounds but moves the CPU cost per flow little (caches shared with other work do move it some); the ratios within one point are what to compare.\n\n", rep.machine.Cores, rep.listsLoad[0], rep.listsLoad[1])
	w("| lists (asked / in plan) | ports | %s flows per CPU-second | %s flows per CPU-second | × none | %s flows per CPU-second | × none | failed (none / iptables / nftables) | DNATed per datagram (none / iptables / nftables) |\n|---|---|---|---|---|---|---|---|---|\n", classNone, classIPTables, classNFTables)
	for _, n := range sizes {
		for _, c := range []string{caseLast, caseTypical} {
			none, ipt, nft := rep.listsRun(n, c, classNone), rep.listsRun(n, c, classIPTables), rep.listsRun(n, c, classNFTables)
			if none == nil || ipt == nil || nft == nil {
				continue
			}
			w("| %d / %d | %s (%s) | %.0f | %.0f | %.2f× | %.0f | %.2f× | %d / %d / %d | %.3f / %.3f / %.3f |\n", n, none.PlanLists, c, none.Ports,
				none.Rate(), ipt.Rate(), ipt.Ratio(), nft.Rate(), nft.Ratio(),
				none.Failures, ipt.Failures, nft.Failures, none.DNATPerDatagram, ipt.DNATPerDatagram, nft.DNATPerDatagram)
		}
	}
	w("\n![new UDP flows per CPU-second against decision lists](bench-lists.png)\n\n")
	w("Loading each point (into empty namespaces, once):\n\n| lists | iptables rules | `iptables.NewBackend` Apply | nftables rules in list chains | `nft -f` |\n|---|---|---|---|---|\n")
	for _, n := range sizes {
		ipt, nft := rep.listsRun(n, caseLast, classIPTables), rep.listsRun(n, caseLast, classNFTables)
		if ipt != nil && nft != nil {
			w("| %d | %d | %s | %d | %s |\n", n, ipt.Rules, ms(ipt.Load), nft.Rules, ms(nft.Load))
		}
	}
	w("\n")
	most := sizes[len(sizes)-1]
	for _, c := range []string{caseLast, caseTypical} {
		none, nft := rep.listsRun(most, c, classNone), rep.listsRun(most, c, classNFTables)
		if none == nil || nft == nil {
			continue
		}
		if most < 10000 {
			w("nftables at %d lists (the most this run measured; the goal is at 10,000), %s: %.2f× no classification.\n", most, c, nft.Ratio())
			continue
		}
		w("Goal (issue 12): nftables ≥ 0.8× no classification at %d lists, %s: %.2f× (rounds: %s) — %s.\n", most, c, nft.Ratio(), ratios(nft.Ratios), verdict(nft.Ratio() >= 0.8))
	}
	w("\n")
}

// ratios lists per-round ratios.
func ratios(rs []float64) string {
	out := make([]string, len(rs))
	for i, r := range rs {
		out[i] = fmt.Sprintf("%.2f", r)
	}
	return strings.Join(out, ", ")
}

// listsDuration is how long each lists run lasted at most.
func (rep *report) listsDuration() time.Duration {
	if rep.quick {
		return listsQuick
	}
	return listsFull
}

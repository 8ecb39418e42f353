package iptables

// Tests against the real kernel. They need root and run only inside network
// namespaces they create and always delete; the only addresses used are
// from 198.51.100.0/24.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/textdiff"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/signature"
)

var (
	nodeAddr   = netip.MustParseAddr("198.51.100.1")
	clientAddr = netip.MustParseAddr("198.51.100.2")
)

func requireRoot(t *testing.T) {
	t.Helper()
	if !isRoot() {
		t.Skip("needs root: creates network namespaces")
	}
	for _, tool := range []string{"ip", "iptables-restore", "iptables-save"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

func run(t *testing.T, stdin []byte, name string, args ...string) []byte {
	t.Helper()
	out, err := OS{}.Run(context.Background(), Command{Name: name, Args: args, Stdin: stdin})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// netns creates a network namespace with lo up, deleted when the test ends.
func netns(t *testing.T, role string) string {
	t.Helper()
	name := fmt.Sprintf("pstest-%s-%d-%d", role, os.Getpid(), time.Now().UnixNano()%1e6)
	run(t, nil, "ip", "netns", "add", name)
	t.Cleanup(func() {
		if _, err := (OS{}).Run(context.Background(), Command{Name: "ip", Args: []string{"netns", "delete", name}}); err != nil {
			t.Errorf("delete network namespace: %v", err)
		}
	})
	run(t, nil, "ip", "-n", name, "link", "set", "lo", "up")
	return name
}

// save returns iptables-save of the nat table without its timestamped
// comment lines.
func save(t *testing.T, ns string) string {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(string(run(t, nil, "ip", "netns", "exec", ns, "iptables-save", "-t", "nat")), "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func TestRestoreTestInNetns(t *testing.T) {
	requireRoot(t)
	ns := netns(t, "restore")
	for _, p := range []*plan.Plan{seedPlan(t), manyRanges(t), dualStackPlan(t)} {
		run(t, Render(p), "ip", "netns", "exec", ns, "iptables-restore", "--test", "--noflush")
	}
	run(t, Render6(dualStackPlan(t)), "ip", "netns", "exec", ns, "ip6tables-restore", "--test", "--noflush")
	// --test does not load; the long comments must load too.
	run(t, Render(manyRanges(t)), "ip", "netns", "exec", ns, "iptables-restore", "--noflush")
}

// TestCheckReportsLine: the kernel rejects a broken rule, and the error
// names the file's line (comment lines count) with its neighbours.
func TestCheckReportsLine(t *testing.T) {
	requireRoot(t)
	m, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	rules := string(Render(seedPlan(t)))
	if err := m.Check(context.Background(), []byte(rules)); err != nil {
		t.Fatalf("Check of the seed rules: %v", err)
	}
	// A jump to a missing chain, which iptables-restore --test lets through.
	lines := strings.Split(rules, "\n")
	at := len(lines) - 2 // before COMMIT
	broken := "-A PORTSTRIPE-UDP -p udp -j PORTSTRIPE-NOWHERE"
	lines = append(lines[:at], append([]string{broken}, lines[at:]...)...)
	err = m.Check(context.Background(), []byte(strings.Join(lines, "\n")))
	var re *RestoreError
	if !errors.As(err, &re) {
		t.Fatalf("Check of a broken file: err = %v, want a RestoreError", err)
	}
	// iptables-nft names the COMMIT line for a missing jump target; the
	// error must still show the rule at fault.
	if re.Line < at+1 || !strings.Contains(err.Error(), "> "+fmt.Sprintf("%4d | ", at+1)+broken) {
		t.Errorf("error does not show line %d:\n%v", at+1, err)
	}
	t.Logf("iptables-restore failure as reported:\n%v", err)

	// A rule iptables rejects while parsing is named by its own line.
	lines = strings.Split(rules, "\n")
	broken = "-A PORTSTRIPE-UDP -p udp -m u32 --u32 \"0>>22&0x3C@4>>16=\" -j RETURN"
	lines = append(lines[:at], append([]string{broken}, lines[at:]...)...)
	err = m.Check(context.Background(), []byte(strings.Join(lines, "\n")))
	if !errors.As(err, &re) || re.Line != at+1 {
		t.Errorf("bad u32 rule on line %d: err = %v", at+1, err)
	}
}

// TestApplyCleanInKernel: apply is idempotent, swaps lists without leaving
// stale chains, rolls back from Observe, and Clean leaves nothing.
func TestApplyCleanInKernel(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	ns := netns(t, "apply")
	// Another tool's rule in PREROUTING must survive everything.
	run(t, nil, "ip", "netns", "exec", ns, "iptables", "-t", "nat", "-A", "PREROUTING", "-p", "tcp", "--dport", "7", "-j", "RETURN")
	before := save(t, ns)

	m, err := New(Options{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	p := seedPlan(t)
	rules := Render(p)
	if err := m.Apply(ctx, rules); err != nil {
		t.Fatal(err)
	}
	first := save(t, ns)
	if err := m.Apply(ctx, rules); err != nil {
		t.Fatal(err)
	}
	if second := save(t, ns); second != first {
		t.Errorf("second apply changed iptables-save:\n%s", textdiff.Unified(first, second))
	}
	for _, h := range Hooks {
		if n := strings.Count(first, "-A "+string(h)+" -m comment --comment portstripe -j PORTSTRIPE"); n != 1 {
			t.Errorf("%d jumps from %s, want 1", n, h)
		}
	}
	if !strings.Contains(first, "-A PREROUTING -m comment --comment portstripe -j PORTSTRIPE\n-A PREROUTING -p tcp") {
		t.Errorf("jump is not first in PREROUTING:\n%s", first)
	}

	obs, err := m.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cur := obs.Rules
	if len(obs.MissingJumps) > 0 {
		t.Errorf("Observe after Apply misses the jumps from %q", obs.MissingJumps)
	}
	canon, err := m.Canonical(ctx, rules)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(cur, canon) {
		t.Errorf("Observe after Apply differs from Canonical:\n%s", textdiff.Unified(string(canon), string(cur)))
	}

	// A changed striped list gets a new chain; the old one goes.
	p2 := seedPlan(t)
	p2.Lists[0].Default = p2.Lists[0].Decisions[0].Target
	if err := m.Apply(ctx, Render(p2)); err != nil {
		t.Fatal(err)
	}
	after := save(t, ns)
	oldChain, newChain := string(ListChain(p.Lists[0])), string(ListChain(p2.Lists[0]))
	if strings.Contains(after, oldChain) || !strings.Contains(after, newChain) {
		t.Errorf("after changing the list, want %s gone and %s present:\n%s", oldChain, newChain, after)
	}

	// Rolling back to what Observe returned restores the first state.
	if err := m.Apply(ctx, cur); err != nil {
		t.Fatal(err)
	}
	if got := save(t, ns); got != first {
		t.Errorf("rollback did not restore the first state:\n%s", textdiff.Unified(first, got))
	}

	if err := m.Clean(ctx); err != nil {
		t.Fatal(err)
	}
	got := save(t, ns)
	if strings.Contains(got, "PORTSTRIPE") {
		t.Errorf("Clean left portstripe rules:\n%s", got)
	}
	if got != before {
		t.Errorf("Clean did not return to the state before Apply:\n%s", textdiff.Unified(before, got))
	}
	if obs, err := m.Observe(ctx); err != nil || obs.Rules != nil {
		t.Errorf("Observe after Clean = %q, %v; want nothing", obs.Rules, err)
	}
	if err := m.Clean(ctx); err != nil {
		t.Errorf("second Clean: %v", err)
	}
}

// TestMarksInKernel: a transparent node's mangle chain and its jump from
// mangle OUTPUT are applied once, observed, missed when the jump goes, and
// removed by an apply without transparent backends and by Clean.
func TestMarksInKernel(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	ns := netns(t, "marks")
	m, err := New(Options{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	mangle := func() string { return string(run(t, nil, "ip", "netns", "exec", ns, "iptables-save", "-t", "mangle")) }
	rules := Render(transparentPlan(t))
	for range 2 {
		if err := m.Apply(ctx, rules); err != nil {
			t.Fatal(err)
		}
	}
	got := mangle()
	if n := strings.Count(got, "-A OUTPUT -m comment --comment portstripe -j PORTSTRIPE-MARK"); n != 1 {
		t.Errorf("%d jumps from mangle OUTPUT, want 1:\n%s", n, got)
	}
	for _, want := range []string{
		`-A PORTSTRIPE-MARK -s 203.0.113.20/32 -p tcp -m tcp --sport 1194 -m comment --comment "vpn: transparent, replies to HAProxy" -j MARK --set-xmark 0x5053/0xffffffff`,
		`-A PORTSTRIPE-MARK -s 203.0.113.20/32 -p tcp -m tcp --sport 22 -m comment --comment "ssh: transparent, replies to HAProxy" -j MARK --set-xmark 0x5053/0xffffffff`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("mangle table lacks %s:\n%s", want, got)
		}
	}
	obs, err := m.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	canon, err := m.Canonical(ctx, rules)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(obs.Rules, canon) || obs.MissingMarkJump {
		t.Errorf("Observe after Apply (missing mark jump %v) differs from Canonical:\n%s", obs.MissingMarkJump, textdiff.Unified(string(canon), string(obs.Rules)))
	}
	run(t, nil, "ip", "netns", "exec", ns, "iptables", "-t", "mangle", "-F", "OUTPUT")
	if obs, _ := m.Observe(ctx); !obs.MissingMarkJump {
		t.Error("Observe after flushing mangle OUTPUT does not miss the mark jump")
	}
	if err := m.Apply(ctx, Render(seedPlan(t))); err != nil {
		t.Fatal(err)
	}
	if got := mangle(); strings.Contains(got, "PORTSTRIPE") {
		t.Errorf("an apply without transparent backends left marks:\n%s", got)
	}
	if err := m.Apply(ctx, rules); err != nil {
		t.Fatal(err)
	}
	if err := m.Clean(ctx); err != nil {
		t.Fatal(err)
	}
	if got := mangle() + save(t, ns); strings.Contains(got, "PORTSTRIPE") {
		t.Errorf("Clean left portstripe rules:\n%s", got)
	}
}

// arrival is a datagram received on one port of the node namespace.
type arrival struct {
	port    int
	payload []byte
}

// TestClassifyInKernel sends every captured UDP first packet from a client
// namespace to the node namespace, where the seed rules are applied, and
// checks the port it arrives on against plan.Route, then the rule counters.
// Over IPv4 the datagrams go with and without IP options (the checks skip
// the header by its IHL); over IPv6 (rules.v6 through ip6tables) with and
// without a destination options header, behind which nothing is diverted:
// the documented limit of u32 at the fixed 40-byte header.
func TestClassifyInKernel(t *testing.T) {
	requireRoot(t)
	files, _ := filepath.Glob(filepath.Join(firstPackets, "udp-*.hex"))
	if len(files) == 0 {
		t.Skipf("no fixtures in %s", firstPackets)
	}
	for _, f := range []classifyFamily{
		{
			family: node.IPv4, node: nodeAddr, client: clientAddr, bits: 24,
			tool: "iptables", header: "with IP options", headerCount: "0>>24&0xF=6",
			// NOP, NOP, NOP, end of options: IHL 6.
			opt: sockopt{syscall.IPPROTO_IP, syscall.IP_OPTIONS, "\x01\x01\x01\x00"},
		},
		{
			family: node.IPv6, node: nodeAddr6, client: clientAddr6, bits: 64,
			tool: "ip6tables", header: "behind a destination options header", headerCount: "4>>8&0xFF=60", headerUndiverted: true,
			// Next header (set by the kernel), length 0 (8 bytes): a
			// skippable option 0x1e with 2 bytes, then PadN of 0. Linux
			// drops a header whose padding runs past 7 bytes.
			opt: sockopt{syscall.IPPROTO_IPV6, syscall.IPV6_DSTOPTS, "\x00\x00\x1e\x02\x00\x00\x01\x00"},
		},
	} {
		t.Run(string(f.family), func(t *testing.T) { classifyInKernel(t, files, f) })
	}
}

var (
	nodeAddr6   = netip.MustParseAddr("2001:db8:5053::1")
	clientAddr6 = netip.MustParseAddr("2001:db8:5053::2")
)

// classifyFamily is what TestClassifyInKernel needs of one address family.
type classifyFamily struct {
	family       node.Family
	node, client netip.Addr
	bits         int
	tool         string // iptables or ip6tables
	// header is a variant of the datagrams with more header (IP options,
	// an extension header), made by opt and counted on arrival by the
	// u32 test headerCount; headerUndiverted says no rule may divert it.
	header           string
	opt              sockopt
	headerCount      string
	headerUndiverted bool
}

// sockopt is a socket option set on the client's socket.
type sockopt struct {
	level, name int
	value       string
}

// vethPair makes a node and a client namespace joined by a veth pair with
// the family's addresses, deleted when the test ends.
func vethPair(t *testing.T, fam classifyFamily) (nodeNS, clientNS string) {
	t.Helper()
	nodeNS, clientNS = netns(t, "node"), netns(t, "client")
	suffix := fmt.Sprint(os.Getpid() % 100000)
	run(t, nil, "ip", "link", "add", "psn"+suffix, "netns", nodeNS, "type", "veth", "peer", "name", "psc"+suffix, "netns", clientNS)
	// nodad: an IPv6 address is usable at once.
	run(t, nil, "ip", "-n", nodeNS, "addr", "add", fmt.Sprintf("%s/%d", fam.node, fam.bits), "dev", "psn"+suffix, "nodad")
	run(t, nil, "ip", "-n", clientNS, "addr", "add", fmt.Sprintf("%s/%d", fam.client, fam.bits), "dev", "psc"+suffix, "nodad")
	run(t, nil, "ip", "-n", nodeNS, "link", "set", "psn"+suffix, "up")
	run(t, nil, "ip", "-n", clientNS, "link", "set", "psc"+suffix, "up")
	return nodeNS, clientNS
}

// listenUDP listens on each port of addr in the namespace and reports each
// datagram that arrives.
func listenUDP(t *testing.T, ns string, addr netip.Addr, ports []int) <-chan arrival {
	t.Helper()
	arrivals := make(chan arrival, 16)
	for _, port := range ports {
		var conn *net.UDPConn
		if err := InNetns(ns, func() (err error) {
			conn, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.AddrPortFrom(addr, uint16(port))))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		go func() {
			buf := make([]byte, 2048)
			for {
				n, err := conn.Read(buf)
				if err != nil {
					return
				}
				arrivals <- arrival{port, bytes.Clone(buf[:n])}
			}
		}()
	}
	return arrivals
}

func classifyInKernel(t *testing.T, files []string, fam classifyFamily) {
	ctx := context.Background()
	nodeNS, clientNS := vethPair(t, fam)

	// The seed node with a UDP default on the striped ports: a datagram
	// that no signature takes still lands elsewhere than its port, so a
	// rule diverting what it should not shows.
	n, err := node.Load(node.Options{Set: map[string]string{"defaults.udp": "openvpn_rsa"}})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(n)
	if err != nil {
		t.Fatal(err)
	}
	p.Node.Addresses = []netip.Addr{nodeAddr, nodeAddr6}
	m, err := New(Options{Netns: nodeNS, IPv6: fam.family == node.IPv6})
	if err != nil {
		t.Fatal(err)
	}
	rules := Render(p)
	if fam.family == node.IPv6 {
		rules = Render6(p)
		run(t, rules, "ip", "netns", "exec", nodeNS, "ip6tables-restore", "--test", "--noflush")
	}
	if err := m.Apply(ctx, rules); err != nil {
		t.Fatal(err)
	}

	// Counts the datagrams that really carry the extra header.
	run(t, nil, "ip", "netns", "exec", nodeNS, fam.tool, "-t", "mangle", "-A", "PREROUTING", "-p", "udp",
		"-m", "u32", "--u32", fam.headerCount, "-m", "comment", "--comment", "more header")

	ports := []int{1, 443, 5060, 5061, 5062, 29999, 30000}
	arrivals := listenUDP(t, nodeNS, fam.node, ports)

	// Expected rule counters, from the plan's lists.
	want := map[string]uint64{}
	sent, withHeader := 0, uint64(0)
	for _, f := range files {
		captured := readFixture(t, f)
		// A client that appends fields to the first packet 2.6 sends
		// (2.4/2.5/3 may) lands where the 2.6 client does.
		appended := append(bytes.Clone(captured), bytes.Repeat([]byte{0xa5}, 16)...)
		for _, port := range ports {
			for _, variant := range []struct {
				what    string
				payload []byte
				header  bool
			}{{"", captured, false}, {" " + fam.header, captured, true}, {" with 16 bytes appended", appended, false}} {
				payload := variant.payload
				if variant.what != "" && port != 1 && port != 5061 {
					continue
				}
				name := fmt.Sprintf("%s to udp %d%s", filepath.Base(f), port, variant.what)
				route := p.Route(node.UDP, uint16(port), payload)
				wantPort := port // undiverted
				diverted := route.Service != plan.None && !(variant.header && fam.headerUndiverted)
				if diverted {
					ap, err := netip.ParseAddrPort(route.Target)
					if err != nil {
						t.Fatalf("%s: route target %q: %v", name, route.Target, err)
					}
					wantPort = int(ap.Port())
				}
				var opt *sockopt
				if variant.header {
					opt = &fam.opt
					withHeader++
				}
				// A source port of its own per datagram: one the kernel
				// picked again for the same destination port would ride
				// an earlier datagram's conntrack entry (and its DNAT)
				// instead of meeting the rules.
				if err := sendUDP(clientNS, 20000+sent, netip.AddrPortFrom(fam.node, uint16(port)), payload, opt); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				sent++
				select {
				case a := <-arrivals:
					if a.port != wantPort || !bytes.Equal(a.payload, payload) {
						t.Errorf("%s arrived on %d, want %d (%s via %s)", name, a.port, wantPort, route.Service, route.Via)
					}
				case <-time.After(3 * time.Second):
					t.Errorf("%s did not arrive (want port %d)", name, wantPort)
				}
				if c, ok := expectedRule(p, port, payload); ok && diverted {
					want[c]++
				}
			}
		}
	}

	counters, err := m.Counters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, c := range counters {
		if strings.HasPrefix(c.Chain, ListChainPrefix) {
			got[c.Chain+" "+c.Comment] = c.Packets
		}
	}
	for k, n := range want {
		if got[k] != n {
			t.Errorf("counter of %q = %d, want %d", k, got[k], n)
		}
	}
	for k, n := range got {
		if want[k] == 0 && n != 0 {
			t.Errorf("counter of %q = %d, want 0", k, n)
		}
	}
	arrived := uint64(0)
	for _, c := range savedCounters(t, nodeNS, fam.tool, "mangle") {
		if c.Comment == "more header" {
			arrived = c.Packets
		}
	}
	if arrived != withHeader {
		t.Errorf("%d datagrams arrived %s, want %d", arrived, fam.header, withHeader)
	}
	t.Logf("expected rule hits: %v", want)
	t.Logf("%d datagrams over %s classified by the kernel as plan.Route says (%d %s)", sent, fam.family, withHeader, fam.header)
}

// savedCounters reads the counters of a table's commented rules in ns
// (tool -v -S).
func savedCounters(t *testing.T, ns, tool, table string) []Counter {
	t.Helper()
	var out []Counter
	for _, l := range strings.Split(string(run(t, nil, "ip", "netns", "exec", ns, tool, "-t", table, "-v", "-S")), "\n") {
		c, ok, err := parseCounter(l)
		if err != nil {
			t.Fatal(err)
		}
		if ok {
			out = append(out, c)
		}
	}
	return out
}

// expectedRule names the list-chain rule ("chain comment") that should take
// a first packet, from the plan's lists.
func expectedRule(p *plan.Plan, port int, payload []byte) (string, bool) {
	r, ok := p.Range(node.UDP, uint16(port))
	if !ok {
		return "", false
	}
	l := p.Lists[r.List]
	for _, d := range l.Decisions {
		if d.Signature.Match(payload) == signature.Match {
			return string(ListChain(l)) + " " + DecisionComment(l, d), true
		}
	}
	if l.Default.Rejects() {
		return "", false
	}
	return string(ListChain(l)) + " " + DefaultComment(l), true
}

// sendUDP sends one datagram from a fresh socket in the client namespace
// (a fresh source port, so a new conntrack flow and a new NAT decision),
// with opt set on the socket when given: the kernel then builds IP options
// or an IPv6 extension header, no raw socket needed.
func sendUDP(clientNS string, srcPort int, dst netip.AddrPort, payload []byte, opt *sockopt) error {
	return InNetns(clientNS, func() error {
		conn, err := net.DialUDP("udp", &net.UDPAddr{Port: srcPort}, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer conn.Close()
		if opt != nil {
			raw, err := conn.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := raw.Control(func(fd uintptr) {
				serr = syscall.SetsockoptString(int(fd), opt.level, opt.name, opt.value)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set socket option %d/%d: %w", opt.level, opt.name, serr)
			}
		}
		_, err = conn.Write(payload)
		return err
	})
}

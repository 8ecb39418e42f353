package nftables

// Tests against the real kernel. They need root and run only inside network
// namespaces they create and always delete; the only addresses used are
// from 198.51.100.0/24 and 2001:db8::/32.

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/internal/nodegen"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/internal/testplan"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/signature"
)

// The IPv6 addresses of the test pair (documentation prefix).
var (
	nodeAddr6   = netip.MustParseAddr("2001:db8:5::2")
	clientAddr6 = netip.MustParseAddr("2001:db8:5::1")
)

const firstPackets = "../fixtures/first-packets"

// pair creates a client and a node namespace joined by a veth pair, with
// an IPv4 and an IPv6 address on each side, deleted when the test ends.
func pair(t *testing.T) *testbed.Pair {
	t.Helper()
	p := testenv.Pair(t, "psnft")
	for _, s := range []struct {
		ns   testbed.Netns
		dev  string
		addr netip.Addr
	}{{p.Client, p.ClientVeth, clientAddr6}, {p.Node, p.NodeVeth, nodeAddr6}} {
		// nodad: usable at once (SPEC).
		if out, err := s.ns.Run("ip", "addr", "add", s.addr.String()+"/64", "dev", s.dev, "nodad"); err != nil {
			t.Fatalf("add %s: %v: %s", s.addr, err, out)
		}
	}
	return p
}

func mustRun(t *testing.T, ns testbed.Netns, name string, args ...string) string {
	t.Helper()
	out, err := ns.Run(name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// dualStack is the seed plan on the test pair's node addresses, both
// families.
func dualStack(t testing.TB) *plan.Plan {
	p := nodePlan(t, "")
	p.Node.Addresses = []netip.Addr{testbed.NodeAddr, nodeAddr6}
	return p
}

var files = RenderFiles

// TestObserveInKernel: what Apply installs, Observe shows as Canonical
// and Parse say; applying again changes nothing; Restore puts an observed
// table back; the table survives an iptables flush, not `nft flush
// ruleset`; Clean leaves no table, and cleaning twice is no error.
func TestObserveInKernel(t *testing.T) {
	testenv.Require(t, "nft")
	ctx := context.Background()
	ns := testenv.Netns(t, "nft")
	b := New(Options{Netns: string(ns)})
	for _, c := range []struct{ name, node string }{
		{"seed", ""}, {"ssh-tls", "fixtures/ssh-tls-node.yaml"}, {"transparent", "fixtures/transparent-node.yaml"},
		{"dual-stack", "fixtures/dual-stack-node.yaml"},
		{"kinds", "fixtures/kinds-node.yaml"},
	} {
		p := nodePlan(t, c.node)
		if c.name == "seed" {
			p.Node.Addresses = append(p.Node.Addresses, nodeAddr6)
		}
		f := files(p)
		mustRunIn(t, ns, f[File], "nft", "-c", "-f", "-")
		if err := b.Apply(ctx, f); err != nil {
			t.Fatalf("%s: %v", c.name, err)
		}
		obs, err := b.Observe(ctx)
		if err != nil {
			t.Fatal(err)
		}
		canon, err := b.Canonical(ctx, f)
		if err != nil {
			t.Fatal(err)
		}
		if !obs.Equal(canon) {
			t.Errorf("%s: Observe after Apply differs from Canonical:\n%s", c.name, strings.Join(firewall.Diff(canon, obs), "\n"))
		}
		if parsed := b.Parse(f); !parsed.Equal(canon) {
			t.Errorf("%s: Parse differs from Canonical:\n%s", c.name, strings.Join(firewall.Diff(canon, parsed), "\n"))
		}
		if err := b.Apply(ctx, f); err != nil {
			t.Fatal(err)
		}
		if again, _ := b.Observe(ctx); !again.Equal(obs) {
			t.Errorf("%s: a second Apply changed the table:\n%s", c.name, strings.Join(firewall.Diff(obs, again), "\n"))
		}
	}

	p := dualStack(t)
	if err := b.Apply(ctx, files(p)); err != nil {
		t.Fatal(err)
	}
	was, err := b.Observe(ctx)
	if err != nil {
		t.Fatal(err)
	}
	// A changed striped list gets a new chain; the old one goes.
	p2 := dualStack(t)
	p2.Lists[0].Default = p2.Lists[0].Decisions[0].Target
	if err := b.Apply(ctx, files(p2)); err != nil {
		t.Fatal(err)
	}
	changed, _ := b.Observe(ctx)
	names := func(s firewall.State) (out []string) {
		for _, c := range s.Chains {
			out = append(out, c.Name)
		}
		return out
	}
	if n := names(changed); slices.Contains(n, ListChain(p.Lists[0])) || !slices.Contains(n, ListChain(p2.Lists[0])) {
		t.Errorf("after changing the list, want %s gone and %s there: %v", ListChain(p.Lists[0]), ListChain(p2.Lists[0]), n)
	}
	if err := b.Restore(ctx, was); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Observe(ctx); !got.Equal(was) {
		t.Errorf("Restore did not put the observed table back:\n%s", strings.Join(firewall.Diff(was, got), "\n"))
	}

	// Other tools' iptables flushes do not reach our table.
	for _, cmd := range [][]string{{"iptables", "-t", "nat", "-F"}, {"iptables", "-t", "mangle", "-F"}, {"ip6tables", "-t", "nat", "-F"}} {
		mustRun(t, ns, cmd[0], cmd[1:]...)
	}
	if got, _ := b.Observe(ctx); !got.Equal(was) {
		t.Errorf("iptables flushes changed our table:\n%s", strings.Join(firewall.Diff(was, got), "\n"))
	}

	mustRun(t, ns, "nft", "flush", "ruleset")
	if got, err := b.Observe(ctx); err != nil || got.Installed() {
		t.Errorf("Observe after nft flush ruleset = %v, %v; want not installed", got.Chains, err)
	}
	if err := b.Restore(ctx, was); err != nil {
		t.Fatal(err)
	}
	if err := b.Clean(ctx); err != nil {
		t.Fatal(err)
	}
	if out := mustRun(t, ns, "nft", "list", "tables"); strings.Contains(out, Table) {
		t.Errorf("Clean left the table: %s", out)
	}
	if got, err := b.Observe(ctx); err != nil || got.Installed() {
		t.Errorf("Observe after Clean = %v, %v; want not installed", got.Chains, err)
	}
	if err := b.Clean(ctx); err != nil {
		t.Errorf("second Clean: %v", err)
	}
	// Restoring "nothing was installed" cleans.
	if err := b.Apply(ctx, files(p)); err != nil {
		t.Fatal(err)
	}
	if err := b.Restore(ctx, firewall.State{}); err != nil {
		t.Fatal(err)
	}
	if got, _ := b.Observe(ctx); got.Installed() {
		t.Errorf("Restore of an empty state left %v", got.Chains)
	}
}

// TestApplyReportsLine: nft refuses a broken file as a whole, naming the
// line, and the table in place stays.
func TestApplyReportsLine(t *testing.T) {
	testenv.Require(t, "nft")
	ctx := context.Background()
	ns := testenv.Netns(t, "nft")
	b := New(Options{Netns: string(ns)})
	good := files(dualStack(t))
	if err := b.Apply(ctx, good); err != nil {
		t.Fatal(err)
	}
	was, _ := b.Observe(ctx)
	broken := bytes.Replace(good[File], []byte("counter dnat to :443"), []byte("counter dnat to :nowhere"), 1)
	err := b.Apply(ctx, map[string][]byte{File: broken})
	if err == nil {
		t.Fatal("Apply of a broken file succeeded")
	}
	line := 1 + bytes.Count(broken[:bytes.Index(broken, []byte(":nowhere"))], []byte("\n"))
	if !strings.Contains(err.Error(), fmt.Sprintf("%s:%d:", File, line)) {
		t.Errorf("error does not name line %d: %v", line, err)
	}
	t.Logf("nft's refusal as reported:\n%v", err)
	if got, _ := b.Observe(ctx); !got.Equal(was) {
		t.Errorf("a failed Apply changed the table:\n%s", strings.Join(firewall.Diff(was, got), "\n"))
	}
	if _, err := b.Canonical(ctx, map[string][]byte{File: broken}); err == nil {
		t.Error("Canonical of a broken file succeeded")
	}
}

func mustRunIn(t *testing.T, ns testbed.Netns, stdin []byte, name string, args ...string) {
	t.Helper()
	cmd := ns.Command(name, args...)
	cmd.Stdin = bytes.NewReader(stdin)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
}

// variant is one way a captured first packet is sent.
type variant struct {
	what    string
	family  string // "udp4" or "udp6"
	payload []byte
	// opt is a socket option that makes the kernel add IP options or an
	// IPv6 extension header, with its value.
	level, opt int
	value      string
}

// The headers the kernel test adds. IPv4: NOP, NOP, NOP, end of options
// (IHL 6). IPv6: an 8-byte destination (or hop-by-hop) options header
// holding one skippable experimental option (type 0x1e, 4 bytes), not
// PadN: Linux drops a packet whose PadN is longer than 7 bytes.
const (
	ipOptions  = "\x01\x01\x01\x00"
	ipv6ExtOpt = "\x00\x00\x1e\x04\x00\x00\x00\x00"
)

// TestClassifyInKernel sends every captured UDP first packet from the
// client namespace to the node namespace, where the dual-stack seed table
// is applied, over IPv4 and IPv6, with IP options and with IPv6
// extension headers, and checks the port it arrives on against
// plan.Route, then the rule counters; and that TCP reaches the frontend
// port while a reserved port is left alone.
func TestClassifyInKernel(t *testing.T) {
	testenv.Require(t, "nft")
	packets, _ := filepath.Glob(filepath.Join(firstPackets, "udp-*.hex"))
	if len(packets) == 0 {
		t.Fatalf("no fixtures in %s", firstPackets)
	}
	ctx := context.Background()
	tp := pair(t)
	p := dualStack(t)
	b := New(Options{Netns: string(tp.Node)})
	if err := b.Apply(ctx, files(p)); err != nil {
		t.Fatal(err)
	}
	// Counts the datagrams that really carry IP options or extension
	// headers, before any NAT; UDP only, since the kernel's own MLD
	// reports carry a hop-by-hop header too.
	probe := `table inet probe {
	chain pre {
		type filter hook prerouting priority raw; policy accept;
		meta l4proto udp ip hdrlength 6 counter comment "ipopts"
		meta l4proto udp exthdr dst exists counter comment "dstopts"
		meta l4proto udp exthdr hbh exists counter comment "hbhopts"
	}
}
`
	mustRunIn(t, tp.Node, []byte(probe), "nft", "-f", "-")

	ports := []int{1, 443, 5060, 5061, 5062, 29999, 30000}
	arrivals := listenUDP(t, tp.Node, ports)

	want := map[string]uint64{}
	headers := map[string]uint64{}
	sent := 0
	for _, f := range packets {
		captured := readFixture(t, f)
		appended := append(bytes.Clone(captured), bytes.Repeat([]byte{0xa5}, 16)...)
		variants := []variant{
			{what: "IPv4", family: "udp4", payload: captured},
			{what: "IPv4 with IP options", family: "udp4", payload: captured, level: syscall.IPPROTO_IP, opt: syscall.IP_OPTIONS, value: ipOptions},
			{what: "IPv4, 16 bytes appended", family: "udp4", payload: appended},
			{what: "IPv6", family: "udp6", payload: captured},
			{what: "IPv6 with a destination options header", family: "udp6", payload: captured, level: syscall.IPPROTO_IPV6, opt: syscall.IPV6_DSTOPTS, value: ipv6ExtOpt},
			{what: "IPv6 with a hop-by-hop options header", family: "udp6", payload: captured, level: syscall.IPPROTO_IPV6, opt: syscall.IPV6_HOPOPTS, value: ipv6ExtOpt},
		}
		for _, port := range ports {
			for i, v := range variants {
				if i%3 != 0 && port != 1 && port != 5061 {
					continue
				}
				name := fmt.Sprintf("%s to udp %d over %s", filepath.Base(f), port, v.what)
				route := p.Route(node.UDP, uint16(port), v.payload)
				wantPort := port // undiverted
				if route.Service != plan.None {
					ap, err := netip.ParseAddrPort(route.Target)
					if err != nil {
						t.Fatalf("%s: route target %q: %v", name, route.Target, err)
					}
					wantPort = int(ap.Port())
				}
				// A source port of its own per datagram: a new conntrack
				// flow, so a new NAT decision.
				if err := sendUDP(tp.Client, v, 20000+sent, port); err != nil {
					t.Fatalf("%s: %v", name, err)
				}
				sent++
				switch v.opt {
				case syscall.IP_OPTIONS:
					headers["ipopts"]++
				case syscall.IPV6_DSTOPTS:
					headers["dstopts"]++
				case syscall.IPV6_HOPOPTS:
					headers["hbhopts"]++
				}
				select {
				case a := <-arrivals:
					if a.port != wantPort || !bytes.Equal(a.payload, v.payload) {
						t.Errorf("%s arrived on %d, want %d (%s via %s)", name, a.port, wantPort, route.Service, route.Via)
					}
				case <-time.After(3 * time.Second):
					t.Errorf("%s did not arrive (want port %d)", name, wantPort)
				}
				if c, ok := expectedRule(p, port, v.payload); ok {
					want[c]++
				}
			}
		}
	}

	counters, err := b.Counters(ctx, p)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for _, c := range counters {
		if c.Chain == ChainNode {
			continue // the TCP rule
		}
		got[c.Chain+" "+c.Comment] = c.Packets
		l := slices.IndexFunc(p.Lists, func(l plan.List) bool { return ListChain(l) == c.Chain })
		if l < 0 || p.Lists[l].Name != c.List || c.Service == "" || c.Rule == "" {
			t.Errorf("counter %+v does not name its list, service and rule", c)
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
	out, err := tp.Node.Run("nft", "-j", "list", "table", "inet", "probe")
	if err != nil {
		t.Fatal(err)
	}
	l, err := decodeListing([]byte(out))
	if err != nil {
		t.Fatal(err)
	}
	for what, n := range headers {
		i := slices.IndexFunc(l.counters(), func(c firewall.Counter) bool { return c.Comment == what })
		if i < 0 || l.counters()[i].Packets != n {
			t.Errorf("%s: counters %+v, want %d packets", what, l.counters(), n)
		}
	}
	t.Logf("%d datagrams classified as plan.Route says; headers seen: %v", sent, headers)

	checkTCP(t, tp)
}

// checkTCP: a TCP connection to a striped port reaches its frontend's
// port, over both families; one to a reserved port reaches that port.
func checkTCP(t *testing.T, tp *testbed.Pair) {
	for _, c := range []struct {
		port, want int
	}{{1, 20000}, {5061, 20001}, {29999, 20000}, {30000, 30000}} {
		var ln net.Listener
		if err := tp.Node.Do(func() (err error) {
			ln, err = net.Listen("tcp", fmt.Sprintf(":%d", c.want))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		for _, addr := range []netip.Addr{testbed.NodeAddr, nodeAddr6} {
			accepted := make(chan error, 1)
			go func() {
				conn, err := ln.Accept()
				if err == nil {
					conn.Close()
				}
				accepted <- err
			}()
			to := netip.AddrPortFrom(addr, uint16(c.port)).String()
			if err := tp.Client.Do(func() error {
				conn, err := net.DialTimeout("tcp", to, 3*time.Second)
				if err != nil {
					return err
				}
				return conn.Close()
			}); err != nil {
				t.Errorf("tcp to %s (want port %d): %v", to, c.want, err)
				continue
			}
			if err := <-accepted; err != nil {
				t.Errorf("tcp to %s: accept on %d: %v", to, c.want, err)
			}
		}
		ln.Close()
	}
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
			return ListChain(l) + " " + DecisionComment(l, d), true
		}
	}
	if l.Default.Rejects() {
		return "", false
	}
	return ListChain(l) + " " + DefaultComment(l), true
}

// sendUDP sends one datagram from a fresh socket in the client namespace,
// with the variant's IP options or extension header.
// arrival is a datagram received on one port of the node namespace.
type arrival struct {
	port    int
	payload []byte
}

// listenUDP listens on each port (both families) in the namespace and
// reports each datagram that arrives.
func listenUDP(t *testing.T, ns testbed.Netns, ports []int) <-chan arrival {
	t.Helper()
	arrivals := make(chan arrival, 16)
	for _, port := range ports {
		var conn *net.UDPConn
		if err := ns.Do(func() (err error) {
			conn, err = net.ListenUDP("udp", &net.UDPAddr{Port: port})
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

func sendUDP(client testbed.Netns, v variant, srcPort, port int) error {
	to := netip.AddrPortFrom(testbed.NodeAddr, uint16(port))
	if v.family == "udp6" {
		to = netip.AddrPortFrom(nodeAddr6, uint16(port))
	}
	return client.Do(func() error {
		conn, err := net.DialUDP(v.family, &net.UDPAddr{Port: srcPort}, net.UDPAddrFromAddrPort(to))
		if err != nil {
			return err
		}
		defer conn.Close()
		if v.opt != 0 {
			raw, err := conn.SyscallConn()
			if err != nil {
				return err
			}
			var serr error
			if err := raw.Control(func(fd uintptr) {
				serr = syscall.SetsockoptString(int(fd), v.level, v.opt, v.value)
			}); err != nil {
				return err
			}
			if serr != nil {
				return fmt.Errorf("set socket option %d: %w", v.opt, serr)
			}
		}
		_, err = conn.Write(v.payload)
		return err
	})
}

var readFixture = testplan.Packet

// TestRandomNodesLoad: the table of every node the generator makes (many
// lists, ranges, dedicated ports, transparent backends) loads, and Parse
// reads the rendered file as nft lists it back.
func TestRandomNodesLoad(t *testing.T) {
	testenv.Require(t, "nft")
	ctx := context.Background()
	b := New(Options{})
	r := rand.New(rand.NewPCG(12, 2026))
	for i := range 25 {
		yaml, _ := nodegen.Valid(r)
		n, err := node.Parse([]byte(yaml), "nodegen.yaml", node.Options{})
		if err != nil {
			t.Fatal(err)
		}
		p, err := plan.Build(n)
		if err != nil {
			t.Fatal(err)
		}
		f := files(p)
		canon, err := b.Canonical(ctx, f)
		if err != nil {
			t.Fatalf("node %d: %v\n%s", i, err, yaml)
		}
		if parsed := b.Parse(f); !parsed.Equal(canon) {
			t.Errorf("node %d: Parse differs from Canonical:\n%s\n%s", i, strings.Join(firewall.Diff(canon, parsed), "\n"), yaml)
		}
	}
}

// BenchmarkObserve is the cost of one reconcile pass's look at the table:
// one `nft -j list table` of the dual-stack seed table, normalised.
func BenchmarkObserve(b *testing.B) {
	testenv.Require(b, "nft")
	ns := testenv.Netns(b, "nft")
	be := New(Options{Netns: string(ns)})
	if err := be.Apply(context.Background(), files(dualStack(b))); err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		if st, err := be.Observe(context.Background()); err != nil || !st.Installed() {
			b.Fatal(st, err)
		}
	}
}

// BenchmarkApply is one `nft -f` of the dual-stack seed table over itself.
func BenchmarkApply(b *testing.B) {
	testenv.Require(b, "nft")
	ns := testenv.Netns(b, "nft")
	be := New(Options{Netns: string(ns)})
	f := files(dualStack(b))
	for b.Loop() {
		if err := be.Apply(context.Background(), f); err != nil {
			b.Fatal(err)
		}
	}
}

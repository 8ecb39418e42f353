//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// kindCase is one real client of a newer kind (or of the seed's OpenVPN
// instances beside them) on one striped port of the node, and what became
// of it.
type kindCase struct {
	id     string
	client string // the real client: curl, go-sendxmpp, tincd, openconnect, s_client, wireguard-go, quic-go, openvpn
	kind   string // route --client's description of it
	proto  string
	port   int
	lport  int    // UDP (and OpenVPN): the client's source port
	want   string // the service the node file sends it to

	ok        bool   // the client completed its protocol with its server
	landed    string // where its first packet went (service, or none)
	first     []byte // its first packet, as captured on the client's veth
	byPacket  prediction
	byKind    prediction
	detail    string
	firstSeen func(f flow, payload []byte) bool // recognises its first packet on the wire
	// openconnect on TCP: the DTLS half of the same client (to the UDP
	// port ocserv advertises, from lport), filled in by its run.
	dtls *kindCase
}

// kindsBed is the striped node of TestKindsStriped: every kind's real
// server beside the seed's OpenVPN instances, the node file applied by
// `portstripe apply`.
type kindsBed struct {
	dir, nodePath string
	client, node  testbed.Netns
	instances     []*instance
	socks         socksTarget
	tinc          *tincServer
	oc            *ocServer
	dtls          *dtlsServer
	wg            *wgServer
	quic          *quicServer
	wire, lo      *capture
	backends      map[netip.AddrPort]string // TCP backend → service
	wgSeen        sync.Map                  // client address → true, as the WireGuard server saw it
	ocDTLS        sync.Map                  // client's DTLS port → true: openconnect's DTLS channel to ocserv is up
}

// The node file's services of the newer kinds; their backends are the
// servers kinds_test.go starts.
var kindServices = fmt.Sprintf(`  - {name: proxy, kind: socks5, tcp: "127.0.0.1:%d"}
  - {name: chat, kind: xmpp, tcp: "127.0.0.1:%d"}
  - {name: mesh, kind: tinc, tcp: "127.0.0.1:%d"}
  - {name: vpn, kind: openconnect, sni: [%s], tcp: "127.0.0.1:%d", udp: %d}
  - {name: webrtc, kind: dtls, udp: %d, dedicated: ["%d"]}
  - {name: h3, kind: quic, udp: %d}
  - {name: web_h2, kind: tls, alpn: [h2], tcp: "127.0.0.1:%d"}
  - {name: wg, kind: wireguard, udp: %d}
`, socksPort, xmppPort, tincPort, vpnName, ocservPort, ocservPort, dtlsPort, dtlsPort, quicPort, alpnPort, wgPort)

// The TLS service routed by ALPN alone: openssl s_server -alpn h2.
const (
	alpnName = "h2.example.com"
	alpnPort = 8445
)

// TestKindsStriped: one node file stripes every newer kind over the same
// ports as the seed's OpenVPN instances (`portstripe apply` in the node
// namespace); each real client reaches its own server through striped
// ports (TCP kinds through HAProxy, UDP kinds classified in the kernel),
// and `portstripe route` predicts every landing, from the captured first
// packet and from --client KIND alike; once with each firewall backend.
func TestKindsStriped(t *testing.T) {
	for _, firewall := range []string{"iptables", "nftables"} {
		t.Run(firewall, func(t *testing.T) { kindsMatrix(t, firewall) })
	}
}

func kindsMatrix(t *testing.T, firewall string) {
	b := setUpKinds(t, firewall)
	cases := b.cases()
	// The DTLS halves of the OpenConnect clients run with their TCP half.
	inParallel(6, slices.DeleteFunc(slices.Clone(cases), func(c *kindCase) bool { return c.client == "openconnect-dtls" }), b.run)
	time.Sleep(300 * time.Millisecond) // the servers' last log lines
	for _, c := range cases {
		b.analyse(t, c)
	}
	var m strings.Builder
	fmt.Fprintf(&m, "%-34s %-5s %5s  %-16s %-16s %-16s %-16s %s\n", "client", "proto", "port", "design", "landed on", "route (packet)", "route (--client)", "ok")
	for _, c := range cases {
		fmt.Fprintf(&m, "%-34s %-5s %5d  %-16s %-16s %-16s %-16s %s\n", c.id, c.proto, c.port, c.want, c.landed, c.byPacket.Service, c.byKind.Service, okWord(c.ok))
	}
	t.Logf("kinds matrix (firewall: %s):\n%s", firewall, m.String())
	for _, c := range cases {
		if !c.ok {
			t.Errorf("%s: the client did not complete its protocol with its server\n%s", c.id, testbed.Tail(c.detail, 12))
		}
		if c.landed != c.want {
			t.Errorf("%s: landed on %s, the node file sends it to %s", c.id, c.landed, c.want)
		}
		if c.first == nil {
			t.Errorf("%s: no first packet captured", c.id)
		} else if c.byPacket.Service != c.landed {
			t.Errorf("%s: route with the captured first packet predicts %s (%s), it landed on %s; first packet %x", c.id, c.byPacket.Service, c.byPacket.Via, c.landed, c.first)
		}
		if c.byKind.Service != c.landed {
			t.Errorf("%s: route --client %s predicts %s (%s), it landed on %s", c.id, c.kind, c.byKind.Service, c.byKind.Via, c.landed)
		}
	}
}

func setUpKinds(t *testing.T, firewall string) *kindsBed {
	t.Helper()
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	b := &kindsBed{dir: dir, client: pair.Client, node: pair.Node, instances: seedInstances(),
		backends: map[netip.AddrPort]string{}}
	if err := newPKIs(dir, b.instances); err != nil {
		t.Fatal(err)
	}
	for _, in := range b.instances {
		in.startServers(t, b.node, dir)
		b.backends[in.tcpAddr] = in.service
	}
	lo := func(port int) netip.AddrPort {
		return netip.AddrPortFrom(netip.MustParseAddr("127.0.0.1"), uint16(port))
	}
	onNode := func(port int) netip.AddrPort { return netip.AddrPortFrom(testbed.NodeAddr, uint16(port)) }
	b.socks = startSocksTarget(t, b.node, socksTargetAt)
	startMicrosocks(t, b.node, dir, lo(socksPort))
	startProsody(t, b.node, dir, lo(xmppPort))
	b.tinc = startTinc(t, b.node, dir, lo(tincPort))
	b.oc = startOcserv(t, b.node, dir, ocservPort)
	b.dtls = startDTLSServer(t, b.node, dir, onNode(dtlsPort))
	b.wg = startWGServer(t, b.node, dir, wgPort)
	b.quic = startQUICServer(t, b.node, dir, onNode(quicPort))
	startTLSServer(t, b.node, dir, alpnName, lo(alpnPort).String(), "-alpn", "h2")
	for port, svc := range map[int]string{socksPort: "proxy", xmppPort: "chat", tincPort: "mesh", ocservPort: "vpn", alpnPort: "web_h2"} {
		b.backends[lo(port)] = svc
	}

	// The seed node's OpenVPN services (nodeFile) plus the newer kinds.
	yaml := strings.Replace(nodeFile(dir, b.instances), "  - name: ssh\n", kindServices+"  - name: ssh\n", 1)
	yaml = "firewall: " + firewall + "\n" + yaml
	b.nodePath = filepath.Join(dir, "node.yaml")
	liveWriteLikeEditor(t, b.nodePath, yaml)
	if out, err := livePortstripe(b.node, "apply", "-c", b.nodePath, "--dir", filepath.Join(dir, "state")); err != nil {
		t.Fatalf("portstripe apply: %v\n%s", err, out)
	}
	t.Cleanup(func() { livePortstripe(b.node, "clean", "--dir", filepath.Join(dir, "state")) })
	// The backend asked for is the one that classifies: the other holds
	// no rule of portstripe's.
	nft, nat := nftTable(t, b.node), natRules(t, b.node)
	if inNFT, inNAT := strings.Contains(nft, "udp"), strings.Contains(nat, "PORTSTRIPE"); inNFT != (firewall == "nftables") || inNAT != (firewall == "iptables") {
		t.Fatalf("firewall: %s, but portstripe's nft table holds rules: %v, iptables' nat table: %v", firewall, inNFT, inNAT)
	}
	b.wire = startCapture(t, b.client, pair.ClientVeth)
	b.lo = startCapture(t, b.node, "lo")
	return b
}

// cases lists the clients: each newer kind on a port every kind shares
// (443) and on one more striped port, the seed's OpenVPN instances on the
// same ports, the DTLS service on its dedicated port.
func (b *kindsBed) cases() []*kindCase {
	var cs []*kindCase
	lport := 41200 // in testbed.ClientFixedPorts
	add := func(c *kindCase) {
		lport++
		c.lport = lport
		c.id = fmt.Sprintf("%s-%s-%d", c.client, c.proto, c.port)
		cs = append(cs, c)
	}
	tcpStarts := func(port int, ok func([]byte) bool) func(flow, []byte) bool {
		return func(f flow, p []byte) bool {
			return f.proto == "tcp" && int(f.dst.Port()) == port && len(p) > 0 && ok(p)
		}
	}
	for _, port := range []int{443, 1080} {
		add(&kindCase{client: "curl-socks5", kind: "socks5", proto: "tcp", port: port, want: "proxy",
			firstSeen: tcpStarts(port, func(p []byte) bool { return p[0] == 5 })})
	}
	for _, port := range []int{443, 5222} {
		add(&kindCase{client: "go-sendxmpp", kind: "xmpp", proto: "tcp", port: port, want: "chat",
			firstSeen: tcpStarts(port, func(p []byte) bool { return bytes.HasPrefix(p, []byte("<?xml")) })})
	}
	for _, port := range []int{443, 655} {
		add(&kindCase{client: "tincd", kind: "tinc", proto: "tcp", port: port, want: "mesh",
			firstSeen: tcpStarts(port, func(p []byte) bool { return bytes.HasPrefix(p, []byte("0 ")) })})
	}
	for _, port := range []int{443, 8443} {
		add(&kindCase{client: "openconnect", kind: "openconnect:" + vpnName, proto: "tcp", port: port, want: "vpn",
			firstSeen: tcpStarts(port, func(p []byte) bool { return p[0] == 0x16 && bytes.Contains(p, []byte(vpnName)) })})
		tcp := cs[len(cs)-1]
		tcp.dtls = &kindCase{client: "openconnect-dtls", kind: "openconnect", proto: "udp", port: ocservPort, lport: tcp.lport, want: "vpn",
			id: fmt.Sprintf("openconnect-dtls-udp-%d (tcp %d)", ocservPort, port)}
		cs = append(cs, tcp.dtls)
	}
	for _, port := range []int{443, 8443} {
		add(&kindCase{client: "s_client-alpn-h2", kind: "tls:alpn=h2", proto: "tcp", port: port, want: "web_h2",
			firstSeen: tcpStarts(port, func(p []byte) bool {
				return p[0] == 0x16 && bytes.Contains(p, []byte("\x02h2")) && !bytes.Contains(p, []byte(vpnName))
			})})
	}
	for _, port := range []int{443, 1194} {
		add(&kindCase{client: "quic-go", kind: "quic", proto: "udp", port: port, want: "h3"})
		add(&kindCase{client: "wireguard-go", kind: "wireguard", proto: "udp", port: port, want: "wg"})
	}
	add(&kindCase{client: "s_client-dtls", kind: "dtls", proto: "udp", port: dtlsPort, want: "webrtc"})
	byName := map[string]*instance{}
	for _, in := range b.instances {
		byName[in.service] = in
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, port := range []int{443, 8443} {
			for _, name := range []string{"openvpn_rsa", "openvpn_ecc"} {
				in := byName[name]
				add(&kindCase{client: name, kind: in.routeKind(), proto: proto, port: port, want: intended(in, port)})
			}
		}
		in := byName["openvpn_ed25519"]
		add(&kindCase{client: in.service, kind: in.routeKind(), proto: proto, port: 5061, want: in.service})
	}
	for _, c := range cs {
		if c.firstSeen == nil { // by the client's source port
			lp := c.lport
			c.firstSeen = func(f flow, _ []byte) bool { return f.proto == c.proto && int(f.src.Port()) == lp }
		}
	}
	return cs
}

// routeKind is the instance's client as route --client describes it.
func (in *instance) routeKind() string {
	if in.mode == "tls-auth" {
		return "openvpn:tls-auth:" + in.digest
	}
	return "openvpn:" + in.mode
}

// run runs the case's real client.
func (b *kindsBed) run(c *kindCase) {
	logPath := filepath.Join(b.dir, "client-"+c.id+".log")
	hostport := fmt.Sprintf("%s:%d", nodeAddr, c.port)
	var err error
	switch c.client {
	case "curl-socks5":
		c.ok, c.detail, err = socks5Client(b.client, hostport, b.socks, logPath)
	case "go-sendxmpp":
		c.ok, c.detail, err = xmppClient(b.client, hostport, logPath)
	case "tincd":
		c.ok, c.detail, err = b.tinc.client(b.client, b.dir, fmt.Sprintf("c%d", c.port), hostport, logPath)
	case "openconnect":
		var r ocResult
		r, c.detail, err = b.oc.client(b.client, hostport, c.lport, logPath)
		c.ok, c.dtls.ok, c.dtls.detail = r.cstp, r.dtls, c.detail
		b.ocDTLS.Store(c.lport, r.dtls)
	case "s_client-alpn-h2":
		var cn string
		cn, c.detail, err = tlsClient(b.client, c.port, "", logPath, "-alpn", "h2")
		c.ok = cn == alpnName
	case "quic-go":
		c.ok, c.detail, err = quicClient(b.client, hostport, c.lport)
	case "wireguard-go":
		var endpoint string
		c.ok, endpoint, err = b.wg.client(b.client, b.dir, hostport, c.lport)
		c.detail = "the server saw the client at " + endpoint
		if ap, perr := netip.ParseAddrPort(endpoint); perr == nil {
			b.wgSeen.Store(ap, true)
		}
	case "s_client-dtls":
		c.ok, c.detail, err = b.dtls.client(b.client, hostport, c.lport, "portstripe-e2e-"+c.id, logPath)
	default: // the seed's OpenVPN instances
		in := b.instance(c.client)
		cmd := b.client.Command("openvpn", in.clientArgs(c.proto, c.port, c.lport, c.id)...)
		c.ok, c.detail, err = testbed.WatchLines(cmd, logPath, "Initialization Sequence Completed", 25*time.Second)
		if c.ok && !in.handshakeWith(c.proto, c.id) {
			c.ok = false
			c.detail = in.service + "'s server logged no handshake with it\n" + c.detail
		}
	}
	if err != nil {
		c.ok, c.detail = false, err.Error()
	}
}

func (b *kindsBed) instance(service string) *instance {
	for _, in := range b.instances {
		if in.service == service {
			return in
		}
	}
	return nil
}

// analyse finds the case's first packet, where it landed and what route
// predicts for it.
func (b *kindsBed) analyse(t *testing.T, c *kindCase) {
	t.Helper()
	f, first, found := b.wire.find(c.firstSeen)
	if found {
		c.first = first
	}
	c.landed = b.landing(c, f)
	if c.first != nil {
		p, err := route(b.nodePath, c.proto, c.port, c.first)
		if err != nil {
			t.Errorf("%s: %v", c.id, err)
		}
		c.byPacket = p
	}
	p, err := routeClient(b.nodePath, c.proto, c.port, c.kind)
	if err != nil {
		t.Errorf("%s: %v", c.id, err)
	}
	c.byKind = p
}

// landing says where the case's first packet went. TCP: the backend that
// HAProxy sent the same first bytes to (captured on the node's loopback).
// UDP: the server that saw the client's source address, or that completed
// the protocol with it.
func (b *kindsBed) landing(c *kindCase, f flow) string {
	var saw []string
	if c.proto == "tcp" {
		if len(c.first) == 0 {
			return none
		}
		key := c.first[:min(len(c.first), 43)]
		for _, g := range b.lo.all(func(g flow, p []byte) bool {
			_, isBackend := b.backends[g.dst]
			return g.proto == "tcp" && isBackend && bytes.HasPrefix(p, key)
		}) {
			if svc := b.backends[g.dst]; !slices.Contains(saw, svc) {
				saw = append(saw, svc)
			}
		}
		return oneOrNone(saw)
	}
	src := netip.AddrPortFrom(testbed.ClientAddr, uint16(c.lport))
	for _, in := range b.instances {
		if in.sawClient(c.lport) {
			saw = append(saw, in.service)
		}
	}
	if b.quic.saw(src) {
		saw = append(saw, "h3")
	}
	if _, ok := b.wgSeen.Load(src); ok {
		saw = append(saw, "wg")
	}
	if up, ok := b.ocDTLS.Load(c.lport); ok && up.(bool) {
		saw = append(saw, "vpn")
	}
	if b.dtls.sawToken("portstripe-e2e-" + c.id) {
		saw = append(saw, "webrtc")
	}
	return oneOrNone(saw)
}

// routeClient asks the CLI where a client of kind (route --client) lands.
func routeClient(nodePath, proto string, port int, kind string) (prediction, error) {
	var p prediction
	out, err := exec.Command(cliPath, "route", "-c", nodePath, "--proto", proto, "--port", strconv.Itoa(port),
		"--client", kind, "-o", "json").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return p, fmt.Errorf("portstripe route --client %s %s %d: %v: %s", kind, proto, port, err, ee.Stderr)
		}
		return p, fmt.Errorf("portstripe route --client %s: %v", kind, err)
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return p, fmt.Errorf("portstripe route --client %s: %v in %q", kind, err, out)
	}
	return p, nil
}

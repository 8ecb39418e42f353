//go:build e2e

package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/node"
)

// dualStackPorts are the striped ports the IPv6 clients try.
var dualStackPorts = []int{443, 8080, 29999}

// dualStackCase is one real client of TestDualStack and where it must land.
type dualStackCase struct {
	id    string
	kind  string // openvpn, ssh or tls
	inst  *instance
	proto string // udp or tcp
	to    netip.Addr
	port  int
	lport int
	sni   string
	want  string // the service, as the node file names it

	ok     bool
	landed string
	detail string
}

// TestDualStack runs real clients over IPv6 through a dual-stack node (the
// node namespace's IPv4 and IPv6 addresses, applied by `portstripe apply`)
// once per firewall backend the node file takes: OpenVPN 2.6 over udp6 and
// tcp6 with tls-auth (RSA) and tls-crypt (ECC), OpenSSH, and TLS told apart
// by SNI (openssl), each on several striped ports, with IPv4 clients of
// the same node alongside. The OpenVPN TCP, SSH and TLS backends are on
// the node's IPv6 loopback ([::1]), so HAProxy's IPv6 servers are used
// too. Each client must reach its own server (the server's log of the
// handshake, the host key, the certificate's name), where `portstripe
// route` says it lands; status then reports no problem and no drift.
func TestDualStack(t *testing.T) {
	if len(node.Firewalls) == 0 {
		t.Fatal("the node file takes no firewall backend")
	}
	for _, fw := range node.Firewalls {
		t.Run(fw, func(t *testing.T) { dualStack(t, fw) })
	}
}

func dualStack(t *testing.T, fw string) {
	dir, err := os.MkdirTemp("", "portstripe-dualstack-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testbed.AtExit(func() { os.RemoveAll(dir) }))
	lo6 := netip.IPv6Loopback()
	rsa := &instance{service: "openvpn_rsa", alg: "rsa", mode: "tls-auth", digest: "SHA512", udpPort: 443, tcpAddr: netip.AddrPortFrom(lo6, 1194), anyAddress: true}
	ecc := &instance{service: "openvpn_ecc", alg: "ecc", mode: "tls-crypt", udpPort: 5060, tcpAddr: netip.AddrPortFrom(lo6, 5060), anyAddress: true}
	instances := []*instance{rsa, ecc}
	if err := newPKIs(dir, instances); err != nil {
		t.Fatal(err)
	}

	pair := testenv.Pair(t, nsPrefix)
	if err := pair.AddIPv6(); err != nil {
		t.Fatal(err)
	}
	client, nodeNS := pair.Client, pair.Node
	for _, in := range instances {
		in.startServers(t, nodeNS, dir)
	}
	sshAddr := netip.AddrPortFrom(lo6, 22)
	sshd := startSSHDAt(t, nodeNS, dir, sshAddr.String())
	tlsA, tlsB := netip.AddrPortFrom(lo6, 8443), netip.AddrPortFrom(lo6, 8444)
	startTLSServer(t, nodeNS, dir, sniA, tlsA.String())
	startTLSServer(t, nodeNS, dir, sniB, tlsB.String())

	services := fmt.Sprintf(`  - {name: openvpn_rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: %d, tcp: %q}
  - {name: openvpn_ecc, kind: openvpn, tls: {mode: tls-crypt}, udp: %d, tcp: %q}
  - {name: ssh, kind: ssh, tcp: %q}
  - {name: tls_a, kind: tls, sni: [%s], tcp: %q}
  - {name: tls_b, kind: tls, sni: [%s], tcp: %q}
`, rsa.udpPort, rsa.tcpAddr, ecc.udpPort, ecc.tcpAddr, sshAddr, sniA, tlsA, sniB, tlsB)
	yaml := testbed.NodeFile{Name: "dual", Striped: "1-29999", ListenPort: listenPort, InspectDelay: "5s",
		MaxConn: 500, Dir: dir, IPv6: true, Firewall: fw, Services: []string{services}}.YAML()
	nodePath, state := filepath.Join(dir, "node.yaml"), filepath.Join(dir, "state")
	if err := os.WriteFile(nodePath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// apply starts HAProxy as a daemon in the node namespace; deleting the
	// namespace kills it.
	if out, err := nodeNS.Run(cliPath, "apply", "-c", nodePath, "--dir", state); err != nil {
		t.Fatalf("portstripe apply (firewall: %s): %v\n%s", fw, err, out)
	}

	var cases []*dualStackCase
	lport := 41600 // in testbed.ClientFixedPorts
	addVPN := func(in *instance, proto string, to netip.Addr, port int) {
		lport++
		cases = append(cases, &dualStackCase{id: fmt.Sprintf("%s-%s%s-%d", in.alg, proto, family(to), port), kind: "openvpn",
			inst: in, proto: proto, to: to, port: port, lport: lport, want: in.service})
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, port := range dualStackPorts {
			addVPN(rsa, proto, testbed.NodeAddr6, port)
			addVPN(ecc, proto, testbed.NodeAddr6, port)
		}
		// The same node's IPv4 clients, at the same time.
		addVPN(rsa, proto, testbed.NodeAddr, 8080)
		addVPN(ecc, proto, testbed.NodeAddr, 8080)
	}
	for _, port := range []int{22, 443} {
		cases = append(cases, &dualStackCase{id: fmt.Sprintf("ssh-tcp6-%d", port), kind: "ssh", proto: "tcp", to: testbed.NodeAddr6, port: port, want: "ssh"})
	}
	for _, sni := range []struct{ name, service string }{{sniA, "tls_a"}, {sniB, "tls_b"}} {
		for _, port := range []int{443, 8443} {
			cases = append(cases, &dualStackCase{id: fmt.Sprintf("tls-%s-tcp6-%d", sni.service, port), kind: "tls", proto: "tcp", to: testbed.NodeAddr6, port: port, sni: sni.name, want: sni.service})
		}
	}

	var run sync.WaitGroup
	for _, c := range cases {
		run.Go(func() { c.run(client, dir, sshd) })
	}
	run.Wait()
	time.Sleep(300 * time.Millisecond) // the servers' last log lines
	for _, c := range cases {
		if c.kind == "openvpn" {
			c.landed = landedOn(instances, c.proto, c.id)
		}
		t.Run(c.id, func(t *testing.T) {
			if !c.ok || c.landed != c.want {
				t.Errorf("%s to %s: handshake %v, reached %q, want %q\n%s", c.kind, netip.AddrPortFrom(c.to, uint16(c.port)), c.ok, c.landed, c.want, testbed.Tail(c.detail, 15))
			}
			if got := c.predicted(t, nodePath); got != c.want {
				t.Errorf("portstripe route says %q, the client reached %q", got, c.want)
			}
		})
	}

	out, _ := nodeNS.Command(cliPath, "status", "--dir", state, "-o", "json").Output()
	var st struct {
		Rules    []firewall.Counter `json:"rules"`
		Problems []string           `json:"problems"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("portstripe status -o json: %v in %q", err, out)
	}
	if len(st.Problems) > 0 {
		t.Errorf("portstripe status (firewall: %s): %v", fw, st.Problems)
	}
	// status counts the UDP first packets of both families: at least one
	// per UDP client that reached its service (a client may resend).
	clients, counted := map[string]uint64{}, map[string]uint64{}
	for _, c := range cases {
		if c.kind == "openvpn" && c.proto == "udp" && c.landed == c.want {
			clients[c.want]++
		}
	}
	for _, r := range st.Rules {
		if r.Rule != "default" {
			counted[r.Service] += r.Packets
		}
	}
	t.Logf("UDP clients that reached each service %v, first packets status counts %v", clients, counted)
	for svc, n := range clients {
		if counted[svc] < n {
			t.Errorf("status counts %d first packets for %s, %d UDP clients reached it (rules: %+v)", counted[svc], svc, n, st.Rules)
		}
	}
}

// family is the digit OpenVPN's and route's --proto put after udp or tcp.
func family(a netip.Addr) string {
	if a.Is6() {
		return "6"
	}
	return "4"
}

// run runs the real client and records whether it completed its handshake.
func (c *dualStackCase) run(client testbed.Netns, dir string, sshd *sshd) {
	logPath := filepath.Join(dir, "client-"+c.id+".log")
	var err error
	switch c.kind {
	case "openvpn":
		cmd := client.Command("openvpn", c.inst.clientArgsTo(c.to, c.proto, c.port, c.lport, c.id)...)
		c.ok, c.detail, err = testbed.WatchLines(cmd, logPath, "Initialization Sequence Completed", 25*time.Second)
	case "ssh":
		c.ok, c.detail, err = sshClientTo(client, c.to, dir, c.port, sshd.hostKey, logPath)
		if c.ok {
			c.landed = "ssh" // only the right sshd's host key gets that far
		}
	case "tls":
		var cn string
		cn, c.detail, err = tlsClientTo(client, c.to, c.port, c.sni, logPath)
		c.ok = cn != ""
		switch cn {
		case sniA:
			c.landed = "tls_a"
		case sniB:
			c.landed = "tls_b"
		}
	}
	if err != nil {
		c.ok, c.detail = false, c.detail+"\n"+err.Error()
	}
}

// landedOn names the instance whose server logged the handshake of case id.
func landedOn(instances []*instance, proto, id string) string {
	for _, in := range instances {
		if in.handshakeWith(proto, id) {
			return in.service
		}
	}
	return none
}

// predicted is where `portstripe route --proto udp6|tcp6|udp4|tcp4
// --client …` says such a client lands.
func (c *dualStackCase) predicted(t *testing.T, nodePath string) string {
	t.Helper()
	spec := c.kind
	switch {
	case c.kind == "openvpn" && c.inst.mode == "tls-auth":
		spec = "openvpn:tls-auth:" + c.inst.digest
	case c.kind == "openvpn":
		spec = "openvpn:" + c.inst.mode
	case c.kind == "tls":
		spec = "tls:" + c.sni
	}
	out, err := exec.Command(cliPath, "route", "-c", nodePath, "--proto", c.proto+family(c.to), "--port", fmt.Sprint(c.port), "--client", spec, "-o", "json").Output()
	if err != nil {
		t.Fatalf("portstripe route --client %s: %v", spec, err)
	}
	var p struct {
		Service string     `json:"service"`
		Address netip.Addr `json:"address"`
	}
	if err := json.Unmarshal(out, &p); err != nil {
		t.Fatalf("portstripe route --client %s: %v in %q", spec, err, out)
	}
	if p.Address != c.to {
		t.Errorf("portstripe route answers for %s, the client sent to %s", p.Address, c.to)
	}
	return p.Service
}

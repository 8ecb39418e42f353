package iptables

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// TestKindsInKernel: the kinds node's rules (fixtures/kinds-node.yaml)
// send real clients' first datagrams (fixtures/first-packets-kinds) and
// the custom kind's example to the listener of the service they are for,
// on a striped port and on a port dedicated to the DTLS service, as the
// plan predicts.
func TestKindsInKernel(t *testing.T) {
	requireRoot(t)
	p := nodePlan(t, "fixtures/kinds-node.yaml")
	nodeNS, clientNS := vethPair(t, classifyFamily{node: nodeAddr, client: clientAddr, bits: 24})
	p.Node.Addresses = []netip.Addr{nodeAddr}
	m, err := New(Options{Netns: nodeNS})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(context.Background(), Render(p)); err != nil {
		t.Fatal(err)
	}
	data, err := os.ReadFile("../fixtures/kinds-node.yaml")
	if err != nil {
		t.Fatal(err)
	}
	n, err := node.Parse(data, "fixtures/kinds-node.yaml", node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	custom, _ := n.Service("game")
	gameEx, err := custom.Kind.Example(custom.Settings, node.UDP)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		payload []byte
		striped string // the service on a striped port
		on3478  string // on the DTLS service's own port
	}{
		{"udp-wireguard-go.hex", kindFixture(t, "udp-wireguard-go.hex"), "wg", "wg"},
		{"udp-dtls-openssl.hex", kindFixture(t, "udp-dtls-openssl.hex"), "vpn", "webrtc"},
		{"udp-quic-go.hex", kindFixture(t, "udp-quic-go.hex"), "h3", "h3"},
		{"quic-go's Initial cut to 1199 bytes", kindFixture(t, "udp-quic-go.hex")[:1199], plan.None, "webrtc"},
		{"udp-openvpn-tls-crypt.hex", kindFixture(t, "udp-openvpn-tls-crypt.hex"), "openvpn_ecc", "openvpn_ecc"},
		{"udp-openvpn-tls-auth-sha512.hex", kindFixture(t, "udp-openvpn-tls-auth-sha512.hex"), "openvpn_rsa", "openvpn_rsa"},
		{"the custom match's example", gameEx.Packet, "game", "game"},
		{"wireguard's initiation cut short", kindFixture(t, "udp-wireguard-go.hex")[:147], plan.None, "webrtc"},
	}
	ports := map[string]int{plan.None: 0}
	for _, s := range n.Services {
		ports[s.Name] = int(s.UDP)
	}
	listen := []int{1000, 3478}
	for _, s := range n.Services {
		if s.UDP != 0 && s.UDP != 3478 {
			listen = append(listen, int(s.UDP))
		}
	}
	arrivals := listenUDP(t, nodeNS, nodeAddr, listen)
	sent := 0
	for _, tt := range tests {
		for _, c := range []struct {
			port int
			want string
		}{{1000, tt.striped}, {3478, tt.on3478}} {
			name := fmt.Sprintf("%s to udp %d", tt.name, c.port)
			if r := p.Route(node.UDP, uint16(c.port), tt.payload); r.Service != c.want {
				t.Errorf("%s: the plan routes it to %s, the test wants %s", name, r.Service, c.want)
			}
			wantPort := ports[c.want]
			if wantPort == 0 {
				wantPort = c.port // not diverted
			}
			if err := sendUDP(clientNS, 21000+sent, netip.AddrPortFrom(nodeAddr, uint16(c.port)), tt.payload, nil); err != nil {
				t.Fatalf("%s: %v", name, err)
			}
			sent++
			select {
			case a := <-arrivals:
				if a.port != wantPort || !bytes.Equal(a.payload, tt.payload) {
					t.Errorf("%s arrived on %d, want %d (%s)", name, a.port, wantPort, c.want)
				}
			case <-time.After(3 * time.Second):
				t.Errorf("%s did not arrive (want port %d)", name, wantPort)
			}
		}
	}
}

func kindFixture(t *testing.T, name string) []byte {
	return readFixture(t, filepath.Join("..", "fixtures", "first-packets-kinds", name))
}

package nftables

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// TestKindsClassifyInKernel: the kinds node's portstripe.nft (masked
// payload matches, `udp length >=`) sends real clients' first datagrams
// of the UDP kinds (fixtures/first-packets-kinds) where the plan routes
// them, over IPv4 and IPv6, on a striped port and on the DTLS service's
// own port; a QUIC Initial one byte short of 1200 is not diverted.
func TestKindsClassifyInKernel(t *testing.T) {
	testenv.Require(t, "nft")
	tp := pair(t)
	p := nodePlan(t, "fixtures/kinds-node.yaml")
	p.Node.Addresses = []netip.Addr{testbed.NodeAddr, nodeAddr6}
	if err := New(Options{Netns: string(tp.Node)}).Apply(context.Background(), files(p)); err != nil {
		t.Fatal(err)
	}
	fixture := func(name string) []byte {
		return readFixture(t, filepath.Join("..", "fixtures", "first-packets-kinds", name))
	}
	quic := fixture("udp-quic-go.hex")
	payloads := map[string][]byte{
		"quic-go's Initial":      quic,
		"an Initial of 1199":     quic[:1199],
		"openssl's DTLS":         fixture("udp-dtls-openssl.hex"),
		"wireguard-go's":         fixture("udp-wireguard-go.hex"),
		"openvpn tls-crypt":      fixture("udp-openvpn-tls-crypt.hex"),
		"openvpn tls-auth":       fixture("udp-openvpn-tls-auth-sha512.hex"),
		"a custom match's bytes": append([]byte{0xff, 0xff, 0xff, 0xff, 0x54}, "TSource"...),
	}
	ports := []int{1000, 3478}
	listen := append([]int{}, ports...)
	for _, s := range []int{443, 5060, 4443, 8443, 21820, 27015} {
		listen = append(listen, s)
	}
	arrivals := listenUDP(t, tp.Node, listen)
	sent, diverted := 0, 0
	for what, payload := range payloads {
		for _, port := range ports {
			for _, family := range []string{"udp4", "udp6"} {
				name := fmt.Sprintf("%s to udp %d over %s", what, port, family)
				route := p.Route(node.UDP, uint16(port), payload)
				wantPort := port
				if route.Service != plan.None {
					ap, err := netip.ParseAddrPort(route.Target)
					if err != nil {
						t.Fatalf("%s: route target %q: %v", name, route.Target, err)
					}
					wantPort = int(ap.Port())
					diverted++
				}
				if err := sendUDP(tp.Client, variant{what: what, family: family, payload: payload}, 22000+sent, port); err != nil {
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
			}
		}
	}
	t.Logf("%d datagrams, %d diverted, as plan.Route says", sent, diverted)
}

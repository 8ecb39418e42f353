package haproxy

import (
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/signature"
)

// TestRealKinds: a real HAProxy running the kinds node's config
// (fixtures/kinds-node.yaml, every kind of the registry) sends the first
// bytes of real clients (fixtures/first-packets-kinds) and made-up ones
// where no client was recorded to the service the plan routes them to,
// deciding on the bytes in hand.
func TestRealKinds(t *testing.T) {
	p := loadPlan(t, "fixtures/kinds-node.yaml")
	h := startConfig(t, FromPlan(p))
	hello := func(sni string, alpn ...string) []byte {
		b, err := signature.ClientHello(sni, alpn...)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	example := func(k signature.Kind) []byte {
		ex, err := k.Example(signature.Settings{}, node.TCP)
		if err != nil {
			t.Fatal(err)
		}
		return ex.Packet
	}
	kinds := func(name string) []byte { return packet(t, filepath.Join("..", "first-packets-kinds", name)) }
	tests := []struct {
		name   string
		pieces [][]byte
		want   string // "" = rejected
	}{
		{"curl's SOCKS5 greeting", [][]byte{kinds("tcp-socks5-curl.hex")}, "proxy"},
		{"go-sendxmpp's stream opener", [][]byte{kinds("tcp-xmpp-go-sendxmpp.hex")}, "chat"},
		{"an XMPP opener in two segments", [][]byte{kinds("tcp-xmpp-go-sendxmpp.hex")[:40], kinds("tcp-xmpp-go-sendxmpp.hex")[40:]}, "chat"},
		{"a custom prefix", [][]byte{kinds("tcp-custom-prefix.hex")}, "kb"},
		{"a custom regex", [][]byte{[]byte("KBRE/12 hello\r\n")}, "kbre"},
		{"a custom regex, in two segments", [][]byte{[]byte("KBRE/1"), []byte("23 hello\r\n")}, "kbre"},
		{"tls-crypt", [][]byte{kinds("tcp-openvpn-tls-crypt.hex")}, "openvpn_ecc"},
		{"tls-auth SHA512", [][]byte{kinds("tcp-openvpn-tls-auth-sha512.hex")}, "openvpn_rsa"},
		{"openssl -alpn h2, another server name", [][]byte{kinds("tcp-tls-alpn-h2-sni.hex")}, "any_h2"},
		{"openssl -alpn h2,http/1.1", [][]byte{kinds("tcp-tls-alpn-h2-http1.1-sni.hex")}, "any_h2"},
		{"openssl -alpn http/1.1: no service takes it", [][]byte{kinds("tcp-tls-alpn-http1.1-sni.hex")}, ""},
		{"SNI and ALPN before SNI before ALPN", [][]byte{hello("www.example.org", "h2")}, "www_h2"},
		{"SNI without h2", [][]byte{hello("www.example.org", "http/1.1")}, "www"},
		{"openconnect's server name", [][]byte{hello("vpn.example.org")}, "vpn"},
		{"an RDP connection request", [][]byte{example(signature.RDP)}, "desktop"},
		{"a tinc ID request", [][]byte{example(signature.Tinc)}, "mesh"},
		{"an SSH banner", [][]byte{example(signature.SSH)}, "ssh"},
		{"an HTTP request", [][]byte{example(signature.HTTP)}, "web"},
	}
	want := map[netip.AddrPort]DecisionLine{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var whole []byte
			for _, p := range tt.pieces {
				whole = append(whole, p...)
			}
			if r := p.Route(node.TCP, 443, whole); r.Service != tt.want && !(tt.want == "" && r.Service == plan.None) {
				t.Fatalf("the plan routes it to %q, the test wants %q", r.Service, tt.want)
			}
			rule := ""
			if tt.want == "" {
				rule = RuleReject
			}
			d := h.land(t, "fe_striped", tt.want, rule, tt.pieces...)
			want[h.lastClient] = d
		})
	}
	checkDecisions(t, h, want)
}

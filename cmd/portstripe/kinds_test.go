package main

import (
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/golden"
)

const kindsNode = "../../fixtures/kinds-node.yaml"

// TestExplainKinds: explain on the node with every kind shows each decision
// list in the order it is tried (TLS by SNI and ALPN, SNI, ALPN, then
// HTTP), what each check relies on and assumes, and the DTLS service's
// port without OpenConnect's DTLS, which cannot be told from it.
func TestExplainKinds(t *testing.T) {
	code, out, errOut := portstripe(t, "explain", "-c", kindsNode)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	golden.Check(t, "../../fixtures/golden/kinds/explain.txt", []byte(out))
}

// TestRouteClientKinds: route --client lays out each kind's first packet,
// and the plan sends it to that kind's service.
func TestRouteClientKinds(t *testing.T) {
	for _, tt := range []struct {
		proto, client, want string
	}{
		{"tcp", "socks5", "proxy"},
		{"tcp", "xmpp", "chat"},
		{"tcp", "tinc", "mesh"},
		{"tcp", "rdp", "desktop"},
		{"tcp", "ssh", "ssh"},
		{"tcp", "http", "web"},
		{"tcp", "tls:www.example.org:alpn=h2", "www_h2"},
		{"tcp", "tls:www.example.org:alpn=http/1.1", "www"},
		{"tcp", "tls:other.example:alpn=http/1.1,h2", "any_h2"},
		{"tcp", "openconnect:vpn.example.org", "vpn"},
		{"tcp", "openvpn:tls-crypt", "openvpn_ecc"},
		{"tcp", "openvpn:tls-crypt-v2", "none"},
		{"udp", "quic", "h3"},
		{"udp", "dtls", "vpn"},
		{"udp", "openconnect", "vpn"},
		{"udp", "wireguard", "wg"},
		{"udp", "openvpn:tls-auth:SHA512", "openvpn_rsa"},
	} {
		code, out, errOut := portstripe(t, "route", "-c", kindsNode, "--proto", tt.proto, "--port", "1000", "--client", tt.client)
		if code != 0 {
			t.Errorf("--client %s: exit %d: %s", tt.client, code, errOut)
			continue
		}
		if first, _, _ := strings.Cut(out, "\n"); !strings.Contains(first, "→ "+tt.want+" ") {
			t.Errorf("--client %s on %s 1000: %q, want it at %s", tt.client, tt.proto, first, tt.want)
		}
	}
	if code, _, errOut := portstripe(t, "route", "-c", kindsNode, "--proto", "udp", "--port", "1000", "--client", "socks5"); code != 2 || !strings.Contains(errOut, "socks5 clients use tcp") {
		t.Errorf("--client socks5 on udp: exit %d, %q; want 2 and why", code, errOut)
	}
}

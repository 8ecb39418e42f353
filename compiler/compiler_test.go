package compiler

import (
	"bytes"
	"fmt"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/node"
)

// largeNode writes a node with 200 services and 2,000 dedicated ranges:
// four striped services of distinct kinds, and 196 tls-crypt instances each
// owning ten ranges of the striped span.
func largeNode() []byte {
	var b strings.Builder
	b.WriteString(`name: large
addresses: [198.51.100.2, 203.0.113.2]
haproxy: {listen_port: 29000}
services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443, tcp: 127.0.0.1:1194}
  - {name: v2, kind: openvpn, tls: {mode: tls-crypt-v2}, udp: 1195, tcp: 127.0.0.1:1195}
  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}
  - {name: web, kind: tls, sni: [www.example.org], tcp: 127.0.0.1:8443}
`)
	port := 2000
	for i := range 196 {
		fmt.Fprintf(&b, "  - {name: ed%d, kind: openvpn, tls: {mode: tls-crypt}, udp: %d, tcp: 127.0.0.1:%d, dedicated: [", i, port, port)
		for j := range 10 {
			if j > 0 {
				b.WriteString(", ")
			}
			fmt.Fprintf(&b, "\"%d-%d\"", port, port+4)
			port += 10
		}
		b.WriteString("]}\n")
	}
	return []byte(b.String())
}

func TestCompileLarge(t *testing.T) {
	n, err := node.Parse(largeNode(), "large.yaml", node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := FromNode(n)
	if err != nil {
		t.Fatal(err)
	}
	if len(n.Services) != 200 {
		t.Fatalf("%d services", len(n.Services))
	}
	dedicated := 0
	for _, s := range n.Services {
		dedicated += len(s.Dedicated)
	}
	if dedicated != 1960 {
		t.Errorf("%d dedicated ranges, want 1960", dedicated)
	}
	// Rules grow with ranges and decision lists, not with the 29,999 ports.
	rules := bytes.Count(res.Files[RulesFile], []byte("\n-A "))
	if rules > 2*len(res.Plan.Ranges)+10*len(res.Plan.Lists) {
		t.Errorf("%d rules for %d ranges and %d lists", rules, len(res.Plan.Ranges), len(res.Plan.Lists))
	}
	t.Logf("large node: %d ranges, %d lists, %d rules, haproxy.cfg %d bytes", len(res.Plan.Ranges), len(res.Plan.Lists), rules, len(res.Files[HAProxyFile]))
}

func BenchmarkCompileSeed(b *testing.B) {
	for b.Loop() {
		if _, err := Compile(node.Options{}); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCompileLarge(b *testing.B) { benchCompile(b, largeNode()) }

// benchCompile loads, plans and renders a node file, as compile does.
func benchCompile(b *testing.B, data []byte) {
	for b.Loop() {
		n, err := node.Parse(data, "bench.yaml", node.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := FromNode(n); err != nil {
			b.Fatal(err)
		}
	}
}

// TestRules6OnlyWithIPv6: rules.v6 is compiled for a node with an IPv6
// address, and only then.
func TestRules6OnlyWithIPv6(t *testing.T) {
	for _, tt := range []struct {
		addresses string
		want      bool
	}{
		{"[198.51.100.2]", false},
		{`[198.51.100.2, "2001:db8::2"]`, true},
		{`["2001:db8::2"]`, true},
	} {
		yaml := "name: n\naddresses: " + tt.addresses + "\nservices:\n  - {name: ssh, kind: ssh, tcp: \"[::1]:22\"}\n"
		n, err := node.Parse([]byte(yaml), "n.yaml", node.Options{})
		if err != nil {
			t.Fatal(err)
		}
		res, err := FromNode(n)
		if err != nil {
			t.Fatal(err)
		}
		v6, ok := res.Files[Rules6File]
		if ok != tt.want {
			t.Errorf("addresses %s: rules.v6 compiled %v, want %v", tt.addresses, ok, tt.want)
		}
		if ok && !bytes.Contains(v6, []byte("-A PORTSTRIPE -d 2001:db8::2/128 -p tcp -j PORTSTRIPE-TCP")) {
			t.Errorf("addresses %s: rules.v6 does not divert TCP to the IPv6 address:\n%s", tt.addresses, v6)
		}
		if _, ok := res.Files[RulesFile]; !ok {
			t.Errorf("addresses %s: no rules.v4", tt.addresses)
		}
	}
}

package compiler

import (
	"fmt"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// dedicatedNode writes a node with one striped tls-auth service and n
// tls-crypt services, each owning one port (its UDP listener) and a TCP
// backend: n+1 decision lists per protocol, n+1 frontends and backends.
func dedicatedNode(n int) []byte {
	var b strings.Builder
	fmt.Fprintf(&b, `name: wide
addresses: [198.51.100.2]
striped: {tcp: ["1-29999"], udp: ["1-29999"]}
reserved: ["60000-65535"]
haproxy: {listen_port: 30000}
services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 29999, tcp: 127.0.0.1:29999}
`)
	for i := 1; i <= n; i++ {
		fmt.Fprintf(&b, "  - {name: ed%d, kind: openvpn, tls: {mode: tls-crypt}, udp: %d, tcp: 127.0.0.1:%d, dedicated: [\"%d\"]}\n", i, i, i, i)
	}
	return []byte(b.String())
}

// stripedTLSNode writes a node with n striped TLS services, one server name
// each: one decision list of n signatures.
func stripedTLSNode(n int) []byte {
	var b strings.Builder
	b.WriteString("name: sites\naddresses: [198.51.100.2]\nservices:\n")
	for i := range n {
		fmt.Fprintf(&b, "  - {name: site%d, kind: tls, tcp: 127.0.0.1:%d, sni: [s%d.example]}\n", i, 1+i%60000, i)
	}
	return []byte(b.String())
}

func wideNode(b *testing.B, n int) *node.Node { return parse(b, dedicatedNode(n)) }

func parse(b *testing.B, data []byte) *node.Node {
	b.Helper()
	nd, err := node.Parse(data, "bench.yaml", node.Options{})
	if err != nil {
		b.Fatal(err)
	}
	return nd
}

func widePlan(b *testing.B, n int) *plan.Plan {
	b.Helper()
	p, err := plan.Build(wideNode(b, n))
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// The planner and both emitters at 20,000 dedicated services (issue 11:
// near-linear, the whole compile well under 2 s).
func BenchmarkPlan20000(b *testing.B) {
	n := wideNode(b, 20000)
	b.ResetTimer()
	for b.Loop() {
		if _, err := plan.Build(n); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlanStripedTLS20000: 20,000 SNI services on the striped ports,
// ordered and checked for overlapping names in one list.
func BenchmarkPlanStripedTLS20000(b *testing.B) {
	n := parse(b, stripedTLSNode(20000))
	b.ResetTimer()
	for b.Loop() {
		if _, err := plan.Build(n); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkRenderHAProxy20000(b *testing.B) {
	p := widePlan(b, 20000)
	b.ResetTimer()
	for b.Loop() {
		cfg := haproxy.FromPlan(p)
		if err := cfg.Validate(); err != nil {
			b.Fatal(err)
		}
		cfg.Marshal()
	}
}

func BenchmarkRenderIPTables20000(b *testing.B) {
	p := widePlan(b, 20000)
	b.ResetTimer()
	for b.Loop() {
		iptables.Render(p)
	}
}

// BenchmarkCompile20000 is the whole compile: load, plan, render, plan.json.
func BenchmarkCompile20000(b *testing.B) { benchCompile(b, dedicatedNode(20000)) }

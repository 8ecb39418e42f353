package haproxy

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/signature"
)

// manySNINode is a node with one OpenVPN service and 200 striped TLS
// services holding 1,000 server names between them: the first has 204 (more
// than one line holds), the others 4 each.
func manySNINode() (yaml string, names []string) {
	var b strings.Builder
	b.WriteString(`name: sni
addresses: [198.51.100.2]
striped: {tcp: ["1-29999"], udp: ["1-29999"]}
reserved: ["30000-65535"]
haproxy: {listen_port: 20000}
services:
  - {name: vpn, kind: openvpn, tls: {mode: tls-crypt}, udp: 1194, tcp: 127.0.0.1:1194}
`)
	for i := range 200 {
		k := 4
		if i == 0 {
			k = 204
		}
		var sni []string
		for j := range k {
			sni = append(sni, fmt.Sprintf("h%d.s%d.example", j, i))
		}
		names = append(names, sni...)
		fmt.Fprintf(&b, "  - {name: web%d, kind: tls, tcp: 127.0.0.1:%d, sni: [%s]}\n", i, 8000+i, strings.Join(sni, ", "))
	}
	return b.String(), names
}

// TestRealManySNI: 1,000 SNI names across 200 TLS services compile into a
// haproxy.cfg that the real haproxy accepts without a warning, and a
// running HAProxy sends ClientHellos where plan.Route says they land.
func TestRealManySNI(t *testing.T) {
	yaml, names := manySNINode()
	n, err := node.Parse([]byte(yaml), "sni.yaml", node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(n)
	if err != nil {
		t.Fatal(err)
	}
	c := FromPlan(p)
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	h := startConfig(t, c)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, c.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := (Checker{ZeroWarning: true}).Check(ctx, cfg); err != nil {
		t.Fatalf("haproxy -c refuses the compiled config: %v", err)
	}

	// A sample of the names (the first service's in full, since its ACL
	// spans lines), names no service takes, no SNI, and an OpenVPN client.
	r := rand.New(rand.NewPCG(11, 0))
	probes := [][]byte{}
	sample := append(names[:204:204], "unknown.example", "", "h0.s0.example.evil")
	for range 60 {
		sample = append(sample, names[204+r.IntN(len(names)-204)])
	}
	for _, sni := range sample {
		hello, err := signature.ClientHello(sni)
		if err != nil {
			t.Fatal(err)
		}
		probes = append(probes, hello)
	}
	vpn, err := n.Services[0].Kind.Example(n.Services[0].Settings, node.TCP)
	if err != nil {
		t.Fatal(err)
	}
	probes = append(probes, vpn.Packet)
	sample = append(sample, "(openvpn tls-crypt)")
	for i, pkt := range probes {
		want := p.Route(node.TCP, 443, pkt)
		if want.Service == plan.None {
			want.Service = ""
		}
		if i < 204 && want.Service != "web0" {
			t.Fatalf("%s: plan.Route says %q, want web0 (%s)", sample[i], want.Service, want.Via)
		}
		got, _ := h.send(t, "fe_striped", pkt)
		if got != want.Service {
			t.Errorf("%s: landed on %q, plan.Route says %q (%s)", sample[i], got, want.Service, want.Via)
		}
	}
}

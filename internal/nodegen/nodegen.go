// Package nodegen makes random node files for property tests and fuzz
// corpora: deterministic for a seed, covering every kind of the registry
// with its samples of settings (tls modes, SNI and ALPN lists, custom
// bytes), dedicated ports, several addresses of both families, IPv4 and
// IPv6 backends and custom port ranges.
//
// It aims at valid nodes but does not promise them (two random services may
// be impossible to tell apart); Valid keeps drawing until node.Parse and
// plan.Build accept one.
package nodegen

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/signature"
)

// Node returns a random node file.
func Node(r *rand.Rand) string {
	g := gen{r: r}
	return g.node()
}

// Valid returns a random node file that loads and plans, with the number of
// draws that took.
func Valid(r *rand.Rand) (yaml string, draws int) {
	for {
		draws++
		yaml = Node(r)
		n, err := node.Parse([]byte(yaml), "nodegen.yaml", node.Options{})
		if err != nil {
			continue
		}
		if _, err := plan.Build(n); err == nil {
			return yaml, draws
		}
	}
}

type gen struct {
	r     *rand.Rand
	b     strings.Builder
	taken map[int]bool // ports already used as listeners or dedicated
}

func (g *gen) line(format string, args ...any) { fmt.Fprintf(&g.b, format+"\n", args...) }

func (g *gen) pick(xs ...string) string { return xs[g.r.IntN(len(xs))] }

const nameChars = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_.-"

// name is a random valid name: starts with a letter or digit, up to 32.
func (g *gen) name(n int) string {
	b := []byte{nameChars[g.r.IntN(62)]}
	for range g.r.IntN(n) {
		b = append(b, nameChars[g.r.IntN(len(nameChars))])
	}
	return string(b)
}

func (g *gen) node() string {
	g.taken = map[int]bool{}
	// Reserved ports start somewhere between 20000 and 65000, or none are
	// left unreserved above the striped ones.
	resFrom := 20000 + g.r.IntN(45000)
	g.line("name: %q", g.name(31))
	g.line("addresses: [%s]", strings.Join(g.addresses(), ", "))
	g.line("reserved: [\"%d-65535\"]", resFrom)
	g.line("striped:")
	for _, p := range []string{"tcp", "udp"} {
		g.line("  %s: [%s]", p, strings.Join(g.ranges(resFrom), ", "))
	}
	g.haproxy(resFrom)
	services := g.services(resFrom)
	if g.r.IntN(3) == 0 {
		g.line("defaults:")
		g.line("  tcp: %s", g.pick(append([]string{node.Reject}, services.tcp...)...))
		g.line("  udp: %s", g.pick(append([]string{node.Reject}, services.udp...)...))
	}
	return g.b.String()
}

func (g *gen) addresses() []string {
	var out []string
	for range 1 + g.r.IntN(3) {
		a := fmt.Sprintf("%s.%d", g.pick("198.51.100", "203.0.113"), 1+g.r.IntN(254))
		if g.r.IntN(3) == 0 {
			a = fmt.Sprintf(`"2001:db8:%x::%x"`, g.r.IntN(0x10000), 1+g.r.IntN(0xffff))
		}
		if !slices.Contains(out, a) {
			out = append(out, a)
		}
	}
	return out
}

// ranges returns one to three disjoint quoted ranges below limit.
func (g *gen) ranges(limit int) []string {
	var out []string
	lo := 1
	for range 1 + g.r.IntN(3) {
		if lo >= limit-1 {
			break
		}
		from := lo + g.r.IntN(min(limit-lo-1, 2000))
		to := from + g.r.IntN(limit-from)
		if g.r.IntN(4) == 0 {
			to = from // a single port
		}
		out = append(out, fmt.Sprintf("%q", portRange(from, to)))
		lo = to + 2
	}
	return out
}

func portRange(from, to int) string {
	if from == to {
		return fmt.Sprint(from)
	}
	return fmt.Sprintf("%d-%d", from, to)
}

func (g *gen) haproxy(resFrom int) {
	inspect := 1 + g.r.IntN(60000)
	g.line("haproxy:")
	// Frontends take consecutive ports from listen_port; leave room below
	// the reserved ports for a few dozen lists.
	g.line("  listen_port: %d", 1024+g.r.IntN(resFrom-1024-64))
	g.line("  inspect_delay: %dms", inspect)
	g.line("  timeouts: {connect: %dms, client: %dms, server: %ds}", 1+g.r.IntN(60000), inspect+g.r.IntN(3600000), 1+g.r.IntN(86400))
	g.line("  maxconn: %d", 1+g.r.IntN(4096))
	g.line("  master_socket: /run/portstripe/%s-master.sock", g.name(10))
	g.line("  runtime_socket: /run/portstripe/%s.sock", g.name(10))
}

type names struct{ tcp, udp []string }

// services writes two to eight services of random kinds.
func (g *gen) services(resFrom int) names {
	var out names
	g.line("services:")
	used := map[string]bool{}
	for i := range 2 + g.r.IntN(7) {
		name := fmt.Sprintf("s%d_%s", i, g.name(20))
		if used[name] {
			continue
		}
		used[name] = true
		// Every kind of the registry, with one of its samples of settings
		// (server names drawn at random), on a random non-empty subset of
		// its protocols.
		kinds := signature.Kinds()
		k := kinds[g.r.IntN(len(kinds))]
		samples := k.Samples()
		raw := samples[g.r.IntN(len(samples))]
		protos := raw.Protos
		if protos == nil {
			protos = k.Protos()
		}
		if len(raw.SNI) > 0 {
			raw.SNI = nil
			for range 1 + g.r.IntN(3) {
				raw.SNI = append(raw.SNI, fmt.Sprintf("%s%d.example.%s", g.pick("www", "vpn", "a-b", "x"), g.r.IntN(100), g.pick("org", "net", "com")))
			}
		}
		fields := append([]string{"name: " + name, "kind: " + k.Name()}, settings(raw)...)
		hasUDP, hasTCP := slices.Contains(protos, node.UDP), slices.Contains(protos, node.TCP)
		if hasUDP && hasTCP {
			hasUDP, hasTCP = g.r.IntN(4) != 0, g.r.IntN(4) != 0
			if !hasUDP && !hasTCP {
				hasUDP = true
			}
		}
		if hasUDP {
			fields = append(fields, fmt.Sprintf("udp: %d", g.port(resFrom)))
			out.udp = append(out.udp, name)
		}
		if hasTCP {
			backend := fmt.Sprintf("127.0.%d.%d", g.r.IntN(256), 1+g.r.IntN(254))
			if g.r.IntN(4) == 0 {
				backend = "[::1]"
			}
			fields = append(fields, fmt.Sprintf("tcp: %q", fmt.Sprintf("%s:%d", backend, 1+g.r.IntN(65535))))
			out.tcp = append(out.tcp, name)
		}
		if g.r.IntN(3) == 0 {
			p := g.port(resFrom)
			fields = append(fields, fmt.Sprintf("dedicated: [%q]", portRange(p, min(p+g.r.IntN(3), resFrom-1))))
			if g.r.IntN(2) == 0 {
				fields = append(fields, "striped: true")
			}
		}
		g.line("  - {%s}", strings.Join(fields, ", "))
	}
	return out
}

// settings writes a sample's keys as flow YAML fields.
func settings(raw signature.Raw) []string {
	var out []string
	if raw.TLS.Mode != "" {
		tls := "mode: " + raw.TLS.Mode
		if raw.TLS.Digest != "" {
			tls += ", digest: " + raw.TLS.Digest
		}
		out = append(out, "tls: {"+tls+"}")
	}
	if len(raw.SNI) > 0 {
		out = append(out, "sni: ["+strings.Join(raw.SNI, ", ")+"]")
	}
	if len(raw.ALPN) > 0 {
		out = append(out, "alpn: ["+strings.Join(raw.ALPN, ", ")+"]")
	}
	c := raw.Custom
	var custom []string
	for _, kv := range [][2]string{{"prefix", c.Prefix}, {"regex", c.Regex}, {"length", c.Length}, {"min_length", c.MinLength}} {
		if kv[1] != "" {
			custom = append(custom, fmt.Sprintf("%s: %q", kv[0], kv[1]))
		}
	}
	if len(c.Match) > 0 {
		var ms []string
		for _, m := range c.Match {
			f := fmt.Sprintf("offset: %s, bytes: %q", m.Offset, m.Bytes)
			if m.Mask != "" {
				f += fmt.Sprintf(", mask: %q", m.Mask)
			}
			ms = append(ms, "{"+f+"}")
		}
		custom = append(custom, "match: ["+strings.Join(ms, ", ")+"]")
	}
	if len(custom) > 0 {
		out = append(out, "custom: {"+strings.Join(custom, ", ")+"}")
	}
	return out
}

// port returns a port below the reserved ones not handed out before.
func (g *gen) port(resFrom int) int {
	for {
		p := 1 + g.r.IntN(resFrom-4)
		if !g.taken[p] {
			for i := range 3 {
				g.taken[p+i] = true
			}
			return p
		}
	}
}

// Lists returns a node file whose plan has n UDP decision lists (n ≥ 1) and
// no TCP services, for benchmarks of what classification costs per new
// flow as the lists grow: one striped tls-auth instance, rsa, and n-1
// tls-crypt instances, each owning a dedicated range (its list: itself,
// then rsa, whom a dedicated port still accepts). The dedicated ranges
// split ports 1-19999 evenly, lowest first; rsa keeps the rest up to
// 29999, so its list's range is the last one. Listeners: rsa on 30000, the
// tls-crypt instances from 30001 on, neither striped nor reserved (so
// n ≤ 10,000).
func Lists(address string, n int) string {
	var b strings.Builder
	fmt.Fprintf(&b, "name: lists%d\naddresses: [%s]\nstriped: {tcp: [], udp: [\"1-29999\"]}\nreserved: [\"40000-65535\"]\n", n, address)
	b.WriteString("defaults: {tcp: reject, udp: reject}\nservices:\n")
	b.WriteString("  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 30000}\n")
	if n < 2 {
		return b.String()
	}
	width := 19999 / (n - 1)
	for i := range n - 1 {
		from := 1 + i*width
		fmt.Fprintf(&b, "  - {name: ed%d, kind: openvpn, tls: {mode: tls-crypt}, udp: %d, dedicated: [%q]}\n", i, 30001+i, portRange(from, from+width-1))
	}
	return b.String()
}

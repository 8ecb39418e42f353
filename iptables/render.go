// Package iptables turns a plan into iptables rules in the nat table (and,
// for transparent backends, the mangle table), in iptables-restore format
// and portstripe's own chains, and installs, inspects and removes them.
package iptables

import (
	"bytes"
	"fmt"
	"net/netip"
	"strings"

	"github.com/portstripe/portstripe/internal/oneline"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// Table is an iptables table.
type Table string

// Chain is an iptables chain name.
type Chain string

// NAT holds the striping rules; Mangle only the marks of transparent
// backends' replies, and only when some backend is transparent.
const (
	NAT    Table = "nat"
	Mangle Table = "mangle"
)

// The chains portstripe owns. Everything it creates starts with Prefix, so
// Clean and the stale-chain sweep can find it without a plan.
const (
	Prefix = "PORTSTRIPE"
	// ChainEntry is jumped to from PREROUTING and OUTPUT; it sends traffic
	// for the node's addresses to the per-protocol chains.
	ChainEntry Chain = Prefix
	ChainUDP   Chain = Prefix + "-UDP"
	ChainTCP   Chain = Prefix + "-TCP"
	// ListChainPrefix starts the chain of each UDP decision list; the rest is
	// the list's ID, so the name stays the same while the list does.
	ListChainPrefix = Prefix + "-U-"
	// ChainMark (mangle) marks the replies of transparent backends, so
	// the reply route (plan.ReplyRoute) takes them back to HAProxy; it is
	// jumped to from mangle OUTPUT, where a local backend's replies pass.
	ChainMark Chain = Prefix + "-MARK"
)

// MarkHook is the built-in mangle chain that jumps to ChainMark.
const MarkHook Chain = "OUTPUT"

// JumpComment marks the jumps portstripe adds to the built-in chains.
const JumpComment = "portstripe"

// Hooks are the built-in nat chains that jump to ChainEntry: PREROUTING for
// traffic from outside, OUTPUT so the node's own clients (and local tests)
// are striped too.
var Hooks = []Chain{"PREROUTING", "OUTPUT"}

// JumpRule is the rule spec of the jump from a hook to ChainEntry.
func JumpRule() []string { return jumpTo(ChainEntry) }

// MarkJumpRule is the rule spec of the jump from MarkHook to ChainMark.
func MarkJumpRule() []string { return jumpTo(ChainMark) }

func jumpTo(c Chain) []string {
	return []string{"-m", "comment", "--comment", JumpComment, "-j", string(c)}
}

// maxComment is the longest comment xt_comment takes (256 bytes with NUL).
const maxComment = 255

// ListChain names the chain of a UDP decision list.
func ListChain(l plan.List) Chain { return Chain(ListChainPrefix + l.ID()) }

// Chains returns the chains Render declares, in the order it declares them.
func Chains(p *plan.Plan) []string {
	out := []string{string(ChainEntry), string(ChainUDP), string(ChainTCP)}
	for _, i := range p.UDPLists() {
		out = append(out, string(ListChain(p.Lists[i])))
	}
	return out
}

// lines collects rule-file lines, as kube-proxy's proxier does: one buffer
// for chain declarations and one for rules, joined at the end.
type lines struct{ bytes.Buffer }

func (b *lines) line(words ...string) {
	b.WriteString(strings.Join(words, " "))
	b.WriteByte('\n')
}

func (b *lines) comment(format string, args ...any) {
	b.WriteString("# ")
	b.WriteString(oneline.Cut(oneline.Clean(fmt.Sprintf(format, args...)), maxCommentLine))
	b.WriteByte('\n')
}

// maxCommentLine bounds a "# ..." line: iptables-restore reads lines into a
// 10 KiB buffer and would read the rest of a longer one as a line of its own.
const maxCommentLine = 1024

// Render writes the plan's IPv4 rules as an iptables-restore file for the
// nat table (rules.v4). It declares (and so flushes, with --noflush) only
// portstripe's chains; the jumps into them are added by Apply, so other
// tools' rules in the built-in chains are never replaced. The output
// depends only on the plan.
func Render(p *plan.Plan) []byte { return render(p, node.IPv4) }

// Render6 is Render for the plan's IPv6 addresses: an ip6tables-restore
// file (rules.v6) with the same chains and decisions, whose u32 checks read
// the fixed 40-byte IPv6 header. A node without IPv6 addresses needs none
// (HasRules6).
func Render6(p *plan.Plan) []byte { return render(p, node.IPv6) }

// HasRules6 reports whether the plan's node has an IPv6 address, and so a
// rules.v6.
func HasRules6(p *plan.Plan) bool { return len(node.AddressesOf(p.Node.Addresses, node.IPv6)) > 0 }

// Extension6Limit is what the IPv6 rules cannot see, for explain and the
// header of rules.v6.
const Extension6Limit = "ip6tables u32 reads the fixed 40-byte IPv6 header: a UDP first packet behind IPv6 extension headers (hop-by-hop, destination options, fragment) is not diverted and reaches whatever listens on the node at its port"

// restoreTool is the command that loads a family's file.
func restoreTool(f node.Family) string {
	if f == node.IPv6 {
		return "ip6tables-restore"
	}
	return "iptables-restore"
}

func render(p *plan.Plan, f node.Family) []byte {
	var head, chains, rules lines
	tool := restoreTool(f)
	// The reply route is IPv4 only: the planner refuses transparent
	// backends on a node with IPv6 addresses.
	marks := p.ReplyRoute != nil && f == node.IPv4

	for _, l := range p.Header() {
		head.comment("%s", l)
	}
	tables := "the nat table"
	if marks {
		tables = "the nat and mangle tables"
	}
	head.comment("This file only fills portstripe's own chains in %s. `portstripe apply`", tables)
	head.comment("loads it with `%s --noflush` (declaring a chain flushes it) and then", tool)
	head.comment("hooks it in with these rules, which the file does not contain:")
	for _, h := range Hooks {
		head.comment("  -t nat -I %s %s", h, strings.Join(quoteArgs(JumpRule()), " "))
	}
	if marks {
		head.comment("  -t mangle -I %s %s", MarkHook, strings.Join(quoteArgs(MarkJumpRule()), " "))
		head.comment("and routes marked replies back to HAProxy: ip rule fwmark %#x lookup %d, table %d: local 0.0.0.0/0 dev lo.", p.ReplyRoute.Mark, p.ReplyRoute.Table, p.ReplyRoute.Table)
	}
	if f == node.IPv6 {
		head.comment("Limit: %s.", Extension6Limit)
	}
	if len(p.Node.Reserved) > 0 {
		head.comment("Reserved ports (%s) get no rule.", p.Node.Reserved)
	}

	chains.line("*" + string(NAT))
	for _, c := range Chains(p) {
		chains.line(":" + c + " - [0:0]")
	}

	// Entry: per address of the family, only the protocols that have ranges.
	hasProto := map[node.Proto]bool{}
	for _, r := range p.Ranges {
		hasProto[r.Proto] = true
	}
	for _, a := range node.AddressesOf(p.Node.Addresses, f) {
		for _, proto := range node.Protos {
			if hasProto[proto] {
				rules.line("-A", string(ChainEntry), "-d", netip.PrefixFrom(a, a.BitLen()).String(), "-p", string(proto), "-j", string(protoChain(proto)))
			}
		}
	}

	for _, d := range dispatches(p.Ranges) {
		l := p.Lists[d.list]
		switch d.proto {
		case node.UDP:
			rules.line("-A", string(ChainUDP), "-p udp", dportMatch(d),
				"-m comment --comment", quote(truncate(portsComment("udp ", d.ports)+": list "+l.Name)),
				"-j", string(ListChain(l)))
		case node.TCP:
			if l.Frontend == nil {
				rules.comment("tcp %s: list %s has no frontend; left undiverted", d.ports, l.Name)
				continue
			}
			rules.line("-A", string(ChainTCP), "-p tcp", dportMatch(d),
				"-m comment --comment", quote(truncate(portsComment("tcp ", d.ports)+": frontend "+l.Frontend.Name)),
				"-j DNAT --to-destination", fmt.Sprintf(":%d", l.Frontend.Port))
		}
	}

	for _, i := range p.UDPLists() {
		renderList(&rules, p.Lists[i], f)
	}
	rules.line("COMMIT")

	var out bytes.Buffer
	out.Write(head.Bytes())
	out.Write(chains.Bytes())
	out.Write(rules.Bytes())
	if marks {
		out.Write(renderMarks(p))
	}
	return out.Bytes()
}

// renderMarks is the mangle table's part: a transparent backend answers
// the client's own address, so its replies are marked for the reply route,
// keyed on the backend's address and port.
func renderMarks(p *plan.Plan) []byte {
	var b lines
	b.line("*" + string(Mangle))
	b.line(":" + string(ChainMark) + " - [0:0]")
	for _, be := range p.Backends {
		if be.ClientAddress != node.ClientTransparent {
			continue
		}
		b.line("-A", string(ChainMark), "-s", be.Addr.Addr().String()+"/32", "-p tcp -m tcp --sport", fmt.Sprint(be.Addr.Port()),
			"-m comment --comment", quote(truncate(be.Service+": transparent, replies to HAProxy")),
			"-j MARK --set-xmark", fmt.Sprintf("%#x/0xffffffff", p.ReplyRoute.Mark))
	}
	b.line("COMMIT")
	return b.Bytes()
}

// renderList writes a UDP list's chain: one DNAT per decision, in order, then
// the default. On IPv6 the default checks the next header too, so a first
// packet behind extension headers is never diverted, by a signature or by
// the default alike.
func renderList(b *lines, l plan.List, f node.Family) {
	c := string(ListChain(l))
	b.comment("%s: list %s, udp %s", c, l.Name, l.Ports.Short(200))
	dnat := func(exprs []string, comment string, port uint16) {
		words := []string{"-A", c, "-p udp"}
		for _, e := range exprs {
			words = append(words, "-m u32 --u32", quote(e))
		}
		b.line(append(words, "-m comment --comment", quote(comment), "-j DNAT --to-destination", fmt.Sprintf(":%d", port))...)
	}
	for _, d := range l.Decisions {
		exprs, err := U32(f, d.Signature)
		if err != nil {
			// The planner only hands out byte-check signatures for UDP; a
			// rule that matched everything instead would steal the port.
			b.comment("%s: %s cannot be checked in the kernel (%v); no rule", d.Target.Service, d.Signature.Label, err)
			continue
		}
		dnat(exprs, DecisionComment(l, d), d.Target.Port)
	}
	if l.Default.Rejects() {
		b.comment("default: reject: a first packet matching none of the above returns undiverted to its port")
		return
	}
	// The one rule that takes what is left: on IPv4 no u32 match at all,
	// on IPv6 the next header's.
	var rest []string
	if f == node.IPv6 {
		rest = []string{nextHeader}
	}
	dnat(rest, DefaultComment(l), l.Default.Port)
}

// DecisionComment is the comment of a decision's rule in a UDP list chain,
// as Counters reports it.
func DecisionComment(l plan.List, d plan.Decision) string {
	return portsComment(fmt.Sprintf("%s: %s on udp ", d.Target.Service, d.Signature.Label), l.Ports)
}

// DefaultComment is the comment of a UDP list's default rule.
func DefaultComment(l plan.List) string {
	return portsComment(fmt.Sprintf("default: %s on udp ", l.Default.Service), l.Ports)
}

func protoChain(p node.Proto) Chain {
	if p == node.UDP {
		return ChainUDP
	}
	return ChainTCP
}

// maxMultiport is how many ports one multiport match takes; a range counts
// as two (xt_multiport's XT_MULTI_PORTS).
const maxMultiport = 15

// dispatch is one rule of the UDP or TCP chain: ranges of one protocol that
// go to the same list, as many as one multiport match takes.
type dispatch struct {
	proto node.Proto
	list  int
	ports node.PortSet
}

// dispatches packs the plan's ranges into dispatch rules, in the order each
// list first appears, so rules fall with the ranges a list spans (the
// seed's striped list, two ranges around the dedicated ports, takes one
// rule). The ranges are disjoint, so the order of the rules does not change
// where a packet goes.
func dispatches(ranges []plan.Range) []dispatch {
	type key struct {
		proto node.Proto
		list  int
	}
	var (
		out  []dispatch
		open = map[key]int{} // the dispatch a key is filling, index in out
		used = map[key]int{} // its multiport slots used
	)
	for _, r := range ranges {
		k, cost := key{r.Proto, r.List}, 2
		if r.From == r.To {
			cost = 1
		}
		i, ok := open[k]
		if !ok || used[k]+cost > maxMultiport {
			out = append(out, dispatch{proto: r.Proto, list: r.List})
			i, used[k] = len(out)-1, 0
			open[k] = i
		}
		out[i].ports = append(out[i].ports, r.Ports())
		used[k] += cost
	}
	return out
}

// dportMatch matches a dispatch's destination ports: the protocol's own
// match for one range, multiport for several.
func dportMatch(d dispatch) string {
	ports := make([]string, len(d.ports))
	for i, r := range d.ports {
		ports[i] = fmt.Sprint(r.From)
		if r.From != r.To {
			ports[i] += fmt.Sprintf(":%d", r.To)
		}
	}
	if len(ports) == 1 {
		return fmt.Sprintf("-m %s --dport %s", d.proto, ports[0])
	}
	return "-m multiport --dports " + strings.Join(ports, ",")
}

// portsComment appends a port list to prefix, shortened to fit a comment.
func portsComment(prefix string, ports node.PortSet) string {
	return truncate(prefix + ports.Short(maxComment-len(prefix)))
}

// truncate cuts s to what a --comment takes.
func truncate(s string) string { return oneline.Cut(s, maxComment) }

// quote makes s one iptables-restore argument: cleaned, and a double quote
// or backslash, which would end or escape the argument, made ' or /.
func quote(s string) string {
	return `"` + strings.NewReplacer(`"`, "'", `\`, "/").Replace(oneline.Clean(s)) + `"`
}

// quoteArgs quotes the arguments that contain spaces, for display.
func quoteArgs(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		if strings.ContainsAny(a, " \t") {
			a = quote(a)
		}
		out[i] = a
	}
	return out
}

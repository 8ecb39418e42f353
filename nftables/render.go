// Package nftables turns a plan into one nftables table of portstripe's
// own, `table inet portstripe` in portstripe.nft, and installs, observes
// and removes it with nft. IPv4 and IPv6 share the table: nft's @th
// offsets are relative to the transport header, so one rule classifies a
// first packet over either family, with IPv4 options or IPv6 extension
// headers.
package nftables

import (
	"bytes"
	"errors"
	"fmt"
	"strings"

	"github.com/portstripe/portstripe/internal/oneline"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/signature"
)

// The table portstripe owns, and the file it is rendered into.
const (
	Family = "inet"
	Table  = "portstripe"
	File   = "portstripe.nft"
	// StateTable is the table's name in a firewall.State.
	StateTable = Family + " " + Table
)

// The table's sets, maps and chains. Names are nft identifiers that are
// not keywords ("udp" and "mark" cannot name a chain).
const (
	// SetNode4 and SetNode6 hold the node's addresses; traffic to them is
	// striped.
	SetNode4 = "node4"
	SetNode6 = "node6"
	// MapUDPLists maps a UDP port range to the chain of its decision list
	// (a verdict map: one lookup, however many lists).
	MapUDPLists = "udp_lists"
	// MapTCPFrontends maps a TCP port range to its HAProxy frontend's port.
	MapTCPFrontends = "tcp_frontends"
	// ChainPrerouting and ChainOutput are the base chains (traffic from
	// outside, and the node's own clients); both jump to ChainNode for the
	// node's addresses.
	ChainPrerouting = "prerouting"
	ChainOutput     = "output"
	ChainNode       = "node"
	// ChainReplyMarks marks transparent backends' replies for the reply
	// route (plan.ReplyRoute).
	ChainReplyMarks = "reply_marks"
	// ListChainPrefix starts the chain of each UDP decision list; the rest
	// is the list's ID, so the name stays the same while the list does.
	ListChainPrefix = "list_"
)

// maxComment is the longest comment nft takes ("comment too long, 128
// characters maximum allowed", nft 1.0.6).
const maxComment = 128

// maxCommentLine bounds a "# ..." line of the file.
const maxCommentLine = 1024

// ListChain names the chain of a UDP decision list.
func ListChain(l plan.List) string { return ListChainPrefix + l.ID() }

// group is the ranges of one protocol that lead to one list, in the order
// each list first appears among the plan's ranges.
type group struct {
	list   int
	ranges []plan.Range
}

func groups(p *plan.Plan, proto node.Proto) []group {
	var out []group
	at := map[int]int{}
	for _, r := range p.Ranges {
		if r.Proto != proto {
			continue
		}
		i, ok := at[r.List]
		if !ok {
			i = len(out)
			at[r.List] = i
			out = append(out, group{list: r.List})
		}
		out[i].ranges = append(out[i].ranges, r)
	}
	return out
}

// writer collects the file's lines, indented by nesting.
type writer struct {
	bytes.Buffer
	depth int
}

func (w *writer) line(format string, args ...any) {
	w.WriteString(strings.Repeat("\t", w.depth))
	fmt.Fprintf(w, format, args...)
	w.WriteByte('\n')
}

func (w *writer) comment(format string, args ...any) {
	w.line("# %s", oneline.Cut(oneline.Clean(fmt.Sprintf(format, args...)), maxCommentLine))
}

func (w *writer) open(format string, args ...any) {
	w.line(format+" {", args...)
	w.depth++
}

func (w *writer) close() {
	w.depth--
	w.line("}")
}

// Render writes the plan as portstripe.nft: one transaction that creates
// the table if it is missing, deletes it, and declares it anew, so `nft -f`
// replaces the previous table at once and touches no other. The output
// depends only on the plan.
func Render(p *plan.Plan) []byte {
	var w writer
	for _, l := range p.Header() {
		w.comment("%s", l)
	}
	w.comment("`portstripe apply` loads this file with `nft -f` as one transaction: the first")
	w.comment("two commands remove the previous table (creating it first, so that the delete")
	w.comment("cannot fail), the third declares it anew. Its own base chains hook it in;")
	w.comment("no other table or chain is touched, and other tools' iptables flushes leave it.")
	if p.ReplyRoute != nil {
		w.comment("Marked replies are routed back to HAProxy: ip rule fwmark %#x lookup %d, table %d: local 0.0.0.0/0 dev lo.", p.ReplyRoute.Mark, p.ReplyRoute.Table, p.ReplyRoute.Table)
	}
	if len(p.Node.Reserved) > 0 {
		w.comment("Reserved ports (%s) get no rule.", p.Node.Reserved)
	}
	w.line("table %s %s {}", Family, Table)
	w.line("delete table %s %s", Family, Table)
	w.open("table %s %s", Family, Table)
	renderAddresses(&w, p)
	udp, tcp := groups(p, node.UDP), groups(p, node.TCP)
	renderUDPMap(&w, p, udp)
	hasTCP := renderTCPMap(&w, p, tcp)
	var jumps []string
	for _, f := range families(p) {
		jumps = append(jumps, fmt.Sprintf("%s daddr @%s jump %s", f.proto, f.set, ChainNode))
	}
	w.open("chain %s", ChainPrerouting)
	w.line("%s", hookPrerouting)
	for _, j := range jumps {
		w.line("%s", j)
	}
	w.close()
	w.open("chain %s", ChainOutput)
	w.line("%s", hookOutput)
	for _, j := range jumps {
		w.line("%s", j)
	}
	w.close()
	w.open("chain %s", ChainNode)
	if len(udp) > 0 {
		w.line("udp dport vmap @%s", MapUDPLists)
	}
	if hasTCP {
		w.line("tcp dport @%s counter dnat to :tcp dport map @%s comment %s", MapTCPFrontends, MapTCPFrontends, quote("tcp: to the HAProxy frontend of the port's list"))
	}
	w.close()
	for _, i := range p.UDPLists() {
		renderList(&w, p.Lists[i])
	}
	if p.ReplyRoute != nil {
		renderMarks(&w, p)
	}
	w.close()
	return w.Bytes()
}

// The base chains' declarations, as nft lists them back.
const (
	hookPrerouting = "type nat hook prerouting priority dstnat; policy accept;"
	// nft names -100 "dstnat" only for prerouting.
	hookOutput = "type nat hook output priority -100; policy accept;"
	hookMarks  = "type route hook output priority mangle; policy accept;"
)

// family is one address family of the node: its set and the words nft
// matches its destination address with.
type family struct {
	proto, set, typ string
	addrs           []string
}

// families returns the node's address families that have addresses, IPv4
// first; an empty family gets no set and no rule.
func families(p *plan.Plan) []family {
	v4 := family{proto: "ip", set: SetNode4, typ: "ipv4_addr"}
	v6 := family{proto: "ip6", set: SetNode6, typ: "ipv6_addr"}
	for _, a := range p.Node.Addresses {
		if a.Is4() || a.Is4In6() {
			v4.addrs = append(v4.addrs, a.Unmap().String())
		} else {
			v6.addrs = append(v6.addrs, a.String())
		}
	}
	var out []family
	for _, f := range []family{v4, v6} {
		if len(f.addrs) > 0 {
			out = append(out, f)
		}
	}
	return out
}

func renderAddresses(w *writer, p *plan.Plan) {
	for _, f := range families(p) {
		w.open("set %s", f.set)
		w.line("type %s", f.typ)
		renderElements(w, f.addrs)
		w.close()
	}
}

// renderElements writes a set's or map's elements, one a line.
func renderElements(w *writer, elems []string) {
	w.open("elements =")
	for _, e := range elems {
		w.line("%s,", e)
	}
	w.close()
}

func renderUDPMap(w *writer, p *plan.Plan, gs []group) {
	if len(gs) == 0 {
		return
	}
	w.open("map %s", MapUDPLists)
	w.line("type inet_service : verdict")
	w.line("flags interval")
	w.open("elements =")
	for _, g := range gs {
		l := p.Lists[g.list]
		w.comment("list %s", l.Name)
		for _, r := range g.ranges {
			w.line("%s : jump %s,", portRange(r), ListChain(l))
		}
	}
	w.close()
	w.close()
}

// renderTCPMap writes the map from TCP port to frontend port, and reports
// whether it has any element.
func renderTCPMap(w *writer, p *plan.Plan, gs []group) bool {
	var with []group
	for _, g := range gs {
		if l := p.Lists[g.list]; l.Frontend == nil {
			w.comment("tcp %s: list %s has no frontend; left undiverted", l.Ports, l.Name)
			continue
		}
		with = append(with, g)
	}
	if len(with) == 0 {
		return false
	}
	w.open("map %s", MapTCPFrontends)
	w.line("type inet_service : inet_service")
	w.line("flags interval")
	w.open("elements =")
	for _, g := range with {
		l := p.Lists[g.list]
		w.comment("list %s: frontend %s", l.Name, l.Frontend.Name)
		for _, r := range g.ranges {
			w.line("%s : %d,", portRange(r), l.Frontend.Port)
		}
	}
	w.close()
	w.close()
	return true
}

func portRange(r plan.Range) string {
	if r.From == r.To {
		return fmt.Sprint(r.From)
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// renderList writes a UDP list's chain: one DNAT per decision, in order,
// then the default. A rule that DNATs names its transport protocol (`meta
// l4proto udp`, or `udp length`, which implies it): nft refuses a port
// mapping otherwise.
func renderList(w *writer, l plan.List) {
	w.open("chain %s", ListChain(l))
	w.line("comment %s", quote(ListComment(l)))
	for _, d := range l.Decisions {
		match, err := Match(d.Signature)
		if err != nil {
			// The planner only hands out byte-check signatures for UDP; a
			// rule that matched everything instead would steal the port.
			w.comment("%s: %s cannot be checked in the kernel (%v); no rule", d.Target.Service, d.Signature.Label, err)
			continue
		}
		w.line("%s counter dnat to :%d comment %s", match, d.Target.Port, quote(DecisionComment(l, d)))
	}
	if l.Default.Rejects() {
		w.comment("default: reject: a first packet matching none of the above returns undiverted to its port")
	} else {
		w.line("meta l4proto udp counter dnat to :%d comment %s", l.Default.Port, quote(DefaultComment(l)))
	}
	w.close()
}

// renderMarks writes the chain marking transparent backends' replies: a
// transparent backend answers the client's own address, so its replies
// are marked for the reply route, keyed on the backend's address and port.
func renderMarks(w *writer, p *plan.Plan) {
	w.open("chain %s", ChainReplyMarks)
	w.line("%s", hookMarks)
	for _, be := range p.Backends {
		if be.ClientAddress != node.ClientTransparent {
			continue
		}
		proto := "ip"
		if a := be.Addr.Addr(); a.Is6() && !a.Is4In6() {
			proto = "ip6"
		}
		w.line("%s saddr %s tcp sport %d meta mark set %s comment %s", proto, be.Addr.Addr().Unmap(), be.Addr.Port(),
			hexBits(uint64(p.ReplyRoute.Mark), 32), quote(be.Service+": transparent, replies to HAProxy"))
	}
	w.close()
}

// ListComment says what a list chain is for.
func ListComment(l plan.List) string {
	return portsComment(fmt.Sprintf("list %s, udp ", l.Name), l.Ports)
}

// DecisionComment is the comment of a decision's rule in a UDP list chain,
// as Counters reads it back.
func DecisionComment(l plan.List, d plan.Decision) string {
	return portsComment(fmt.Sprintf("%s: %s on udp ", d.Target.Service, d.Signature.Label), l.Ports)
}

// DefaultComment is the comment of a UDP list's default rule.
func DefaultComment(l plan.List) string {
	return portsComment(fmt.Sprintf("default: %s on udp ", l.Default.Service), l.Ports)
}

// portsComment appends a port list to prefix, shortened to fit a comment.
func portsComment(prefix string, ports node.PortSet) string {
	return oneline.Cut(prefix+ports.Short(maxComment-len(prefix)), maxComment)
}

// quote makes s one nft string: cleaned, within maxComment bytes, and a
// double quote or backslash, which nft cannot take inside a string, made '
// or /.
func quote(s string) string {
	s = strings.NewReplacer(`"`, "'", `\`, "/").Replace(oneline.Clean(s))
	return `"` + oneline.Cut(s, maxComment) + `"`
}

// ErrNotInKernel is returned for signatures that need a protocol parser
// (TLS, HTTP), which byte matches cannot express.
var ErrNotInKernel = errors.New("needs a protocol parser, not byte checks")

// udpHeaderLen is what `udp length` counts beyond the payload, and where
// the payload starts from the transport header (@th).
const udpHeaderLen = 8

// Match translates a UDP signature into nft matches: `udp length` for an
// exact payload length (it counts the 8-byte header) or `udp length >=`
// for a least one, then one `@th` payload match per run of up to 4 checked
// bytes, at the bit offset (8+o)*8 of payload offset o, under the bytes'
// mask. A read past the end of a short packet fails the match, so reads
// need no placing. A signature with no checks is refused: it would take
// every datagram.
func Match(sig signature.Signature) (string, error) {
	if sig.Parsed() {
		return "", fmt.Errorf("%s: %w", sig.Label, ErrNotInKernel)
	}
	if sig.Empty() {
		return "", fmt.Errorf("%s: %w", sig.Label, signature.ErrNoMatch)
	}
	var words []string
	for _, l := range []int{sig.Length, sig.MinLength} {
		if l+udpHeaderLen > 0xFFFF {
			return "", fmt.Errorf("%s: payload length %d does not fit a UDP datagram", sig.Label, l)
		}
	}
	switch {
	case sig.Length > 0:
		words = append(words, fmt.Sprintf("udp length %d", udpHeaderLen+sig.Length))
	case sig.MinLength > 0:
		words = append(words, fmt.Sprintf("udp length >= %d", udpHeaderLen+sig.MinLength))
	default:
		words = append(words, "meta l4proto udp")
	}
	for _, b := range sig.Bytes {
		if b.Offset < 0 || len(b.Value) == 0 {
			return "", fmt.Errorf("%s: %s: empty check or negative offset %d", sig.Label, b.What, b.Offset)
		}
		if sig.Length > 0 && b.Offset+len(b.Value) > sig.Length {
			return "", fmt.Errorf("%s: %s: bytes %d-%d lie past the payload length %d", sig.Label, b.What, b.Offset, b.Offset+len(b.Value)-1, sig.Length)
		}
		for i := 0; i < len(b.Value); i += 4 {
			chunk := b.Value[i:min(i+4, len(b.Value))]
			pm := payloadMatch{Offset: (udpHeaderLen + b.Offset + i) * 8, Bits: 8 * len(chunk)}
			for k, c := range chunk {
				m := byte(0xFF)
				if b.Mask != nil {
					m = b.Mask[i+k]
				}
				pm.Value, pm.Mask = pm.Value<<8|uint64(c&m), pm.Mask<<8|uint64(m)
			}
			words = append(words, pm.String())
		}
	}
	return strings.Join(words, " "), nil
}

// payloadMatch compares Bits bits of the packet at bit Offset from the
// transport header, under Mask, with Value.
type payloadMatch struct {
	Offset, Bits int
	Mask, Value  uint64
}

func (m payloadMatch) full() uint64 { return 1<<m.Bits - 1 }

// String writes the match as nft lists it back: `@th,O,B VALUE`, or with
// a partial mask `@th,O,B & MASK == VALUE`.
func (m payloadMatch) String() string {
	at := fmt.Sprintf("@th,%d,%d", m.Offset, m.Bits)
	if m.Mask != m.full() {
		return fmt.Sprintf("%s & %s == %s", at, hexBits(m.Mask, m.Bits), hexBits(m.Value, m.Bits))
	}
	return at + " " + hexBits(m.Value, m.Bits)
}

// hexBits writes v in hex, as many digits as bits takes, so a value reads
// as the bytes it checks (0x00000001, not 0x1).
func hexBits(v uint64, bits int) string {
	return fmt.Sprintf("0x%0*x", (bits+3)/4, v)
}

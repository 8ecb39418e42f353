package plan

import (
	"fmt"
	"net/netip"
	"slices"
	"sort"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/signature"
)

// None is the service a first packet reaches when no rule takes it.
const None = "none"

// Route is where a client's first packet lands, and why.
type Route struct {
	Proto node.Proto `json:"proto"`
	Port  uint16     `json:"port"`
	// Family and Address are the node address the client sends to.
	Family  node.Family `json:"family"`
	Address netip.Addr  `json:"address"`
	// Service is None when no rule takes the packet.
	Service string `json:"service"`
	// Target is ip:port: the node address and UDP listener port, or the TCP
	// backend; empty when Service is None.
	Target string `json:"target,omitempty"`
	// Rule is what took the packet: the Step-th check, the list's
	// default, or none (the port is not striped, or reserved).
	Rule      Rule   `json:"rule"`
	Step      int    `json:"step,omitempty"`
	Signature string `json:"signature,omitempty"`
	// Range is the run of ports holding Port that shares the decision list
	// List, and Frontend the HAProxy frontend classifying it (TCP); all
	// empty when no rule touches the port.
	Range    *node.PortRange `json:"range,omitempty"`
	List     string          `json:"list,omitempty"`
	Frontend *Frontend       `json:"frontend,omitempty"`
	// Via says all of it in a sentence.
	Via string `json:"via"`
}

// UDPLists returns the indexes of the UDP lists that some range uses, in
// list order: the lists a firewall backend gives a chain of its own.
func (p *Plan) UDPLists() []int {
	used := map[int]bool{}
	for _, r := range p.Ranges {
		if r.Proto == node.UDP {
			used[r.List] = true
		}
	}
	var out []int
	for i, l := range p.Lists {
		if l.Proto == node.UDP && used[i] {
			out = append(out, i)
		}
	}
	return out
}

// Range returns the range holding a port, if any. Ranges are sorted by
// protocol (UDP first) and port and do not overlap.
func (p *Plan) Range(proto node.Proto, port uint16) (Range, bool) {
	rank := func(pr node.Proto) int { return slices.Index(node.Protos, pr) }
	i := sort.Search(len(p.Ranges), func(i int) bool {
		r := p.Ranges[i]
		return rank(r.Proto) > rank(proto) || r.Proto == proto && r.To >= port
	})
	if i < len(p.Ranges) && p.Ranges[i].Proto == proto && p.Ranges[i].Ports().Contains(port) {
		return p.Ranges[i], true
	}
	return Range{}, false
}

// Route answers "where does a client whose first packet is payload, sent to
// port on the node's first address, land?" from the same lists the emitters
// turn into rules. TCP follows HAProxy: a signature still waiting for bytes
// when the packet ends counts as no match, as when the inspect-delay ends.
func (p *Plan) Route(proto node.Proto, port uint16, payload []byte) Route {
	return p.RouteTo(p.Node.Addresses[0], proto, port, payload)
}

// RouteTo is Route for a client sending to dst, one of the node's
// addresses: both families' rules hold the same lists, so only the address
// a UDP listener is reached on differs.
func (p *Plan) RouteTo(dst netip.Addr, proto node.Proto, port uint16, payload []byte) Route {
	base := Route{Proto: proto, Port: port, Family: node.FamilyOf(dst), Address: dst}
	r, ok := p.Range(proto, port)
	if !ok {
		why, rule := "not striped", RuleNotStriped
		if p.Node.Reserved.Contains(port) {
			why, rule = "reserved", RuleReserved
		}
		base.Service, base.Rule, base.Via = None, rule, fmt.Sprintf("%s %d is %s: no rule touches it", proto, port, why)
		return base
	}
	l := p.Lists[r.List]
	ports := r.Ports()
	base.Range, base.List, base.Frontend = &ports, l.Name, l.Frontend
	where := fmt.Sprintf("%s %s (list %s)", proto, r.Ports(), l.Name)
	if l.Frontend != nil {
		where += fmt.Sprintf(" → frontend %s :%d", l.Frontend.Name, l.Frontend.Port)
	}
	waited := ""
	for i, d := range l.Decisions {
		switch d.Signature.Match(payload) {
		case signature.Match:
			base.Rule, base.Step, base.Signature = RuleCheck, i+1, d.Signature.Label
			return p.route(base, d.Target, fmt.Sprintf("%s, rule %d: %s (%s)", where, i+1, d.Signature.Label, d.Signature.Describe()))
		case signature.NeedMore:
			if waited == "" {
				waited = fmt.Sprintf(" after waiting %s for more bytes for %s", p.HAProxy.InspectDelay, d.Signature.Label)
			}
		}
	}
	base.Rule = RuleDefault
	return p.route(base, l.Default, fmt.Sprintf("%s, default (no signature matched%s)", where, waited))
}

func (p *Plan) route(r Route, t Target, via string) Route {
	r.Service, r.Via = t.Service, via
	switch {
	case t.Rejects():
		r.Service = None
	case t.Backend.IsValid():
		r.Target = t.Backend.String()
	default:
		r.Target = netip.AddrPortFrom(r.Address, t.Port).String()
	}
	return r
}

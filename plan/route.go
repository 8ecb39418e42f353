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
	Service string `json:"service"`
	// Target is ip:port: the node address and UDP listener port, or the TCP
	// backend; empty when Service is None.
	Target string `json:"target"`
	Via    string `json:"via"`
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
	r, ok := p.Range(proto, port)
	if !ok {
		why := "not striped"
		if p.Node.Reserved.Contains(port) {
			why = "reserved"
		}
		return Route{Service: None, Via: fmt.Sprintf("%s %d is %s: no rule touches it", proto, port, why)}
	}
	l := p.Lists[r.List]
	where := fmt.Sprintf("%s %s (list %s)", proto, r.Ports(), l.Name)
	if l.Frontend != nil {
		where += fmt.Sprintf(" → frontend %s :%d", l.Frontend.Name, l.Frontend.Port)
	}
	waited := ""
	for i, d := range l.Decisions {
		switch d.Signature.Match(payload) {
		case signature.Match:
			return p.route(d.Target, fmt.Sprintf("%s, rule %d: %s (%s)", where, i+1, d.Signature.Label, d.Signature.Describe()))
		case signature.NeedMore:
			if waited == "" {
				waited = fmt.Sprintf(" after waiting %s for more bytes for %s", p.HAProxy.InspectDelay, d.Signature.Label)
			}
		}
	}
	return p.route(l.Default, fmt.Sprintf("%s, default (no signature matched%s)", where, waited))
}

func (p *Plan) route(t Target, via string) Route {
	switch {
	case t.Rejects():
		return Route{Service: None, Via: via}
	case t.Backend.IsValid():
		return Route{Service: t.Service, Target: t.Backend.String(), Via: via}
	}
	return Route{Service: t.Service, Target: netip.AddrPortFrom(p.Node.Addresses[0], t.Port).String(), Via: via}
}

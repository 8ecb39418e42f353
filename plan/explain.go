package plan

import (
	"fmt"

	"github.com/portstripe/portstripe/node"
)

// Rule names which rule of a decision list takes (or would take) a first
// packet, in explain's rows and route's answers.
type Rule string

const (
	// RuleCheck is the Step-th signature of a list.
	RuleCheck Rule = "check"
	// RuleDefault is the list's default: no signature matched.
	RuleDefault Rule = "default"
	// RuleLeftOut (explain) is a striped service left out of a list's ports.
	RuleLeftOut Rule = "left_out"
	// RuleNotStriped and RuleReserved (route): no rule touches the port.
	RuleNotStriped Rule = "not_striped"
	RuleReserved   Rule = "reserved"
)

// Row is one line of `portstripe explain`: on these ports, the Step-th
// check (or the default) sends a first packet to Service at Target.
type Row struct {
	Proto    node.Proto       `json:"proto"`
	Ports    []node.PortRange `json:"ports"`
	List     string           `json:"list"`
	Frontend *Frontend        `json:"frontend,omitempty"`
	Rule     Rule             `json:"rule"`
	// Step counts the checks from 1, in the order they are tried; 0 for
	// the default and the services left out.
	Step      int    `json:"step,omitempty"`
	Signature string `json:"signature,omitempty"`
	Relies    string `json:"relies_on,omitempty"`
	Caveat    string `json:"caveat,omitempty"`
	// Service is None when nothing takes the packet.
	Service string `json:"service"`
	// Target is where the packet lands: a UDP port on the node (the
	// address it was sent to) or a TCP backend; nil when nothing takes it.
	Target *Target `json:"target,omitempty"`
}

// Explain lists every decision of every list, in the order they are tried,
// then each list's default and the services left out of its ports.
func (p *Plan) Explain() []Row {
	var rows []Row
	for _, l := range p.Lists {
		base := Row{Proto: l.Proto, Ports: l.Ports, List: l.Name, Frontend: l.Frontend}
		for i, d := range l.Decisions {
			r := base
			r.Rule, r.Step, r.Signature, r.Relies = RuleCheck, i+1, d.Signature.Label, d.Signature.Describe()
			r.Caveat = d.Signature.Caveat()
			r.Service, r.Target = d.Target.Service, landing(d.Target)
			rows = append(rows, r)
		}
		r := base
		r.Rule, r.Service, r.Target = RuleDefault, None, landing(l.Default)
		if !l.Default.Rejects() {
			r.Service = l.Default.Service
		}
		switch {
		case l.Default.Rejects() && l.Proto == node.UDP:
			r.Relies = "not diverted: the datagram reaches whatever listens on the node at that port"
		case l.Default.Rejects():
			r.Relies = fmt.Sprintf("HAProxy rejects the connection once the bytes decide, or after the inspect-delay (%s)", p.HAProxy.InspectDelay)
		case l.Proto == node.TCP:
			r.Relies = fmt.Sprintf("after the bytes decide, or after the inspect-delay (%s)", p.HAProxy.InspectDelay)
		}
		rows = append(rows, r)
		for _, x := range l.Excluded {
			r := base
			r.Rule, r.Service, r.Relies = RuleLeftOut, x.Service, x.Reason
			rows = append(rows, r)
		}
	}
	return rows
}

// landing is a target without its service (the row names it), nil when it
// rejects.
func landing(t Target) *Target {
	if t.Rejects() {
		return nil
	}
	return &Target{Port: t.Port, Backend: t.Backend}
}

// ClientAddressNote says what a backend sees as the client's address, and
// what that costs, for explain.
func (p *Plan) ClientAddressNote(b Backend) string {
	switch b.ClientAddress {
	case node.ClientTransparent:
		rr := p.ReplyRoute
		return fmt.Sprintf("transparent: the client's own address (HAProxy connects from it, usesrc clientip; the backend's replies are marked %#x and routed back to HAProxy by ip rule table %d); trade-off: HAProxy's workers run as root (haproxy.user: %s)", rr.Mark, rr.Table, p.HAProxy.User)
	case node.ClientProxyV1, node.ClientProxyV2:
		return fmt.Sprintf("%s: the client's address in a PROXY protocol header before the client's bytes; the backend must read it (HAProxy accept-proxy, nginx proxy_protocol; not OpenVPN or sshd)", b.ClientAddress)
	}
	return "proxy: HAProxy's own address, never the client's (client_address: transparent or proxy-v1/proxy-v2 changes that)"
}

// UDPClientAddressNote is why UDP listeners need no client_address.
const UDPClientAddressNote = "udp: the rules DNAT the datagrams, so UDP listeners see the client's own address (nothing to set)"

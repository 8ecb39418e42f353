package plan

import (
	"fmt"

	"github.com/portstripe/portstripe/node"
)

// Row is one line of `portstripe explain`: on these ports, the Step-th
// check (or the default) sends a first packet to Service at Target.
type Row struct {
	Proto     node.Proto `json:"proto"`
	Ports     string     `json:"ports"`
	List      string     `json:"list"`
	Frontend  string     `json:"frontend,omitempty"`
	Step      string     `json:"step"`
	Signature string     `json:"signature"`
	Relies    string     `json:"relies_on"`
	Caveat    string     `json:"caveat,omitempty"`
	Service   string     `json:"service"`
	Target    string     `json:"target"`
}

// Explain lists every decision of every list, in the order they are tried,
// then each list's default and the services left out of its ports.
func (p *Plan) Explain() []Row {
	var rows []Row
	for _, l := range p.Lists {
		base := Row{Proto: l.Proto, Ports: l.Ports.String(), List: l.Name}
		if l.Frontend != nil {
			base.Frontend = fmt.Sprintf("%s :%d", l.Frontend.Name, l.Frontend.Port)
		}
		for i, d := range l.Decisions {
			r := base
			r.Step, r.Signature, r.Relies = fmt.Sprint(i+1), d.Signature.Label, d.Signature.Describe()
			r.Caveat = d.Signature.Caveat()
			r.Service, r.Target = d.Target.Service, p.targetText(l.Proto, d.Target)
			rows = append(rows, r)
		}
		r := base
		r.Step, r.Signature = "default", "no signature matched"
		r.Service, r.Target = None, p.targetText(l.Proto, l.Default)
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
			r.Step, r.Signature, r.Service, r.Target = "left out", "", x.Service, "-"
			r.Relies = x.Reason
			rows = append(rows, r)
		}
	}
	return rows
}

func (p *Plan) targetText(proto node.Proto, t Target) string {
	switch {
	case t.Rejects() && proto == node.UDP:
		return "not diverted"
	case t.Rejects():
		return "reject"
	case proto == node.UDP:
		return fmt.Sprintf("udp :%d", t.Port)
	}
	return "tcp " + t.Backend.String()
}

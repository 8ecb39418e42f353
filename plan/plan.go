// Package plan is the only place routing decisions are made: for each
// protocol and port, the ordered list of signatures tried and the service each
// leads to, then the port's default. It is plain data with no I/O; explain,
// route and both emitters read it.
package plan

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/signature"
)

// Plan is a node's compiled port map.
type Plan struct {
	Node NodeInfo `json:"node"`
	// Lists are the distinct decision lists, UDP first; Ranges point into it.
	Lists []List `json:"lists"`
	// Ranges cover every striped or dedicated port, per protocol, sorted by
	// protocol (UDP first) and port; reserved ports have none.
	Ranges []Range `json:"ranges"`
	// Backends are the TCP backends HAProxy forwards to, in node file order.
	Backends []Backend    `json:"backends"`
	HAProxy  node.HAProxy `json:"haproxy"`
	// Firewall is the backend that renders and installs the rules.
	Firewall string `json:"firewall"`
	// Generator is the portstripe that compiled the plan, as its
	// --version names it; the compiler sets it, and both emitters' headers
	// carry it.
	Generator string `json:"generator"`
	// ReplyRoute routes the transparent backends' replies back to HAProxy;
	// nil when no backend is transparent.
	ReplyRoute *ReplyRoute `json:"reply_route,omitempty"`
}

// ReplyRoute is the policy routing a transparent backend needs: it answers
// the client's own address, so its replies would leave the node unless
// marked (by the firewall, keyed on the backend's address and port) and
// routed by an `ip rule fwmark Mark lookup Table` to a table whose one
// route, `local 0.0.0.0/0 dev lo`, delivers them to HAProxy's socket.
type ReplyRoute struct {
	Mark     uint32 `json:"mark"`
	Table    int    `json:"table"`
	Priority int    `json:"priority"`
}

// TransparentReplyRoute is fixed, so a node's rules and routes are the same on every
// apply: mark and table 0x5053 ("PS"), the rule before main (32766).
var TransparentReplyRoute = ReplyRoute{Mark: 0x5053, Table: 0x5053, Priority: 0x5053}

// NodeInfo is what the outputs say about where the plan comes from.
type NodeInfo struct {
	Name   string `json:"name"`
	Source string `json:"source"`
	SHA256 string `json:"sha256"`
	// SettingsSHA256 and Overrides: what was compiled beyond the file.
	SettingsSHA256 string          `json:"settings_sha256"`
	Overrides      []node.Override `json:"overrides,omitempty"`
	Addresses      []netip.Addr    `json:"addresses"`
	Reserved       node.PortSet    `json:"reserved"`
}

// List is an ordered decision list: the signatures tried on a port, in order,
// and the default for a first packet that matches none.
type List struct {
	// Name is "striped" for the list of the striped ports, or the name of the
	// service that owns the dedicated ports using it.
	Name      string       `json:"name"`
	Proto     node.Proto   `json:"proto"`
	Decisions []Decision   `json:"decisions"`
	Default   Target       `json:"default"`
	Ports     node.PortSet `json:"ports"`
	Frontend  *Frontend    `json:"frontend,omitempty"`
	// Excluded lists the striped services left out of these ports.
	Excluded []Exclusion `json:"excluded,omitempty"`
}

// Frontend is the HAProxy frontend classifying a TCP list's connections.
type Frontend struct {
	Name string `json:"name"`
	Port uint16 `json:"port"`
}

// Decision sends a first packet matching Signature to Target.
type Decision struct {
	Signature signature.Signature `json:"signature"`
	Target    Target              `json:"target"`
}

// Target is where a decision sends a connection: a service's UDP listener
// port on the node, or its TCP backend. A zero Target (no Service) rejects.
type Target struct {
	Service string         `json:"service,omitempty"`
	Port    uint16         `json:"port,omitempty"`
	Backend netip.AddrPort `json:"backend,omitzero"`
}

// Rejects reports whether the target is "no service".
func (t Target) Rejects() bool { return t.Service == "" }

func (t Target) String() string {
	switch {
	case t.Rejects():
		return node.Reject
	case t.Backend.IsValid():
		return t.Backend.String()
	}
	return fmt.Sprintf(":%d", t.Port)
}

// Range is a run of ports of one protocol that share a decision list.
type Range struct {
	Proto node.Proto `json:"proto"`
	From  uint16     `json:"from"`
	To    uint16     `json:"to"`
	List  int        `json:"list"`
}

// Ports returns the range as a node.PortRange.
func (r Range) Ports() node.PortRange { return node.PortRange{From: r.From, To: r.To} }

// Backend is a service's TCP backend.
type Backend struct {
	Service  string         `json:"service"`
	Addr     netip.AddrPort `json:"addr"`
	Disabled bool           `json:"disabled,omitempty"`
	Check    HealthCheck    `json:"check"`
	// ClientAddress is how the backend learns the client's address: HAProxy
	// connects from it (transparent), sends a PROXY header (proxy-v1,
	// proxy-v2), or neither (proxy).
	ClientAddress node.ClientAddress `json:"client_address"`
}

// HealthCheck is how HAProxy checks a backend, as the planner resolved the
// service's `check`.
type HealthCheck string

const (
	CheckConnect               = HealthCheck(signature.ProbeConnect)   // the backend accepts a TCP connection
	CheckSSHBanner             = HealthCheck(signature.ProbeSSHBanner) // it answers a connection with "SSH-"
	CheckTLSHello              = HealthCheck(signature.ProbeTLSHello)  // it answers a TLS client hello
	CheckNone      HealthCheck = "none"
)

// healthCheck resolves a service's check: auto picks what its kind's
// servers answer to without a client speaking first (sshd's banner) or to
// a client's first message (a TLS hello); an OpenVPN or HTTP backend is
// only connected to, since a probe in their protocol would be logged as a
// failed client.
func healthCheck(s node.Service) HealthCheck {
	switch {
	case s.Check == node.CheckNone:
		return CheckNone
	case s.Check == node.CheckConnect:
		return CheckConnect
	}
	return HealthCheck(s.Kind.Probe())
}

// Exclusion records a striped service left out of a list's ports.
type Exclusion struct {
	Service string `json:"service"`
	Reason  string `json:"reason"`
}

// Build compiles a node into its plan. Errors are *node.FieldError naming the
// field path, both services and the port range.
func Build(n *node.Node) (*Plan, error) {
	p := &Plan{
		Node: NodeInfo{
			Name: n.Name, Source: n.Source, SHA256: n.SHA256,
			SettingsSHA256: n.SettingsSHA256, Overrides: n.Overrides,
			Addresses: n.Addresses, Reserved: n.Reserved,
		},
		HAProxy:  n.HAProxy,
		Firewall: n.Firewall,
	}
	if err := checkOwners(n); err != nil {
		return nil, err
	}
	if err := checkUDPListeners(n); err != nil {
		return nil, err
	}
	if err := checkSignatures(n); err != nil {
		return nil, err
	}
	for _, proto := range node.Protos {
		if err := p.addProto(n, proto); err != nil {
			return nil, err
		}
	}
	for _, s := range n.Services {
		if s.TCP.IsValid() {
			p.Backends = append(p.Backends, Backend{Service: s.Name, Addr: s.TCP, Disabled: s.Disabled, Check: healthCheck(s), ClientAddress: s.ClientAddress})
		}
	}
	if err := p.checkTransparent(n); err != nil {
		return nil, err
	}
	if err := p.assignFrontends(n); err != nil {
		return nil, err
	}
	if err := p.checkLoops(n); err != nil {
		return nil, err
	}
	if err := p.checkNames(n); err != nil {
		return nil, err
	}
	return p, nil
}

// checkTransparent refuses a transparent backend that cannot work, and
// adds the reply routing the others need. HAProxy connects to it from the
// client's address, so the backend must be reached over an interface that
// can route the reply back: on loopback the kernel drops a packet from a
// foreign address unless route_localnet is on, and at the node's own
// address the connection would enter the node's frontends again. HAProxy
// 2.6 refuses usesrc unless its workers keep root.
func (p *Plan) checkTransparent(n *node.Node) error {
	for i, s := range n.Services {
		if s.ClientAddress != node.ClientTransparent {
			continue
		}
		path := fmt.Sprintf("services[%d].client_address", i)
		// IPv4 only: over IPv6 HAProxy would need one server per family
		// (use-server by the client's family) and the reply route for ::/0.
		if s.TCP.Addr().Is6() {
			return &node.FieldError{Path: path, Msg: fmt.Sprintf("transparent is IPv4-only for now, and %s is IPv6; use an IPv4 backend, or proxy-v1/proxy-v2 for a backend that reads the PROXY protocol", s.TCP)}
		}
		if i6 := slices.IndexFunc(n.Addresses, netip.Addr.Is6); i6 >= 0 {
			return &node.FieldError{Path: path, Msg: fmt.Sprintf("transparent is IPv4-only for now, and the node has the IPv6 address %s: HAProxy cannot connect to an IPv4 backend from an IPv6 client's address; use proxy-v1/proxy-v2, or a node without IPv6 addresses", n.Addresses[i6])}
		}
		switch a := s.TCP.Addr(); {
		case a.IsLoopback():
			return &node.FieldError{Path: path, Msg: fmt.Sprintf("transparent needs a backend on a non-loopback address of this machine, not %s: the kernel drops loopback packets from the client's address (route_localnet); give the backend e.g. an address on lo or a dummy interface", s.TCP)}
		case slices.Contains(n.Addresses, a):
			return &node.FieldError{Path: path, Msg: fmt.Sprintf("transparent needs a backend address that is not one of the node's addresses (%s): a connection from the client's address to it would be diverted into the frontends again; give the backend its own address", a)}
		}
		if n.HAProxy.User != "root" {
			return &node.FieldError{Path: "haproxy.user", Msg: fmt.Sprintf("%s is transparent (%s: transparent), which needs HAProxy's workers to stay root (HAProxy refuses usesrc otherwise); set haproxy.user: root to accept that trade-off", s.Name, path)}
		}
		rr := TransparentReplyRoute
		p.ReplyRoute = &rr
	}
	return nil
}

// checkSignatures refuses a service whose kind gives it, on one of its
// protocols, a signature no rule can carry: one that checks nothing would
// take every first packet, one that needs a parser cannot run in the
// kernel. The registry test keeps every kind clear of both; this keeps a
// rule without a match out of the outputs whatever a kind does.
func checkSignatures(n *node.Node) error {
	for i, s := range n.Services {
		for _, p := range node.Protos {
			sig, ok := s.Signature(p)
			if !ok {
				continue
			}
			if err := sig.Check(); err != nil {
				return &node.FieldError{Path: fmt.Sprintf("services[%d]", i), Msg: fmt.Sprintf("the %s signature of %s on %s %v; portstripe cannot route it", s.Kind.Name(), s.Name, p, err)}
			}
		}
	}
	return nil
}

// checkUDPListeners refuses two services listening on one UDP port: the
// rules would send both services' clients to whichever of them binds it.
func checkUDPListeners(n *node.Node) error {
	first := map[uint16]int{}
	for i, s := range n.Services {
		if s.UDP == 0 {
			continue
		}
		if j, ok := first[s.UDP]; ok {
			return &node.FieldError{
				Path: fmt.Sprintf("services[%d].udp", i),
				Msg:  fmt.Sprintf("port %d is already the UDP listener of %s (services[%d]); %s and %s need a port each", s.UDP, n.Services[j].Name, j, n.Services[j].Name, s.Name),
			}
		}
		first[s.UDP] = i
	}
	return nil
}

// checkLoops refuses a TCP backend on one of the node's addresses at a port
// the rules divert: HAProxy's own connection to it would pass the OUTPUT
// jump and be DNATed back into a frontend, and one client would fill
// maxconn.
func (p *Plan) checkLoops(n *node.Node) error {
	for i, s := range n.Services {
		if !s.TCP.IsValid() || !slices.Contains(n.Addresses, s.TCP.Addr()) {
			continue
		}
		r, ok := p.Range(node.TCP, s.TCP.Port())
		if !ok {
			continue
		}
		l := p.Lists[r.List]
		if l.Frontend == nil {
			continue
		}
		return &node.FieldError{
			Path: fmt.Sprintf("services[%d].tcp", i),
			Msg:  fmt.Sprintf("%s is on the node's address at port %d, which the rules divert to frontend %s (tcp %s, list %s): HAProxy's connection to the backend would loop back into its own frontend; use a loopback address or a reserved or unstriped port", s.TCP, s.TCP.Port(), l.Frontend.Name, l.Ports, l.Name),
		}
	}
	return nil
}

// checkNames refuses two things of one kind under one name in the
// outputs: HAProxy refuses two frontends of one name, and iptables-restore
// would fill one chain with two lists. Frontends are named after the list
// ("fe_striped" for the striped ports, "fe_" and the owner for dedicated
// ones), UDP list chains after the list's ID.
func (p *Plan) checkNames(n *node.Node) error {
	frontends := map[string]int{}
	chains := map[string]int{}
	for i, l := range p.Lists {
		seen, name := frontends, ""
		switch {
		case l.Frontend != nil:
			name = l.Frontend.Name
		case l.Proto == node.UDP:
			seen, name = chains, l.ID()
		default:
			continue
		}
		j, ok := seen[name]
		if !ok {
			seen[name] = i
			continue
		}
		a := p.Lists[j]
		path := "services"
		if k := serviceIndex(n, l.Name); k >= 0 {
			path = fmt.Sprintf("services[%d].name", k)
		}
		if l.Frontend != nil {
			// Owners' names are unique and the striped list comes first:
			// the clash is a service named like the striped ports' list.
			return &node.FieldError{Path: path, Msg: fmt.Sprintf("frontend %s would serve both the striped ports (tcp %s) and the ports dedicated to service %q (tcp %s); rename the service", name, a.Ports, l.Name, l.Ports)}
		}
		return &node.FieldError{Path: path, Msg: fmt.Sprintf("the UDP lists of udp %s (list %s) and udp %s (list %s) hash to one chain name (%s); rename a service of either", a.Ports, a.Name, l.Ports, l.Name, name)}
	}
	return nil
}

// checkOwners refuses a port dedicated to two services. Sorted by first
// port, a range overlaps an earlier one exactly when it starts at or before
// the furthest end seen so far; a service's own ranges are disjoint, so the
// range reaching furthest then belongs to another service.
func checkOwners(n *node.Node) error {
	type owned struct {
		r     node.PortRange
		owner int
	}
	var all []owned
	for i, s := range n.Services {
		for _, r := range s.Dedicated {
			all = append(all, owned{r, i})
		}
	}
	slices.SortStableFunc(all, func(a, b owned) int { return int(a.r.From) - int(b.r.From) })
	for k := 1; k < len(all); k++ {
		furthest := all[k-1]
		if furthest.r.To >= all[k].r.From {
			i, j := max(furthest.owner, all[k].owner), min(furthest.owner, all[k].owner)
			return &node.FieldError{
				Path: fmt.Sprintf("services[%d].dedicated", i),
				Msg:  fmt.Sprintf("port %s is dedicated to both %s and %s (services[%d]); a port has one owner", overlap(furthest.r, all[k].r), n.Services[j].Name, n.Services[i].Name, j),
			}
		}
		if furthest.r.To > all[k].r.To {
			all[k] = furthest
		}
	}
	return nil
}

func overlap(a, b node.PortRange) node.PortRange {
	return node.PortRange{From: max(a.From, b.From), To: min(a.To, b.To)}
}

// segment is a run of ports with the owner whose list they use ("" for the
// striped list).
type segment struct {
	r     node.PortRange
	owner int // index into n.Services, -1 for striped
}

func (p *Plan) addProto(n *node.Node, proto node.Proto) error {
	var segs []segment
	var dedicated []node.PortRange
	owners := []int{-1}
	for i, s := range n.Services {
		for _, r := range s.Dedicated {
			segs = append(segs, segment{r, i})
			dedicated = append(dedicated, r)
		}
		if len(s.Dedicated) > 0 {
			owners = append(owners, i)
		}
	}
	stripedOnly := n.Striped[proto].Minus(node.NewPortSet(dedicated...))
	for _, r := range stripedOnly {
		segs = append(segs, segment{r, -1})
	}
	slices.SortFunc(segs, func(a, b segment) int { return int(a.r.From) - int(b.r.From) })

	// Lists are made in a fixed order (striped, then owners in node file
	// order) so frontend ports and output order do not depend on port numbers.
	first := len(p.Lists)
	byKey := map[string]int{}
	byOwner := map[int]int{}
	cands := candidatesFor(n, proto)
	for _, o := range owners {
		if o == -1 && len(stripedOnly) == 0 {
			continue
		}
		l := buildList(n, proto, o, cands)
		if len(l.Decisions) == 0 && l.Default.Rejects() {
			// Nothing to divert: leave these ports alone rather than
			// send them somewhere that refuses everything.
			byOwner[o] = -1
			continue
		}
		key := l.key()
		li, ok := byKey[key]
		if !ok {
			li = len(p.Lists)
			p.Lists = append(p.Lists, l)
			byKey[key] = li
		}
		byOwner[o] = li
	}
	for _, sg := range segs {
		li := byOwner[sg.owner]
		if li < 0 {
			continue
		}
		p.Lists[li].Ports = append(p.Lists[li].Ports, sg.r)
		if k := len(p.Ranges) - 1; k >= 0 && p.Ranges[k].Proto == proto && p.Ranges[k].List == li && int(p.Ranges[k].To)+1 == int(sg.r.From) {
			p.Ranges[k].To = sg.r.To
			continue
		}
		p.Ranges = append(p.Ranges, Range{Proto: proto, From: sg.r.From, To: sg.r.To, List: li})
	}
	for i := first; i < len(p.Lists); i++ {
		l := &p.Lists[i]
		l.Ports = node.NewPortSet(l.Ports...)
		if err := orderList(n, l); err != nil {
			return err
		}
	}
	return nil
}

// candidate is a service that can take a list's decision: its index in
// n.Services, and the decision.
type candidate struct {
	service int
	d       Decision
}

// candidates is what every list of a protocol picks from, worked out once:
// asking every service again for each list made the planner quadratic.
type candidates struct {
	all     []candidate // per service index
	has     []bool      // whether the service has an endpoint on the protocol
	striped []candidate // the striped services, in node file order
	def     Target      // the striped ports' default
}

func candidatesFor(n *node.Node, proto node.Proto) candidates {
	c := candidates{all: make([]candidate, len(n.Services)), has: make([]bool, len(n.Services))}
	for i, s := range n.Services {
		sig, ok := s.Signature(proto)
		if !ok {
			continue
		}
		c.all[i], c.has[i] = candidate{i, Decision{Signature: sig, Target: target(s, proto)}}, true
		if s.Striped {
			c.striped = append(c.striped, c.all[i])
		}
	}
	if d := n.Default[proto]; d != node.Reject {
		s, _ := n.Service(d)
		c.def = target(s, proto)
	}
	return c
}

// buildList gathers the services a port of the given owner (-1: a striped
// port) takes on proto, and its default. Ordering and the ambiguity check
// wait until the list's ports are known, so errors can name them.
func buildList(n *node.Node, proto node.Proto, owner int, c candidates) List {
	l := List{Name: "striped", Proto: proto, Default: c.def}
	all, striped := c.all, c.striped
	hasOwner := owner >= 0 && c.has[owner]
	if hasOwner {
		l.Name = n.Services[owner].Name
		l.Default = all[owner].d.Target
	}
	// The striped services and the owner, in node file order.
	at, found := slices.BinarySearchFunc(striped, owner, func(c candidate, i int) int { return c.service - i })
	l.Decisions = make([]Decision, 0, len(striped)+1)
	for _, c := range striped[:at] {
		l.Decisions = append(l.Decisions, c.d)
	}
	if hasOwner && !found {
		l.Decisions = append(l.Decisions, all[owner].d)
	}
	for _, c := range striped[at:] {
		l.Decisions = append(l.Decisions, c.d)
	}
	if hasOwner {
		// A striped service whose signature would take the owner's clients
		// cannot share the owner's port: it is left out, and explain says so.
		ownerSig := all[owner].d.Signature
		l.Decisions = slices.DeleteFunc(l.Decisions, func(d Decision) bool {
			out := d.Target.Service != l.Name && d.Signature.Catches(ownerSig)
			if out {
				l.Excluded = append(l.Excluded, Exclusion{
					Service: d.Target.Service,
					Reason:  fmt.Sprintf("its signature (%s) would take the clients of %s, which owns these ports (%s)", d.Signature.Label, l.Name, ownerSig.Label),
				})
			}
			return out
		})
	}
	return l
}

// orderList puts the list's decisions in the order they are tried, or fails
// naming two services no signature tells apart.
func orderList(n *node.Node, l *List) error {
	if err := checkOpen(n, l); err != nil {
		return err
	}
	sigs := make([]signature.Signature, len(l.Decisions))
	for i, d := range l.Decisions {
		sigs[i] = d.Signature
	}
	order, a, b, err := signature.Order(sigs)
	if err != nil {
		sa, sb := l.Decisions[a].Target.Service, l.Decisions[b].Target.Service
		return &node.FieldError{
			Path: servicePath(n, sb),
			Msg:  fmt.Sprintf("%s and %s cannot share %s %s: %v", sa, sb, l.Proto, l.Ports, err),
		}
	}
	ordered := make([]Decision, len(order))
	for i, j := range order {
		ordered[i] = l.Decisions[j]
	}
	l.Decisions = ordered
	return nil
}

// checkOpen compares each open signature (a custom one: the operator's
// bytes, which may look like any family's) with every signature of
// another family on the list by their example first packets, and refuses
// the pair when either may take the other's client. Signatures of the
// registry's own families differ in their first bytes (the registry test
// checks it); within a family Order compares them.
func checkOpen(n *node.Node, l *List) error {
	if !slices.ContainsFunc(l.Decisions, func(d Decision) bool { return d.Signature.Open() }) {
		return nil
	}
	examples := make([][]byte, len(l.Decisions))
	for i, d := range l.Decisions {
		s, _ := n.Service(d.Target.Service)
		ex, err := s.Kind.Example(s.Settings, l.Proto)
		if err != nil {
			return err
		}
		examples[i] = ex.Packet
	}
	for i, a := range l.Decisions {
		for j, b := range l.Decisions {
			sa, sb := a.Signature, b.Signature
			if i == j || sa.Family == sb.Family || !sa.Open() && !sb.Open() || sa.Match(examples[j]) == signature.NoMatch {
				continue
			}
			return &node.FieldError{
				Path: servicePath(n, l.Decisions[max(i, j)].Target.Service),
				Msg: fmt.Sprintf("%s and %s cannot share %s %s: %s (%s) may take a client of %s (%s); give one of them dedicated ports or other custom bytes",
					a.Target.Service, b.Target.Service, l.Proto, l.Ports, a.Target.Service, sa.Label, b.Target.Service, sb.Label),
			}
		}
	}
	return nil
}

func servicePath(n *node.Node, name string) string {
	if i := serviceIndex(n, name); i >= 0 {
		return fmt.Sprintf("services[%d]", i)
	}
	return "services"
}

// serviceIndex is the index of the named service in n.Services, or -1.
func serviceIndex(n *node.Node, name string) int {
	return slices.IndexFunc(n.Services, func(s node.Service) bool { return s.Name == name })
}

func target(s node.Service, proto node.Proto) Target {
	if proto == node.UDP {
		return Target{Service: s.Name, Port: s.UDP}
	}
	return Target{Service: s.Name, Backend: s.TCP}
}

// key identifies a list by what it does, so ports that behave alike share it.
func (l List) key() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s|%s|%s", l.Proto, l.Name, l.Default)
	for _, d := range l.Decisions {
		fmt.Fprintf(&b, "|%s>%s@%s", d.Signature.Label, d.Target.Service, d.Target)
	}
	return b.String()
}

// ID is a short stable hash of what the list does, for names that must stay
// the same while the list does (iptables chains, at most 28 characters).
// 48 bits make a clash between 20,000 lists a one in a million chance;
// checkNames refuses one.
func (l List) ID() string {
	sum := sha256.Sum256([]byte(l.key()))
	return hex.EncodeToString(sum[:6])
}

// assignFrontends gives each TCP list a frontend on consecutive ports from
// haproxy.listen_port, the striped list first.
func (p *Plan) assignFrontends(n *node.Node) error {
	port := int(n.HAProxy.ListenPort)
	// The first service with a backend at each port of the node's addresses.
	local := map[uint16]int{}
	for j, s := range n.Services {
		if _, seen := local[s.TCP.Port()]; !seen && s.TCP.IsValid() && slices.Contains(n.Addresses, s.TCP.Addr()) {
			local[s.TCP.Port()] = j
		}
	}
	for i := range p.Lists {
		l := &p.Lists[i]
		if l.Proto != node.TCP {
			continue
		}
		if port > 65535 || n.Reserved.Contains(uint16(port)) {
			return &node.FieldError{Path: "haproxy.listen_port", Msg: fmt.Sprintf("frontend %d would listen on port %d, which is reserved or out of range; the frontends use %d consecutive ports from listen_port", i, port, p.countTCPLists())}
		}
		if j, ok := local[uint16(port)]; ok {
			return &node.FieldError{Path: fmt.Sprintf("services[%d].tcp", j), Msg: fmt.Sprintf("%s is where frontend %s listens (haproxy.listen_port %d and up); move the backend or listen_port", n.Services[j].TCP, "fe_"+l.Name, n.HAProxy.ListenPort)}
		}
		l.Frontend = &Frontend{Name: "fe_" + l.Name, Port: uint16(port)}
		port++
	}
	return nil
}

func (p *Plan) countTCPLists() int {
	c := 0
	for _, l := range p.Lists {
		if l.Proto == node.TCP {
			c++
		}
	}
	return c
}

package node

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/portstripe/portstripe/signature"
)

// Names end up in haproxy.cfg section names, iptables comments and chain
// hashes, so only characters that need no quoting anywhere are allowed.
var (
	nameRE   = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)
	socketRE = regexp.MustCompile(`^/[A-Za-z0-9_./-]{1,100}$`)
)

const nameRule = "1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit"

func validate(f *file) (*Node, error) {
	n := &Node{
		Name:    f.Name,
		Striped: map[Proto]PortSet{},
		Default: map[Proto]string{},
	}
	if f.Name == "" {
		return nil, fieldErr("name", "required: the node's name (%s)", nameRule)
	}
	if !nameRE.MatchString(f.Name) {
		return nil, fieldErr("name", "%q is not allowed (%s)", clip(f.Name), nameRule)
	}
	switch n.Firewall = f.Firewall; {
	case n.Firewall == "":
		n.Firewall = DefaultFirewall
	case !slices.Contains(Firewalls, n.Firewall):
		return nil, fieldErr("firewall", "%q is not a firewall backend (allowed: %s)", clip(f.Firewall), strings.Join(Firewalls, ", "))
	}
	if len(f.Addresses) == 0 {
		return nil, fieldErr("addresses", "required: the node's public address(es), IPv4 and/or IPv6")
	}
	// Checks against earlier entries use maps, bitmaps or merges: a 1 MB
	// file of list entries must validate in linear time.
	seen := map[netip.Addr]bool{}
	for i, a := range f.Addresses {
		path := fmt.Sprintf("addresses[%d]", i)
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return nil, fieldErr(path, "%q is not an IP address (want IPv4 or IPv6, e.g. 195.154.33.73 or 2001:db8::10)", clip(a))
		}
		if err := publicAddr(ip); err != nil {
			return nil, fieldErr(path, "%v", err)
		}
		if seen[ip] {
			return nil, fieldErr(path, "%s is listed twice", ip)
		}
		seen[ip] = true
		n.Addresses = append(n.Addresses, ip)
	}
	var err error
	if n.Reserved, err = portList("reserved", f.Reserved); err != nil {
		return nil, err
	}
	for _, p := range Protos {
		raw := f.Striped.TCP
		if p == UDP {
			raw = f.Striped.UDP
		}
		path := "striped." + string(p)
		if n.Striped[p], err = portList(path, raw); err != nil {
			return nil, err
		}
		if r, ok := firstOverlap(n.Striped[p], n.Reserved); ok {
			return nil, fieldErr(path, "%s overlaps the reserved ports %s (reserved ports are never striped)", r, n.Reserved)
		}
	}
	if n.HAProxy, err = haproxySettings(f.HAProxy); err != nil {
		return nil, err
	}
	index := map[string]int{}
	for i, sf := range f.Services {
		s, err := service(fmt.Sprintf("services[%d]", i), sf, n)
		if err != nil {
			return nil, err
		}
		if j, dup := index[s.Name]; dup {
			return nil, fieldErr(fmt.Sprintf("services[%d].name", i), "%q is already the name of services[%d] (service names must be unique)", s.Name, j)
		}
		index[s.Name] = i
		n.Services = append(n.Services, s)
	}
	if len(n.Services) == 0 {
		return nil, fieldErr("services", "required: at least one service (a list of {name, kind, ...}; see fixtures/seed-node.yaml)")
	}
	for _, p := range Protos {
		d := f.Defaults.TCP
		if p == UDP {
			d = f.Defaults.UDP
		}
		path := "defaults." + string(p)
		if d == "" || d == Reject {
			n.Default[p] = Reject
			continue
		}
		s, ok := n.Service(d)
		if !ok {
			return nil, fieldErr(path, "%q is not a service name (want %q or one of: %s)", clip(d), Reject, clipTo(strings.Join(n.serviceNames(), ", "), 200))
		}
		if !s.Has(p) {
			return nil, fieldErr(path, "service %q has no %s endpoint (want %q or a service with one)", d, p, Reject)
		}
		n.Default[p] = d
	}
	return n, nil
}

// publicAddr refuses what clients cannot reach a node on: a node address
// is global unicast, IPv4 or IPv6, written as itself (no zone, no IPv4
// mapped into IPv6, which the kernel never shows as a packet's destination).
func publicAddr(ip netip.Addr) error {
	switch {
	case ip.Zone() != "":
		return fmt.Errorf("%s carries a zone (%%%s): a public address has none", ip, ip.Zone())
	case ip.Is4In6():
		return fmt.Errorf("%s is an IPv4-mapped IPv6 address: write the IPv4 address, %s", ip, ip.Unmap())
	case ip.IsLinkLocalUnicast():
		return fmt.Errorf("%s is link-local: clients beyond the link cannot reach it (want a global unicast address)", ip)
	case !ip.IsGlobalUnicast():
		return fmt.Errorf("%s cannot be a node's public address (want a global unicast IPv4 or IPv6 address clients reach the node on)", ip)
	}
	return nil
}

// backendForm is how a TCP backend is written.
const backendForm = "IPv4:PORT or [IPv6]:PORT"

// backendAddr refuses a TCP backend HAProxy cannot connect to as written.
// Loopback is fine (the usual place for a backend); a link-local one
// would need a zone, which haproxy.cfg's server line does not carry.
func backendAddr(ap netip.AddrPort) error {
	a := ap.Addr()
	switch {
	case a.Zone() != "" || a.IsLinkLocalUnicast():
		return fmt.Errorf("%s is link-local: give the backend a loopback or global address", ap)
	case a.Is4In6():
		return fmt.Errorf("%s is an IPv4-mapped IPv6 address: write it as %s", ap, netip.AddrPortFrom(a.Unmap(), ap.Port()))
	case a.IsUnspecified() || a.IsMulticast():
		return fmt.Errorf("%s cannot be reached as a backend (want a unicast address)", ap)
	}
	return nil
}

func (n *Node) serviceNames() []string {
	names := make([]string, len(n.Services))
	for i, s := range n.Services {
		names[i] = s.Name
	}
	return names
}

func service(path string, sf serviceFile, n *Node) (Service, error) {
	s := Service{Name: sf.Name}
	if sf.Name == "" {
		return s, fieldErr(path+".name", "required (%s)", nameRule)
	}
	if !nameRE.MatchString(sf.Name) {
		return s, fieldErr(path+".name", "%q is not allowed (%s)", clip(sf.Name), nameRule)
	}
	if sf.Kind == "" {
		return s, fieldErr(path+".kind", "required (allowed: %s)", signature.KindNames())
	}
	kind, ok := signature.LookupKind(sf.Kind)
	if !ok {
		return s, fieldErr(path+".kind", "%q is not a service kind (allowed: %s)", clip(sf.Kind), signature.KindNames())
	}
	s.Kind = kind
	name := kind.Name()
	udp, tcp := slices.Contains(kind.Protos(), UDP), slices.Contains(kind.Protos(), TCP)
	if sf.UDP != "" {
		if !udp {
			return s, fieldErr(path+".udp", "a %s service has no UDP listener (only %s do)", name, kindList(signature.KindsOn(UDP)))
		}
		p, err := parsePort(sf.UDP)
		if err != nil {
			return s, fieldErr(path+".udp", "%v", err)
		}
		if n.Reserved.Contains(p) {
			return s, fieldErr(path+".udp", "port %d is reserved (%s)", p, n.Reserved)
		}
		s.UDP = p
	}
	if sf.TCP != "" {
		if !tcp {
			return s, fieldErr(path+".tcp", "%s has no TCP backend", name)
		}
		ap, err := netip.ParseAddrPort(strings.TrimSpace(sf.TCP))
		if err != nil || ap.Port() == 0 {
			return s, fieldErr(path+".tcp", "%q is not a backend address (want %s, e.g. 127.0.0.1:1194 or [2001:db8::20]:1194)", clip(sf.TCP), backendForm)
		}
		if err := backendAddr(ap); err != nil {
			return s, fieldErr(path+".tcp", "%v", err)
		}
		s.TCP = ap
	}
	switch {
	case udp && tcp:
		if sf.UDP == "" && sf.TCP == "" {
			return s, fieldErr(path, "%s %s service needs udp (listener port), tcp (backend address) or both", article(name), name)
		}
	case udp:
		if sf.UDP == "" {
			return s, fieldErr(path+".udp", "required: the port %s listens on", name)
		}
	default:
		if sf.TCP == "" {
			return s, fieldErr(path+".tcp", "required: the %s backend address (%s)", name, backendForm)
		}
	}
	raw := signature.Raw{TLS: sf.TLS, SNI: sf.SNI, ALPN: sf.ALPN, Custom: sf.Custom}
	for _, p := range Protos {
		if s.Has(p) {
			raw.Protos = append(raw.Protos, p)
		}
	}
	for _, key := range raw.Set() {
		if !slices.Contains(kind.Keys(), key) {
			return s, fieldErr(path+"."+key, "%s", foreignKey(key))
		}
	}
	settings, err := kind.Settings(raw)
	if se, ok := err.(*signature.SettingError); ok {
		return s, fieldErr(path+"."+se.Key, "%s", se.Msg)
	} else if err != nil {
		return s, fieldErr(path, "%v", err)
	}
	s.Settings = settings
	if s.Dedicated, err = portList(path+".dedicated", sf.Dedicated); err != nil {
		return s, err
	}
	if r, ok := firstOverlap(s.Dedicated, n.Reserved); ok {
		return s, fieldErr(path+".dedicated", "%s is reserved (%s); dedicated ports must be outside the reserved ones", r, n.Reserved)
	}
	s.Striped = len(s.Dedicated) == 0
	if sf.Striped != "" {
		if s.Striped, err = strconv.ParseBool(sf.Striped); err != nil {
			return s, fieldErr(path+".striped", "%q is not true or false", clip(sf.Striped))
		}
	}
	if sf.Disabled != "" {
		if s.Disabled, err = strconv.ParseBool(sf.Disabled); err != nil {
			return s, fieldErr(path+".disabled", "%q is not true or false", clip(sf.Disabled))
		}
	}
	if !s.Striped && len(s.Dedicated) == 0 {
		return s, fieldErr(path+".striped", "false, and no dedicated ports: the service would be on no port")
	}
	s.Check = CheckAuto
	if sf.Check != "" {
		s.Check = Check(sf.Check)
		if !slices.Contains(Checks, s.Check) {
			return s, fieldErr(path+".check", "%q is not a health check (allowed: auto, connect, none)", clip(sf.Check))
		}
		if !s.TCP.IsValid() {
			return s, fieldErr(path+".check", "the service has no tcp backend to check")
		}
	}
	s.ClientAddress = ClientProxy
	if sf.ClientAddress != "" {
		s.ClientAddress = ClientAddress(sf.ClientAddress)
		if !slices.Contains(ClientAddresses, s.ClientAddress) {
			return s, fieldErr(path+".client_address", "%q is not a client address mode (allowed: %s)", clip(sf.ClientAddress), joinAny(ClientAddresses))
		}
		if !s.TCP.IsValid() {
			return s, fieldErr(path+".client_address", "the service has no tcp backend (UDP clients keep their address: the rules DNAT, they do not proxy)")
		}
	}
	return s, nil
}

// foreignKey says which kinds take a key a service's kind does not.
func foreignKey(key string) string {
	var owners []signature.Kind
	for _, k := range signature.Kinds() {
		if slices.Contains(k.Keys(), key) {
			owners = append(owners, k)
		}
	}
	switch {
	case key == "tls" && len(owners) == 1:
		return fmt.Sprintf("only an %s service has tls settings", owners[0].Name())
	case key == "sni" && len(owners) == 1:
		return fmt.Sprintf("only a %s service routes by SNI", owners[0].Name())
	}
	return fmt.Sprintf("only %s services take %s", kindList(owners), key)
}

// kindList names kinds as a sentence does: "openvpn and wireguard".
func kindList(ks []signature.Kind) string {
	names := make([]string, len(ks))
	for i, k := range ks {
		names[i] = k.Name()
	}
	if len(names) < 2 {
		return strings.Join(names, "")
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}

func article(word string) string {
	if strings.ContainsAny(word[:1], "aeiou") {
		return "an"
	}
	return "a"
}

// hardStopAfter reads haproxy.hard_stop_after: "0" (never) or a duration
// of whole seconds from 1s to 7 days.
func hardStopAfter(s string) (time.Duration, error) {
	if s == "0" {
		return 0, nil
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < time.Second || v > 7*24*time.Hour || v%time.Second != 0 {
		return 0, fieldErr("haproxy.hard_stop_after", "%q is not 0 (old workers live as long as their sessions) or a duration from 1s to 168h in whole seconds (e.g. 1h)", clip(s))
	}
	return v, nil
}

// logSettings reads haproxy.log (file, none, or a syslog server's
// IP:PORT) and haproxy.log_rate.
func logSettings(f haproxyFile, h *HAProxy) error {
	switch f.Log {
	case LogFile, LogNone:
		h.Log = f.Log
	default:
		a, err := netip.ParseAddrPort(strings.TrimSpace(f.Log))
		if err != nil || a.Port() == 0 || !a.Addr().IsValid() || a.Addr().IsUnspecified() {
			return fieldErr("haproxy.log", "%q is not file (the state directory's haproxy.log), none, or a syslog server's IP:PORT (UDP, e.g. 127.0.0.1:514)", clip(f.Log))
		}
		h.Log, h.Syslog = LogSyslog, a
	}
	var err error
	if h.LogRate, err = strconv.Atoi(f.LogRate); err != nil || h.LogRate < 1 || h.LogRate > 100000 {
		return fieldErr("haproxy.log_rate", "%q is not a number from 1 to 100000 (log lines per second per frontend)", clip(f.LogRate))
	}
	return nil
}

func haproxySettings(f haproxyFile) (HAProxy, error) {
	var h HAProxy
	p, err := parsePort(f.ListenPort)
	if err != nil {
		return h, fieldErr("haproxy.listen_port", "%v", err)
	}
	h.ListenPort = p
	durations := []struct {
		path, val string
		dst       *time.Duration
		max       time.Duration
	}{
		{"haproxy.inspect_delay", f.InspectDelay, &h.InspectDelay, time.Minute},
		{"haproxy.timeouts.connect", f.Timeouts.Connect, &h.TimeoutConnect, time.Minute},
		{"haproxy.timeouts.client", f.Timeouts.Client, &h.TimeoutClient, 24 * time.Hour},
		{"haproxy.timeouts.server", f.Timeouts.Server, &h.TimeoutServer, 24 * time.Hour},
	}
	for _, d := range durations {
		v, err := time.ParseDuration(d.val)
		if err != nil || v < time.Millisecond || v > d.max || v%time.Millisecond != 0 {
			return h, fieldErr(d.path, "%q is not a duration from 1ms to %s in whole milliseconds (e.g. 5s, 1500ms)", clip(d.val), d.max)
		}
		*d.dst = v
	}
	if h.HardStopAfter, err = hardStopAfter(f.HardStopAfter); err != nil {
		return h, err
	}
	if err := logSettings(f, &h); err != nil {
		return h, err
	}
	if h.TimeoutClient < h.InspectDelay {
		// HAProxy's docs: the client timeout must cover the inspection delay.
		return h, fieldErr("haproxy.timeouts.client", "%s is shorter than haproxy.inspect_delay (%s)", h.TimeoutClient, h.InspectDelay)
	}
	if h.MaxConn, err = strconv.Atoi(f.MaxConn); err != nil || h.MaxConn < 1 || h.MaxConn > 1000000 {
		return h, fieldErr("haproxy.maxconn", "%q is not a number from 1 to 1000000", clip(f.MaxConn))
	}
	if err := haproxyFiles(f, &h); err != nil {
		return h, err
	}
	return h, nil
}

// ChrootDir is the subdirectory of haproxy.run_dir that HAProxy's workers
// are chrooted to: portstripe creates it empty, and no socket may sit in it.
const ChrootDir = "empty"

// accountRE is what haproxy.user and haproxy.group may be: Debian's
// adduser rule for system names, so nothing but a name reaches haproxy.cfg.
var accountRE = regexp.MustCompile(`^[a-z_][a-z0-9_-]{0,31}$`)

// haproxyFiles checks where HAProxy's sockets go and whom its workers run
// as. The sockets must sit inside run_dir, the one directory portstripe
// owns for them: a socket path is removed and re-created when HAProxy
// starts, so a path anywhere else (/etc/shadow) would put files outside
// portstripe's reach at risk.
func haproxyFiles(f haproxyFile, h *HAProxy) error {
	paths := []struct {
		path, val string
		dst       *string
	}{
		{"haproxy.run_dir", f.RunDir, &h.RunDir},
		{"haproxy.master_socket", f.MasterSocket, &h.MasterSocket},
		{"haproxy.runtime_socket", f.RuntimeSocket, &h.RuntimeSocket},
	}
	for _, p := range paths {
		if !socketRE.MatchString(p.val) {
			return fieldErr(p.path, "%q is not allowed (an absolute path of A-Z a-z 0-9 _ . - /)", clip(p.val))
		}
		if filepath.Clean(p.val) != p.val || p.val == "/" {
			return fieldErr(p.path, "%q is not a clean absolute path (no .., //, . or trailing /; want e.g. %s)", p.val, filepath.Clean(p.val))
		}
		*p.dst = p.val
	}
	chroot := filepath.Join(h.RunDir, ChrootDir)
	for _, p := range paths[1:] {
		dir := filepath.Dir(p.val)
		switch {
		case !strings.HasPrefix(p.val, h.RunDir+"/"):
			return fieldErr(p.path, "%s is outside haproxy.run_dir (%s): HAProxy's sockets live in the directory portstripe owns", p.val, h.RunDir)
		case dir == chroot || strings.HasPrefix(dir, chroot+"/") || p.val == chroot:
			return fieldErr(p.path, "%s is in %s, the workers' empty chroot", p.val, chroot)
		}
	}
	if h.MasterSocket == h.RuntimeSocket {
		return fieldErr("haproxy.runtime_socket", "must differ from haproxy.master_socket")
	}
	for _, a := range []struct {
		path, val string
		dst       *string
	}{{"haproxy.user", f.User, &h.User}, {"haproxy.group", f.Group, &h.Group}} {
		if !accountRE.MatchString(a.val) {
			return fieldErr(a.path, "%q is not a system account name (1-32 of a-z 0-9 _ -, starting with a letter or _; default haproxy, root only where a feature needs root workers)", clip(a.val))
		}
		*a.dst = a.val
	}
	return nil
}

// portList parses a list of ports and ranges, refusing overlaps so that an
// operator's typo ("1-3000", "2000-4000") is caught rather than merged.
func portList(path string, raw []string) (PortSet, error) {
	rs := make([]PortRange, len(raw))
	for i, s := range raw {
		r, err := ParsePortRange(s)
		if err != nil {
			return nil, fieldErr(fmt.Sprintf("%s[%d]", path, i), "%v", err)
		}
		rs[i] = r
	}
	// Sweep the entries by first port, keeping the one that reaches
	// furthest: an entry starting before that one's end overlaps it.
	order := make([]int, len(rs))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return rs[order[a]].From < rs[order[b]].From })
	far := -1
	for _, i := range order {
		if far >= 0 && rs[i].From <= rs[far].To {
			later, earlier := max(i, far), min(i, far)
			return nil, fieldErr(fmt.Sprintf("%s[%d]", path, later), "%s overlaps %s[%d] (%s); list each port once", rs[later], path, earlier, rs[earlier])
		}
		if far < 0 || rs[i].To > rs[far].To {
			far = i
		}
	}
	return NewPortSet(rs...), nil
}

// firstOverlap returns the first range of a that shares a port with b,
// walking both sorted sets once.
func firstOverlap(a, b PortSet) (PortRange, bool) {
	j := 0
	for _, x := range a {
		for j < len(b) && b[j].To < x.From {
			j++
		}
		if j < len(b) && b[j].From <= x.To {
			return x, true
		}
	}
	return PortRange{}, false
}

func joinAny[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

// Package node is the declarative description of one VPN node: what the
// operator writes in the node file, decoded strictly and validated with field
// paths. Everything downstream (plan, emitters) reads a *Node, never the file.
package node

import (
	"net/netip"
	"time"

	"github.com/portstripe/portstripe/signature"
)

// Reject as a default means: no service takes what matches no signature.
const Reject = "reject"

// The firewall backends, as the node file's `firewall` names them.
const (
	IPTables = "iptables"
	NFTables = "nftables"
)

// Firewalls are the values `firewall` takes.
var Firewalls = []string{IPTables, NFTables}

// DefaultFirewall is the backend of a node file that names none.
const DefaultFirewall = IPTables

// Node is a validated node file.
type Node struct {
	Name string
	// Firewall is the backend that installs the node's rules.
	Firewall string
	// Source names the node file ("built-in:…" for the embedded seed node)
	// and SHA256 is the hex digest of its bytes; both go into every header.
	Source string
	SHA256 string
	// SettingsSHA256 is the hex digest of the effective settings (the file
	// with defaults and Overrides applied, as JSON): two nodes with the same
	// one are compiled alike, whatever their files look like.
	SettingsSHA256 string
	// Overrides are the settings the environment and --set changed.
	Overrides []Override
	Addresses []netip.Addr
	Striped   map[Proto]PortSet
	Reserved  PortSet
	HAProxy   HAProxy
	// Default names the service that takes traffic matching no signature on
	// a striped port, per protocol; Reject (the default) means none does.
	Default  map[Proto]string
	Services []Service
}

// HAProxy holds the settings of the HAProxy instance portstripe drives.
type HAProxy struct {
	// ListenPort is the first TCP port the classification frontends bind on
	// the node's addresses; one frontend per distinct decision list, on
	// consecutive ports.
	ListenPort   uint16
	InspectDelay time.Duration
	// HardStopAfter ends an old worker (and the VPN sessions it still
	// carries) this long after a reload; 0 lets old workers live as long as
	// their sessions.
	HardStopAfter time.Duration
	// Log is where HAProxy writes one line per TCP connection (its
	// decision): LogFile, LogNone or LogSyslog (to Syslog, over UDP).
	Log    string
	Syslog netip.AddrPort
	// LogRate caps those lines per second, per frontend and worker: a
	// flood of connections cannot flood the log.
	LogRate        int
	TimeoutConnect time.Duration
	TimeoutClient  time.Duration
	TimeoutServer  time.Duration
	MaxConn        int
	// RunDir is the directory portstripe owns for HAProxy: both sockets
	// sit inside it, and its "empty" subdirectory is the workers' chroot.
	RunDir        string
	MasterSocket  string
	RuntimeSocket string
	// User and Group are what HAProxy's workers run as once the master
	// (root) has bound the listeners: "haproxy" unless the node file says
	// otherwise; root only when it says so.
	User  string
	Group string
}

// The values of haproxy.log besides a syslog server's IP:PORT.
const (
	LogFile   = "file" // the haproxy.log in the state directory
	LogNone   = "none"
	LogSyslog = "syslog"
)

// Service is one thing clients reach through the striped ports.
type Service struct {
	Name string
	// Kind is what the service speaks: its entry in the registry, which
	// decides its signature.
	Kind signature.Kind
	// Settings are what the kind's own keys (tls, sni, ...) say.
	Settings signature.Settings
	// UDP is the port the service listens on at the node's addresses; 0 when
	// it has no UDP listener.
	UDP uint16
	// TCP is the backend HAProxy forwards to; invalid when it has none.
	TCP netip.AddrPort
	// Striped services share every striped port; Dedicated ports belong to
	// this service, and other services join them only where distinguishable.
	Striped   bool
	Dedicated PortSet
	// Disabled puts the TCP backend's server in maintenance: HAProxy stops
	// sending it connections, through the runtime API, without a reload.
	// The rules, and so UDP, are unchanged.
	Disabled bool
	// Check is how HAProxy health-checks the TCP backend.
	Check Check
	// ClientAddress is how the TCP backend learns the client's address.
	ClientAddress ClientAddress
}

// Check is a service's `check`: how HAProxy health-checks its TCP backend.
type Check string

const (
	// CheckAuto (the default) lets the planner pick what fits the kind: the
	// SSH banner for ssh, a TLS hello for tls, a TCP connect otherwise.
	CheckAuto    Check = "auto"
	CheckConnect Check = "connect"
	CheckNone    Check = "none"
)

// Checks are the values `check` takes.
var Checks = []Check{CheckAuto, CheckConnect, CheckNone}

// ClientAddress is a service's `client_address`: what address its TCP
// backend sees a client connect from.
type ClientAddress string

const (
	// ClientProxy (the default): HAProxy's own, 127.0.0.1 for a loopback
	// backend; the backend never learns the client's address.
	ClientProxy ClientAddress = "proxy"
	// ClientTransparent: HAProxy connects from the client's address
	// (TPROXY), and the backend's replies are routed back to HAProxy. The
	// backend needs an address that is neither loopback nor the node's,
	// and HAProxy's workers run as root.
	ClientTransparent ClientAddress = "transparent"
	// ClientProxyV1 and ClientProxyV2: HAProxy sends the PROXY protocol
	// header (text or binary) first, for backends that read it (HAProxy
	// accept-proxy, nginx proxy_protocol; not OpenVPN or sshd).
	ClientProxyV1 ClientAddress = "proxy-v1"
	ClientProxyV2 ClientAddress = "proxy-v2"
)

// ClientAddresses are the values `client_address` takes.
var ClientAddresses = []ClientAddress{ClientProxy, ClientTransparent, ClientProxyV1, ClientProxyV2}

// Has reports whether the service listens on the given protocol.
func (s Service) Has(p Proto) bool {
	if p == UDP {
		return s.UDP != 0
	}
	return s.TCP.IsValid()
}

// Signature is what a first packet of the service looks like on p, as its
// kind derives it; ok is false when the service has no endpoint on p.
func (s Service) Signature(p Proto) (sig signature.Signature, ok bool) {
	if !s.Has(p) {
		return signature.Signature{}, false
	}
	return s.Kind.Signature(s.Settings, p), true
}

// Service returns the service with that name.
func (n *Node) Service(name string) (Service, bool) {
	for _, s := range n.Services {
		if s.Name == name {
			return s, true
		}
	}
	return Service{}, false
}

// Family is an IP version: clients reach a node over each family it has
// an address of.
type Family string

const (
	IPv4 Family = "ipv4"
	IPv6 Family = "ipv6"
)

// Families lists the families in the order every output walks them.
var Families = []Family{IPv4, IPv6}

// FamilyOf is the family of an address.
func FamilyOf(a netip.Addr) Family {
	if a.Is6() && !a.Is4In6() {
		return IPv6
	}
	return IPv4
}

// AddressesOf returns the addresses of one family, in their order.
func AddressesOf(addrs []netip.Addr, f Family) []netip.Addr {
	var out []netip.Addr
	for _, a := range addrs {
		if FamilyOf(a) == f {
			out = append(out, a)
		}
	}
	return out
}

// String is the family as prose names it (IPv4, IPv6).
func (f Family) String() string {
	if f == IPv6 {
		return "IPv6"
	}
	return "IPv4"
}

package testbed

import (
	"fmt"
	"path/filepath"
	"strings"
)

// NodeFile is a node file for a node in a testbed: the node namespace's
// address, TCP and UDP striped on the same ports, Dir as HAProxy's run
// directory (haproxy.run_dir) holding its sockets, then Services, each a
// YAML list item ("  - {name: …}\n").
type NodeFile struct {
	Name         string
	Striped      string // both protocols, e.g. "1-29999"
	ListenPort   int
	InspectDelay string
	MaxConn      int
	Dir          string
	// User is haproxy.user when set (root for transparent backends).
	User string
	// IPv6 adds NodeAddr6 to the addresses (a Pair with AddIPv6).
	IPv6 bool
	// Firewall is the node file's firewall when set (iptables, nftables).
	Firewall string
	Services []string
}

// YAML renders the node file.
func (f NodeFile) YAML() string {
	var b strings.Builder
	addrs := NodeAddr.String()
	if f.IPv6 {
		addrs += `, "` + NodeAddr6.String() + `"`
	}
	fmt.Fprintf(&b, `name: %s
addresses: [%s]
striped:
  tcp: [%q]
  udp: [%q]
haproxy:
  listen_port: %d
  inspect_delay: %s
  timeouts: {connect: 2s, client: 1m, server: 1m}
  maxconn: %d
  run_dir: %s
  master_socket: %s
  runtime_socket: %s
`, f.Name, addrs, f.Striped, f.Striped, f.ListenPort, f.InspectDelay, f.MaxConn, f.Dir,
		filepath.Join(f.Dir, "master.sock"), filepath.Join(f.Dir, "runtime.sock"))
	if f.User != "" {
		fmt.Fprintf(&b, "  user: %s\n", f.User)
	}
	if f.Firewall != "" {
		fmt.Fprintf(&b, "firewall: %s\n", f.Firewall)
	}
	b.WriteString("defaults: {tcp: reject, udp: reject}\nservices:\n")
	for _, s := range f.Services {
		b.WriteString(s)
	}
	return b.String()
}

//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// instance is one OpenVPN server of the seed node, running twice (a UDP and
// a TCP process) with one PKI.
type instance struct {
	service string // the node file's service name
	alg     string // key type, a key of keyAlgs
	mode    string // tls-auth or tls-crypt
	digest  string // tls-auth only
	udpPort int    // on the node address
	tcpAddr netip.AddrPort
	// dedicated ports, as in the seed node
	dedicated []int
	// anyAddress: the UDP server listens on every address of both
	// families (--proto udp6 without --local), as on a dual-stack node.
	anyAddress bool

	pki *pki
	udp *testbed.Proc
	tcp *testbed.Proc
}

// seedInstances mirrors fixtures/seed-node.yaml.
func seedInstances() []*instance {
	lo := netip.MustParseAddr("127.0.0.1")
	return []*instance{
		{service: "openvpn_rsa", alg: "rsa", mode: "tls-auth", digest: "SHA512", udpPort: 443, tcpAddr: netip.AddrPortFrom(lo, 1194)},
		{service: "openvpn_ecc", alg: "ecc", mode: "tls-crypt", udpPort: 5060, tcpAddr: netip.AddrPortFrom(lo, 5060)},
		{service: "openvpn_ed25519", alg: "ed25519", mode: "tls-crypt", udpPort: 5061, tcpAddr: netip.AddrPortFrom(lo, 5061), dedicated: []int{5061}},
		{service: "openvpn_ed448", alg: "ed448", mode: "tls-crypt", udpPort: 5062, tcpAddr: netip.AddrPortFrom(lo, 5062), dedicated: []int{5062}},
	}
}

// wrapArgs are the control-channel options, the same on server and client
// except for tls-auth's key direction.
func (in *instance) wrapArgs(direction string) []string {
	if in.mode == "tls-auth" {
		return []string{"--tls-auth", in.pki.tlsKey, direction, "--auth", in.digest}
	}
	return []string{"--tls-crypt", in.pki.tlsKey}
}

// serverArgs: a small DH-less multi-client server. --mode server needs a tun
// device; --ifconfig-noexec keeps the pool's addresses out of the kernel, so
// the eight servers' pools never clash.
func (in *instance) serverArgs(proto string) []string {
	args := []string{
		"--mode", "server", "--tls-server", "--dev", "tun",
		"--topology", "subnet", "--server", "203.0.113.0", "255.255.255.0",
		"--ifconfig-noexec", "--route-noexec", "--duplicate-cn",
		"--ca", in.pki.ca, "--cert", in.pki.cert, "--key", in.pki.key, "--dh", "none",
		"--remote-cert-tls", "client", "--hand-window", "10",
		"--verb", "3", "--suppress-timestamps",
	}
	switch {
	case proto == "udp" && in.anyAddress:
		args = append(args, "--proto", "udp6", "--lport", strconv.Itoa(in.udpPort))
	case proto == "udp":
		args = append(args, "--proto", "udp", "--local", nodeAddr, "--lport", strconv.Itoa(in.udpPort))
	default:
		tcp := "tcp-server"
		if in.tcpAddr.Addr().Is6() {
			tcp = "tcp6-server"
		}
		args = append(args, "--proto", tcp, "--local", in.tcpAddr.Addr().String(), "--lport", strconv.Itoa(int(in.tcpAddr.Port())))
	}
	return append(args, in.wrapArgs("0")...)
}

// startServers starts the instance's UDP and TCP servers in the node
// namespace and waits until both are ready.
func (in *instance) startServers(t *testing.T, node testbed.Netns, dir string) {
	t.Helper()
	for _, proto := range []string{"udp", "tcp"} {
		p := testenv.Start(t, in.service+"/"+proto, node.Command("openvpn", in.serverArgs(proto)...),
			filepath.Join(dir, in.service+"-"+proto+".log"))
		if proto == "udp" {
			in.udp = p
		} else {
			in.tcp = p
		}
	}
	for _, p := range []*testbed.Proc{in.udp, in.tcp} {
		if err := p.WaitLog("Initialization Sequence Completed", 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
}

// clientArgs: a real client that needs no tun (--dev null) and gives up in
// seconds, bound to lport so the capture and the server logs can tell its
// packets from all others, and naming its case in its peer info.
func (in *instance) clientArgs(proto string, port, lport int, id string) []string {
	return in.clientArgsTo(testbed.NodeAddr, proto, port, lport, id)
}

// clientArgsTo is clientArgs for a client connecting to remote, over IPv6
// (udp6, tcp6-client) when remote is.
func (in *instance) clientArgsTo(remote netip.Addr, proto string, port, lport int, id string) []string {
	p := "udp"
	if proto == "tcp" {
		p = "tcp-client"
	}
	if remote.Is6() {
		p = strings.Replace(p, proto, proto+"6", 1)
	}
	args := []string{
		"--client", "--dev", "null", "--proto", p,
		"--remote", remote.String(), strconv.Itoa(port), "--lport", strconv.Itoa(lport),
		"--ca", in.pki.ca, "--cert", in.pki.clientCert, "--key", in.pki.clientKey,
		"--remote-cert-tls", "server",
		"--pull-filter", "ignore", "ifconfig", "--pull-filter", "ignore", "tun-mtu",
		"--verb", "3", "--connect-retry-max", "1", "--connect-timeout", "5",
		"--hand-window", "5", "--server-poll-timeout", "5",
		"--setenv", "UV_CASE", id, "--push-peer-info",
	}
	return append(args, in.wrapArgs("1")...)
}

// handshakeWith reports whether this instance's server (on proto) logged a
// completed handshake with the client of case id: the peer info line naming
// the case and "Peer Connection Initiated" on the same connection.
func (in *instance) handshakeWith(proto, id string) bool {
	p := in.udp
	if proto == "tcp" {
		p = in.tcp
	}
	lines := strings.Split(p.LogText(), "\n")
	for _, l := range lines {
		prefix, ok := strings.CutSuffix(l, " peer info: UV_CASE="+id)
		if !ok {
			continue
		}
		for _, m := range lines {
			if strings.HasPrefix(m, prefix+" [") && strings.Contains(m, "Peer Connection Initiated with") {
				return true
			}
		}
	}
	return false
}

// sawClient reports whether this instance's UDP server logged anything about
// the client at 198.51.100.1:lport: where a UDP first packet landed, whether
// the handshake then worked or not.
func (in *instance) sawClient(lport int) bool {
	re := regexp.MustCompile(regexp.QuoteMeta(fmt.Sprintf("%s:%d", clientAddr, lport)) + `\b`)
	return re.MatchString(in.udp.LogText())
}

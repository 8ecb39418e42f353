package main

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/signature"
)

// badInput is one row of the bad-input matrix: a node file that must be
// refused with exit 2, one line on stderr and nothing written or applied.
// The file is the seed node with old replaced by new and add appended, or
// raw bytes, or a sparse file of size bytes.
type badInput struct {
	name     string
	old, new string
	add      string
	raw      []byte
	size     int64
	// special makes the node file something else than a regular file:
	// "fifo", "directory", or "/dev/zero" (a symlink to it).
	special string
	// env (NAME=VALUE) and set (--set KEY=VALUE) override the file.
	env, set string
	// about describes the node file where the edit is too long to show.
	about string
	// want is the exact stderr line after "portstripe: "; the node file's
	// directory is written as DIR.
	want string
}

// fromSeed reports whether the row's node file is the seed node edited.
func (b badInput) fromSeed() bool { return b.raw == nil && b.size == 0 && b.special == "" }

// args is a command line for the row: its --set, if any, added.
func (b badInput) args(args ...string) []string {
	if b.set != "" {
		args = append(args, "--set", b.set)
	}
	return args
}

// setEnv sets the row's environment variable for the test.
func (b badInput) setEnv(t *testing.T) {
	if name, value, ok := strings.Cut(b.env, "="); ok {
		t.Setenv(name, value)
	}
}

// deep nests n maps in one line; wide is a map of n keys, one per line.
func deep(n int) string { return strings.Repeat("{a: ", n) + "1" + strings.Repeat("}", n) }

func wide(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "  k%d: 1\n", i)
	}
	return b.String()
}

// appendSvc adds a service after the seed's four.
func appendSvc(svc string) string { return "  - " + svc + "\n" }

// badInputs is the matrix docs/bad-input.md is generated from.
var badInputs = []badInput{
	{name: "unknown key", old: "name: seed", new: "name: seed\ncolour: blue",
		want: "colour: unknown key (allowed here: name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
	{name: "unknown firewall backend", old: "name: seed", new: "name: seed\nfirewall: pf",
		want: `firewall: "pf" is not a firewall backend (allowed: iptables, nftables)`},
	{name: "unknown nested key", old: "tls: {mode: tls-crypt}", new: "tls: {mode: tls-crypt, cipher: AES-256-GCM}",
		want: "services[1].tls.cipher: unknown key (allowed here: mode, digest)"},
	{name: "wrong type (list for a port)", old: "udp: 443", new: "udp: [443, 444]",
		want: "services[0].udp: wrong type: want a number, got a list"},
	{name: "wrong type (map for a list)", old: "addresses: [195.154.33.73]", new: "addresses: {public: 195.154.33.73}",
		want: "addresses: wrong type: want a list, got a map (key: value)"},
	{name: "wrong type (number for tls)", old: "tls: {mode: tls-auth, digest: SHA512}", new: "tls: 5",
		want: "services[0].tls: wrong type: want a map (key: value), got the number 5"},
	{name: "missing node name", old: "name: seed\n", new: "\n",
		want: "name: required: the node's name (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)"},
	{name: "missing addresses", old: "addresses: [195.154.33.73]\n", new: "\n",
		want: "addresses: required: the node's public address(es), IPv4 and/or IPv6"},
	{name: "missing service kind", old: "    kind: openvpn\n    tls: {mode: tls-auth", new: "    tls: {mode: tls-auth",
		want: "services[0].kind: required (allowed: " + signature.KindNames() + ")"},
	{name: "missing tls mode", old: "tls: {mode: tls-auth, digest: SHA512}", new: "tls: {digest: SHA512}",
		want: "services[0].tls.mode: required (allowed: tls-auth, tls-crypt, tls-crypt-v2, none)"},
	{name: "missing backend", add: appendSvc("{name: ssh, kind: ssh}"),
		want: "services[4].tcp: required: the ssh backend address (IPv4:PORT or [IPv6]:PORT)"},
	{name: "range not a number", old: `udp: ["1-29999"]`, new: `udp: ["1-abc"]`,
		want: `striped.udp[0]: "abc" is not a port number (want 1-65535 or LOW-HIGH)`},
	{name: "reversed range", old: `udp: ["1-29999"]`, new: `udp: ["300-200"]`,
		want: `striped.udp[0]: range "300-200" is reversed (want LOW-HIGH)`},
	{name: "overlapping ranges", old: `udp: ["1-29999"]`, new: `udp: ["1-29999", "100-200"]`,
		want: "striped.udp[1]: 100-200 overlaps striped.udp[0] (1-29999); list each port once"},
	{name: "port 0", old: "udp: 443", new: "udp: 0",
		want: "services[0].udp: port 0 is out of range (allowed 1-65535)"},
	{name: "port above 65535", old: `reserved: ["30000-65535"]`, new: `reserved: ["30000-65536"]`,
		want: "reserved[0]: port 65536 is out of range (allowed 1-65535)"},
	{name: "striped overlaps reserved", old: `tcp: ["1-29999"]`, new: `tcp: ["1-30000"]`,
		want: "striped.tcp: 1-30000 overlaps the reserved ports 30000-65535 (reserved ports are never striped)"},
	{name: "reserved overlaps dedicated", old: `dedicated: ["5061"]`, new: `dedicated: ["30001"]`,
		want: "services[2].dedicated: 30001 is reserved (30000-65535); dedicated ports must be outside the reserved ones"},
	{name: "port dedicated twice", old: `dedicated: ["5062"]`, new: `dedicated: ["5061"]`,
		want: "services[3].dedicated: port 5061 is dedicated to both openvpn_ed25519 and openvpn_ed448 (services[2]); a port has one owner"},
	{name: "duplicate service names", old: "name: openvpn_ecc", new: "name: openvpn_rsa",
		want: `services[1].name: "openvpn_rsa" is already the name of services[0] (service names must be unique)`},
	{name: "newline in a name", old: "name: openvpn_rsa", new: `name: "openvpn_rsa\n  bind :1"`,
		want: `services[0].name: "openvpn_rsa\n bind :1" is not allowed (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)`},
	{name: "space in a name", old: "name: openvpn_ecc", new: `name: "openvpn ecc"`,
		want: `services[1].name: "openvpn ecc" is not allowed (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)`},
	{name: "# in a name", old: "name: openvpn_ecc", new: `name: "openvpn#ecc"`,
		want: `services[1].name: "openvpn#ecc" is not allowed (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)`},
	{name: "quote in a name", old: "name: openvpn_ecc", new: `name: "openvpn\"ecc"`,
		want: `services[1].name: "openvpn\"ecc" is not allowed (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)`},
	{name: "non-ASCII name", old: "name: openvpn_ecc", new: `name: "openvpn_écc"`,
		want: `services[1].name: "openvpn_écc" is not allowed (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)`},
	{name: "space in the node name", old: "name: seed", new: `name: "seed node"`,
		want: `name: "seed node" is not allowed (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)`},
	{name: "alpn on a kind that is not TLS", add: appendSvc(`{name: s, kind: ssh, tcp: 127.0.0.1:22, alpn: [h2]}`),
		want: "services[4].alpn: only tls and openconnect services take alpn"},
	{name: "space in an ALPN protocol", add: appendSvc(`{name: web, kind: tls, tcp: 127.0.0.1:8443, alpn: ["h2 http/1.1"]}`),
		want: `services[4].alpn[0]: "h2 http/1.1" is not an ALPN protocol ID (1-64 of A-Z a-z 0-9 . _ / + -, e.g. h2, http/1.1)`},
	{name: "ALPN protocol twice", add: appendSvc(`{name: web, kind: tls, tcp: 127.0.0.1:8443, alpn: [h2, h2]}`),
		want: `services[4].alpn[1]: "h2" is listed twice`},
	{name: "ambiguous port (two TLS services by one ALPN protocol)", add: appendSvc(`{name: web1, kind: tls, alpn: [h2, http/1.1], tcp: 127.0.0.1:8443}`) + appendSvc(`{name: web2, kind: tls, alpn: [h2], tcp: 127.0.0.1:8444}`),
		want: "services[5]: web1 and web2 cannot share tcp 1-5060,5063-29999: no signature tells them apart (TLS ClientHello ALPN h2 http/1.1 and TLS ClientHello ALPN h2 take each other's clients); give one of them dedicated ports or disjoint SNI names"},
	{name: "sni on a socks5 service", add: appendSvc(`{name: proxy, kind: socks5, tcp: 127.0.0.1:1080, sni: [a.example]}`),
		want: "services[4].sni: only tls and openconnect services take sni"},
	{name: "udp on a TCP-only kind", add: appendSvc(`{name: proxy, kind: socks5, tcp: 127.0.0.1:1080, udp: 1080}`),
		want: "services[4].udp: a socks5 service has no UDP listener (only openvpn, wireguard, quic, dtls, openconnect and custom do)"},
	{name: "tcp on quic", add: appendSvc(`{name: h3, kind: quic, udp: 8443, tcp: 127.0.0.1:8443}`),
		want: "services[4].tcp: quic has no TCP backend"},
	{name: "quic without udp", add: appendSvc(`{name: h3, kind: quic}`),
		want: "services[4].udp: required: the port quic listens on"},
	{name: "custom prefix not hex", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: KBPROTO}}`),
		want: `services[4].custom.prefix: "KBPROTO" is not hex (two digits 0-9 a-f per byte, e.g. 4b42)`},
	{name: "custom prefix of odd length", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 4b425}}`),
		want: `services[4].custom.prefix: "4b425" is not hex (two digits 0-9 a-f per byte, e.g. 4b42)`},
	{name: "custom prefix too long", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: ` + strings.Repeat("ab", 65) + `}}`),
		want: "services[4].custom.prefix: 65 bytes; want 1 to 64"},
	{name: "unbounded custom regex", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {regex: "^KB.*"}}`),
		want: `services[4].custom.regex: "^KB.*" is unbounded (*, + or {n,} can match without end); bound every repeat ({1,16}) so it matches at most 256 bytes`},
	{name: "custom regex too long a match", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {regex: "^KB[0-9]{1,300}"}}`),
		want: `services[4].custom.regex: "^KB[0-9]{1,300}" can match 302 bytes; at most 256`},
	{name: "custom regex not anchored", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {regex: "KB[0-9]"}}`),
		want: `services[4].custom.regex: "KB[0-9]" is not anchored: start it with ^ (it is tried on the first bytes only)`},
	{name: "backslash in a custom regex", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {regex: '^KB\d'}}`),
		want: `services[4].custom.regex: "^KB\\d": only printable ASCII without spaces, backslashes, quotes or # (haproxy.cfg would read them; write [[:blank:]] for a space, [.] for a dot)`},
	{name: "custom regex that does not compile", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {regex: "^KB[0-9"}}`),
		want: `services[4].custom.regex: "^KB[0-9" does not compile: error parsing regexp: missing closing ]: ` + "`[0-9`"},
	{name: "custom prefix and regex", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 4b42, regex: "^KB"}}`),
		want: "services[4].custom.regex: give prefix or regex, not both"},
	{name: "custom tcp without prefix or regex", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000}`),
		want: "services[4].custom: required with tcp: prefix (hex) or regex, what a TCP client's first bytes look like"},
	{name: "custom udp without match", add: appendSvc(`{name: game, kind: custom, udp: 27015}`),
		want: "services[4].custom.match: required with udp: the byte tests ({offset, bytes, mask}) a client's first datagram passes"},
	{name: "custom match on a TCP-only service", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 4b42, match: [{offset: 0, bytes: ff}]}}`),
		want: "services[4].custom.match: match, length and min_length test a UDP datagram, and the service has no udp listener"},
	{name: "overlapping custom matches", add: appendSvc(`{name: game, kind: custom, udp: 27015, custom: {match: [{offset: 0, bytes: ffffffff}, {offset: 2, bytes: ff}]}}`),
		want: "services[4].custom.match[1]: byte 2 is tested by custom.match[0] too; give each byte one test (overlapping matches)"},
	{name: "custom mask of another length", add: appendSvc(`{name: game, kind: custom, udp: 27015, custom: {match: [{offset: 0, bytes: c000, mask: f0}]}}`),
		want: "services[4].custom.match[0].mask: 1 bytes, and bytes has 2; give one mask byte per byte"},
	{name: "custom bytes outside their mask", add: appendSvc(`{name: game, kind: custom, udp: 27015, custom: {match: [{offset: 0, bytes: c1, mask: f0}]}}`),
		want: "services[4].custom.match[0].bytes: byte 0 (c1) has bits the mask (f0) leaves out; no packet could match"},
	{name: "custom match past the length", add: appendSvc(`{name: game, kind: custom, udp: 27015, custom: {match: [{offset: 8, bytes: ffff}], length: 9}}`),
		want: "services[4].custom.match[0]: bytes 8-9 lie past the payload length 9"},
	{name: "custom prefix that takes OpenVPN's clients", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: "0036"}}`),
		want: "services[4]: kb and openvpn_ecc cannot share tcp 1-5060,5063-29999: kb (custom prefix 0036) may take a client of openvpn_ecc (OpenVPN tls-crypt); give one of them dedicated ports or other custom bytes"},
	{name: "custom match that takes WireGuard's clients", add: appendSvc(`{name: wg, kind: wireguard, udp: 21820}`) + appendSvc(`{name: game, kind: custom, udp: 27015, custom: {match: [{offset: 0, bytes: "01"}]}}`),
		want: "services[5]: game and wg cannot share udp 1-5060,5063-29999: game (custom match 01@0) may take a client of wg (WireGuard handshake initiation); give one of them dedicated ports or other custom bytes"},
	{name: "one custom prefix twice", add: appendSvc(`{name: kb1, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 4b42}}`) + appendSvc(`{name: kb2, kind: custom, tcp: 127.0.0.1:7001, custom: {prefix: 4B42}}`),
		want: "services[5]: kb1 and kb2 cannot share tcp 1-5060,5063-29999: no signature tells them apart (both are custom prefix 4b42); give one of them dedicated ports or other custom bytes"},
	{name: "custom settings on a tls service", add: appendSvc(`{name: web, kind: tls, tcp: 127.0.0.1:8443, custom: {prefix: 16}}`),
		want: "services[4].custom: only custom services take custom"},
	{name: "unknown key in custom", add: appendSvc(`{name: kb, kind: custom, tcp: 127.0.0.1:7000, custom: {prefix: 4b42, magic: 1}}`),
		want: "services[4].custom.magic: unknown key (allowed here: prefix, regex, match, length, min_length)"},
	{name: "newline in SNI", add: appendSvc(`{name: web, kind: tls, tcp: 127.0.0.1:8443, sni: ["a.example\nuse_backend x"]}`),
		want: `services[4].sni[0]: "a.example\nuse_backend x" is not a DNS name (letters, digits, hyphens and dots only)`},
	{name: "space in SNI", add: appendSvc(`{name: web, kind: tls, tcp: 127.0.0.1:8443, sni: ["a.example b.example"]}`),
		want: `services[4].sni[0]: "a.example b.example" is not a DNS name (letters, digits, hyphens and dots only)`},
	{name: "# in SNI", add: appendSvc(`{name: web, kind: tls, tcp: 127.0.0.1:8443, sni: ["a.example#x"]}`),
		want: `services[4].sni[0]: "a.example#x" is not a DNS name (letters, digits, hyphens and dots only)`},
	{name: "quote in SNI", add: appendSvc(`{name: web, kind: tls, tcp: 127.0.0.1:8443, sni: ["a\"b.example"]}`),
		want: `services[4].sni[0]: "a\"b.example" is not a DNS name (letters, digits, hyphens and dots only)`},
	{name: "non-ASCII SNI", add: appendSvc(`{name: web, kind: tls, tcp: 127.0.0.1:8443, sni: ["bücher.example"]}`),
		want: `services[4].sni[0]: "bücher.example" is not a DNS name (letters, digits, hyphens and dots only)`},
	{name: "unknown health check", old: "tcp: 127.0.0.1:1194", new: "tcp: 127.0.0.1:1194\n    check: sometimes",
		want: `services[0].check: "sometimes" is not a health check (allowed: auto, connect, none)`},
	{name: "unknown client address mode", old: "tcp: 127.0.0.1:1194", new: "tcp: 127.0.0.1:1194\n    client_address: real",
		want: `services[0].client_address: "real" is not a client address mode (allowed: proxy, transparent, proxy-v1, proxy-v2)`},
	{name: "client address without a tcp backend", add: appendSvc(`{name: wg, kind: wireguard, udp: 21820, client_address: transparent}`),
		want: "services[4].client_address: the service has no tcp backend (UDP clients keep their address: the rules DNAT, they do not proxy)"},
	{name: "transparent backend on loopback", old: "tcp: 127.0.0.1:1194", new: "tcp: 127.0.0.1:1194\n    client_address: transparent", set: "haproxy.user=root",
		want: "services[0].client_address: transparent needs a backend on a non-loopback address of this machine, not 127.0.0.1:1194: the kernel drops loopback packets from the client's address (route_localnet); give the backend e.g. an address on lo or a dummy interface"},
	{name: "transparent backend at the node's address", old: "tcp: 127.0.0.1:1194", new: "tcp: 195.154.33.73:1194\n    client_address: transparent", set: "haproxy.user=root",
		want: "services[0].client_address: transparent needs a backend address that is not one of the node's addresses (195.154.33.73): a connection from the client's address to it would be diverted into the frontends again; give the backend its own address"},
	{name: "transparent with unprivileged workers", old: "tcp: 127.0.0.1:1194", new: "tcp: 192.0.2.20:1194\n    client_address: transparent",
		want: "haproxy.user: openvpn_rsa is transparent (services[0].client_address: transparent), which needs HAProxy's workers to stay root (HAProxy refuses usesrc otherwise); set haproxy.user: root to accept that trade-off"},
	{name: "backend is a host name", old: "tcp: 127.0.0.1:1194", new: "tcp: localhost:1194",
		want: `services[0].tcp: "localhost:1194" is not a backend address (want IPv4:PORT or [IPv6]:PORT, e.g. 127.0.0.1:1194 or [2001:db8::20]:1194)`},
	{name: "backend without port", old: "tcp: 127.0.0.1:1194", new: "tcp: 127.0.0.1",
		want: `services[0].tcp: "127.0.0.1" is not a backend address (want IPv4:PORT or [IPv6]:PORT, e.g. 127.0.0.1:1194 or [2001:db8::20]:1194)`},
	{name: "backend port above 65535", old: "tcp: 127.0.0.1:1194", new: "tcp: 127.0.0.1:99999",
		want: `services[0].tcp: "127.0.0.1:99999" is not a backend address (want IPv4:PORT or [IPv6]:PORT, e.g. 127.0.0.1:1194 or [2001:db8::20]:1194)`},
	{name: "backend unspecified address", old: "tcp: 127.0.0.1:1194", new: "tcp: 0.0.0.0:1194",
		want: "services[0].tcp: 0.0.0.0:1194 cannot be reached as a backend (want a unicast address)"},
	{name: "unknown service kind", old: "kind: openvpn", new: "kind: ftp",
		want: `services[0].kind: "ftp" is not a service kind (allowed: ` + signature.KindNames() + ")"},
	{name: "IPv6 backend without brackets", old: "tcp: 127.0.0.1:1194", new: `tcp: "2001:db8::20:1194"`,
		want: `services[0].tcp: "2001:db8::20:1194" is not a backend address (want IPv4:PORT or [IPv6]:PORT, e.g. 127.0.0.1:1194 or [2001:db8::20]:1194)`},
	{name: "link-local backend", old: "tcp: 127.0.0.1:1194", new: `tcp: "[fe80::1%eth0]:1194"`,
		want: "services[0].tcp: [fe80::1%eth0]:1194 is link-local: give the backend a loopback or global address"},
	{name: "IPv4-mapped backend", old: "tcp: 127.0.0.1:1194", new: `tcp: "[::ffff:127.0.0.1]:1194"`,
		want: "services[0].tcp: [::ffff:127.0.0.1]:1194 is an IPv4-mapped IPv6 address: write it as 127.0.0.1:1194"},
	{name: "IPv6 transparent backend", old: "tcp: 127.0.0.1:1194", new: "tcp: \"[2001:db8::20]:1194\"\n    client_address: transparent", set: "haproxy.user=root",
		want: "services[0].client_address: transparent is IPv4-only for now, and [2001:db8::20]:1194 is IPv6; use an IPv4 backend, or proxy-v1/proxy-v2 for a backend that reads the PROXY protocol"},
	{name: "transparent backend on a dual-stack node", old: "addresses: [195.154.33.73]", new: `addresses: [195.154.33.73, "2001:db8::10"]`, add: appendSvc("{name: ssh, kind: ssh, tcp: 192.0.2.20:22, client_address: transparent}"), set: "haproxy.user=root",
		want: "services[4].client_address: transparent is IPv4-only for now, and the node has the IPv6 address 2001:db8::10: HAProxy cannot connect to an IPv4 backend from an IPv6 client's address; use proxy-v1/proxy-v2, or a node without IPv6 addresses"},
	{name: "address not an IP", old: "addresses: [195.154.33.73]", new: `addresses: [vpn.example.org]`,
		want: `addresses[0]: "vpn.example.org" is not an IP address (want IPv4 or IPv6, e.g. 195.154.33.73 or 2001:db8::10)`},
	{name: "loopback address", old: "addresses: [195.154.33.73]", new: `addresses: [127.0.0.1]`,
		want: "addresses[0]: 127.0.0.1 cannot be a node's public address (want a global unicast IPv4 or IPv6 address clients reach the node on)"},
	{name: "IPv6 loopback address", old: "addresses: [195.154.33.73]", new: `addresses: [195.154.33.73, "::1"]`,
		want: "addresses[1]: ::1 cannot be a node's public address (want a global unicast IPv4 or IPv6 address clients reach the node on)"},
	{name: "link-local address", old: "addresses: [195.154.33.73]", new: `addresses: [195.154.33.73, "fe80::1"]`,
		want: "addresses[1]: fe80::1 is link-local: clients beyond the link cannot reach it (want a global unicast address)"},
	{name: "address with a zone", old: "addresses: [195.154.33.73]", new: `addresses: ["2001:db8::10%eth0"]`,
		want: "addresses[0]: 2001:db8::10%eth0 carries a zone (%eth0): a public address has none"},
	{name: "multicast address", old: "addresses: [195.154.33.73]", new: `addresses: ["ff02::1"]`,
		want: "addresses[0]: ff02::1 cannot be a node's public address (want a global unicast IPv4 or IPv6 address clients reach the node on)"},
	{name: "unspecified address", old: "addresses: [195.154.33.73]", new: `addresses: ["::"]`,
		want: "addresses[0]: :: cannot be a node's public address (want a global unicast IPv4 or IPv6 address clients reach the node on)"},
	{name: "IPv4-mapped address", old: "addresses: [195.154.33.73]", new: `addresses: ["::ffff:195.154.33.73"]`,
		want: "addresses[0]: ::ffff:195.154.33.73 is an IPv4-mapped IPv6 address: write the IPv4 address, 195.154.33.73"},
	{name: "IPv6 address listed twice", old: "addresses: [195.154.33.73]", new: `addresses: ["2001:db8::10", "2001:DB8:0::10"]`,
		want: "addresses[1]: 2001:db8::10 is listed twice"},
	{name: "empty address list", old: "addresses: [195.154.33.73]", new: "addresses: []",
		want: "addresses: required: the node's public address(es), IPv4 and/or IPv6"},
	{name: "no services", raw: []byte("name: t\naddresses: [198.51.100.2]\n"),
		want: "services: required: at least one service (a list of {name, kind, ...}; see fixtures/seed-node.yaml)"},
	{name: "unsupported digest", old: "digest: SHA512", new: "digest: MD5",
		want: `services[0].tls.digest: "MD5" is not supported (allowed: SHA1, SHA256, SHA384, SHA512)`},
	{name: "unknown tls mode", old: "mode: tls-auth, digest: SHA512", new: "mode: tls-magic",
		want: `services[0].tls.mode: "tls-magic" is not an OpenVPN tls mode (allowed: tls-auth, tls-crypt, tls-crypt-v2, none)`},
	{name: "ambiguous port (two tls-crypt)", old: `dedicated: ["5061"]`, new: "striped: true",
		want: "services[2]: openvpn_ecc and openvpn_ed25519 cannot share udp 1-5061,5063-29999: no signature tells them apart (both are OpenVPN tls-crypt); give one of them dedicated ports or another tls mode or digest"},
	{name: "ambiguous port (two catch-all TLS)", add: appendSvc("{name: web1, kind: tls, tcp: 127.0.0.1:8443}") + appendSvc("{name: web2, kind: tls, tcp: 127.0.0.1:8444}"),
		want: "services[5]: web1 and web2 cannot share tcp 1-5060,5063-29999: no signature tells them apart (both are TLS ClientHello); give one of them dedicated ports or disjoint SNI names"},
	{name: "two services on one UDP listener port", add: appendSvc("{name: wg, kind: wireguard, udp: 443}"),
		want: "services[4].udp: port 443 is already the UDP listener of openvpn_rsa (services[0]); openvpn_rsa and wg need a port each"},
	{name: "frontend name taken twice (service named striped with dedicated ports)", add: appendSvc(`{name: striped, kind: ssh, tcp: 127.0.0.1:22, dedicated: ["22"]}`),
		want: "services[4].name: frontend fe_striped would serve both the striped ports (tcp 1-21,23-5060,5063-29999) and the ports dedicated to service \"striped\" (tcp 22); rename the service"},
	{name: "backend on the node's address at a striped port (loop)", old: "tcp: 127.0.0.1:1194", new: "tcp: 195.154.33.73:1194",
		want: "services[0].tcp: 195.154.33.73:1194 is on the node's address at port 1194, which the rules divert to frontend fe_striped (tcp 1-5060,5063-29999, list striped): HAProxy's connection to the backend would loop back into its own frontend; use a loopback address or a reserved or unstriped port"},
	{name: "backend on the node's IPv6 address at a striped port (loop)", old: "addresses: [195.154.33.73]", new: `addresses: [195.154.33.73, "2001:db8::10"]`, add: appendSvc(`{name: ssh, kind: ssh, tcp: "[2001:db8::10]:22"}`),
		want: "services[4].tcp: [2001:db8::10]:22 is on the node's address at port 22, which the rules divert to frontend fe_striped (tcp 1-5060,5063-29999, list striped): HAProxy's connection to the backend would loop back into its own frontend; use a loopback address or a reserved or unstriped port"},
	{name: "backend on the node's address at a dedicated port (loop)", old: "tcp: 127.0.0.1:5061", new: "tcp: 195.154.33.73:5061",
		want: "services[2].tcp: 195.154.33.73:5061 is on the node's address at port 5061, which the rules divert to frontend fe_openvpn_ed25519 (tcp 5061, list openvpn_ed25519): HAProxy's connection to the backend would loop back into its own frontend; use a loopback address or a reserved or unstriped port"},
	{name: "default is not a service", old: "udp: reject", new: "udp: nobody",
		want: `defaults.udp: "nobody" is not a service name (want "reject" or one of: openvpn_rsa, openvpn_ecc, openvpn_ed25519, openvpn_ed448)`},
	{name: "default without that protocol", old: "udp: reject", new: "udp: ssh", add: appendSvc("{name: ssh, kind: ssh, tcp: 127.0.0.1:22}"),
		want: `defaults.udp: service "ssh" has no udp endpoint (want "reject" or a service with one)`},
	{name: "inspect delay out of range", old: "inspect_delay: 5s", new: "inspect_delay: 10m",
		want: `haproxy.inspect_delay: "10m" is not a duration from 1ms to 1m0s in whole milliseconds (e.g. 5s, 1500ms)`},
	{name: "hard-stop-after out of range", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  hard_stop_after: 30d",
		want: `haproxy.hard_stop_after: "30d" is not 0 (old workers live as long as their sessions) or a duration from 1s to 168h in whole seconds (e.g. 1h)`},
	{name: "log target not a syslog address", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  log: journald",
		want: `haproxy.log: "journald" is not file (the state directory's haproxy.log), none, or a syslog server's IP:PORT (UDP, e.g. 127.0.0.1:514)`},
	{name: "log rate zero", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  log_rate: 0",
		want: `haproxy.log_rate: "0" is not a number from 1 to 100000 (log lines per second per frontend)`},
	{name: "socket path with spaces", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  runtime_socket: /run/x.sock level admin",
		want: `haproxy.runtime_socket: "/run/x.sock level admin" is not allowed (an absolute path of A-Z a-z 0-9 _ . - /)`},
	{name: "second YAML document", add: "---\nname: other\n",
		want: "node file DIR/node.yaml holds a second YAML document (after ---, line 41); a node file is one document"},
	{name: "key in another case", add: "Services: []\n",
		want: "Services: unknown key (keys are case-sensitive: did you mean services?)"},
	{name: "Name beside name", old: "name: seed", new: "name: seed\nName: other",
		want: "Name: unknown key (keys are case-sensitive: did you mean name?)"},
	{name: "duplicate key", old: "name: seed", new: "name: seed\nname: other",
		want: "name: duplicate key (first on line 6); a key appears once"},
	{name: "duplicate key in a service", old: "udp: 443", new: "udp: 443\n    udp: 444",
		want: "services[0].udp: duplicate key (first on line 22); a key appears once"},
	{name: "dotted key beside its map", old: "haproxy:", new: "haproxy.maxconn: 5\nhaproxy:",
		want: `"haproxy.maxconn": unknown key (a key with a dot is not a path: write haproxy: {maxconn: …})`},
	{name: "unknown key, null value", add: "colour:\n",
		want: "colour: unknown key (allowed here: name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
	{name: "unknown key, empty map", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  colour: {}",
		want: "haproxy.colour: unknown key (allowed here: listen_port, inspect_delay, hard_stop_after, log, log_rate, timeouts, maxconn, run_dir, master_socket, runtime_socket, user, group)"},
	{name: "boolean for a name", old: "name: seed", new: "name: true",
		want: `name: wrong type: want text, got the boolean true; quote it ("true") if you mean the text`},
	{name: "number for a name", old: "name: openvpn_ecc", new: "name: 5060",
		want: `services[1].name: wrong type: want text, got the number 5060; quote it ("5060") if you mean the text`},
	{name: "decimal number for a port", old: "udp: 443", new: "udp: 443.5",
		want: "services[0].udp: wrong type: want a number, got the decimal number 443.5"},
	{name: "null for a known key", old: `reserved: ["30000-65535"]`, new: "reserved:",
		want: "reserved: wrong type: want a list, got no value (null); give one, or leave the key out"},
	{name: "text for a list", old: `reserved: ["30000-65535"]`, new: "reserved: 30000-65535",
		want: "reserved: wrong type: want a list, got text"},
	{name: "YAML tag", old: "name: seed", new: "name: !!binary c2VlZA==",
		want: "name: YAML tag !!binary is not allowed (only !!str, !!int, !!bool, !!float, !!null, !!map, !!seq)"},
	{name: "YAML alias", old: "    tls: {mode: tls-crypt}\n    udp: 5060", new: "    tls: &tc {mode: tls-crypt}\n    udp: 5060",
		want: "services[1].tls: YAML anchors and aliases (&name, *name) are not allowed in a node file; write the value out"},
	{name: "billion laughs", add: "x: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nz: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
		want: "x: unknown key (allowed here: name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
	{name: "merge key", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  <<: {maxconn: 5}",
		want: `haproxy."<<": YAML merge keys are not allowed in a node file; write the keys out`},
	{name: "4,000-deep nesting under an unknown key", add: "x: " + deep(4000) + "\n", about: "appended: `x: {a: {a: …` 4,000 maps deep",
		want: "x: unknown key (allowed here: name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
	{name: "4,000-deep nesting under a known key", old: "listen_port: 20000", new: "listen_port: " + deep(4000), about: "`haproxy.listen_port: {a: {a: …` 4,000 maps deep",
		want: "haproxy.listen_port: wrong type: want a number, got a map (key: value)"},
	{name: "100,000-wide map under an unknown key", add: "x:\n" + wide(100000), about: "appended: `x:` holding 100,000 keys",
		want: "x: unknown key (allowed here: name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
	{name: "node file is a FIFO", special: "fifo",
		want: "node file: DIR/node.yaml is a named pipe (FIFO), not a regular file"},
	{name: "node file is /dev/zero", special: "/dev/zero",
		want: "node file: DIR/node.yaml is a device, not a regular file"},
	{name: "node file is a directory", special: "directory",
		want: "node file: DIR/node.yaml is a directory, not a regular file"},
	{name: "env: map key given text", env: "PORTSTRIPE_STRIPED=x",
		want: "striped: PORTSTRIPE_STRIPED: wrong type: want a map (key: value), got text"},
	{name: "--set: map key given text", set: "striped=x",
		want: "striped: --set: wrong type: want a map (key: value), got text"},
	{name: "env: bad value", env: "PORTSTRIPE_HAPROXY_MAXCONN=0",
		want: `haproxy.maxconn: "0" is not a number from 1 to 1000000 (set by PORTSTRIPE_HAPROXY_MAXCONN)`},
	{name: "--set: key in another case", set: "Name=x",
		want: "Name: --set: unknown key (keys are case-sensitive: did you mean name?)"},
	{name: "--set: no such list entry", set: "services[4].udp=1",
		want: "services[4]: --set: no such entry (services has 4, from [0])"},
	{name: "socket outside the run directory", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  runtime_socket: /etc/shadow",
		want: "haproxy.runtime_socket: /etc/shadow is outside haproxy.run_dir (/run/portstripe): HAProxy's sockets live in the directory portstripe owns"},
	{name: "socket path climbing out (..)", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  master_socket: /run/portstripe/../../etc/shadow",
		want: `haproxy.master_socket: "/run/portstripe/../../etc/shadow" is not a clean absolute path (no .., //, . or trailing /; want e.g. /etc/shadow)`},
	{name: "relative socket path", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  master_socket: haproxy-master.sock",
		want: `haproxy.master_socket: "haproxy-master.sock" is not allowed (an absolute path of A-Z a-z 0-9 _ . - /)`},
	{name: "socket in the workers' chroot", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  runtime_socket: /run/portstripe/empty/haproxy.sock",
		want: "haproxy.runtime_socket: /run/portstripe/empty/haproxy.sock is in /run/portstripe/empty, the workers' empty chroot"},
	{name: "run directory not clean", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  run_dir: /run/portstripe/",
		want: `haproxy.run_dir: "/run/portstripe/" is not a clean absolute path (no .., //, . or trailing /; want e.g. /run/portstripe)`},
	{name: "HAProxy user with a directive", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  user: \"nobody\\n chroot /\"",
		want: `haproxy.user: "nobody\n chroot /" is not a system account name (1-32 of a-z 0-9 _ -, starting with a letter or _; default haproxy, root only where a feature needs root workers)`},
	{name: "HAProxy group not a name", old: "inspect_delay: 5s", new: "inspect_delay: 5s\n  group: \"0\"",
		want: `haproxy.group: "0" is not a system account name (1-32 of a-z 0-9 _ -, starting with a letter or _; default haproxy, root only where a feature needs root workers)`},
	{name: "not YAML", old: "name: seed", new: "name: [seed",
		want: "node file DIR/node.yaml is not valid YAML: line 5: did not find expected ',' or ']'"},
	{name: "empty file", raw: []byte{},
		want: "node file DIR/node.yaml is empty; see fixtures/seed-node.yaml for an example"},
	{name: "binary file", raw: []byte("\x7fELF\x02\x01\x01\x00\x00\x00\xff\xfe"),
		want: "node file DIR/node.yaml is not text (binary or not UTF-8); a node file is YAML"},
	{name: "100 MB file", size: 100 << 20,
		want: "node file DIR/node.yaml: larger than 4194304 bytes; a node file is YAML of a few kilobytes"},
}

var seedNode = func() string {
	b, err := os.ReadFile("../../fixtures/seed-node.yaml")
	if err != nil {
		panic(err)
	}
	return string(b)
}()

// write creates the row's node file in dir.
func (b badInput) write(t *testing.T, dir string) string {
	t.Helper()
	return b.writeAt(t, filepath.Join(dir, "node.yaml"))
}

// writeAt creates the row's file at path.
func (b badInput) writeAt(t *testing.T, path string) string {
	t.Helper()
	switch {
	case b.size > 0:
		// Sparse: a 100 MB file costs nothing to make.
		f, err := os.Create(path)
		if err != nil {
			t.Fatal(err)
		}
		if err := f.Truncate(b.size); err != nil {
			t.Fatal(err)
		}
		f.Close()
		return path
	case b.raw != nil:
		if err := os.WriteFile(path, b.raw, 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	case b.special != "":
		writeSpecial(t, path, b.special)
		return path
	}
	yaml := seedNode
	if b.old != "" {
		yaml = strings.Replace(seedNode, b.old, b.new, 1)
		if yaml == seedNode {
			t.Fatalf("edit %q does not apply to the seed node", b.old)
		}
	}
	yaml += b.add
	if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// writeSpecial makes path a FIFO, a directory or a symlink to /dev/zero.
func writeSpecial(t *testing.T, path, kind string) {
	t.Helper()
	var err error
	switch kind {
	case "fifo":
		err = syscall.Mkfifo(path, 0o600)
	case "directory":
		err = os.Mkdir(path, 0o700)
	case "socket":
		var l net.Listener
		if l, err = net.Listen("unix", path); err == nil {
			t.Cleanup(func() { l.Close() })
		}
	case "/dev/zero":
		err = os.Symlink("/dev/zero", path)
	default:
		t.Fatalf("no special file %q", kind)
	}
	if err != nil {
		t.Fatal(err)
	}
}

// TestBadInputMatrix runs every row through compile (into a directory holding
// a previous compile) and apply (into an absent state directory): exit 2,
// exactly the expected line, nothing written. Apply runs only after compile
// refused the file, so a row that turned valid never touches this host.
func TestBadInputMatrix(t *testing.T) {
	prev := t.TempDir()
	if code, _, errOut := portstripe(t, "compile", "-o", prev); code != 0 {
		t.Fatalf("compile the seed node: %s", errOut)
	}
	before := testenv.Snapshot(t, prev)
	for _, b := range badInputs {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			path := b.write(t, dir)
			b.setEnv(t)
			state := filepath.Join(dir, "state")
			for _, args := range [][]string{
				b.args("compile", "-c", path, "-o", prev),
				b.args("apply", "-c", path, "--dir", state),
			} {
				code, out, errOut := portstripe(t, args...)
				if code != exitInput {
					t.Fatalf("%s: exit %d, want %d (%s)", args[0], code, exitInput, errOut)
				}
				got := strings.ReplaceAll(strings.TrimSuffix(errOut, "\n"), dir, "DIR")
				if want := "portstripe: " + b.want; got != want {
					t.Errorf("%s:\n got %q\nwant %q", args[0], got, want)
				}
				if out != "" {
					t.Errorf("%s wrote to stdout: %q", args[0], out)
				}
			}
			if s := testenv.Snapshot(t, prev); s != before {
				t.Error("compile changed the output directory")
			}
			if _, err := os.Stat(state); !os.IsNotExist(err) {
				t.Errorf("apply created its state directory: %v", err)
			}
		})
	}
	golden.Check(t, "../../docs/bad-input.md", badInputDoc())
}

// badInputDoc renders the matrix for the README to link to.
func badInputDoc() []byte {
	var b bytes.Buffer
	b.WriteString(`# Bad input

Every row is a node file that ` + "`portstripe compile`" + ` and ` + "`portstripe apply`" + ` refuse
with exit code 2, exactly the one line shown on stderr (after ` + "`portstripe: `" + `),
and nothing written or applied: the output directory keeps its previous files,
the state directory is not created, and on a live node (TestBadInputLeavesNodeAlone,
as root) ` + "`iptables-save`" + ` and the running HAProxy's pid and configuration are unchanged.
The node file is the seed node (` + "`fixtures/seed-node.yaml`" + `) with the edit shown;
` + "`DIR`" + ` stands for the node file's directory.

Generated by ` + "`go test ./cmd/portstripe -run TestBadInputMatrix -update`" + ` from the
table in ` + "`cmd/portstripe/badinput_test.go`" + `; the test fails when the two differ.

| case | node file | message |
|---|---|---|
`)
	cell := func(s string) string { return strings.ReplaceAll(s, "|", `\|`) }
	for _, r := range badInputs {
		fmt.Fprintf(&b, "| %s | %s | `%s` |\n", r.name, cell(r.edit()), cell(r.want))
	}
	b.WriteString(`
## route --payload-file

` + "`portstripe route --proto udp --port 443 --payload-file FILE`" + ` refuses these files with
exit code 2 and exactly this line, at once: only a regular file of at most 256 KiB is read.
Checked by ` + "`TestBadInputPayloadFile`" + `.

| case | file | message |
|---|---|---|
`)
	for _, r := range badPayloads {
		fmt.Fprintf(&b, "| %s | %s | `%s` |\n", r.name, cell(r.edit()), cell(r.want))
	}
	b.WriteString(`
## Fleet files

` + "`portstripe fleet compile`" + ` and ` + "`portstripe fleet publish`" + ` refuse these fleet files
with exit code 2 and exactly this line, naming the field path in the fleet file (and,
for an error in the shared plan, the first node it fails on): nothing is written, and
publish does not contact the store. The fleet file is the example fleet
(` + "`fixtures/fleet/eu.yaml`" + `) with the edit shown. Checked by ` + "`TestBadInputFleet`" + `.

| case | fleet file | message |
|---|---|---|
`)
	for _, r := range badFleets {
		fmt.Fprintf(&b, "| %s | %s | `%s` |\n", r.name, cell(r.edit()), cell(r.want))
	}
	return b.Bytes()
}

// badPayloads are files route --payload-file refuses: the node file is
// the seed node, the file is the row's (a special file, or size bytes).
var badPayloads = []badInput{
	{name: "FIFO", special: "fifo",
		want: "--payload-file: DIR/packet.hex is a named pipe (FIFO), not a regular file"},
	{name: "/dev/zero", special: "/dev/zero",
		want: "--payload-file: DIR/packet.hex is a device, not a regular file"},
	{name: "directory", special: "directory",
		want: "--payload-file: DIR/packet.hex is a directory, not a regular file"},
	{name: "socket", special: "socket",
		want: "--payload-file: DIR/packet.hex is a socket, not a regular file"},
	{name: "too large", size: 1 << 20,
		want: "--payload-file DIR/packet.hex: larger than 262144 bytes; a first packet is at most 64 KiB, as hex text at most twice that"},
}

// TestBadInputPayloadFile: route reads --payload-file only if it is a
// regular file under the cap; anything else is a usage error at once (a
// FIFO used to block forever, /dev/zero to fill the memory).
func TestBadInputPayloadFile(t *testing.T) {
	for _, b := range badPayloads {
		t.Run(b.name, func(t *testing.T) {
			dir := t.TempDir()
			path := b.writeAt(t, filepath.Join(dir, "packet.hex"))
			type result struct {
				code        int
				out, errOut string
			}
			done := make(chan result, 1)
			go func() {
				code, out, errOut := portstripe(t, "route", "--proto", "udp", "--port", "443", "--payload-file", path)
				done <- result{code, out, errOut}
			}()
			var r result
			select {
			case r = <-done:
			case <-time.After(10 * time.Second): // a hang, not a timing check
				t.Fatal("route hangs on the file")
			}
			got := strings.ReplaceAll(strings.TrimSuffix(r.errOut, "\n"), dir, "DIR")
			if r.code != exitInput || got != "portstripe: "+b.want || r.out != "" {
				t.Errorf("exit %d, stdout %q, stderr:\n got %q\nwant %q", r.code, r.out, got, "portstripe: "+b.want)
			}
		})
	}
}

// edit describes the row's node file for the documentation.
func (b badInput) edit() string {
	switch {
	case b.about != "":
		return b.about
	case b.special == "/dev/zero":
		return "a symlink to /dev/zero"
	case b.special == "fifo":
		return "a named pipe (FIFO), no writer"
	case b.special != "":
		return "a " + b.special
	case b.env != "":
		return "the seed node, with " + code(b.env)
	case b.set != "" && b.old == "" && b.add == "":
		return "the seed node, with " + code("--set "+b.set)
	case b.size > 0:
		return fmt.Sprintf("%d MB of zero bytes (sparse)", b.size>>20)
	case b.raw != nil && len(b.raw) == 0:
		return "0 bytes"
	case b.raw != nil && !utf8.Valid(b.raw):
		return fmt.Sprintf("%d bytes starting %q", len(b.raw), b.raw[:4])
	case b.raw != nil:
		return code(string(b.raw))
	}
	var parts []string
	if b.old != "" {
		parts = append(parts, code(b.old)+" → "+code(b.new))
	}
	if b.add != "" {
		parts = append(parts, "appended: "+code(strings.TrimSpace(b.add)))
	}
	if b.set != "" {
		parts = append(parts, "with "+code("--set "+b.set))
	}
	return strings.Join(parts, "; ")
}

// code quotes a YAML snippet for a Markdown table cell, on one line.
func code(s string) string {
	return "`" + strings.ReplaceAll(strings.ReplaceAll(s, "\n", "⏎"), "`", "'") + "`"
}

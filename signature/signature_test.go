package signature

import (
	"crypto/tls"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/portstripe/portstripe/node"
)

func openvpnSig(mode node.TLSMode, digest string, p node.Proto) Signature {
	s, _ := For(node.Service{Kind: node.OpenVPN, TLS: node.OpenVPNTLS{Mode: mode, Digest: digest}, UDP: 1, TCP: mustAddrPort("127.0.0.1:1")}, p)
	return s
}

func TestOpenVPNLayout(t *testing.T) {
	tests := []struct {
		mode      node.TLSMode
		digest    string
		udpLen    int
		tcpPrefix string
		pidUDPAt  int
	}{
		{node.TLSAuth, "SHA512", 86, "005638", 73},
		{node.TLSAuth, "SHA256", 54, "003638", 41},
		{node.TLSAuth, "SHA1", 42, "002a38", 29},
		{node.TLSCrypt, "", 54, "003638", 9},
		{node.TLSNone, "", 14, "000e38", -1},
	}
	for _, tt := range tests {
		u := openvpnSig(tt.mode, tt.digest, node.UDP)
		if u.Length != tt.udpLen {
			t.Errorf("%s: udp length %d, want %d", u.Label, u.Length, tt.udpLen)
		}
		pid := -1
		for _, b := range u.Bytes {
			if b.What == "packet-id 1" {
				pid = b.Offset
			}
		}
		if pid != tt.pidUDPAt {
			t.Errorf("%s: packet-id at %d, want %d", u.Label, pid, tt.pidUDPAt)
		}
		c := openvpnSig(tt.mode, tt.digest, node.TCP)
		if got := Hex(c.Bytes[0].Value); c.Bytes[0].Offset != 0 || string(mustText(got)) != tt.tcpPrefix {
			t.Errorf("%s: tcp head %s at %d, want %s at 0", c.Label, mustText(got), c.Bytes[0].Offset, tt.tcpPrefix)
		}
	}
}

func mustText(h Hex) []byte { b, _ := h.MarshalText(); return b }

func TestCatches(t *testing.T) {
	tlsAuth256 := openvpnSig(node.TLSAuth, "SHA256", node.UDP)
	tlsAuth512 := openvpnSig(node.TLSAuth, "SHA512", node.UDP)
	tlsCrypt := openvpnSig(node.TLSCrypt, "", node.UDP)
	v2 := openvpnSig(node.TLSCryptV2, "", node.UDP)
	plain := openvpnSig(node.TLSNone, "", node.UDP)
	tcpAuth256 := openvpnSig(node.TLSAuth, "SHA256", node.TCP)
	tcpCrypt := openvpnSig(node.TLSCrypt, "", node.TCP)
	anyTLS := Signature{Proto: node.TCP, Family: FamilyTLS, TLSHello: true}
	sniA := Signature{Proto: node.TCP, Family: FamilyTLS, TLSHello: true, SNI: []string{"a.example"}}
	tests := []struct {
		name string
		s, o Signature
		want bool
	}{
		{"tls-crypt vs itself", tlsCrypt, tlsCrypt, true},
		{"tls-auth SHA256 vs tls-crypt: same length, packet-id elsewhere", tlsAuth256, tlsCrypt, false},
		{"tls-crypt vs tls-auth SHA256", tlsCrypt, tlsAuth256, false},
		{"tcp tls-auth SHA256 vs tcp tls-crypt", tcpAuth256, tcpCrypt, false},
		{"tls-auth SHA512 vs SHA256: lengths differ", tlsAuth512, tlsAuth256, false},
		{"tls-crypt-v2 vs tls-crypt: opcode differs", v2, tlsCrypt, false},
		{"no wrapping vs tls-crypt", plain, tlsCrypt, false},
		{"catch-all TLS takes an SNI service's clients", anyTLS, sniA, true},
		{"an SNI service does not take a catch-all's clients", sniA, anyTLS, false},
		{"udp vs tcp never", tlsCrypt, tcpCrypt, false},
	}
	for _, tt := range tests {
		if got := tt.s.Catches(tt.o); got != tt.want {
			t.Errorf("%s: Catches = %v, want %v", tt.name, got, tt.want)
		}
	}
}

func mustAddrPort(s string) netip.AddrPort { return netip.MustParseAddrPort(s) }

// clientHello captures the first bytes Go's TLS client sends.
func clientHello(t *testing.T, sni string) []byte {
	t.Helper()
	c, s := net.Pipe()
	go func() {
		conn := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: true})
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		conn.Handshake()
		c.Close()
	}()
	buf := make([]byte, 4096)
	s.SetReadDeadline(time.Now().Add(2 * time.Second))
	n, err := s.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	return buf[:n]
}

func TestMatchProtocols(t *testing.T) {
	hello := clientHello(t, "b.example")
	ssh, _ := For(node.Service{Kind: node.SSH, TCP: mustAddrPort("127.0.0.1:22")}, node.TCP)
	http, _ := For(node.Service{Kind: node.HTTP, TCP: mustAddrPort("127.0.0.1:80")}, node.TCP)
	tlsB, _ := For(node.Service{Kind: node.TLS, SNI: []string{"b.example"}, TCP: mustAddrPort("127.0.0.1:443")}, node.TCP)
	tlsC, _ := For(node.Service{Kind: node.TLS, SNI: []string{"c.example"}, TCP: mustAddrPort("127.0.0.1:443")}, node.TCP)
	tests := []struct {
		name    string
		sig     Signature
		payload []byte
		want    Result
	}{
		{"ssh banner", ssh, []byte("SSH-2.0-OpenSSH_9.2p1\r\n"), Match},
		{"ssh, two bytes so far", ssh, []byte("SS"), NeedMore},
		{"http GET", http, []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"), Match},
		{"http, line not complete", http, []byte("GET /ind"), NeedMore},
		{"not http", http, []byte("SSH-2.0-x\r\n"), NoMatch},
		{"tls with the wanted SNI", tlsB, hello, Match},
		{"tls with another SNI", tlsC, hello, NoMatch},
		{"tls, half a ClientHello", tlsB, hello[:len(hello)/2], NeedMore},
		{"tls sig on ssh", tlsB, []byte("SSH-2.0"), NoMatch},
	}
	for _, tt := range tests {
		if got := tt.sig.Match(tt.payload); got != tt.want {
			t.Errorf("%s: %v, want %v", tt.name, got, tt.want)
		}
	}
}

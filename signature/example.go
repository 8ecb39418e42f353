package signature

import (
	"crypto/tls"
	"net"
	"time"
)

// layout lays out a first packet that s matches, the way the client sends
// it: s.Size bytes (on TCP behind an OpenVPN length prefix that says so)
// with s's fixed bytes in place and filler in the bytes a real client fills
// with session ids and HMACs.
func (s Signature) layout() []byte {
	head := 0
	if s.Proto == TCP && s.Family == FamilyOpenVPN {
		head = 2
	}
	n := max(head+s.Size, s.CheckedEnd())
	packet := make([]byte, n)
	for i := range packet {
		// Consecutive bytes differ, so the filler never reads as a
		// packet-id 00000001 where the signature leaves bytes open.
		packet[i] = byte(0x5a ^ i*7)
	}
	if head > 0 {
		packet[0], packet[1] = byte((n-head)>>8), byte(n-head)
	}
	for _, b := range s.Bytes {
		copy(packet[b.Offset:], b.Value)
	}
	return packet
}

// ClientHello is the first flight Go's TLS client sends for server name sni
// ("" sends none) offering the protocols alpn, caught on an in-memory
// pipe: a TLS client's first packet, for route --client and the tests that
// send one.
func ClientHello(sni string, alpn ...string) ([]byte, error) {
	c, s := net.Pipe()
	defer s.Close()
	go func() {
		defer c.Close()
		conn := tls.Client(c, &tls.Config{ServerName: sni, InsecureSkipVerify: sni == "", NextProtos: alpn})
		conn.SetDeadline(time.Now().Add(2 * time.Second))
		conn.Handshake() // fails once s closes; only the first flight matters
	}()
	s.SetReadDeadline(time.Now().Add(2 * time.Second))
	buf := make([]byte, 16<<10)
	n, err := s.Read(buf)
	return buf[:n], err
}

package signature

import "github.com/portstripe/portstripe/node"

// Example lays out a first packet that s matches, the way the client sends
// it: s.Size bytes (on TCP behind an OpenVPN length prefix that says so)
// with s's fixed bytes in place and filler in the bytes a real client fills
// with session ids and HMACs. route --client answers "where does such a
// client land?" with it, without a capture. It is nil for signatures that
// need a protocol parser (TLS, HTTP) or a text (SSH).
func (s Signature) Example() []byte {
	if s.Family != FamilyOpenVPN && s.Family != FamilyWireGuard {
		return nil
	}
	head := 0
	if s.Proto == node.TCP {
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

package iptables

import (
	"errors"
	"fmt"
	"strings"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/signature"
)

// udpHeader is the u32 location of the UDP header in a family's packets,
// as a prefix to a position within it. IPv4: the IP header's length from
// its IHL field, so packets with IP options are read right. IPv6: the fixed
// 40-byte header; a packet with extension headers has its UDP header
// elsewhere, so nextHeader keeps those out (not diverted: a documented
// limit of ip6tables, which cannot follow them).
func udpHeader(f node.Family) (at string, base int) {
	if f == node.IPv6 {
		return "", ipv6HeaderLen
	}
	return "0>>22&0x3C@", 0
}

// nextHeader is the test an IPv6 expression starts with: the IPv6 header's
// Next Header (byte 6, read in the word at 4) is UDP, i.e. no extension
// header sits between it and the UDP header. `-p udp` alone also matches
// a datagram behind extension headers, whose payload lies at other offsets.
const nextHeader = "4>>8&0xFF=17"

const (
	ipv6HeaderLen = 40
	udpHeaderLen  = 8
	// maxU32Tests is how many tests one xt_u32 match holds
	// (XT_U32_MAXSIZE+1); longer signatures take several -m u32 matches.
	maxU32Tests = 11
)

// u32Test reads the 4 bytes at Pos from the start of the UDP header, shifts
// them right, masks them and compares them with Value.
type u32Test struct {
	Pos   int
	Shift uint
	Mask  uint32
	Value uint32
	// Max, when above Value, makes the test a range Value:Max.
	Max uint32
	// Decimal prints Value in decimal (lengths read better that way).
	Decimal bool
}

// format writes the test for a family's packets.
func (t u32Test) format(f node.Family) string {
	var b strings.Builder
	at, base := udpHeader(f)
	fmt.Fprintf(&b, "%s%d", at, base+t.Pos)
	if t.Shift > 0 {
		fmt.Fprintf(&b, ">>%d", t.Shift)
	}
	if t.Mask != 0xFFFFFFFF>>t.Shift {
		fmt.Fprintf(&b, "&0x%X", t.Mask)
	}
	if t.Decimal {
		fmt.Fprintf(&b, "=%d", t.Value)
	} else {
		fmt.Fprintf(&b, "=0x%X", t.Value)
	}
	if t.Max > t.Value {
		fmt.Fprintf(&b, ":%d", t.Max)
	}
	return b.String()
}

// ErrNotInKernel is returned for signatures that need a protocol parser
// (TLS, HTTP, a search), which u32 cannot express.
var ErrNotInKernel = errors.New("needs a protocol parser, not byte checks")

// U32 translates a UDP signature into xt_u32 expressions, one per -m u32
// match (one unless the signature has more than 11 checks). The checks are
// exact: the payload length through the UDP header's length field, each
// byte run read where it is. A u32 read of 4 bytes past the end of the packet
// fails the match, so reads are placed to end within the bytes the
// signature needs: inside the known length, or, when the length is open,
// ending at the last byte the signature checks (reaching back into the UDP
// header if needed). A signature with no checks is refused: it would take
// every datagram.
func U32(f node.Family, sig signature.Signature) ([]string, error) {
	if sig.Parsed() {
		return nil, fmt.Errorf("%s: %w", sig.Label, ErrNotInKernel)
	}
	if sig.Empty() {
		return nil, fmt.Errorf("%s: %w", sig.Label, signature.ErrNoMatch)
	}
	var tests []u32Test
	for _, l := range []int{sig.Length, sig.MinLength} {
		if l+udpHeaderLen > 0xFFFF {
			return nil, fmt.Errorf("%s: payload length %d does not fit a UDP datagram", sig.Label, l)
		}
	}
	switch {
	case sig.Length > 0:
		tests = append(tests, u32Test{Pos: 4, Shift: 16, Mask: 0xFFFF, Value: uint32(udpHeaderLen + sig.Length), Decimal: true})
	case sig.MinLength > 0:
		tests = append(tests, u32Test{Pos: 4, Shift: 16, Mask: 0xFFFF, Value: uint32(udpHeaderLen + sig.MinLength), Max: 0xFFFF, Decimal: true})
	}
	// With the length open, a matching packet surely holds every byte the
	// signature checks (and MinLength bytes), so reads may reach up to the
	// last of them.
	sure := sig.Length
	if sure == 0 {
		sure = max(sig.CheckedEnd(), sig.MinLength)
	}
	for _, b := range sig.Bytes {
		bt, err := byteTests(sure, b)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", sig.Label, err)
		}
		tests = append(tests, bt...)
	}
	var parts []string
	if f == node.IPv6 {
		parts = append(parts, nextHeader)
	}
	for _, t := range tests {
		parts = append(parts, t.format(f))
	}
	var exprs []string
	for len(parts) > 0 {
		n := min(len(parts), maxU32Tests)
		exprs = append(exprs, strings.Join(parts[:n], " && "))
		parts = parts[n:]
	}
	return exprs, nil
}

// byteTests checks a run of bytes at a payload offset, 4 bytes per test.
// length is how many payload bytes a matching packet surely holds (its
// exact length, or the end of the last check), or 0 when unknown.
func byteTests(length int, b signature.Bytes) ([]u32Test, error) {
	if b.Offset < 0 || len(b.Value) == 0 {
		return nil, fmt.Errorf("%s: empty check or negative offset %d", b.What, b.Offset)
	}
	if length > 0 && b.Offset+len(b.Value) > length {
		return nil, fmt.Errorf("%s: bytes %d-%d lie past the payload length %d", b.What, b.Offset, b.Offset+len(b.Value)-1, length)
	}
	var tests []u32Test
	for i := 0; i < len(b.Value); i += 4 {
		chunk := b.Value[i:min(i+4, len(b.Value))]
		o, n := b.Offset+i, len(chunk)
		// Read at the bytes themselves when the packet surely holds 4 bytes
		// from there; otherwise read the 4 bytes ending where the packet
		// surely ends. A payload shorter than 4 bytes reaches into the UDP
		// header, which is always there.
		end := length
		if end == 0 {
			end = o + n
		}
		r := min(o, end-4)
		lead := o - r
		shift := uint(8 * (4 - lead - n))
		var v, mask uint32
		for k, c := range chunk {
			m := byte(0xFF)
			if b.Mask != nil {
				m = b.Mask[i+k]
			}
			v, mask = v<<8|uint32(c&m), mask<<8|uint32(m)
		}
		tests = append(tests, u32Test{Pos: udpHeaderLen + r, Shift: shift, Mask: mask, Value: v})
	}
	return tests, nil
}

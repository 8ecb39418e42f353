package iptables

import (
	"encoding/binary"
	"errors"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/testplan"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/signature"
)

func TestU32(t *testing.T) {
	opcode := signature.Bytes{Offset: 0, Value: []byte{0x38}, What: "opcode"}
	tests := []struct {
		name string
		sig  signature.Signature
		want []string
		err  bool
	}{
		{"length only", signature.Signature{Length: 54},
			[]string{"0>>22&0x3C@4>>16=62"}, false},
		{"opcode at 0", signature.Signature{Length: 54, Bytes: []signature.Bytes{opcode}},
			[]string{"0>>22&0x3C@4>>16=62 && 0>>22&0x3C@8>>24=0x38"}, false},
		{"packet-id at 9 (tls-crypt)", signature.Signature{Length: 54, Bytes: []signature.Bytes{{Offset: 9, Value: []byte{0, 0, 0, 1}}}},
			[]string{"0>>22&0x3C@4>>16=62 && 0>>22&0x3C@17=0x1"}, false},
		{"packet-id at 73 (tls-auth SHA512)", signature.Signature{Length: 86, Bytes: []signature.Bytes{opcode, {Offset: 73, Value: []byte{0, 0, 0, 1}}}},
			[]string{"0>>22&0x3C@4>>16=94 && 0>>22&0x3C@8>>24=0x38 && 0>>22&0x3C@81=0x1"}, false},
		{"byte in the middle of a word", signature.Signature{Length: 20, Bytes: []signature.Bytes{{Offset: 5, Value: []byte{0xAB, 0xCD}}}},
			[]string{"0>>22&0x3C@4>>16=28 && 0>>22&0x3C@13>>16=0xABCD"}, false},
		// Near the end of a short packet the read moves back so it ends at
		// the last payload byte instead of running past the packet.
		{"last byte of 14", signature.Signature{Length: 14, Bytes: []signature.Bytes{{Offset: 13, Value: []byte{0x7F}}}},
			[]string{"0>>22&0x3C@4>>16=22 && 0>>22&0x3C@18&0xFF=0x7F"}, false},
		{"packet-id ending at 14", signature.Signature{Length: 14, Bytes: []signature.Bytes{{Offset: 10, Value: []byte{0, 0, 0, 1}}}},
			[]string{"0>>22&0x3C@4>>16=22 && 0>>22&0x3C@18=0x1"}, false},
		{"two bytes across the end", signature.Signature{Length: 12, Bytes: []signature.Bytes{{Offset: 9, Value: []byte{1, 2}}}},
			[]string{"0>>22&0x3C@4>>16=20 && 0>>22&0x3C@16>>8&0xFFFF=0x102"}, false},
		{"payload of 2 reads into the UDP header", signature.Signature{Length: 2, Bytes: []signature.Bytes{opcode}},
			[]string{"0>>22&0x3C@4>>16=10 && 0>>22&0x3C@6>>8&0xFF=0x38"}, false},
		{"open length ends at the byte", signature.Signature{Bytes: []signature.Bytes{{Offset: 0, Value: []byte{0x50}}}},
			[]string{"0>>22&0x3C@5&0xFF=0x50"}, false},
		{"long value in words", signature.Signature{Bytes: []signature.Bytes{{Offset: 0, Value: []byte("SSH-2.0")}}},
			[]string{"0>>22&0x3C@8=0x5353482D && 0>>22&0x3C@11&0xFFFFFF=0x322E30"}, false},
		{"no checks: refused, it would take every datagram", signature.Signature{}, nil, true},
		{"masked byte", signature.Signature{Bytes: []signature.Bytes{{Offset: 0, Value: []byte{0xC0}, Mask: []byte{0xF0}}}},
			[]string{"0>>22&0x3C@5&0xF0=0xC0"}, false},
		{"minimum length, masked run", signature.Signature{MinLength: 1200, Bytes: []signature.Bytes{{Offset: 1, Value: []byte{0xfe, 0xfd}, Mask: []byte{0xff, 0xfd}}}},
			[]string{"0>>22&0x3C@4>>16=1208:65535 && 0>>22&0x3C@9>>16&0xFFFD=0xFEFD"}, false},
		{"search: not in the kernel", signature.Signature{Contains: "jabber"}, nil, true},
		{"check past the length", signature.Signature{Length: 10, Bytes: []signature.Bytes{{Offset: 9, Value: []byte{0, 1}}}}, nil, true},
		{"TLS", signature.Signature{TLSHello: true}, nil, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := U32(node.IPv4, tt.sig)
			if (err != nil) != tt.err {
				t.Fatalf("err = %v, want error %v", err, tt.err)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("U32 =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
}

// TestU32IPv6: the same checks at the fixed offsets of the 40-byte IPv6
// header, after the next-header test.
func TestU32IPv6(t *testing.T) {
	opcode := signature.Bytes{Offset: 0, Value: []byte{0x38}, What: "opcode"}
	tests := []struct {
		name string
		sig  signature.Signature
		want []string
	}{
		{"length only", signature.Signature{Length: 54}, []string{"4>>8&0xFF=17 && 44>>16=62"}},
		{"packet-id at 73 (tls-auth SHA512)", signature.Signature{Bytes: []signature.Bytes{opcode, {Offset: 73, Value: []byte{0, 0, 0, 1}}}},
			[]string{"4>>8&0xFF=17 && 48>>24=0x38 && 121=0x1"}},
		{"packet-id at 9 (tls-crypt)", signature.Signature{Bytes: []signature.Bytes{opcode, {Offset: 9, Value: []byte{0, 0, 0, 1}}}},
			[]string{"4>>8&0xFF=17 && 48>>24=0x38 && 57=0x1"}},
		{"payload of 2 reads into the UDP header", signature.Signature{Length: 2, Bytes: []signature.Bytes{opcode}},
			[]string{"4>>8&0xFF=17 && 44>>16=10 && 46>>8&0xFF=0x38"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := U32(node.IPv6, tt.sig)
			if err != nil {
				t.Fatal(err)
			}
			if strings.Join(got, "|") != strings.Join(tt.want, "|") {
				t.Errorf("U32 =\n  %q\nwant\n  %q", got, tt.want)
			}
		})
	}
	// The next-header test takes one of the 11 slots of the first match.
	exprs, err := U32(node.IPv6, signature.Signature{Length: 200, Bytes: []signature.Bytes{{Offset: 0, Value: make([]byte, 40)}}})
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) != 2 || !strings.HasPrefix(exprs[0], "4>>8&0xFF=17 && ") || strings.Count(exprs[0], "&&") != maxU32Tests-1 || strings.Count(exprs[1], "&&") != 12-maxU32Tests-1 {
		t.Errorf("12 tests not split 11+1: %q", exprs)
	}
}

func TestU32NotInKernel(t *testing.T) {
	if _, err := U32(node.IPv4, signature.Signature{HTTP: true}); !errors.Is(err, ErrNotInKernel) {
		t.Errorf("HTTP signature: err = %v, want ErrNotInKernel", err)
	}
	for _, f := range []node.Family{node.IPv4, node.IPv6} {
		if _, err := U32(f, signature.Signature{}); !errors.Is(err, signature.ErrNoMatch) {
			t.Errorf("%s, a signature with no checks: err = %v, want ErrNoMatch", f, err)
		}
	}
}

func TestU32Split(t *testing.T) {
	sig := signature.Signature{Length: 200, Bytes: []signature.Bytes{{Offset: 0, Value: make([]byte, 60)}}}
	exprs, err := U32(node.IPv4, sig)
	if err != nil {
		t.Fatal(err)
	}
	if len(exprs) != 2 || strings.Count(exprs[0], "&&") != maxU32Tests-1 || strings.Count(exprs[1], "&&") != 16-maxU32Tests-1 {
		t.Errorf("16 tests not split 11+5: %q", exprs)
	}
}

// evalU32 runs the expressions U32 emits on an IPv4 or IPv6 packet the
// way xt_u32 does: a test with the IHL prefix reads from the end of the
// IPv4 header, one without from the start of the packet; a 4-byte read that
// does not fit in the packet fails the match.
func evalU32(t *testing.T, exprs []string, pkt []byte) bool {
	t.Helper()
	re := regexp.MustCompile(`^(0>>22&0x3C@)?(\d+)(?:>>(\d+))?(?:&0x([0-9A-F]+))?=(0x[0-9A-F]+|\d+)$`)
	for _, e := range exprs {
		for _, test := range strings.Split(e, " && ") {
			m := re.FindStringSubmatch(test)
			if m == nil {
				t.Fatalf("unexpected u32 test %q", test)
			}
			pos, _ := strconv.Atoi(m[2])
			shift := 0
			if m[3] != "" {
				shift, _ = strconv.Atoi(m[3])
			}
			mask := uint64(0xFFFFFFFF)
			if m[4] != "" {
				mask, _ = strconv.ParseUint(m[4], 16, 32)
			}
			want, err := strconv.ParseUint(m[5], 0, 32)
			if err != nil {
				t.Fatal(err)
			}
			at := pos
			if m[1] != "" {
				at += int(binary.BigEndian.Uint32(pkt) >> 22 & 0x3C)
			}
			if at+4 > len(pkt) {
				return false
			}
			if uint64(binary.BigEndian.Uint32(pkt[at:])>>shift)&mask != want {
				return false
			}
		}
	}
	return true
}

// ipv6UDP builds a datagram, behind a destination options header (PadN
// only) when dstopts is set.
func ipv6UDP(payload []byte, dstopts bool) []byte {
	ext := 0
	if dstopts {
		ext = 8
	}
	pkt := make([]byte, 40+ext+8+len(payload))
	pkt[0] = 0x60
	binary.BigEndian.PutUint16(pkt[4:], uint16(len(pkt)-40))
	pkt[6], pkt[7] = 17, 64
	if dstopts {
		pkt[6] = 60
		copy(pkt[40:], []byte{17, 0, 1, 4, 0, 0, 0, 0})
	}
	udp := pkt[40+ext:]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 443)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	return pkt
}

// ipv4UDP builds a datagram with options words of IP options.
func ipv4UDP(payload []byte, options int) []byte {
	ihl := 5 + options
	pkt := make([]byte, 4*ihl+8+len(payload))
	pkt[0] = 0x40 | byte(ihl)
	binary.BigEndian.PutUint16(pkt[2:], uint16(len(pkt)))
	pkt[9] = 17
	for i := 20; i < 4*ihl; i++ {
		pkt[i] = 1 // NOP options
	}
	udp := pkt[4*ihl:]
	binary.BigEndian.PutUint16(udp[0:], 40000)
	binary.BigEndian.PutUint16(udp[2:], 443)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	copy(udp[8:], payload)
	return pkt
}

var readFixture = testplan.Packet

const firstPackets = "../fixtures/first-packets"

// TestU32AgreesWithMatch: for every UDP signature OpenVPN can have, and
// every captured first packet (whole, cut short, with IP options), the
// emitted u32 expression matches exactly when signature.Match does.
func TestU32AgreesWithMatch(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(firstPackets, "udp-*.hex"))
	if len(files) == 0 {
		t.Skipf("no fixtures in %s", firstPackets)
	}
	var payloads [][]byte
	for _, f := range files {
		p := readFixture(t, f)
		payloads = append(payloads, p)
		for _, n := range []int{0, 1, 2, 3, 13, 14, 53, 85} {
			if n < len(p) {
				payloads = append(payloads, p[:n])
			}
		}
	}
	var sigs []signature.Signature
	for _, tls := range []signature.OpenVPNTLS{
		{Mode: signature.TLSAuth, Digest: "SHA1"}, {Mode: signature.TLSAuth, Digest: "SHA256"},
		{Mode: signature.TLSAuth, Digest: "SHA512"}, {Mode: signature.TLSCrypt},
		{Mode: signature.TLSCryptV2}, {Mode: signature.TLSNone},
	} {
		sigs = append(sigs, signature.OpenVPN.Signature(signature.Settings{TLS: tls}, node.UDP))
	}
	sigs = append(sigs, signature.WireGuard.Signature(signature.Settings{}, node.UDP))
	matched := 0
	for _, s := range sigs {
		exprs, err := U32(node.IPv4, s)
		if err != nil {
			t.Fatalf("%s: %v", s.Label, err)
		}
		exprs6, err := U32(node.IPv6, s)
		if err != nil {
			t.Fatalf("%s (IPv6): %v", s.Label, err)
		}
		for _, p := range payloads {
			want := s.Match(p) == signature.Match
			if want {
				matched++
			}
			for _, opts := range []int{0, 1, 10} {
				if got := evalU32(t, exprs, ipv4UDP(p, opts)); got != want {
					t.Errorf("%s on %d-byte payload %x… with %d option words: u32 %v, Match %v (%q)",
						s.Label, len(p), p[:min(len(p), 4)], opts, got, want, exprs)
				}
			}
			if got := evalU32(t, exprs6, ipv6UDP(p, false)); got != want {
				t.Errorf("%s on %d-byte payload %x… over IPv6: u32 %v, Match %v (%q)", s.Label, len(p), p[:min(len(p), 4)], got, want, exprs6)
			}
			// The documented limit: behind an extension header, nothing.
			if evalU32(t, exprs6, ipv6UDP(p, true)) {
				t.Errorf("%s on %d-byte payload %x… behind a destination options header: u32 matched (%q)", s.Label, len(p), p[:min(len(p), 4)], exprs6)
			}
		}
	}
	if matched < len(files)-1 {
		t.Errorf("only %d signature/fixture pairs matched; the fixtures should match their own signature", matched)
	}
}

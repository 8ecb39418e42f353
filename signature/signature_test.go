package signature

import (
	"cmp"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
)

func openvpnSig(mode TLSMode, digest string, p Proto) Signature {
	return OpenVPN.Signature(Settings{TLS: OpenVPNTLS{Mode: mode, Digest: digest}}, p)
}

func TestOpenVPNLayout(t *testing.T) {
	tests := []struct {
		mode     TLSMode
		digest   string
		size     int
		udpExact int    // UDP payload length checked, 0 = open
		tcpHead  string // TCP: the first byte run checked
		tcpAt    int    // ... and its offset
		pidUDPAt int
	}{
		{TLSAuth, "SHA512", 86, 0, "38", 2, 73},
		{TLSAuth, "SHA256", 54, 0, "38", 2, 41},
		{TLSAuth, "SHA1", 42, 0, "38", 2, 29},
		{TLSCrypt, "", 54, 0, "38", 2, 9},
		{TLSNone, "", 14, 14, "000e38", 0, -1},
	}
	for _, tt := range tests {
		u := openvpnSig(tt.mode, tt.digest, UDP)
		if u.Size != tt.size || u.Length != tt.udpExact {
			t.Errorf("%s: udp size %d, length checked %d; want %d, %d", u.Label, u.Size, u.Length, tt.size, tt.udpExact)
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
		c := openvpnSig(tt.mode, tt.digest, TCP)
		if got := Hex(c.Bytes[0].Value); c.Bytes[0].Offset != tt.tcpAt || string(mustText(got)) != tt.tcpHead {
			t.Errorf("%s: tcp head %s at %d, want %s at %d", c.Label, mustText(got), c.Bytes[0].Offset, tt.tcpHead, tt.tcpAt)
		}
	}
}

// TestAppendedFields: a client that appends fields to the first packet
// OpenVPN 2.6 sends still matches its flavour, and only that one.
func TestAppendedFields(t *testing.T) {
	flavours := []Signature{
		openvpnSig(TLSAuth, "SHA512", UDP),
		openvpnSig(TLSAuth, "SHA256", UDP),
		openvpnSig(TLSCrypt, "", UDP),
		openvpnSig(TLSAuth, "SHA512", TCP),
		openvpnSig(TLSAuth, "SHA256", TCP),
		openvpnSig(TLSCrypt, "", TCP),
	}
	for _, want := range flavours {
		// The packet as 2.6 lays it out, then 12 bytes more (and on TCP a
		// length prefix that says so).
		packet := append(want.layout(), make([]byte, 12)...)
		if want.Proto == TCP {
			n := len(packet) - 2
			packet[0], packet[1] = byte(n>>8), byte(n)
		}
		for _, s := range flavours {
			if s.Proto != want.Proto {
				continue
			}
			if got := s.Match(packet) == Match; got != (s.Label == want.Label) {
				t.Errorf("%s %s packet with 12 bytes appended: %s matches = %v", want.Proto, want.Label, s.Label, got)
			}
		}
	}
}

// TestExample: the packet Example lays out has 2.6's length, matches its own
// signature and no other flavour's.
func TestExample(t *testing.T) {
	var sigs []Signature
	for _, p := range []Proto{UDP, TCP} {
		for _, tls := range []OpenVPNTLS{{Mode: TLSAuth, Digest: "SHA1"}, {Mode: TLSAuth, Digest: "SHA256"},
			{Mode: TLSAuth, Digest: "SHA512"}, {Mode: TLSCrypt}, {Mode: TLSCryptV2}, {Mode: TLSNone}} {
			sigs = append(sigs, openvpnSig(tls.Mode, tls.Digest, p))
		}
	}
	wg := WireGuard.Signature(Settings{}, UDP)
	sigs = append(sigs, wg)
	for _, want := range sigs {
		packet := want.layout()
		head := map[Proto]int{UDP: 0, TCP: 2}[want.Proto]
		if want.Size > 0 && len(packet) != head+want.Size {
			t.Errorf("%s %s: %d bytes, want %d", want.Proto, want.Label, len(packet), head+want.Size)
		}
		for _, s := range sigs {
			if s.Proto != want.Proto {
				continue
			}
			if got := s.Match(packet) == Match; got != (s.Label == want.Label) {
				t.Errorf("%s %s example (%x): %s matches = %v", want.Proto, want.Label, packet, s.Label, got)
			}
		}
	}
}

func mustText(h Hex) []byte { b, _ := h.MarshalText(); return b }

func TestCatches(t *testing.T) {
	tlsAuth256 := openvpnSig(TLSAuth, "SHA256", UDP)
	tlsAuth512 := openvpnSig(TLSAuth, "SHA512", UDP)
	tlsCrypt := openvpnSig(TLSCrypt, "", UDP)
	v2 := openvpnSig(TLSCryptV2, "", UDP)
	plain := openvpnSig(TLSNone, "", UDP)
	tcpAuth256 := openvpnSig(TLSAuth, "SHA256", TCP)
	tcpCrypt := openvpnSig(TLSCrypt, "", TCP)
	tcpPlain := openvpnSig(TLSNone, "", TCP)
	anyTLS := Signature{Proto: TCP, Family: FamilyTLS, TLSHello: true}
	sniA := Signature{Proto: TCP, Family: FamilyTLS, TLSHello: true, SNI: []string{"a.example"}}
	tests := []struct {
		name string
		s, o Signature
		want bool
	}{
		{"tls-crypt vs itself", tlsCrypt, tlsCrypt, true},
		{"tls-auth SHA256 vs tls-crypt: same length, packet-id elsewhere", tlsAuth256, tlsCrypt, false},
		{"tls-crypt vs tls-auth SHA256", tlsCrypt, tlsAuth256, false},
		{"tcp tls-auth SHA256 vs tcp tls-crypt", tcpAuth256, tcpCrypt, false},
		{"tls-auth SHA512 vs SHA256: packet-ids elsewhere", tlsAuth512, tlsAuth256, false},
		{"tls-auth SHA256 vs SHA512", tlsAuth256, tlsAuth512, false},
		{"tls-crypt-v2 vs tls-crypt: opcode differs", v2, tlsCrypt, false},
		{"no wrapping vs tls-crypt", plain, tlsCrypt, false},
		{"tls-crypt vs no wrapping: too short to hold the packet-id", tlsCrypt, plain, false},
		{"tcp no wrapping vs tcp tls-crypt: length prefix below 54", tcpPlain, tcpCrypt, false},
		{"tcp tls-crypt vs tcp no wrapping", tcpCrypt, tcpPlain, false},
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

func clientHello(t *testing.T, sni string) []byte {
	t.Helper()
	hello, err := ClientHello(sni)
	if err != nil {
		t.Fatal(err)
	}
	return hello
}

func TestMatchProtocols(t *testing.T) {
	hello := clientHello(t, "b.example")
	ssh := SSH.Signature(Settings{}, TCP)
	http := HTTP.Signature(Settings{}, TCP)
	tlsB := TLS.Signature(Settings{SNI: []string{"b.example"}}, TCP)
	tlsC := TLS.Signature(Settings{SNI: []string{"c.example"}}, TCP)
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

// orderByDefinition is Order as its comment defines it, pair by pair: the
// first pair (in family order) that catch each other is an error, else
// again and again the first signature left that catches none of the others
// left (the first one left when all do).
func orderByDefinition(sigs []Signature) (order []int, a, b int, ok bool) {
	idx := make([]int, len(sigs))
	for i := range idx {
		idx[i] = i
	}
	slices.SortStableFunc(idx, func(x, y int) int {
		fx, fy := sigs[x].Family, sigs[y].Family
		return cmp.Or(families[fx].rank-families[fy].rank, strings.Compare(string(fx), string(fy)), sub(sigs[x])-sub(sigs[y]))
	})
	for i, x := range idx {
		for _, y := range idx[i+1:] {
			if sigs[x].Catches(sigs[y]) && sigs[y].Catches(sigs[x]) {
				return nil, x, y, false
			}
		}
	}
	for remaining := idx; len(remaining) > 0; {
		pick := 0
		for j, r := range remaining {
			if !slices.ContainsFunc(remaining, func(x int) bool { return x != r && sigs[r].Catches(sigs[x]) }) {
				pick = j
				break
			}
		}
		order = append(order, remaining[pick])
		remaining = slices.Delete(slices.Clone(remaining), pick, pick+1)
	}
	return order, 0, 0, true
}

// TestOrderAsDefined: Order, which builds the catch graph per family in
// time linear in SNI names, gives the order or the ambiguous pair the
// pair-by-pair definition gives, on random mixes of every kind.
func TestOrderAsDefined(t *testing.T) {
	type service struct {
		kind Kind
		Settings
	}
	pool := []service{
		{SSH, Settings{}}, {HTTP, Settings{}},
		{OpenVPN, Settings{TLS: OpenVPNTLS{Mode: TLSCrypt}}},
		{OpenVPN, Settings{TLS: OpenVPNTLS{Mode: TLSCryptV2}}},
		{OpenVPN, Settings{TLS: OpenVPNTLS{Mode: TLSNone}}},
		{OpenVPN, Settings{TLS: OpenVPNTLS{Mode: TLSAuth, Digest: "SHA256"}}},
		{OpenVPN, Settings{TLS: OpenVPNTLS{Mode: TLSAuth, Digest: "SHA512"}}},
		{TLS, Settings{}},
		{TLS, Settings{ALPN: []string{"h2"}}},
		{TLS, Settings{ALPN: []string{"h2", "http/1.1"}}},
		{TLS, Settings{ALPN: []string{"http/1.1"}}},
	}
	names := []string{"a.example", "b.example", "c.example", "d.example", "e.example", "f.example"}
	r := rand.New(rand.NewPCG(7, 0))
	agreed := map[bool]int{}
	for range 3000 {
		var sigs []Signature
		for range 1 + r.IntN(8) {
			s := pool[r.IntN(len(pool))]
			if s.kind == TLS && r.IntN(4) > 0 {
				s.SNI = nil
				for _, i := range r.Perm(len(names))[:1+r.IntN(2)] {
					s.SNI = append(s.SNI, names[i])
				}
			}
			sig := s.kind.Signature(s.Settings, TCP)
			sigs = append(sigs, sig)
		}
		want, wa, wb, ok := orderByDefinition(sigs)
		got, a, b, err := Order(sigs)
		if (err == nil) != ok || !slices.Equal(got, want) || a != wa || b != wb {
			t.Fatalf("%d signatures: Order = %v, %d, %d, %v; by definition %v, %d, %d, ok %v", len(sigs), got, a, b, err, want, wa, wb, ok)
		}
		agreed[ok]++
	}
	if agreed[true] < 300 || agreed[false] < 300 {
		t.Errorf("the mixes are lopsided: %d orderable, %d ambiguous", agreed[true], agreed[false])
	}
}

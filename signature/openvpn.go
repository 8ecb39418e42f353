package signature

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/portstripe/portstripe/internal/clip"
)

// OpenVPN: an OpenVPN 2.x instance, told apart from its neighbours by its
// control-channel wrapping (SPEC, "Signatures").
var OpenVPN Kind = openvpnKind{}

// FamilyOpenVPN: an opcode byte (or on TCP the length prefix before it).
const FamilyOpenVPN Family = "openvpn"

func init() {
	register(OpenVPN, 10)
	families[FamilyOpenVPN] = familyInfo{rank: 0, hint: " or another tls mode or digest", caveat: openvpnCaveat}
}

// TLSMode is OpenVPN's control-channel wrapping (--tls-auth, --tls-crypt, ...).
type TLSMode string

const (
	TLSAuth    TLSMode = "tls-auth"
	TLSCrypt   TLSMode = "tls-crypt"
	TLSCryptV2 TLSMode = "tls-crypt-v2"
	TLSNone    TLSMode = "none"
)

// TLSModes lists the modes a node file may use.
var TLSModes = []TLSMode{TLSAuth, TLSCrypt, TLSCryptV2, TLSNone}

// Digests maps OpenVPN's --auth digests usable with tls-auth to their size in
// bytes: the HMAC that sits between session id and packet-id.
var Digests = map[string]int{"SHA1": 20, "SHA256": 32, "SHA384": 48, "SHA512": 64}

// OpenVPNTLS is the control-channel wrapping an OpenVPN instance uses.
type OpenVPNTLS struct {
	Mode   TLSMode
	Digest string // tls-auth only: SHA1, SHA256, SHA384 or SHA512
}

// packetIDOne is OpenVPN's replay packet-id of a client's first packet.
var packetIDOne = []byte{0, 0, 0, 1}

const (
	opHardResetClientV2 = 0x38 // P_CONTROL_HARD_RESET_CLIENT_V2 << 3 | key id 0
	opHardResetClientV3 = 0x50 // P_CONTROL_HARD_RESET_CLIENT_V3 << 3 | key id 0 (tls-crypt-v2)
	sessionIDLen        = 8
	tlsCryptTagLen      = 32
)

type openvpnKind struct{}

func (openvpnKind) Name() string    { return "openvpn" }
func (openvpnKind) Protos() []Proto { return []Proto{UDP, TCP} }
func (openvpnKind) Keys() []string  { return []string{"tls"} }
func (openvpnKind) Probe() Probe    { return ProbeConnect }

func digestNames() string { return strings.Join(slices.Sorted(maps.Keys(Digests)), ", ") }

func (openvpnKind) Settings(raw Raw) (Settings, error) {
	t := OpenVPNTLS{Mode: TLSMode(raw.TLS.Mode), Digest: strings.ToUpper(raw.TLS.Digest)}
	s := Settings{TLS: t}
	switch {
	case raw.TLS.Mode == "":
		return s, settingErr("tls.mode", "required (allowed: %s)", joinNames(TLSModes))
	case !slices.Contains(TLSModes, t.Mode):
		return s, settingErr("tls.mode", "%q is not an OpenVPN tls mode (allowed: %s)", clip.Text(raw.TLS.Mode), joinNames(TLSModes))
	case t.Mode == TLSAuth && t.Digest == "":
		return s, settingErr("tls.digest", "required with tls-auth: the --auth digest (allowed: %s)", digestNames())
	case t.Mode == TLSAuth && Digests[t.Digest] == 0:
		return s, settingErr("tls.digest", "%q is not supported (allowed: %s)", clip.Text(raw.TLS.Digest), digestNames())
	case t.Mode != TLSAuth && t.Digest != "":
		return s, settingErr("tls.digest", "only tls-auth puts a digest-sized HMAC in the first packet; remove it for %s", t.Mode)
	}
	return s, nil
}

// Signature lays out a client's first packet (SPEC, "Signatures"): opcode,
// session id, then per wrapping the HMAC (tls-auth), the packet-id, ...
// The opcode and where the cleartext packet-id 1 sits tell the flavours
// apart; the exact length is checked only where there is no packet-id to
// find (no wrapping), so a client that appends fields to its first packet
// (OpenVPN 2.4/2.5/3 may) still matches. On TCP every offset moves by the
// 2-byte length prefix.
func (openvpnKind) Signature(s Settings, p Proto) Signature {
	t := s.TLS
	sig := Signature{Proto: p, Family: FamilyOpenVPN}
	var pidOffset int
	opcode := byte(opHardResetClientV2)
	switch t.Mode {
	case TLSAuth:
		d := Digests[t.Digest]
		sig.Label = "OpenVPN tls-auth " + t.Digest
		sig.Size, pidOffset = 22+d, 1+sessionIDLen+d
	case TLSCrypt:
		sig.Label = "OpenVPN tls-crypt"
		sig.Size, pidOffset = 1+sessionIDLen+4+4+tlsCryptTagLen+5, 1+sessionIDLen
	case TLSCryptV2:
		// The wrapped client key follows, so the length varies by key.
		sig.Label, opcode = "OpenVPN tls-crypt-v2", opHardResetClientV3
	case TLSNone:
		sig.Label, sig.Size = "OpenVPN without tls wrapping", 1+sessionIDLen+1+4
	}
	exact := pidOffset == 0 && sig.Size > 0
	shift := 0 // the TCP length prefix
	if p == TCP {
		shift = 2
	}
	switch {
	case exact && p == UDP:
		sig.Length = sig.Size
		sig.Bytes = append(sig.Bytes, Bytes{Offset: 0, Value: []byte{opcode}, What: "opcode"})
	case exact:
		sig.Bytes = append(sig.Bytes, Bytes{Offset: 0, Value: []byte{byte(sig.Size >> 8), byte(sig.Size), opcode}, What: fmt.Sprintf("length prefix %d and opcode", sig.Size)})
	default:
		sig.Bytes = append(sig.Bytes, Bytes{Offset: shift, Value: []byte{opcode}, What: "opcode"})
	}
	if pidOffset > 0 {
		sig.Bytes = append(sig.Bytes, Bytes{Offset: pidOffset + shift, Value: packetIDOne, What: "packet-id 1"})
	}
	return sig
}

// tlsCryptV2Size is a tls-crypt-v2 client's first packet as OpenVPN 2.6
// sends it: P_CONTROL_HARD_RESET_CLIENT_V3 wrapped as tls-crypt (opcode,
// session id, packet-id, time, 32-byte tag, 11 encrypted bytes: the ack
// array and the early-negotiation TLV) and the wrapped client key WKc
// (32-byte tag, 256-byte key, 9 bytes of timestamp metadata, 2-byte length).
const tlsCryptV2Size = 1 + sessionIDLen + 4 + 4 + tlsCryptTagLen + 11 + tlsCryptTagLen + 256 + 9 + 2

func (k openvpnKind) Example(s Settings, p Proto) (Example, error) {
	sig := k.Signature(s, p)
	if s.TLS.Mode == TLSCryptV2 {
		// The signature leaves the length open (the WKc's size depends
		// on the key); a real packet has one, and its cleartext packet-id.
		head := sig.Bytes[0].Offset
		sig.Size = tlsCryptV2Size
		sig.Bytes = append(sig.Bytes, Bytes{Offset: head + 1 + sessionIDLen, Value: packetIDOne})
	}
	packet := sig.layout()
	return Example{packet, fmt.Sprintf("%s first packet, as OpenVPN 2.6 lays it out (%d bytes; its random fields made up)", sig.Label, len(packet))}, nil
}

func (openvpnKind) Client(args []string) (Settings, error) {
	if len(args) == 0 || !slices.Contains(TLSModes, TLSMode(args[0])) {
		return Settings{}, fmt.Errorf("an openvpn client needs its tls mode")
	}
	t := OpenVPNTLS{Mode: TLSMode(args[0])}
	switch {
	case t.Mode == TLSAuth && (len(args) != 2 || Digests[strings.ToUpper(args[1])] == 0):
		return Settings{}, fmt.Errorf("a tls-auth client needs its digest (%s)", digestNames())
	case t.Mode != TLSAuth && len(args) != 1:
		return Settings{}, fmt.Errorf("only tls-auth takes a digest")
	case t.Mode == TLSAuth:
		t.Digest = strings.ToUpper(args[1])
	}
	return Settings{TLS: t}, nil
}

func (openvpnKind) Clients(s Settings) []string {
	if s.TLS.Mode == "" {
		var out []string
		for _, m := range TLSModes {
			if m != TLSAuth {
				out = append(out, "openvpn:"+string(m))
				continue
			}
			for _, d := range slices.Sorted(maps.Keys(Digests)) {
				out = append(out, "openvpn:tls-auth:"+d)
			}
		}
		return out
	}
	spec := "openvpn:" + string(s.TLS.Mode)
	if s.TLS.Mode == TLSAuth {
		spec += ":" + s.TLS.Digest
	}
	return []string{spec}
}

func openvpnCaveat(s Signature) string {
	switch {
	case len(s.Bytes) > 1:
		return "the packet-id position tells the flavours apart (random bytes match it once in 2^32); the length is left open, so a client that appends fields to its first packet (2.4/2.5/3 may) still matches"
	case s.exactLength() > 0:
		return "the length is exact for OpenVPN 2.6 clients (nothing else to check without tls wrapping), so a client that appends fields to its first packet misses this rule"
	case s.Length == 0:
		return "opcode only: the length depends on the client key"
	}
	return ""
}

func joinNames[T ~string](xs []T) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = string(x)
	}
	return strings.Join(s, ", ")
}

func (openvpnKind) Samples() []Raw {
	var out []Raw
	for _, m := range TLSModes {
		if m != TLSAuth {
			out = append(out, Raw{TLS: RawTLS{Mode: string(m)}})
			continue
		}
		for _, d := range slices.Sorted(maps.Keys(Digests)) {
			out = append(out, Raw{TLS: RawTLS{Mode: string(m), Digest: d}})
		}
	}
	return out
}

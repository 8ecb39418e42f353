package signature

import "fmt"

// QUIC: a QUIC server (HTTP/3, Hysteria2 and other QUIC-based proxies),
// classified in the kernel by the client's first Initial datagram.
var QUIC Kind = quicKind{plain{"quic"}}

// FamilyQUIC: a long header, the fixed bit, and version 1 or 2.
const FamilyQUIC Family = "quic"

func init() {
	register(QUIC, 100)
	families[FamilyQUIC] = familyInfo{rank: 1, caveat: func(Signature) string {
		return "takes every QUIC v1 or v2 Initial: a port carries one QUIC service; the client's second Initial and everything after follow the first through conntrack"
	}}
}

// quicMinInitial is the least size of a datagram carrying a client's
// Initial (RFC 9000, 14.1).
const quicMinInitial = 1200

type quicKind struct{ plain }

func (quicKind) Protos() []Proto { return []Proto{UDP} }

// Signature: at least 1200 bytes; the first byte's header form, fixed bit
// and type (Initial is 00 in v1, 01 in v2, hence the mask e0) with the
// four header-protected bits left open; the version under a mask that
// holds for 00000001 and 6b3343cf (v2) but not for version negotiation
// (0) or the drafts' ff0000xx; a destination connection ID shorter than
// 32 bytes (v1 allows 20).
func (quicKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilyQUIC, Label: "QUIC Initial", MinLength: quicMinInitial, Bytes: []Bytes{
		{Offset: 0, Value: []byte{0xc0}, Mask: []byte{0xe0}, What: "long header, Initial"},
		{Offset: 1, Value: []byte{0, 0, 0, 1}, Mask: []byte{0x94, 0xcc, 0xbc, 0x31}, What: "version 1 or 2"},
		{Offset: 5, Value: []byte{0}, Mask: []byte{0xe0}, What: "DCID length below 32"},
	}}
}

// Example: quic-go's first Initial: version 1, an 8-byte DCID, no SCID,
// no token, padded to 1280 bytes.
func (quicKind) Example(Settings, Proto) (Example, error) {
	p := make([]byte, 1280)
	for i := range p {
		p[i] = byte(0x5a ^ i*7) // protected and encrypted bytes
	}
	copy(p, []byte{0xc3, 0, 0, 0, 1, 8})
	p[14], p[15] = 0, 0 // SCID length, token length
	p[16], p[17] = 0x44, 0xf0
	return Example{p, fmt.Sprintf("QUIC v1 Initial, as quic-go sends it (%d bytes; its encrypted fields made up)", len(p))}, nil
}

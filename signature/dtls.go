package signature

import (
	"encoding/binary"
	"fmt"
)

// DTLS: a DTLS server on UDP (WebRTC and TURN, ocserv's data channel),
// classified in the kernel by the record of the client's first
// ClientHello.
var DTLS Kind = dtlsKind{plain{"dtls"}}

// FamilyDTLS: a handshake record of DTLS 1.0 or 1.2 in epoch 0.
const FamilyDTLS Family = "dtls"

func init() {
	register(DTLS, 110)
	families[FamilyDTLS] = familyInfo{rank: 1, caveat: func(Signature) string {
		return "every DTLS client's first record looks alike: a port takes one DTLS service (or one OpenConnect data channel)"
	}}
}

type dtlsKind struct{ plain }

func (dtlsKind) Protos() []Proto { return []Proto{UDP} }
func (dtlsKind) Signature(_ Settings, p Proto) Signature {
	return dtlsSignature(p)
}
func (dtlsKind) Example(Settings, Proto) (Example, error) { return dtlsExample(), nil }

// dtlsSignature: content type 22 (handshake), record version fe ff (DTLS
// 1.0, which openssl's DTLS 1.2 client also puts in its first record) or
// fe fd (1.2) as one masked test, epoch 0, and the ClientHello message
// type after the 13-byte record header.
func dtlsSignature(p Proto) Signature {
	return Signature{Proto: p, Family: FamilyDTLS, Label: "DTLS ClientHello", Bytes: []Bytes{
		{Offset: 0, Value: []byte{22}, What: "content type handshake"},
		{Offset: 1, Value: []byte{0xfe, 0xfd}, Mask: []byte{0xff, 0xfd}, What: "record version DTLS 1.0 or 1.2"},
		{Offset: 3, Value: []byte{0, 0}, What: "epoch 0"},
		{Offset: 13, Value: []byte{1}, What: "ClientHello"},
	}}
}

// dtlsExample lays out a DTLS 1.2 client's first datagram as openssl
// s_client -dtls sends it: a DTLS 1.0 record holding a ClientHello (client
// version fe fd, a random, no session, no cookie, 27 cipher suites, the
// usual extensions as filler), 205 bytes.
func dtlsExample() Example {
	body := []byte{0xfe, 0xfd}
	for i := range 32 {
		body = append(body, byte(0x5a^i*7)) // random
	}
	body = append(body, 0, 0) // session id, cookie
	suites := make([]byte, 2+54)
	binary.BigEndian.PutUint16(suites, 54)
	for i := 2; i < len(suites); i++ {
		suites[i] = byte(0xc0 + i%16)
	}
	body = append(body, suites...)
	body = append(body, 1, 0) // compression: null
	ext := make([]byte, 2+63)
	binary.BigEndian.PutUint16(ext, 63)
	body = append(body, ext...)
	hs := []byte{1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}
	hs[1], hs[2], hs[3] = byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	copy(hs[9:12], hs[1:4]) // one fragment: length as the message's
	msg := append(hs, body...)
	rec := []byte{22, 0xfe, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, byte(len(msg) >> 8), byte(len(msg))}
	p := append(rec, msg...)
	return Example{p, fmt.Sprintf("DTLS 1.2 ClientHello in a DTLS 1.0 record, as openssl s_client -dtls sends it (%d bytes; its random fields made up)", len(p))}
}

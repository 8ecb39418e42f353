package signature

import (
	"bytes"
	"encoding/binary"
	"slices"
	"strings"
)

// matchTLS mirrors HAProxy's req.ssl_hello_type 1 (a handshake record whose
// first message is a ClientHello) and, with names, req.ssl_sni, with
// protocols req.ssl_alpn (any protocol the client offers), which need the
// whole ClientHello record.
func matchTLS(p []byte, names, protocols []string) Result {
	want := []byte{0x16, 0x03}
	for i, w := range want {
		if len(p) <= i {
			return NeedMore
		}
		if p[i] != w {
			return NoMatch
		}
	}
	if len(p) < 6 {
		return NeedMore
	}
	if p[5] != 1 {
		return NoMatch
	}
	if len(names) == 0 && len(protocols) == 0 {
		return Match
	}
	recLen := int(binary.BigEndian.Uint16(p[3:5]))
	if len(p) < 5+recLen {
		return NeedMore
	}
	hello := p[5 : 5+recLen]
	if len(names) > 0 {
		sni, ok := clientHelloSNI(hello)
		if !ok || !slices.Contains(names, strings.ToLower(sni)) {
			return NoMatch
		}
	}
	if len(protocols) > 0 && !slices.ContainsFunc(clientHelloALPN(hello), func(a string) bool { return slices.Contains(protocols, a) }) {
		return NoMatch
	}
	return Match
}

// extensions reads a ClientHello up to its extensions.
func extensions(hs []byte) reader {
	r := reader{b: hs}
	r.skip(4)  // handshake type and length
	r.skip(34) // client version and random
	r.skip(int(r.u8()))
	r.skip(int(r.u16()))
	r.skip(int(r.u8()))
	return reader{b: r.bytes(int(r.u16()))}
}

// clientHelloALPN reads the protocols of the
// application_layer_protocol_negotiation extension (RFC 7301).
func clientHelloALPN(hs []byte) []string {
	ext := extensions(hs)
	for !ext.bad && len(ext.b) >= 4 {
		typ, data := ext.u16(), reader{b: ext.bytes(int(ext.u16()))}
		if typ != 16 {
			continue
		}
		var out []string
		list := reader{b: data.bytes(int(data.u16()))}
		for !list.bad && len(list.b) >= 1 {
			if name := list.bytes(int(list.u8())); !list.bad {
				out = append(out, string(name))
			}
		}
		return out
	}
	return nil
}

// clientHelloSNI reads the host_name of the server_name extension (RFC 6066).
func clientHelloSNI(hs []byte) (string, bool) {
	ext := extensions(hs)
	for !ext.bad && len(ext.b) >= 4 {
		typ, data := ext.u16(), reader{b: ext.bytes(int(ext.u16()))}
		if typ != 0 {
			continue
		}
		list := reader{b: data.bytes(int(data.u16()))}
		for !list.bad && len(list.b) >= 3 {
			nameType, name := list.u8(), list.bytes(int(list.u16()))
			if nameType == 0 && !list.bad {
				return string(name), true
			}
		}
	}
	return "", false
}

// reader reads big-endian fields, remembering the first overrun instead of
// failing each call.
type reader struct {
	b   []byte
	bad bool
}

func (r *reader) bytes(n int) []byte {
	if n > len(r.b) {
		r.bad, r.b = true, nil
		return nil
	}
	out := r.b[:n]
	r.b = r.b[n:]
	return out
}

func (r *reader) skip(n int) { r.bytes(n) }

func (r *reader) u8() uint8 {
	if b := r.bytes(1); b != nil {
		return b[0]
	}
	return 0
}

func (r *reader) u16() uint16 {
	if b := r.bytes(2); b != nil {
		return binary.BigEndian.Uint16(b)
	}
	return 0
}

// matchHTTP mirrors HAProxy's req.proto_http: an HTTP/1 request line
// ("METHOD URI HTTP/1.x"), decided once the line is complete.
func matchHTTP(p []byte) Result {
	line, _, complete := bytes.Cut(p, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	method, rest, sp := bytes.Cut(line, []byte(" "))
	if len(method) == 0 && len(p) > 0 {
		return NoMatch
	}
	for _, c := range method {
		if c < 'A' || c > 'Z' {
			return NoMatch
		}
	}
	if !complete {
		if len(line) > 8192 {
			return NoMatch
		}
		return NeedMore
	}
	uri, version, sp2 := bytes.Cut(rest, []byte(" "))
	if !sp || !sp2 || len(uri) == 0 || !bytes.HasPrefix(version, []byte("HTTP/1.")) || len(version) != 8 {
		return NoMatch
	}
	return Match
}

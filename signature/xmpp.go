package signature

import "fmt"

// XMPP: an XMPP server's client port (5222, before STARTTLS); the client
// opens the stream.
var XMPP Kind = xmppKind{plain{"xmpp"}}

// FamilyXMPP: an XML opener naming the jabber namespace.
const FamilyXMPP Family = "xmpp"

func init() {
	register(XMPP, 90)
	families[FamilyXMPP] = familyInfo{rank: 2, caveat: func(Signature) string {
		return "a client whose opener starts with < but names no jabber namespace waits for the inspect-delay (HAProxy reads the whole buffer again as more comes)"
	}}
}

type xmppKind struct{ plain }

func (xmppKind) Protos() []Proto { return []Proto{TCP} }

// Signature: "<" first (a cheap byte test every other client fails at
// once), then "jabber" anywhere in the buffer: go-sendxmpp's opener is
// 128 bytes and the domain, so a check at a fixed length would wait for
// bytes that never come (SPEC, "More protocol kinds").
func (xmppKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilyXMPP, Label: "XMPP stream opener", Bytes: []Bytes{{Offset: 0, Value: []byte("<"), What: `"<"`}}, Contains: "jabber"}
}

func (xmppKind) Example(Settings, Proto) (Example, error) {
	p := []byte("<?xml version='1.0'?>\n<stream:stream to='example.org' xmlns='jabber:client' xmlns:stream='http://etherx.jabber.org/streams' version='1.0'>\n")
	return Example{p, fmt.Sprintf("XMPP stream opener, as go-sendxmpp sends it (%d bytes)", len(p))}, nil
}

package signature

// RDP: a Remote Desktop server; the client opens with an X.224 Connection
// Request inside a TPKT header (MS-RDPBCGR 2.2.1.1).
var RDP Kind = rdpKind{plain{"rdp"}}

// FamilyRDP: TPKT version 3 and the X.224 CR code.
const FamilyRDP Family = "rdp"

func init() {
	register(RDP, 80)
	families[FamilyRDP] = familyInfo{rank: 1}
}

type rdpKind struct{ plain }

func (rdpKind) Protos() []Proto { return []Proto{TCP} }

func (rdpKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilyRDP, Label: "RDP connection request", Bytes: []Bytes{
		{Offset: 0, Value: []byte{3, 0}, What: "TPKT version 3"},
		{Offset: 5, Value: []byte{0xe0}, What: "X.224 connection request"},
	}}
}

// Example: mstsc's first packet: TPKT, X.224 CR, the routing cookie and
// an RDP negotiation request for TLS and CredSSP.
func (rdpKind) Example(Settings, Proto) (Example, error) {
	cookie := "Cookie: mstshash=user\r\n"
	neg := []byte{1, 0, 8, 0, 3, 0, 0, 0}
	n := 4 + 7 + len(cookie) + len(neg)
	p := []byte{3, 0, byte(n >> 8), byte(n), byte(n - 5), 0xe0, 0, 0, 0, 0, 0}
	p = append(append(p, cookie...), neg...)
	return Example{p, "RDP X.224 connection request with a cookie, as mstsc sends it (42 bytes)"}, nil
}

package signature

import "fmt"

// WireGuard: a WireGuard endpoint, classified in the kernel by its
// handshake initiation.
var WireGuard Kind = wireguardKind{plain{"wireguard"}}

// FamilyWireGuard: message type 1 and three reserved zero bytes.
const FamilyWireGuard Family = "wireguard"

func init() {
	register(WireGuard, 50)
	families[FamilyWireGuard] = familyInfo{rank: 1}
}

type wireguardKind struct{ plain }

func (wireguardKind) Protos() []Proto { return []Proto{UDP} }

// Signature: MessageInitiation, type 1 and three reserved zero bytes, 148
// bytes.
func (wireguardKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilyWireGuard, Label: "WireGuard handshake initiation", Length: 148, Size: 148,
		Bytes: []Bytes{{Offset: 0, Value: []byte{1, 0, 0, 0}, What: "message type 1"}}}
}

func (k wireguardKind) Example(s Settings, p Proto) (Example, error) {
	packet := k.Signature(s, p).layout()
	return Example{packet, fmt.Sprintf("WireGuard handshake initiation (%d bytes; its random fields made up)", len(packet))}, nil
}

package signature

// SOCKS5: a SOCKS 5 proxy (RFC 1928); its client greets first.
var SOCKS5 Kind = socks5Kind{plain{"socks5"}}

// FamilySOCKS5: the version byte 05.
const FamilySOCKS5 Family = "socks5"

func init() {
	register(SOCKS5, 60)
	families[FamilySOCKS5] = familyInfo{rank: 1, caveat: func(Signature) string {
		return "only the version byte is checked: curl sends its 4-byte greeting and waits for the server, so nothing more comes to check"
	}}
}

type socks5Kind struct{ plain }

func (socks5Kind) Protos() []Proto { return []Proto{TCP} }

func (socks5Kind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilySOCKS5, Label: "SOCKS5 greeting", Bytes: []Bytes{{Offset: 0, Value: []byte{5}, What: "version 5"}}}
}

// Example: curl --socks5-hostname's greeting, two methods (no
// authentication, GSSAPI).
func (socks5Kind) Example(Settings, Proto) (Example, error) {
	return Example{[]byte{5, 2, 0, 1}, "SOCKS5 greeting, as curl sends it (4 bytes)"}, nil
}

package signature

// Tinc: a tinc VPN daemon's meta connection; the connecting side sends its
// ID request first ("0 NAME 17.7\n").
var Tinc Kind = tincKind{plain{"tinc"}}

// FamilyTinc: the ID request's "0 ".
const FamilyTinc Family = "tinc"

func init() {
	register(Tinc, 70)
	families[FamilyTinc] = familyInfo{rank: 1}
}

type tincKind struct{ plain }

func (tincKind) Protos() []Proto { return []Proto{TCP} }

func (tincKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilyTinc, Label: "tinc ID request", Bytes: []Bytes{{Offset: 0, Value: []byte("0 "), What: `request "0 "`}}}
}

func (tincKind) Example(Settings, Proto) (Example, error) {
	return Example{[]byte("0 client 17.7\n"), "tinc 1.1 ID request (14 bytes)"}, nil
}

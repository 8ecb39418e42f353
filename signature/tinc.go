package signature

// Tinc: a tinc VPN daemon's meta connection; the connecting side sends its
// ID request first ("0 NAME 17.7\n").
var Tinc Kind = tincKind{}

// FamilyTinc: the ID request's "0 ".
const FamilyTinc Family = "tinc"

func init() {
	register(Tinc, 70)
	families[FamilyTinc] = familyInfo{rank: 1}
}

type tincKind struct{}

func (tincKind) Name() string                          { return "tinc" }
func (tincKind) Protos() []Proto                       { return []Proto{TCP} }
func (tincKind) Keys() []string                        { return nil }
func (tincKind) Probe() Probe                          { return ProbeConnect }
func (tincKind) Settings(Raw) (Settings, error)        { return Settings{}, nil }
func (k tincKind) Client(a []string) (Settings, error) { return Settings{}, nothingMore(k, a) }
func (k tincKind) Clients(Settings) []string           { return []string{k.Name()} }
func (tincKind) Samples() []Raw                        { return []Raw{{}} }

func (tincKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilyTinc, Label: "tinc ID request", Bytes: []Bytes{{Offset: 0, Value: []byte("0 "), What: `request "0 "`}}}
}

func (tincKind) Example(Settings, Proto) (Example, error) {
	return Example{[]byte("0 client 17.7\n"), "tinc 1.1 ID request (14 bytes)"}, nil
}

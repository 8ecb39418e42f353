package signature

// HTTP: an HTTP/1 server.
var HTTP Kind = httpKind{plain{"http"}}

// FamilyHTTP: an upper-case method and a request line; every HTTP service
// takes every HTTP client.
const FamilyHTTP Family = "http"

func init() {
	register(HTTP, 40)
	families[FamilyHTTP] = familyInfo{rank: 4, catches: func(Signature, Signature) bool { return true }}
}

type httpKind struct{ plain }

func (httpKind) Protos() []Proto { return []Proto{TCP} }

func (httpKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilyHTTP, Label: "HTTP request", HTTP: true}
}

func (httpKind) Example(Settings, Proto) (Example, error) {
	return Example{[]byte("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"), "HTTP/1.1 request"}, nil
}

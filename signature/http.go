package signature

// HTTP: an HTTP/1 server.
var HTTP Kind = httpKind{}

// FamilyHTTP: an upper-case method and a request line; every HTTP service
// takes every HTTP client.
const FamilyHTTP Family = "http"

func init() {
	register(HTTP, 40)
	families[FamilyHTTP] = familyInfo{rank: 4, catches: func(Signature, Signature) bool { return true }}
}

type httpKind struct{}

func (httpKind) Name() string                          { return "http" }
func (httpKind) Protos() []Proto                       { return []Proto{TCP} }
func (httpKind) Keys() []string                        { return nil }
func (httpKind) Probe() Probe                          { return ProbeConnect }
func (httpKind) Settings(Raw) (Settings, error)        { return Settings{}, nil }
func (k httpKind) Client(a []string) (Settings, error) { return Settings{}, nothingMore(k, a) }
func (k httpKind) Clients(Settings) []string           { return []string{k.Name()} }

func (httpKind) Signature(_ Settings, p Proto) Signature {
	return Signature{Proto: p, Family: FamilyHTTP, Label: "HTTP request", HTTP: true}
}

func (httpKind) Example(Settings, Proto) (Example, error) {
	return Example{[]byte("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"), "HTTP/1.1 request"}, nil
}

func (httpKind) Samples() []Raw { return []Raw{{}} }

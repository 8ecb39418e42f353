package signature

// OpenConnect: an OpenConnect (ocserv) VPN server: TLS on TCP (routed by
// SNI and ALPN as a tls service is), its DTLS data channel on UDP.
var OpenConnect Kind = openconnectKind{}

func init() { register(OpenConnect, 120) }

type openconnectKind struct{}

func (openconnectKind) Name() string    { return "openconnect" }
func (openconnectKind) Protos() []Proto { return []Proto{UDP, TCP} }
func (openconnectKind) Keys() []string  { return []string{"sni", "alpn"} }
func (openconnectKind) Probe() Probe    { return ProbeTLSHello }

func (openconnectKind) Settings(raw Raw) (Settings, error)     { return tlsSettings(raw) }
func (openconnectKind) Client(args []string) (Settings, error) { return tlsClient(args) }
func (k openconnectKind) Clients(s Settings) []string          { return tlsClients(k, s) }

func (openconnectKind) Samples() []Raw { return []Raw{{}, {SNI: []string{"vpn.example.org"}}} }

func (openconnectKind) Signature(s Settings, p Proto) Signature {
	if p == UDP {
		sig := dtlsSignature(p)
		sig.Label = "OpenConnect DTLS ClientHello"
		return sig
	}
	return tlsSignature(s, p)
}

func (openconnectKind) Example(s Settings, p Proto) (Example, error) {
	if p == UDP {
		return dtlsExample(), nil
	}
	return tlsExample(s)
}

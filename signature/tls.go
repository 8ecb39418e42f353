package signature

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/portstripe/portstripe/internal/clip"
)

// TLS: a TLS server, by the server names (SNI) and the application
// protocols (ALPN) of its ClientHello, or for every ClientHello.
var TLS Kind = tlsKind{}

// FamilyTLS: a TLS handshake record holding a ClientHello.
const FamilyTLS Family = "tls"

func init() {
	register(TLS, 30)
	families[FamilyTLS] = familyInfo{rank: 3, hint: " or disjoint SNI names", caveat: tlsCaveat, catches: tlsCatches, precedence: tlsLevel}
}

// sniRE is what a server name may be: a DNS name, lower case, nothing that
// needs quoting in haproxy.cfg.
var sniRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

// alpnRE is what an ALPN protocol ID may be here: the registered ones
// (h2, http/1.1, acme-tls/1, xmpp-client, ...), nothing that needs
// quoting in haproxy.cfg.
var alpnRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/+-]{0,63}$`)

type tlsKind struct{}

func (tlsKind) Name() string    { return "tls" }
func (tlsKind) Protos() []Proto { return []Proto{TCP} }
func (tlsKind) Keys() []string  { return []string{"sni", "alpn"} }
func (tlsKind) Probe() Probe    { return ProbeTLSHello }

func (tlsKind) Settings(raw Raw) (Settings, error) { return tlsSettings(raw) }

// tlsSettings reads sni and alpn, for every kind that speaks TLS.
func tlsSettings(raw Raw) (Settings, error) {
	var s Settings
	protocols := map[string]bool{}
	for i, a := range raw.ALPN {
		if !alpnRE.MatchString(a) {
			return s, settingErr(fmt.Sprintf("alpn[%d]", i), "%q is not an ALPN protocol ID (1-64 of A-Z a-z 0-9 . _ / + -, e.g. h2, http/1.1)", clip.Text(a))
		}
		if protocols[a] {
			return s, settingErr(fmt.Sprintf("alpn[%d]", i), "%q is listed twice", a)
		}
		protocols[a] = true
		s.ALPN = append(s.ALPN, a)
	}
	names := map[string]bool{}
	for i, name := range raw.SNI {
		name = strings.ToLower(name)
		if !sniRE.MatchString(name) || len(name) > 253 {
			return s, settingErr(fmt.Sprintf("sni[%d]", i), "%q is not a DNS name (letters, digits, hyphens and dots only)", clip.Text(raw.SNI[i]))
		}
		if names[name] {
			return s, settingErr(fmt.Sprintf("sni[%d]", i), "%q is listed twice", name)
		}
		names[name] = true
		s.SNI = append(s.SNI, name)
	}
	return s, nil
}

func (tlsKind) Signature(s Settings, p Proto) Signature { return tlsSignature(s, p) }

func tlsSignature(s Settings, p Proto) Signature {
	sig := Signature{Proto: p, Family: FamilyTLS, Label: "TLS ClientHello", TLSHello: true, SNI: s.SNI, ALPN: s.ALPN}
	if len(s.SNI) > 0 {
		sig.Label += " SNI " + strings.Join(s.SNI, " ")
	}
	if len(s.ALPN) > 0 {
		sig.Label += " ALPN " + strings.Join(s.ALPN, " ")
	}
	return sig
}

func (tlsKind) Example(s Settings, _ Proto) (Example, error) { return tlsExample(s) }

// tlsExample is Go's ClientHello for the first server name and every
// protocol of s.
func tlsExample(s Settings) (Example, error) {
	sni := ""
	if len(s.SNI) > 0 {
		sni = s.SNI[0]
	}
	hello, err := ClientHello(sni, s.ALPN...)
	if err != nil {
		return Example{}, fmt.Errorf("make a TLS ClientHello: %w", err)
	}
	what := "TLS ClientHello without SNI"
	if sni != "" {
		what = "TLS ClientHello with SNI " + sni
	}
	if len(s.ALPN) > 0 {
		what += ", ALPN " + strings.Join(s.ALPN, ",")
	}
	return Example{hello, fmt.Sprintf("%s (Go's crypto/tls, %d bytes)", what, len(hello))}, nil
}

// Client: tls, tls:SERVER-NAME, tls:alpn=h2,http/1.1 or
// tls:SERVER-NAME:alpn=h2.
func (tlsKind) Client(args []string) (Settings, error) { return tlsClient(args) }

func tlsClient(args []string) (Settings, error) {
	var s Settings
	if n := len(args); n > 0 {
		if a, ok := strings.CutPrefix(args[n-1], "alpn="); ok {
			s.ALPN, args = strings.Split(a, ","), args[:n-1]
		}
	}
	if sni := strings.Join(args, ":"); sni != "" {
		s.SNI = []string{sni}
	}
	return s, nil
}

func (k tlsKind) Clients(s Settings) []string { return tlsClients(k, s) }

// tlsClients: one --client per server name, naming the protocols.
func tlsClients(k Kind, s Settings) []string {
	alpn := ""
	if len(s.ALPN) > 0 {
		alpn = ":alpn=" + strings.Join(s.ALPN, ",")
	}
	if len(s.SNI) == 0 {
		if alpn != "" {
			return []string{k.Name() + alpn}
		}
		return []string{k.Name()}
	}
	out := make([]string, len(s.SNI))
	for i, n := range s.SNI {
		out[i] = k.Name() + ":" + n + alpn
	}
	return out
}

func tlsCaveat(s Signature) string {
	switch {
	case len(s.ALPN) > 0:
		return "decides once the whole ClientHello is in; TLS services are tried by precedence (SNI and ALPN, then SNI, then ALPN, then neither), and one with ALPN takes a client that offers any of its protocols"
	case len(s.SNI) > 0:
		return "decides once the whole ClientHello is in"
	}
	return ""
}

// tlsLevel is the precedence of a TLS signature in a decision list: SNI
// and ALPN, SNI only, ALPN only, neither.
func tlsLevel(s Signature) int {
	switch {
	case len(s.SNI) > 0 && len(s.ALPN) > 0:
		return 0
	case len(s.SNI) > 0:
		return 1
	case len(s.ALPN) > 0:
		return 2
	}
	return 3
}

// tlsKeys are what two TLS signatures of one level must not share: server
// names, protocols, or name and protocol pairs.
func tlsKeys(s Signature) []string {
	switch tlsLevel(s) {
	case 0:
		var out []string
		for _, n := range s.SNI {
			for _, a := range s.ALPN {
				out = append(out, n+" "+a)
			}
		}
		return out
	case 1:
		return s.SNI
	}
	return s.ALPN
}

// tlsCatches: s may take o's clients when each of its conditions can hold
// for them. A client of a service without SNI names sends a name nobody
// claims, and one of a service without ALPN offers no protocol anybody
// claims.
func tlsCatches(s, o Signature) bool {
	shares := func(mine, theirs []string) bool {
		return len(mine) == 0 || slices.ContainsFunc(theirs, func(n string) bool { return slices.Contains(mine, n) })
	}
	return shares(s.SNI, o.SNI) && shares(s.ALPN, o.ALPN)
}

func (tlsKind) Samples() []Raw {
	return []Raw{{}, {SNI: []string{"www.example.org", "example.org"}}, {ALPN: []string{"h2", "http/1.1"}},
		{SNI: []string{"www.example.org"}, ALPN: []string{"h2"}}}
}

package signature

import (
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/portstripe/portstripe/internal/clip"
)

// TLS: a TLS server, by the server names (SNI) of its ClientHello or for
// every ClientHello.
var TLS Kind = tlsKind{}

// FamilyTLS: a TLS handshake record holding a ClientHello.
const FamilyTLS Family = "tls"

func init() {
	register(TLS, 30)
	families[FamilyTLS] = familyInfo{rank: 3, hint: " or disjoint SNI names", caveat: tlsCaveat, catches: tlsCatches}
}

// sniRE is what a server name may be: a DNS name, lower case, nothing that
// needs quoting in haproxy.cfg.
var sniRE = regexp.MustCompile(`^([a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\.)*[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$`)

type tlsKind struct{}

func (tlsKind) Name() string    { return "tls" }
func (tlsKind) Protos() []Proto { return []Proto{TCP} }
func (tlsKind) Keys() []string  { return []string{"sni"} }
func (tlsKind) Probe() Probe    { return ProbeTLSHello }

func (tlsKind) Settings(raw Raw) (Settings, error) {
	var s Settings
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

func (tlsKind) Signature(s Settings, p Proto) Signature {
	sig := Signature{Proto: p, Family: FamilyTLS, Label: "TLS ClientHello", TLSHello: true, SNI: s.SNI}
	if len(s.SNI) > 0 {
		sig.Label += " SNI " + strings.Join(s.SNI, " ")
	}
	return sig
}

func (tlsKind) Example(s Settings, _ Proto) (Example, error) {
	sni := ""
	if len(s.SNI) > 0 {
		sni = s.SNI[0]
	}
	hello, err := ClientHello(sni)
	if err != nil {
		return Example{}, fmt.Errorf("make a TLS ClientHello: %w", err)
	}
	what := "TLS ClientHello without SNI"
	if sni != "" {
		what = "TLS ClientHello with SNI " + sni
	}
	return Example{hello, fmt.Sprintf("%s (Go's crypto/tls, %d bytes)", what, len(hello))}, nil
}

// Client: tls or tls:SERVER-NAME.
func (tlsKind) Client(args []string) (Settings, error) {
	if sni := strings.Join(args, ":"); sni != "" {
		return Settings{SNI: []string{sni}}, nil
	}
	return Settings{}, nil
}

func (k tlsKind) Clients(s Settings) []string {
	if len(s.SNI) == 0 {
		return []string{k.Name()}
	}
	out := make([]string, len(s.SNI))
	for i, n := range s.SNI {
		out[i] = "tls:" + n
	}
	return out
}

func tlsCaveat(s Signature) string {
	if len(s.SNI) > 0 {
		return "decides once the whole ClientHello is in"
	}
	return ""
}

// tlsCatches: a client of a service without SNI names sends a name nobody
// claims.
func tlsCatches(s, o Signature) bool {
	if len(s.SNI) == 0 {
		return true
	}
	return slices.ContainsFunc(o.SNI, func(n string) bool { return slices.Contains(s.SNI, n) })
}

func (tlsKind) Samples() []Raw { return []Raw{{}, {SNI: []string{"www.example.org", "example.org"}}} }

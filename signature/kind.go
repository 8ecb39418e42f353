package signature

import (
	"fmt"
	"reflect"
	"slices"
	"strings"
)

// Kind is one entry of the registry: everything portstripe knows about one
// service kind, in the one file that defines it (openvpn.go, ssh.go, ...).
// Validation (node), the planner, both emitters (through the Signature a
// kind derives), route --client and the node generator read it; a kind
// that lacks a method does not compile, and the registry test
// (TestEveryKind) fails for a kind whose signature on one of its protocols
// gives an emitter nothing to match.
type Kind interface {
	// Name is the node file's `kind:` value.
	Name() string
	// Protos are the protocols a service of this kind may have endpoints on.
	Protos() []Proto
	// Keys are the node file keys of a service that only some kinds take
	// (see Raw) and this one does.
	Keys() []string
	// Settings validates the kind's own keys; an error is a *SettingError
	// naming the key.
	Settings(raw Raw) (Settings, error)
	// Signature derives what a client's first packet looks like on p.
	Signature(s Settings, p Proto) Signature
	// Example is a first packet a real client of a service with these
	// settings sends on p, realistic in size and layout (route --client,
	// the tests).
	Example(s Settings, p Proto) (Example, error)
	// Client reads the words after "KIND:" of route --client into the
	// settings of a service such a client reaches.
	Client(args []string) (Settings, error)
	// Clients are the --client values that reach a service with s; with
	// zero settings, the forms --help lists (openvpn:tls-auth:DIGEST).
	Clients(s Settings) []string
	// Probe is the health check `check: auto` picks for the kind's TCP
	// backends.
	Probe() Probe
	// Samples are settings that cover the kind's variants, as a node file
	// writes them: the registry test and the node generator use them.
	Samples() []Raw
}

// Raw holds the keys of a service entry that only some kinds take, as the
// node file has them (node's schema decodes into these types). The yaml
// tags are the keys; Kind.Keys names the ones a kind takes.
type Raw struct {
	TLS    RawTLS    `yaml:"tls"`
	SNI    []string  `yaml:"sni"`
	ALPN   []string  `yaml:"alpn"`
	Custom RawCustom `yaml:"custom"`
	// Protos are the protocols the service has endpoints on (node sets
	// them; a sample without them has all of its kind's).
	Protos []Proto `yaml:"-"`
}

// RawCustom is a custom service's `custom:` as written.
type RawCustom struct {
	Prefix    string     `yaml:"prefix" scalar:"int"`
	Regex     string     `yaml:"regex"`
	Match     []RawMatch `yaml:"match"`
	Length    string     `yaml:"length" scalar:"int"`
	MinLength string     `yaml:"min_length" scalar:"int"`
}

// RawMatch is one entry of custom.match: bytes (hex) at an offset of the
// UDP payload, under a mask (hex, optional).
type RawMatch struct {
	Offset string `yaml:"offset" scalar:"int"`
	Bytes  string `yaml:"bytes" scalar:"int"`
	Mask   string `yaml:"mask" scalar:"int"`
}

// RawTLS is an openvpn service's `tls:` as written.
type RawTLS struct {
	Mode   string `yaml:"mode"`
	Digest string `yaml:"digest"`
}

// Set lists the keys of r that are given, in Raw's order.
func (r Raw) Set() []string {
	var out []string
	v := reflect.ValueOf(r)
	for i := range v.NumField() {
		if tag := v.Type().Field(i).Tag.Get("yaml"); tag != "-" && !v.Field(i).IsZero() {
			out = append(out, v.Type().Field(i).Tag.Get("yaml"))
		}
	}
	return out
}

// Settings are a service's validated kind-specific settings; each kind
// reads only its own.
type Settings struct {
	// TLS is OpenVPN's control-channel wrapping (openvpn).
	TLS OpenVPNTLS
	// SNI lists the server names a TLS service takes; empty takes all.
	SNI []string
	// ALPN lists the application protocols (ALPN) a TLS service takes a
	// ClientHello offering; empty takes all.
	ALPN []string
	// Custom is a custom service's first packet, per protocol.
	Custom Custom
}

// SettingError is a kind's verdict on one of its keys; node prefixes the
// service's field path.
type SettingError struct {
	Key string
	Msg string
}

func (e *SettingError) Error() string { return e.Key + ": " + e.Msg }

func settingErr(key, format string, args ...any) error {
	return &SettingError{Key: key, Msg: fmt.Sprintf(format, args...)}
}

// Example is a client's first packet and what it is, in words.
type Example struct {
	Packet []byte
	What   string
}

// Probe is how HAProxy health-checks a kind's TCP backend under `check:
// auto`: what its servers answer without a client speaking first, or to a
// client's first message; a connect where a probe in the protocol would be
// logged as a failed client.
type Probe string

const (
	ProbeConnect   Probe = "connect"
	ProbeSSHBanner Probe = "ssh-banner"
	ProbeTLSHello  Probe = "tls-hello"
)

// entry is a registered kind and where it is listed.
type entry struct {
	kind Kind
	pos  int
}

var registry []entry

// register adds a kind, listed (in errors, --help) by pos; each kind's file
// calls it from init.
func register(k Kind, pos int) {
	registry = append(registry, entry{k, pos})
	slices.SortStableFunc(registry, func(a, b entry) int { return a.pos - b.pos })
}

// Kinds lists the registered kinds in their listed order.
func Kinds() []Kind {
	out := make([]Kind, len(registry))
	for i, e := range registry {
		out[i] = e.kind
	}
	return out
}

// LookupKind finds a kind by its node file name.
func LookupKind(name string) (Kind, bool) {
	for _, e := range registry {
		if e.kind.Name() == name {
			return e.kind, true
		}
	}
	return nil, false
}

// KindNames are the registered kinds' names, listed, joined by ", ".
func KindNames() string {
	names := make([]string, len(registry))
	for i, e := range registry {
		names[i] = e.kind.Name()
	}
	return strings.Join(names, ", ")
}

// KindsOn lists the kinds that may use protocol p.
func KindsOn(p Proto) []Kind {
	var out []Kind
	for _, e := range registry {
		if slices.Contains(e.kind.Protos(), p) {
			out = append(out, e.kind)
		}
	}
	return out
}

// plain is what a kind without settings of its own shares: embedded, it
// gives the kind its name, no keys, one sample, a --client of its name,
// a connect health check. Protocols, signature and example each kind
// still declares itself (the compiler insists).
type plain struct{ name string }

func (p plain) Name() string                 { return p.name }
func (plain) Keys() []string                 { return nil }
func (plain) Settings(Raw) (Settings, error) { return Settings{}, nil }
func (plain) Samples() []Raw                 { return []Raw{{}} }
func (p plain) Clients(Settings) []string    { return []string{p.name} }
func (plain) Probe() Probe                   { return ProbeConnect }

// Client refuses words after the kind in route --client.
func (p plain) Client(args []string) (Settings, error) {
	if len(args) > 0 {
		return Settings{}, fmt.Errorf("%s takes nothing more", p.name)
	}
	return Settings{}, nil
}

package signature_test

import (
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/nftables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/signature"
)

// emitters render one signature on its protocol the way each firewall or
// proxy backend does; a kind whose signature one of them cannot render
// would put a rule without a match (or no rule) into its output.
var emitters = []struct {
	name  string
	proto signature.Proto
	match func(signature.Signature) ([]string, error)
}{
	{"haproxy", signature.TCP, func(sig signature.Signature) ([]string, error) {
		var out []string
		for _, a := range haproxy.ACLs("svc", sig, map[string]bool{}) {
			if strings.Contains(a.String(), "always_false") {
				return nil, signature.ErrNoMatch
			}
			out = append(out, a.String())
		}
		return out, nil
	}},
	{"iptables u32", signature.UDP, func(sig signature.Signature) ([]string, error) { return iptables.U32(node.IPv4, sig) }},
	{"ip6tables u32", signature.UDP, func(sig signature.Signature) ([]string, error) { return iptables.U32(node.IPv6, sig) }},
	{"nftables", signature.UDP, func(sig signature.Signature) ([]string, error) {
		m, err := nftables.Match(sig)
		return strings.Fields(m), err
	}},
}

// TestEveryKind is the registry's exhaustiveness test: every registered
// kind, with every sample of its settings, on every protocol it may use,
// gives a signature that checks something and that every emitter of that
// protocol renders; an example first packet that the signature matches;
// and --client values that lay out a packet it matches.
func TestEveryKind(t *testing.T) {
	kinds := signature.Kinds()
	if len(kinds) == 0 {
		t.Fatal("no kinds registered")
	}
	for _, k := range kinds {
		if len(k.Protos()) == 0 || len(k.Samples()) == 0 {
			t.Errorf("%s: protocols %v, %d samples: a kind needs both", k.Name(), k.Protos(), len(k.Samples()))
		}
		for si, raw := range k.Samples() {
			for _, key := range raw.Set() {
				if !slices.Contains(k.Keys(), key) {
					t.Errorf("%s sample %d sets %s, which the kind does not take", k.Name(), si, key)
				}
			}
			if raw.Protos == nil {
				raw.Protos = k.Protos()
			}
			settings, err := k.Settings(raw)
			if err != nil {
				t.Errorf("%s sample %d: %v", k.Name(), si, err)
				continue
			}
			for _, p := range raw.Protos {
				checkKind(t, k, settings, p)
			}
		}
	}
}

func checkKind(t *testing.T, k signature.Kind, s signature.Settings, p signature.Proto) {
	t.Helper()
	sig := k.Signature(s, p)
	where := k.Name() + " " + sig.Label + " on " + string(p)
	if sig.Proto != p || sig.Label == "" || sig.Family == "" {
		t.Errorf("%s: proto %q, label %q, family %q", where, sig.Proto, sig.Label, sig.Family)
	}
	if err := sig.Check(); err != nil {
		t.Errorf("%s: %v", where, err)
	}
	rendered := 0
	for _, e := range emitters {
		if e.proto != p {
			continue
		}
		rendered++
		if m, err := e.match(sig); err != nil || len(m) == 0 {
			t.Errorf("%s: %s renders %q, %v", where, e.name, m, err)
		}
	}
	if rendered == 0 {
		t.Errorf("%s: no emitter for %s", where, p)
	}
	ex, err := k.Example(s, p)
	if err != nil || len(ex.Packet) == 0 || ex.What == "" {
		t.Fatalf("%s: example %q (%d bytes), %v", where, ex.What, len(ex.Packet), err)
	}
	if got := sig.Match(ex.Packet); got != signature.Match {
		t.Errorf("%s: its example (%s, %s) gives %v", where, ex.What, head(ex.Packet), got)
	}
	clients := k.Clients(s)
	if _, err := k.Client(nil); len(clients) == 0 && err == nil {
		t.Errorf("%s: no --client value", where)
	}
	for _, c := range clients {
		name, args, _ := strings.Cut(c, ":")
		ck, ok := signature.LookupKind(name)
		if !ok {
			t.Errorf("%s: --client %s names no kind", where, c)
			continue
		}
		var words []string
		if args != "" {
			words = strings.Split(args, ":")
		}
		cs, err := ck.Client(words)
		if err != nil {
			t.Errorf("%s: --client %s: %v", where, c, err)
			continue
		}
		ex, err := ck.Example(cs, p)
		if err != nil || sig.Match(ex.Packet) != signature.Match {
			t.Errorf("%s: --client %s lays out %s, which it does not match (%v)", where, c, head(ex.Packet), err)
		}
	}
}

// head shows the first bytes of a packet.
func head(p []byte) string {
	if len(p) > 16 {
		return fmt.Sprintf("%x… (%d bytes)", p[:16], len(p))
	}
	return fmt.Sprintf("%x", p)
}

// sample is one kind with one sample of its settings on one protocol.
type sample struct {
	kind     signature.Kind
	settings signature.Settings
	proto    signature.Proto
}

func samples(t *testing.T) []sample {
	var out []sample
	for _, k := range signature.Kinds() {
		for _, raw := range k.Samples() {
			if raw.Protos == nil {
				raw.Protos = k.Protos()
			}
			s, err := k.Settings(raw)
			if err != nil {
				t.Fatalf("%s: %v", k.Name(), err)
			}
			for _, p := range raw.Protos {
				out = append(out, sample{k, s, p})
			}
		}
	}
	return out
}

// TestFamiliesDisjoint: what lets the planner compare signatures within a
// family only holds: no signature takes the example first packet of a
// kind of another family (custom kinds aside, which the planner compares
// by their packets).
func TestFamiliesDisjoint(t *testing.T) {
	all := samples(t)
	for _, a := range all {
		sig := a.kind.Signature(a.settings, a.proto)
		for _, b := range all {
			other := b.kind.Signature(b.settings, b.proto)
			if b.proto != a.proto || other.Family == sig.Family || sig.Open() || other.Open() {
				continue
			}
			ex, err := b.kind.Example(b.settings, b.proto)
			if err != nil {
				t.Fatal(err)
			}
			if got := sig.Match(ex.Packet); got != signature.NoMatch {
				t.Errorf("%s (%s) gives %v for the example of %s (%s): %s", sig.Label, sig.Family, got, other.Label, other.Family, ex.What)
			}
		}
	}
}

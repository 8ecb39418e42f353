package signature_test

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/signature"
)

// want is a service a fixture's client reaches (or must not).
type want struct {
	kind string
	raw  signature.Raw
}

const fixtureSNI = "www.kb19203.example"

// kindFixtures: the first bytes of real clients (fixtures/first-packets-kinds,
// README there), with the services each must reach and, where a kind
// tells services apart, some it must not.
var kindFixtures = []struct {
	file      string
	reaches   []want
	missesToo []want
	// takenToo are signatures of other families that take the packet too
	// (the planner refuses them beside its service).
	takenToo []string
}{
	{file: "tcp-socks5-curl.hex", reaches: []want{{kind: "socks5"}}},
	{file: "tcp-xmpp-go-sendxmpp.hex", reaches: []want{{kind: "xmpp"}}},
	{file: "tcp-custom-prefix.hex", reaches: []want{{"custom", signature.Raw{Custom: signature.RawCustom{Prefix: "4b4250524f544f2f3120"}, Protos: []signature.Proto{signature.TCP}}},
		{"custom", signature.Raw{Custom: signature.RawCustom{Regex: "^KBPROTO/[0-9]"}, Protos: []signature.Proto{signature.TCP}}}},
		missesToo: []want{{"custom", signature.Raw{Custom: signature.RawCustom{Prefix: "4b4250524f544f2f3220"}, Protos: []signature.Proto{signature.TCP}}}},
		// Its third byte is P, 0x50: tls-crypt-v2's opcode.
		takenToo: []string{"OpenVPN tls-crypt-v2"}},
	{file: "tcp-openvpn-tls-crypt.hex", reaches: []want{{"openvpn", signature.Raw{TLS: signature.RawTLS{Mode: "tls-crypt"}}}},
		missesToo: []want{{"openvpn", signature.Raw{TLS: signature.RawTLS{Mode: "tls-auth", Digest: "SHA512"}}}}},
	{file: "tcp-openvpn-tls-auth-sha512.hex", reaches: []want{{"openvpn", signature.Raw{TLS: signature.RawTLS{Mode: "tls-auth", Digest: "SHA512"}}}},
		missesToo: []want{{"openvpn", signature.Raw{TLS: signature.RawTLS{Mode: "tls-crypt"}}}}},
	{file: "udp-openvpn-tls-crypt.hex", reaches: []want{{"openvpn", signature.Raw{TLS: signature.RawTLS{Mode: "tls-crypt"}}}}},
	{file: "udp-openvpn-tls-auth-sha512.hex", reaches: []want{{"openvpn", signature.Raw{TLS: signature.RawTLS{Mode: "tls-auth", Digest: "SHA512"}}}}},
	{file: "udp-wireguard-go.hex", reaches: []want{{kind: "wireguard"}}},
	{file: "udp-dtls-openssl.hex", reaches: []want{{kind: "dtls"}, {kind: "openconnect"}}},
	{file: "udp-quic-go.hex", reaches: []want{{kind: "quic"}}},
	{file: "tcp-tls-alpn-h2-sni.hex", reaches: []want{{kind: "tls"},
		{"tls", signature.Raw{ALPN: []string{"h2"}}}, {"tls", signature.Raw{SNI: []string{fixtureSNI}}},
		{"tls", signature.Raw{SNI: []string{fixtureSNI}, ALPN: []string{"http/1.1", "h2"}}}},
		missesToo: []want{{"tls", signature.Raw{ALPN: []string{"http/1.1"}}}, {"tls", signature.Raw{SNI: []string{"other.example"}, ALPN: []string{"h2"}}}}},
	{file: "tcp-tls-alpn-h2-nosni.hex", reaches: []want{{kind: "tls"}, {"tls", signature.Raw{ALPN: []string{"h2"}}}},
		missesToo: []want{{"tls", signature.Raw{SNI: []string{fixtureSNI}}}, {"tls", signature.Raw{SNI: []string{fixtureSNI}, ALPN: []string{"h2"}}}}},
	{file: "tcp-tls-alpn-h2-http1.1-sni.hex", reaches: []want{{kind: "tls"},
		{"tls", signature.Raw{ALPN: []string{"h2"}}}, {"tls", signature.Raw{ALPN: []string{"http/1.1"}}},
		{"tls", signature.Raw{SNI: []string{fixtureSNI}, ALPN: []string{"http/1.1"}}}},
		missesToo: []want{{"tls", signature.Raw{ALPN: []string{"h3"}}}}},
	{file: "tcp-tls-alpn-http1.1-sni.hex", reaches: []want{{kind: "tls"}, {"tls", signature.Raw{ALPN: []string{"http/1.1"}}}},
		missesToo: []want{{"tls", signature.Raw{ALPN: []string{"h2"}}}}},
	{file: "tcp-tls-no-alpn-sni.hex", reaches: []want{{kind: "tls"}, {"tls", signature.Raw{SNI: []string{fixtureSNI}}}},
		missesToo: []want{{"tls", signature.Raw{ALPN: []string{"h2"}}}, {"tls", signature.Raw{SNI: []string{fixtureSNI}, ALPN: []string{"h2"}}}}},
	{file: "tcp-tls-no-alpn-nosni.hex", reaches: []want{{kind: "tls"}},
		missesToo: []want{{"tls", signature.Raw{ALPN: []string{"h2"}}}, {"tls", signature.Raw{SNI: []string{fixtureSNI}}}}},
}

// TestKindFixtures: each real client's first bytes match the signatures of
// the services it is for, and no signature of another family (every
// sample of every kind of another family on that protocol).
func TestKindFixtures(t *testing.T) {
	for _, f := range kindFixtures {
		t.Run(f.file, func(t *testing.T) {
			raw, err := os.ReadFile(filepath.Join("..", "fixtures", "first-packets-kinds", f.file))
			if err != nil {
				t.Fatal(err)
			}
			packet, err := hex.DecodeString(strings.TrimSpace(string(raw)))
			if err != nil {
				t.Fatal(err)
			}
			proto := signature.Proto(strings.SplitN(f.file, "-", 2)[0])
			for _, w := range f.reaches {
				if got := sigOf(t, w, proto).Match(packet); got != signature.Match {
					t.Errorf("%s %+v: %v, want a match", w.kind, w.raw, got)
				}
			}
			for _, w := range f.missesToo {
				if got := sigOf(t, w, proto).Match(packet); got == signature.Match {
					t.Errorf("%s %+v: a match, want none", w.kind, w.raw)
				}
			}
			family := sigOf(t, f.reaches[0], proto).Family
			for _, s := range samples(t) {
				sig := s.kind.Signature(s.settings, s.proto)
				if s.proto != proto || sig.Family == family {
					continue
				}
				got := sig.Match(packet)
				if slices.Contains(f.takenToo, sig.Label) {
					if got != signature.Match {
						t.Errorf("%s (%s): %v, want a match", sig.Label, s.kind.Name(), got)
					}
					continue
				}
				if got != signature.NoMatch {
					t.Errorf("%s (%s): %v, want no match", sig.Label, s.kind.Name(), got)
				}
			}
		})
	}
}

func sigOf(t *testing.T, w want, p signature.Proto) signature.Signature {
	t.Helper()
	k, ok := signature.LookupKind(w.kind)
	if !ok {
		t.Fatalf("no kind %s", w.kind)
	}
	s, err := k.Settings(w.raw)
	if err != nil {
		t.Fatal(err)
	}
	return k.Signature(s, p)
}

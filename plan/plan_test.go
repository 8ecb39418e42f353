package plan

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/node"
)

func build(t *testing.T, yaml string) (*Plan, error) {
	t.Helper()
	n, err := node.Parse([]byte(yaml), "test.yaml", node.Options{})
	if err != nil {
		t.Fatalf("node does not load: %v", err)
	}
	return Build(n)
}

func seed(t *testing.T) *Plan {
	t.Helper()
	n, err := node.Load(node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := Build(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const head = `name: t
addresses: [198.51.100.2]
`

// summary renders a plan's lists compactly: "udp 1-5060,5063-29999 [a b] default c".
func summary(p *Plan) []string {
	var out []string
	for _, l := range p.Lists {
		var names []string
		for _, d := range l.Decisions {
			names = append(names, d.Target.Service)
		}
		def := l.Default.Service
		if def == "" {
			def = "reject"
		}
		s := string(l.Proto) + " " + l.Ports.String() + " [" + strings.Join(names, " ") + "] default " + def
		if l.Frontend != nil {
			s += " " + l.Frontend.Name
		}
		out = append(out, s)
	}
	return out
}

func TestBuild(t *testing.T) {
	tests := []struct {
		name    string
		yaml    string
		want    []string
		wantErr []string // substrings of the error
	}{
		{
			name: "seed shape: dedicated ports keep RSA, leave ECC out",
			yaml: string(mustRead(t, "../fixtures/seed-node.yaml")),
			want: []string{
				"udp 1-5060,5063-29999 [openvpn_rsa openvpn_ecc] default reject",
				"udp 5061 [openvpn_rsa openvpn_ed25519] default openvpn_ed25519",
				"udp 5062 [openvpn_rsa openvpn_ed448] default openvpn_ed448",
				"tcp 1-5060,5063-29999 [openvpn_rsa openvpn_ecc] default reject fe_striped",
				"tcp 5061 [openvpn_rsa openvpn_ed25519] default openvpn_ed25519 fe_openvpn_ed25519",
				"tcp 5062 [openvpn_rsa openvpn_ed448] default openvpn_ed448 fe_openvpn_ed448",
			},
		},
		{
			name: "two tls-crypt instances striped are ambiguous",
			yaml: head + `services:
  - {name: ecc, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060}
  - {name: ed, kind: openvpn, tls: {mode: tls-crypt}, udp: 5061}
`,
			wantErr: []string{"services[1]:", "ecc and ed", "udp 1-29999", "no signature tells them apart", "dedicated ports"},
		},
		{
			name: "two tls-auth with one digest are ambiguous on tcp too",
			yaml: head + `services:
  - {name: a, kind: openvpn, tls: {mode: tls-auth, digest: SHA1}, tcp: 127.0.0.1:1194}
  - {name: b, kind: openvpn, tls: {mode: tls-auth, digest: sha1}, tcp: 127.0.0.1:1195}
`,
			wantErr: []string{"services[1]:", "a and b", "tcp 1-29999"},
		},
		{
			name: "tls-auth SHA256 and tls-crypt share a port, told apart by the packet-id offset",
			yaml: head + `services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA256}, udp: 443}
  - {name: ecc, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060}
`,
			want: []string{"udp 1-29999 [rsa ecc] default reject"},
		},
		{
			name: "tls-crypt-v2, no wrapping and wireguard are all distinguishable",
			yaml: head + `services:
  - {name: v2, kind: openvpn, tls: {mode: tls-crypt-v2}, udp: 1000}
  - {name: plain, kind: openvpn, tls: {mode: none}, udp: 1001}
  - {name: tc, kind: openvpn, tls: {mode: tls-crypt}, udp: 1002}
  - {name: wg, kind: wireguard, udp: 9000}
striped: {udp: ["1-100"], tcp: []}
`,
			wantErr: []string{"haproxy"}, // placeholder replaced below
		},
		{
			name: "a port dedicated to two services",
			yaml: head + `services:
  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5061, dedicated: ["5000-5100"]}
  - {name: b, kind: openvpn, tls: {mode: tls-crypt-v2}, udp: 5062, dedicated: ["5100"]}
`,
			wantErr: []string{"services[1].dedicated", "5100", "a and b"},
		},
		{
			name: "defaults name a service; a dedicated owner without tcp leaves tcp striped",
			yaml: head + `defaults: {tcp: ssh, udp: rsa}
services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443, tcp: 127.0.0.1:1194}
  - {name: wg, kind: wireguard, udp: 51820, dedicated: ["51820"]}
  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}
reserved: ["60000-65535"]
`,
			want: []string{
				"udp 1-29999 [rsa] default rsa",
				"udp 51820 [rsa wg] default wg",
				"tcp 1-29999,51820 [rsa ssh] default ssh fe_striped",
			},
		},
		{
			name: "SNI services go before a catch-all TLS service",
			yaml: head + `services:
  - {name: any, kind: tls, tcp: 127.0.0.1:8443}
  - {name: web, kind: tls, sni: [a.example, B.example], tcp: 127.0.0.1:9443}
  - {name: h, kind: http, tcp: 127.0.0.1:8080}
  - {name: s, kind: ssh, tcp: 127.0.0.1:22}
  - {name: o, kind: openvpn, tls: {mode: tls-crypt}, tcp: 127.0.0.1:1194}
`,
			want: []string{"tcp 1-29999 [o s web any h] default reject fe_striped"},
		},
		{
			name:    "two catch-all TLS services",
			yaml:    head + "services:\n  - {name: a, kind: tls, tcp: 127.0.0.1:1}\n  - {name: b, kind: tls, tcp: 127.0.0.1:2}\n",
			wantErr: []string{"services[1]:", "a and b", "tcp 1-29999"},
		},
		{
			name:    "overlapping SNI names",
			yaml:    head + "services:\n  - {name: a, kind: tls, sni: [x.example, y.example], tcp: 127.0.0.1:1}\n  - {name: b, kind: tls, sni: [y.example], tcp: 127.0.0.1:2}\n",
			wantErr: []string{"a and b"},
		},
		{
			name: "frontend ports must stay out of the reserved ranges",
			yaml: head + `haproxy: {listen_port: 29999}
services:
  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, tcp: 127.0.0.1:1194, dedicated: ["5061"]}
  - {name: b, kind: ssh, tcp: 127.0.0.1:22}
`,
			wantErr: []string{"haproxy.listen_port", "30000"},
		},
		{
			name: "a long dedicated range overlapping a later owner's, past a range between",
			yaml: head + `services:
  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5061, dedicated: ["5000-5100"]}
  - {name: b, kind: openvpn, tls: {mode: tls-crypt-v2}, udp: 5062, dedicated: ["4000-4010", "5050"]}
`,
			wantErr: []string{"services[1].dedicated", "port 5050 ", "a and b (services[0])"},
		},
		{
			name: "two services on one UDP listener port",
			yaml: head + `services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443}
  - {name: wg, kind: wireguard, udp: 443}
`,
			wantErr: []string{"services[1].udp:", "port 443", "rsa (services[0])", "rsa and wg"},
		},
		{
			name: "a service named striped with dedicated TCP ports would share fe_striped",
			yaml: head + `services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, tcp: 127.0.0.1:1194}
  - {name: striped, kind: ssh, tcp: 127.0.0.1:22, dedicated: ["22"]}
`,
			wantErr: []string{"services[1].name:", "frontend fe_striped would serve both the striped ports (tcp 1-21,23-29999)", "dedicated to service \"striped\" (tcp 22)"},
		},
		{
			name: "a service named striped with dedicated UDP ports only is fine",
			yaml: head + `services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443, tcp: 127.0.0.1:1194}
  - {name: striped, kind: wireguard, udp: 51820, dedicated: ["51820"]}
reserved: ["60000-65535"]
`,
			want: []string{
				"udp 1-29999 [rsa] default reject",
				"udp 51820 [rsa striped] default striped",
				"tcp 1-29999,51820 [rsa] default reject fe_striped",
			},
		},
		{
			name:    "a backend on the node's address at a striped port loops back into HAProxy",
			yaml:    head + "services:\n  - {name: s, kind: ssh, tcp: 198.51.100.2:22}\n",
			wantErr: []string{"services[0].tcp:", "198.51.100.2:22", "frontend fe_striped (tcp 1-29999, list striped)", "loop"},
		},
		{
			name: "a backend on the node's address at a dedicated port loops too",
			yaml: head + `striped: {tcp: ["1-1000"], udp: ["1-1000"]}
services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, tcp: 127.0.0.1:1194}
  - {name: s, kind: ssh, tcp: 198.51.100.2:5022, dedicated: ["5000-5100"]}
`,
			wantErr: []string{"services[1].tcp:", "198.51.100.2:5022", "frontend fe_s (tcp 5000-5100, list s)"},
		},
		{
			name: "a backend on the node's address at a reserved port is fine",
			yaml: head + `reserved: ["30000-65535"]
services:
  - {name: s, kind: ssh, tcp: 198.51.100.2:30022}
`,
			want: []string{"tcp 1-29999 [s] default reject fe_striped"},
		},
		{
			name:    "a backend on the frontend's own address and port",
			yaml:    head + "services:\n  - {name: s, kind: ssh, tcp: 198.51.100.2:20000}\n",
			wantErr: []string{"services[0].tcp", "fe_striped"},
		},
	}
	// tls-crypt-v2 / none / wireguard: all on one port list.
	tests[4].wantErr = nil
	tests[4].want = []string{"udp 1-100 [v2 plain tc wg] default reject"}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := build(t, tt.yaml)
			if len(tt.wantErr) > 0 {
				if err == nil {
					t.Fatalf("no error; plan: %q", summary(p))
				}
				if !node.IsInputError(err) {
					t.Errorf("error %v is not an input error (exit 2)", err)
				}
				for _, s := range tt.wantErr {
					if !strings.Contains(err.Error(), s) {
						t.Errorf("error %q does not mention %q", err, s)
					}
				}
				if strings.Contains(err.Error(), "\n") {
					t.Errorf("error is not one line: %q", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := summary(p)
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("lists:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
}

func mustRead(t *testing.T, path string) []byte {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSeedRangesAndFrontends(t *testing.T) {
	p := seed(t)
	var got []string
	for _, r := range p.Ranges {
		got = append(got, string(r.Proto)+" "+r.Ports().String()+" "+p.Lists[r.List].Name)
	}
	want := []string{
		"udp 1-5060 striped", "udp 5061 openvpn_ed25519", "udp 5062 openvpn_ed448", "udp 5063-29999 striped",
		"tcp 1-5060 striped", "tcp 5061 openvpn_ed25519", "tcp 5062 openvpn_ed448", "tcp 5063-29999 striped",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("ranges:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	ports := map[string]uint16{}
	for _, l := range p.Lists {
		if l.Frontend != nil {
			ports[l.Frontend.Name] = l.Frontend.Port
		}
	}
	if ports["fe_striped"] != 20000 || ports["fe_openvpn_ed25519"] != 20001 || ports["fe_openvpn_ed448"] != 20002 {
		t.Errorf("frontend ports %v, want striped 20000, ed25519 20001, ed448 20002", ports)
	}
	for _, l := range p.Lists {
		if l.Name == "openvpn_ed25519" && (len(l.Excluded) != 1 || l.Excluded[0].Service != "openvpn_ecc") {
			t.Errorf("%s %s: excluded %v, want openvpn_ecc", l.Proto, l.Name, l.Excluded)
		}
	}
}

// TestRouteSeedFixtures routes every captured first packet of a real
// OpenVPN 2.6 client on the seed node's sample ports.
func TestRouteSeedFixtures(t *testing.T) {
	p := seed(t)
	// Per fixture: the service on a striped port, on 5061 and on 5062.
	// Packets no striped signature takes reach nobody on striped ports (the
	// seed's defaults reject) and the owner on its dedicated port.
	expect := map[string][3]string{
		"udp-tls-auth-sha512.hex":             {"openvpn_rsa", "openvpn_rsa", "openvpn_rsa"},
		"udp-tls-crypt.hex":                   {"openvpn_ecc", "openvpn_ed25519", "openvpn_ed448"},
		"udp-tls-auth-sha256.hex":             {None, "openvpn_ed25519", "openvpn_ed448"},
		"udp-tls-auth-sha1.hex":               {None, "openvpn_ed25519", "openvpn_ed448"},
		"udp-tls-crypt-v2.hex":                {None, "openvpn_ed25519", "openvpn_ed448"},
		"udp-no-tls-wrap.hex":                 {None, "openvpn_ed25519", "openvpn_ed448"},
		"tcp-tls-auth-sha512.hex":             {"openvpn_rsa", "openvpn_rsa", "openvpn_rsa"},
		"tcp-tls-auth-sha512-two-resends.hex": {"openvpn_rsa", "openvpn_rsa", "openvpn_rsa"},
		"tcp-tls-crypt.hex":                   {"openvpn_ecc", "openvpn_ed25519", "openvpn_ed448"},
		"tcp-tls-auth-sha1.hex":               {None, "openvpn_ed25519", "openvpn_ed448"},
		"tcp-tls-crypt-v2.hex":                {None, "openvpn_ed25519", "openvpn_ed448"},
	}
	files, _ := filepath.Glob("../fixtures/first-packets/*.hex")
	if len(files) != len(expect) {
		t.Fatalf("found %d fixtures in fixtures/first-packets, expect %d", len(files), len(expect))
	}
	for _, f := range files {
		want, ok := expect[filepath.Base(f)]
		if !ok {
			t.Errorf("%s: no expectation", f)
			continue
		}
		payload := decodeHex(t, f)
		proto := node.Proto(filepath.Base(f)[:3])
		for _, port := range []uint16{1, 443, 5060, 5061, 5062, 5063, 29999, 30000} {
			w := want[0]
			switch port {
			case 5061:
				w = want[1]
			case 5062:
				w = want[2]
			case 30000:
				w = None
			}
			r := p.Route(proto, port, payload)
			if r.Service != w {
				t.Errorf("%s on %s %d: %s (%s), want %s", filepath.Base(f), proto, port, r.Service, r.Via, w)
			}
			if (r.Service == None) != (r.Target == "") {
				t.Errorf("%s on %s %d: service %s with target %q", filepath.Base(f), proto, port, r.Service, r.Target)
			}
		}
	}
}

func TestRouteTargets(t *testing.T) {
	p := seed(t)
	udp := decodeHex(t, "../fixtures/first-packets/udp-tls-crypt.hex")
	if r := p.Route(node.UDP, 80, udp); r.Target != "195.154.33.73:5060" {
		t.Errorf("udp tls-crypt on 80 lands on %q, want 195.154.33.73:5060", r.Target)
	}
	tcp := decodeHex(t, "../fixtures/first-packets/tcp-tls-auth-sha512.hex")
	r := p.Route(node.TCP, 5061, tcp)
	if r.Target != "127.0.0.1:1194" || !strings.Contains(r.Via, "fe_openvpn_ed25519") {
		t.Errorf("tcp tls-auth on 5061: %+v, want 127.0.0.1:1194 via fe_openvpn_ed25519", r)
	}
	// Half a first packet: HAProxy waits, then the default (reject) applies.
	if r := p.Route(node.TCP, 80, tcp[:40]); r.Service != None || !strings.Contains(r.Via, "waiting") {
		t.Errorf("truncated tcp packet: %+v, want none after waiting", r)
	}
}

func decodeHex(t *testing.T, path string) []byte {
	t.Helper()
	var b []byte
	s := strings.TrimSpace(string(mustRead(t, path)))
	for i := 0; i+1 < len(s); i += 2 {
		var v byte
		for _, c := range s[i : i+2] {
			v <<= 4
			switch {
			case c >= '0' && c <= '9':
				v |= byte(c - '0')
			case c >= 'a' && c <= 'f':
				v |= byte(c - 'a' + 10)
			default:
				t.Fatalf("%s: not hex", path)
			}
		}
		b = append(b, v)
	}
	return b
}

// TestRouteCaptured routes the first packets the e2e suite captured from
// real clients (fixtures/captured) on the seed node plus the suite's SSH and
// SNI-routed TLS services, as the suite saw them land.
func TestRouteCaptured(t *testing.T) {
	yaml := string(mustRead(t, "../fixtures/seed-node.yaml")) + `  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}
  - {name: tls_a, kind: tls, sni: [a.example.com], tcp: 127.0.0.1:8443}
  - {name: tls_b, kind: tls, sni: [b.example.com], tcp: 127.0.0.1:8444}
`
	p, err := build(t, yaml)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		file      string
		port      uint16
		want      string
		dedicated string // on 5061
	}{
		{"udp-tls-auth-sha512-rsa.hex", 53, "openvpn_rsa", "openvpn_rsa"},
		{"udp-tls-crypt-ecc.hex", 80, "openvpn_ecc", "openvpn_ed25519"},
		{"udp-tls-crypt-ed448.hex", 80, "openvpn_ecc", "openvpn_ed25519"},
		{"tcp-tls-auth-sha512-rsa.hex", 443, "openvpn_rsa", "openvpn_rsa"},
		{"tcp-tls-auth-sha512-rsa-twice.hex", 8080, "openvpn_rsa", "openvpn_rsa"},
		{"tcp-tls-crypt-ed25519.hex", 443, "openvpn_ecc", "openvpn_ed25519"},
		{"tcp-ssh-banner.hex", 22, "ssh", "ssh"},
		{"tcp-tls-clienthello-sni-a.example.com.hex", 443, "tls_a", "tls_a"},
		{"tcp-tls-clienthello-sni-b.example.com.hex", 29999, "tls_b", "tls_b"},
		{"tcp-tls-clienthello-no-sni.hex", 443, None, "openvpn_ed25519"},
	}
	for _, tt := range tests {
		payload := decodeHex(t, filepath.Join("../fixtures/captured", tt.file))
		proto := node.Proto(tt.file[:3])
		if r := p.Route(proto, tt.port, payload); r.Service != tt.want {
			t.Errorf("%s on %s %d: %s (%s), want %s", tt.file, proto, tt.port, r.Service, r.Via, tt.want)
		}
		if r := p.Route(proto, 5061, payload); r.Service != tt.dedicated {
			t.Errorf("%s on %s 5061: %s (%s), want %s", tt.file, proto, r.Service, r.Via, tt.dedicated)
		}
	}
}

// TestChainNamesClash: two UDP lists whose chain names (their IDs) are one
// are refused, naming both lists' ports. A real clash needs two lists whose
// 48-bit hashes meet; two lists doing the same thing on different ports
// (which Build would have merged) share an ID the same way.
func TestChainNamesClash(t *testing.T) {
	n, err := node.Load(node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	l := List{Name: "openvpn_ed25519", Proto: node.UDP, Ports: node.NewPortSet(node.PortRange{From: 5061, To: 5061})}
	m := l
	m.Ports = node.NewPortSet(node.PortRange{From: 7000, To: 7001})
	err = (&Plan{Lists: []List{l, m}}).checkNames(n)
	want := "services[2].name: the UDP lists of udp 5061 (list openvpn_ed25519) and udp 7000-7001 (list openvpn_ed25519) hash to one chain name (" + l.ID() + "); rename a service of either"
	if err == nil || err.Error() != want || !node.IsInputError(err) {
		t.Fatalf("got %v, want %q", err, want)
	}
	m.Name = "other"
	if err := (&Plan{Lists: []List{l, m}}).checkNames(n); err != nil {
		t.Fatalf("lists with different IDs: %v", err)
	}
}

// TestHealthChecks: auto picks what a kind's server answers to without a
// client (sshd's banner, a TLS hello), a plain connect otherwise; the node
// file can say connect or none instead.
func TestHealthChecks(t *testing.T) {
	p, err := build(t, `name: t
addresses: [198.51.100.2]
services:
  - {name: vpn, kind: openvpn, tls: {mode: tls-crypt}, udp: 1194, tcp: 127.0.0.1:1194}
  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}
  - {name: web, kind: tls, sni: [a.example.org], tcp: 127.0.0.1:8443}
  - {name: plain, kind: tls, sni: [b.example.org], tcp: 127.0.0.1:8444, check: connect}
  - {name: site, kind: http, tcp: 127.0.0.1:8080, check: none}
`)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]HealthCheck{"vpn": CheckConnect, "ssh": CheckSSHBanner, "web": CheckTLSHello, "plain": CheckConnect, "site": CheckNone}
	for _, b := range p.Backends {
		if b.Check != want[b.Service] {
			t.Errorf("%s: check %q, want %q", b.Service, b.Check, want[b.Service])
		}
	}
}

// TestClientAddress: a transparent backend needs an address of its own
// (not loopback, not the node's) and root workers, and brings the reply
// routing; the other modes are only carried to the backend.
func TestClientAddress(t *testing.T) {
	const svc = `services:
  - {name: ssh, kind: ssh, tcp: %s, client_address: %s}
  - {name: vpn, kind: openvpn, tls: {mode: tls-crypt}, tcp: 127.0.0.1:1194}
`
	tests := []struct {
		name, haproxy, tcp, mode string
		wantErr                  string
	}{
		{"transparent on an own address", "haproxy: {user: root}\n", "203.0.113.10:22", "transparent", ""},
		{"transparent on loopback", "haproxy: {user: root}\n", "127.0.0.1:22", "transparent", "services[0].client_address: transparent needs a backend on a non-loopback address"},
		{"transparent on the node's address", "haproxy: {user: root}\n", "198.51.100.2:22", "transparent", "services[0].client_address: transparent needs a backend address that is not one of the node's addresses (198.51.100.2)"},
		{"transparent with haproxy workers", "", "203.0.113.10:22", "transparent", "haproxy.user: ssh is transparent (services[0].client_address: transparent), which needs HAProxy's workers to stay root"},
		{"proxy-v2 on loopback", "", "127.0.0.1:22", "proxy-v2", ""},
		{"proxy-v1 on loopback", "", "127.0.0.1:22", "proxy-v1", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := build(t, head+tt.haproxy+fmt.Sprintf(svc, tt.tcp, tt.mode))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			got := map[string]node.ClientAddress{}
			for _, b := range p.Backends {
				got[b.Service] = b.ClientAddress
			}
			if got["ssh"] != node.ClientAddress(tt.mode) || got["vpn"] != node.ClientProxy {
				t.Errorf("client addresses %v, want ssh %s and vpn proxy", got, tt.mode)
			}
			if (p.ReplyRoute != nil) != (tt.mode == "transparent") {
				t.Errorf("reply route %+v with %s", p.ReplyRoute, tt.mode)
			}
			// explain names the mode, and for transparent the root workers.
			note := p.ClientAddressNote(p.Backends[0])
			if !strings.HasPrefix(note, tt.mode+": ") || strings.Contains(note, "workers run as root") != (tt.mode == "transparent") {
				t.Errorf("explain's note for %s: %q", tt.mode, note)
			}
		})
	}
}

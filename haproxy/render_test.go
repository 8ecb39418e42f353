package haproxy

import (
	"context"
	"fmt"
	"net/netip"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/testplan"
	"github.com/portstripe/portstripe/internal/textdiff"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/signature"
)

// goldenNodes are the example nodes whose haproxy.cfg is kept under
// fixtures/golden/<name>/; path "" is the built-in seed node.
var goldenNodes = []struct {
	name, path string
}{
	{"seed", ""},
	{"ssh-tls", "fixtures/ssh-tls-node.yaml"},
	{"transparent", "fixtures/transparent-node.yaml"},
	{"dual-stack", "fixtures/dual-stack-node.yaml"},
	{"kinds", "fixtures/kinds-node.yaml"},
}

const repoRoot = ".."

var loadPlan = testplan.Node

func goldenPath(name string) string {
	return filepath.Join(repoRoot, "fixtures", "golden", name, "haproxy.cfg")
}

func TestRenderGolden(t *testing.T) {
	for _, g := range goldenNodes {
		t.Run(g.name, func(t *testing.T) {
			p := loadPlan(t, g.path)
			got := Render(p)
			if again := Render(loadPlan(t, g.path)); string(again) != string(got) {
				t.Fatalf("Render is not deterministic:\n%s", textdiff.Unified(string(got), string(again)))
			}
			if err := FromPlan(p).Validate(); err != nil {
				t.Fatal(err)
			}
			golden.Check(t, goldenPath(g.name), got)
		})
	}
}

// TestGoldenHAProxyCheck runs the real `haproxy -c -dW` on every golden
// config: it must parse, and without a single warning.
func TestGoldenHAProxyCheck(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy not installed (CI installs it)")
	}
	for _, g := range goldenNodes {
		t.Run(g.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			if err := (Checker{ZeroWarning: true}).Check(ctx, goldenPath(g.name)); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFrontendShape(t *testing.T) {
	for _, g := range goldenNodes {
		t.Run(g.name, func(t *testing.T) {
			p := loadPlan(t, g.path)
			c := FromPlan(p)
			var tcpLists []plan.List
			for _, l := range p.Lists {
				if l.Proto == node.TCP {
					tcpLists = append(tcpLists, l)
				}
			}
			if len(c.Frontends) != len(tcpLists) {
				t.Fatalf("%d frontends for %d TCP lists", len(c.Frontends), len(tcpLists))
			}
			for i, fe := range c.Frontends {
				l := tcpLists[i]
				acls := map[string]bool{}
				var last string
				var binds, defaults, rejects, uses int
				for _, line := range fe.Lines {
					if _, ok := line.(ACL); !ok {
						last = ""
					}
					switch line := line.(type) {
					case ACL:
						// An acl split over lines (HAProxy ORs them) repeats
						// its name only on the next line.
						if acls[line.Name] && last != line.Name {
							t.Errorf("%s: acl %s defined twice", fe.Name, line.Name)
						}
						acls[line.Name], last = true, line.Name
						if strings.Contains(line.Fetch, "req.len") {
							t.Errorf("%s: %s uses req.len", fe.Name, line)
						}
					case Bind:
						binds++
					case DefaultBackend:
						defaults++
					case TCPRequestContent:
						if line.Action == Reject {
							rejects++
						}
						for _, n := range line.Cond {
							if n != or && !acls[n] {
								t.Errorf("%s: %s uses %s before it is defined", fe.Name, line, n)
							}
						}
					case UseBackend:
						uses++
					}
				}
				if binds != len(p.Node.Addresses) {
					t.Errorf("%s: %d binds for %d addresses", fe.Name, binds, len(p.Node.Addresses))
				}
				if defaults+rejects != 1 || (defaults == 1) == l.Default.Rejects() {
					t.Errorf("%s: %d default_backend, %d reject; list default %q", fe.Name, defaults, rejects, l.Default.Service)
				}
				if uses != len(l.Decisions) {
					t.Errorf("%s: %d use_backend for %d decisions", fe.Name, uses, len(l.Decisions))
				}
			}
		})
	}
}

func TestACLs(t *testing.T) {
	tests := []struct {
		name    string
		service string
		sig     signature.Signature
		used    []string
		want    []string
	}{
		{
			name:    "tls-auth SHA512: opcode first, then packet-id, length open",
			service: "openvpn_rsa",
			sig:     mustSig(signature.OpenVPN, signature.Settings{TLS: signature.OpenVPNTLS{Mode: signature.TLSAuth, Digest: "SHA512"}}),
			want: []string{
				"acl openvpn_rsa_at2 req.payload(2,1) -m bin 38",
				"acl openvpn_rsa_at75 req.payload(75,4) -m bin 00000001",
			},
		},
		{
			name:    "no wrapping: exact length prefix and opcode",
			service: "openvpn_plain",
			sig:     mustSig(signature.OpenVPN, signature.Settings{TLS: signature.OpenVPNTLS{Mode: signature.TLSNone}}),
			want:    []string{"acl openvpn_plain_at0 req.payload(0,3) -m bin 000e38"},
		},
		{
			name:    "tls-crypt-v2: opcode only",
			service: "v2",
			sig:     mustSig(signature.OpenVPN, signature.Settings{TLS: signature.OpenVPNTLS{Mode: signature.TLSCryptV2}}),
			want:    []string{"acl v2_at2 req.payload(2,1) -m bin 50"},
		},
		{
			name:    "ssh banner",
			service: "ssh",
			sig:     mustSig(signature.SSH, signature.Settings{}),
			want:    []string{"acl ssh_at0 req.payload(0,4) -m bin 5353482d"},
		},
		{
			name:    "tls with SNI",
			service: "sites",
			sig:     mustSig(signature.TLS, signature.Settings{SNI: []string{"a.example", "b.example"}}),
			want: []string{
				"acl sites_hello req.ssl_hello_type 1",
				"acl sites_sni req.ssl_sni -i a.example b.example",
			},
		},
		{
			name:    "more SNI names than one line holds: the same acl on more lines",
			service: "many",
			sig:     mustSig(signature.TLS, signature.Settings{SNI: sniNames(61)}),
			want: []string{
				"acl many_hello req.ssl_hello_type 1",
				"acl many_sni req.ssl_sni -i " + strings.Join(sniNames(61)[:60], " "),
				"acl many_sni req.ssl_sni -i n60.example",
			},
		},
		{
			name:    "tls without SNI",
			service: "any",
			sig:     mustSig(signature.TLS, signature.Settings{}),
			want:    []string{"acl any_hello req.ssl_hello_type 1"},
		},
		{
			name:    "http",
			service: "web",
			sig:     mustSig(signature.HTTP, signature.Settings{}),
			want:    []string{"acl web_http req.proto_http"},
		},
		{
			name:    "name taken in the frontend",
			service: "web",
			sig:     mustSig(signature.HTTP, signature.Settings{}),
			used:    []string{"web_http", "web_http_2"},
			want:    []string{"acl web_http_3 req.proto_http"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			used := map[string]bool{}
			for _, u := range tt.used {
				used[u] = true
			}
			var got []string
			for _, a := range ACLs(tt.service, tt.sig, used) {
				got = append(got, a.String())
			}
			if diff := textdiff.Unified(strings.Join(tt.want, "\n"), strings.Join(got, "\n")); diff != "" {
				t.Errorf("(-want +got):\n%s", diff)
			}
		})
	}
}

var tcpAddr = mustAddrPort("127.0.0.1:1194")

// sniNames is n server names, n0.example and up.
func sniNames(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("n%d.example", i)
	}
	return out
}

func mustSig(k signature.Kind, s signature.Settings) signature.Signature {
	return k.Signature(s, node.TCP)
}

// The config hash is what decides a reload: server addresses and states
// (runtime API changes) leave it alone, anything else changes it, and the
// worker reports it back through the description line.
func TestConfigHash(t *testing.T) {
	p := loadPlan(t, "")
	base := Render(p)
	h := ReadConfigHash(base)
	if len(h) != 64 {
		t.Fatalf("no config hash in the rendered config:\n%s", base)
	}
	if got := HashOf("portstripe-config sha256:" + h); got != h {
		t.Errorf("HashOf(description) = %q, want %q", got, h)
	}
	if got := HashOf("some operator's description"); got != "" {
		t.Errorf("HashOf(foreign description) = %q, want empty", got)
	}
	servers := *p
	servers.Backends = slices.Clone(p.Backends)
	servers.Backends[0].Addr = netip.MustParseAddrPort("127.0.0.1:4444")
	servers.Backends[0].Disabled = !servers.Backends[0].Disabled
	servers.Node.SHA256 = "another node file with the same routing"
	// An upgraded portstripe rewrites the header line but never forces a
	// reload.
	servers.Generator = "9.9.9-1 (rev 0123456789ab)"
	rendered := Render(&servers)
	if !strings.Contains(string(rendered), "\n# portstripe: 9.9.9-1 (rev 0123456789ab)\n") {
		t.Errorf("the header does not name the generator:\n%s", rendered)
	}
	if got := ReadConfigHash(rendered); got != h {
		t.Errorf("server address/state and header changes moved the hash: %s → %s", h, got)
	}
	frontend := *p
	frontend.HAProxy.InspectDelay += time.Second
	if got := ReadConfigHash(Render(&frontend)); got == h {
		t.Errorf("an inspect-delay change kept the hash %s", h)
	}
	// The runtime API cannot change what a server is told of the client:
	// each client_address is a configuration of its own.
	seen := map[string]node.ClientAddress{}
	for _, mode := range node.ClientAddresses {
		q := *p
		q.Backends = slices.Clone(p.Backends)
		q.Backends[0].ClientAddress = mode
		if mode == node.ClientTransparent {
			q.ReplyRoute = &plan.TransparentReplyRoute
		}
		got := ReadConfigHash(Render(&q))
		if other, dup := seen[got]; dup {
			t.Errorf("client_address %s and %s give one config hash", other, mode)
		}
		seen[got] = mode
	}
}

// TestHardStopAfter: old workers end an hour after a reload unless the node
// says 0 (never), and then no hard-stop-after line is emitted.
func TestHardStopAfter(t *testing.T) {
	p := loadPlan(t, "")
	if !strings.Contains(string(Render(p)), "\n    hard-stop-after 1h\n") {
		t.Errorf("the seed node's haproxy.cfg has no hard-stop-after 1h:\n%s", Render(p))
	}
	never := *p
	never.HAProxy.HardStopAfter = 0
	if cfg := string(Render(&never)); strings.Contains(cfg, "hard-stop-after") {
		t.Errorf("hard_stop_after: 0 still emits hard-stop-after:\n%s", cfg)
	}
}

// TestDecisionLogTargets: the node file's haproxy.log picks where the
// decision lines go (the master's stdout, a syslog server, nowhere), and
// haproxy.log_rate caps them per frontend.
func TestDecisionLogTargets(t *testing.T) {
	p := loadPlan(t, "")
	cfg := string(Render(p))
	for _, want := range []string{"\n    log stdout format raw daemon\n", "\n    " + LogFormat(DecisionFormat).String() + "\n", "\n    acl ps_log_flood sc0_conn_rate gt 100\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("the seed node's haproxy.cfg lacks %q", want)
		}
	}
	syslog := *p
	syslog.HAProxy.Log, syslog.HAProxy.Syslog = node.LogSyslog, netip.MustParseAddrPort("127.0.0.1:514")
	syslog.HAProxy.LogRate = 7
	cfg = string(Render(&syslog))
	for _, want := range []string{"\n    log 127.0.0.1:514 format rfc5424 local0\n", "\n    acl ps_log_flood sc0_conn_rate gt 7\n"} {
		if !strings.Contains(cfg, want) {
			t.Errorf("haproxy.log: 127.0.0.1:514, log_rate: 7: haproxy.cfg lacks %q", want)
		}
	}
	none := *p
	none.HAProxy.Log = node.LogNone
	cfg = string(Render(&none))
	for _, unwanted := range []string{"log", "stick-table", "track-sc0", RuleVar} {
		if strings.Contains(cfg, unwanted) {
			t.Errorf("haproxy.log: none still emits %q:\n%s", unwanted, cfg)
		}
	}
}

func TestParseDecision(t *testing.T) {
	line := "portstripe decision start=1796157673.075 client=198.51.100.7 client_port=40312 dst=203.0.113.10 port=443 frontend=fe_striped rule=signature backend=ssh server=ssh bytes_in=21 bytes_out=40 duration_ms=12 flags=--"
	d, ok := ParseDecisionLine(line)
	want := DecisionLine{Start: time.UnixMilli(1796157673075).UTC(), Client: netip.MustParseAddrPort("198.51.100.7:40312"), Dst: netip.MustParseAddr("203.0.113.10"), Port: 443,
		Frontend: "fe_striped", Rule: RuleSignature, Backend: "ssh", Server: "ssh", BytesIn: 21, BytesOut: 40, Duration: 12 * time.Millisecond, Flags: "--", Line: line}
	if !ok || d != want {
		t.Errorf("ParseDecisionLine = %+v, %v; want %+v", d, ok, want)
	}
	for _, other := range []string{
		"[NOTICE]   (24839) : New worker (24842) forked",
		"portstripe decision client=198.51.100.7 client_port=40312 dst=203.0.113.10 port=4", // torn
		strings.Replace(line, "bytes_in=21", "bytes_in=x", 1),
		strings.Replace(line, "start=1796157673.075", "start=1796157673", 1),
	} {
		if _, ok := ParseDecisionLine(other); ok {
			t.Errorf("ParseDecisionLine(%q) took it for a decision line", other)
		}
	}
}

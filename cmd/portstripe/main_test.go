package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/golden"
)

func portstripe(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	var o, e bytes.Buffer
	code = run(args, &o, &e)
	return code, o.String(), e.String()
}

func TestCompileSeed(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := portstripe(t, "compile", "-o", dir)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, f := range []string{"haproxy.cfg", "rules.v4", "plan.json"} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil {
			t.Fatalf("%s not written: %v (%s)", f, err, out)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", f, st.Mode().Perm())
		}
	}
	plan, _ := os.ReadFile(filepath.Join(dir, "plan.json"))
	golden.Check(t, "../../fixtures/golden/seed/plan.json", plan)
	_, explain, _ := portstripe(t, "explain")
	golden.Check(t, "../../fixtures/golden/seed/explain.txt", []byte(explain))
}

// TestCompileRetiresStaleRules: compiling a node without IPv6 addresses
// into a directory that holds a dual-stack node's files moves its rules.v6
// to rules.v6.prev, so the directory holds this node's rules only.
func TestCompileRetiresStaleRules(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := portstripe(t, "compile", "-c", dualStackNode, "-o", dir); code != 0 {
		t.Fatalf("compile the dual-stack node: exit %d: %s", code, errOut)
	}
	v6, err := os.ReadFile(filepath.Join(dir, "rules.v6"))
	if err != nil {
		t.Fatal(err)
	}
	code, out, errOut := portstripe(t, "compile", "-o", dir)
	if code != 0 {
		t.Fatalf("compile the seed node: exit %d: %s", code, errOut)
	}
	if _, err := os.Stat(filepath.Join(dir, "rules.v6")); !os.IsNotExist(err) {
		t.Errorf("rules.v6 still there after compiling an IPv4-only node (%v):\n%s", err, out)
	}
	if prev, _ := os.ReadFile(filepath.Join(dir, "rules.v6.prev")); !bytes.Equal(prev, v6) {
		t.Errorf("rules.v6.prev is not the retired rules.v6")
	}
	if want := "retired: " + filepath.Join(dir, "rules.v6") + " (kept as rules.v6.prev): this node has no such rules\n"; !strings.Contains(out, want) {
		t.Errorf("compile does not say %q:\n%s", want, out)
	}
	if _, out, _ := portstripe(t, "compile", "-o", dir); strings.Contains(out, "retired") {
		t.Errorf("a second compile retires again:\n%s", out)
	}
}

func TestRouteCommand(t *testing.T) {
	fx := "../../fixtures/first-packets/"
	tests := []struct {
		args []string
		want map[string]string
	}{
		{[]string{"--proto", "udp", "--port", "5061", "--payload-file", fx + "udp-tls-auth-sha512.hex"},
			map[string]string{"service": "openvpn_rsa", "target": "195.154.33.73:443"}},
		{[]string{"--proto", "tcp", "--port", "29999", "--payload-file", fx + "tcp-tls-crypt.hex"},
			map[string]string{"service": "openvpn_ecc", "target": "127.0.0.1:5060"}},
		{[]string{"--proto", "udp", "--port", "30000", "--payload-file", fx + "udp-tls-crypt.hex"},
			map[string]string{"service": "none", "target": ""}},
		{[]string{"--proto", "tcp", "--port", "80", "--payload-hex", "5353482d322e300d0a"},
			map[string]string{"service": "none", "target": ""}},
		// A client that sends nothing meets the default after the delay.
		{[]string{"--proto", "tcp", "--port", "5061", "--payload-hex", ""},
			map[string]string{"service": "openvpn_ed25519", "target": "127.0.0.1:5061"}},
		// Per family: the UDP listener on the address of the family the
		// client sends to; the same decisions on both.
		{[]string{"-c", dualStackNode, "--proto", "udp6", "--port", "8080", "--payload-file", fx + "udp-tls-crypt.hex"},
			map[string]string{"service": "openvpn_ecc", "target": "[2001:db8::10]:5060", "family": "ipv6", "address": "2001:db8::10"}},
		{[]string{"-c", dualStackNode, "--proto", "udp4", "--port", "8080", "--payload-file", fx + "udp-tls-crypt.hex"},
			map[string]string{"service": "openvpn_ecc", "target": "203.0.113.10:5060", "family": "ipv4", "limit": ""}},
		// nft reads from the transport header: no such limit.
		{[]string{"-c", dualStackNode, "--set", "firewall=nftables", "--proto", "udp6", "--port", "8080", "--payload-file", fx + "udp-tls-crypt.hex"},
			map[string]string{"service": "openvpn_ecc", "target": "[2001:db8::10]:5060", "limit": ""}},
		{[]string{"-c", dualStackNode, "--proto", "tcp6", "--port", "22", "--payload-hex", "5353482d322e300d0a"},
			map[string]string{"service": "ssh", "target": "[::1]:2222", "family": "ipv6", "limit": ""}},
	}
	for _, tt := range tests {
		code, out, errOut := portstripe(t, append([]string{"route", "-o", "json"}, tt.args...)...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", tt.args, code, errOut)
		}
		var doc routeDoc
		if err := json.Unmarshal([]byte(out), &doc); err != nil {
			t.Fatalf("%v: %v in %q", tt.args, err, out)
		}
		got := map[string]string{"service": doc.Service, "target": doc.Target, "via": doc.Via,
			"family": string(doc.Family), "address": doc.Address.String(), "limit": doc.Limit}
		for k, v := range tt.want {
			if got[k] != v {
				t.Errorf("%v: %s = %q, want %q (via %s)", tt.args, k, got[k], v, got["via"])
			}
		}
		if got["via"] == "" {
			t.Errorf("%v: no via", tt.args)
		}
	}
	if code, _, _ := portstripe(t, "route", "--proto", "sctp", "--port", "1", "--payload-hex", "00"); code != 2 {
		t.Errorf("bad --proto: exit %d, want 2", code)
	}
	// UDP over IPv6 says what ip6tables cannot see; a family the node
	// lacks is a flag error.
	code, out, _ := portstripe(t, "route", "-c", dualStackNode, "--proto", "udp6", "--port", "1", "--client", "openvpn:tls-crypt")
	if code != 0 || !strings.Contains(out, "udp6 1 → openvpn_ecc at [2001:db8::10]:5060\n") || !strings.Contains(out, "\n  limit: ip6tables u32 reads the fixed 40-byte IPv6 header: a UDP first packet behind IPv6 extension headers") {
		t.Errorf("route --proto udp6: exit %d:\n%s", code, out)
	}
	if code, _, errOut := portstripe(t, "route", "--proto", "udp6", "--port", "1", "--client", "openvpn:tls-crypt"); code != 2 || !strings.Contains(errOut, "--proto udp6: node seed has no IPv6 address (addresses: 195.154.33.73)") {
		t.Errorf("route --proto udp6 on an IPv4-only node: exit %d, %q; want 2 naming the flag", code, errOut)
	}
}

func TestUsageErrors(t *testing.T) {
	for _, args := range [][]string{{"bogus"}, {"compile", "-x"}, {"compile", "extra"}, {"route", "--port", "1"},
		{"route", "--proto", "udp", "--port", "1"}, {"route", "--proto", "udp", "--port", "1", "--payload-hex", "00", "--payload-file", "x"},
		{"explain", "-o", "xml"}, {"status", "--json=maybe"}} {
		if code, _, errOut := portstripe(t, args...); code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("portstripe %v: exit %d, %q; want exit 2 and one line", args, code, errOut)
		}
	}
	if code, out, _ := portstripe(t); code != 0 || !strings.Contains(out, "Available Commands") {
		t.Errorf("bare portstripe: exit %d, want help", code)
	}
}

// TestStatusNothingApplied: status on a state directory nothing was applied
// to says so once, with what to run, and exits 1 (text and JSON alike).
func TestStatusNothingApplied(t *testing.T) {
	dir := t.TempDir()
	code, out, errOut := portstripe(t, "status", "--dir", dir)
	if code != 1 || !strings.Contains(out, "nothing applied in "+dir) || !strings.Contains(out, "portstripe apply") {
		t.Errorf("status: exit %d, stdout %q; want exit 1 and what to run", code, out)
	}
	if strings.Contains(errOut, "nothing applied") {
		t.Errorf("status: the problem is repeated on stderr: %q", errOut)
	}
	code, out, _ = portstripe(t, "status", "--dir", dir, "--json")
	var st Status
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != 1 || len(st.Problems) != 1 {
		t.Errorf("status --json: exit %d, %q (%v); want exit 1 and one problem", code, out, err)
	}
}

// TestRouteClient: route --client lands where the captured first packet of
// the same kind of real client does, on the seed's striped, dedicated and
// reserved ports; a client --client cannot describe is a usage error.
func TestRouteClient(t *testing.T) {
	fx := "../../fixtures/first-packets/"
	captured := map[string]string{
		"udp-tls-auth-sha512.hex": "openvpn:tls-auth:SHA512",
		"udp-tls-auth-sha256.hex": "openvpn:tls-auth:SHA256",
		"udp-tls-auth-sha1.hex":   "openvpn:tls-auth:SHA1",
		"udp-tls-crypt.hex":       "openvpn:tls-crypt",
		"udp-tls-crypt-v2.hex":    "openvpn:tls-crypt-v2",
		"udp-no-tls-wrap.hex":     "openvpn:none",
		"tcp-tls-auth-sha512.hex": "openvpn:tls-auth:SHA512",
		"tcp-tls-auth-sha1.hex":   "openvpn:tls-auth:SHA1",
		"tcp-tls-crypt.hex":       "openvpn:tls-crypt",
		"tcp-tls-crypt-v2.hex":    "openvpn:tls-crypt-v2",
	}
	route := func(args ...string) map[string]string {
		t.Helper()
		// --json: the alias of -o json that older scripts use.
		code, out, errOut := portstripe(t, append([]string{"route", "--json"}, args...)...)
		if code != 0 {
			t.Fatalf("route %v: exit %d: %s", args, code, errOut)
		}
		var r routeDoc
		if err := json.Unmarshal([]byte(out), &r); err != nil {
			t.Fatalf("route %v: %v in %q", args, err, out)
		}
		return map[string]string{"service": r.Service, "target": r.Target}
	}
	for file, client := range captured {
		proto := file[:3]
		for _, port := range []string{"1", "443", "5060", "5061", "5062", "30000"} {
			real := route("--proto", proto, "--port", port, "--payload-file", fx+file)
			made := route("--proto", proto, "--port", port, "--client", client)
			if real["service"] != made["service"] || real["target"] != made["target"] {
				t.Errorf("%s %s: --client %s lands on %s %s, the captured %s on %s %s", proto, port, client,
					made["service"], made["target"], file, real["service"], real["target"])
			}
		}
	}
	web := "../../fixtures/ssh-tls-node.yaml"
	for client, want := range map[string]string{"ssh": "ssh", "tls:www.example.org": "sites", "tls:other.example": "tls_any", "tls": "tls_any", "http": "web"} {
		if got := route("-c", web, "--proto", "tcp", "--port", "2000", "--client", client)["service"]; got != want {
			t.Errorf("--client %s on the mixed node's tcp 2000: %s, want %s", client, got, want)
		}
	}
	for _, args := range [][]string{
		{"--proto", "udp", "--port", "1", "--client", "ssh"},
		{"--proto", "tcp", "--port", "1", "--client", "wireguard"},
		{"--proto", "tcp", "--port", "1", "--client", "openvpn:tls-auth"},
		{"--proto", "tcp", "--port", "1", "--client", "openvpn:tls-crypt:SHA1"},
		{"--proto", "tcp", "--port", "1", "--client", "ftp"},
		{"--proto", "tcp", "--port", "1", "--client", ""},
		{"--proto", "tcp", "--port", "1", "--client", "wireguard:x"},
		{"--proto", "tcp", "--port", "1", "--client", "ssh", "--payload-hex", "00"},
	} {
		if code, _, errOut := portstripe(t, append([]string{"route"}, args...)...); code != 2 || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("route %v: exit %d, %q; want exit 2 and one line", args, code, errOut)
		}
	}
}

// TestOverridesRecorded: what the environment and --set change is shown
// where a reviewer looks: plan.json, both headers and compile's summary,
// with the effective settings' hash; the README's --set 'striped.tcp[0]=…'
// works on the seed node, which leaves striped to its default; a value
// stays on its header line whatever it holds.
func TestOverridesRecorded(t *testing.T) {
	dir := t.TempDir()
	t.Setenv("PORTSTRIPE_HAPROXY_INSPECT_DELAY", "2s")
	code, out, errOut := portstripe(t, "compile", "-o", dir, "--set", "striped.tcp[0]=1-1000", "--set", "addresses=195.154.33.73\n")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var p struct {
		Node struct {
			SettingsSHA256 string `json:"settings_sha256"`
			Overrides      []struct{ Key, Value, From string }
		}
		Lists []struct{ Proto, Ports string }
	}
	data, _ := os.ReadFile(filepath.Join(dir, "plan.json"))
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	// The environment first, then --set (which wins), each in key order.
	want := `[{haproxy.inspect_delay 2s PORTSTRIPE_HAPROXY_INSPECT_DELAY} {addresses 195.154.33.73
 --set} {striped.tcp[0] 1-1000 --set}]`
	if got := fmt.Sprint(p.Node.Overrides); got != want || len(p.Node.SettingsSHA256) != 64 {
		t.Errorf("plan.json overrides %s, settings %q", got, p.Node.SettingsSHA256)
	}
	for _, l := range p.Lists {
		if l.Proto == "tcp" && strings.Contains(l.Ports, "29999") {
			t.Errorf("striped.tcp not overridden: tcp list on %s", l.Ports)
		}
	}
	for _, name := range []string{"haproxy.cfg", "rules.v4"} {
		data, _ := os.ReadFile(filepath.Join(dir, name))
		var head string // the comment lines the file starts with
		for _, l := range strings.Split(string(data), "\n") {
			if !strings.HasPrefix(l, "#") {
				break
			}
			head += l + "\n"
		}
		for _, line := range []string{
			p.Node.SettingsSHA256,
			`addresses="195.154.33.73\n" (--set)`,
			`haproxy.inspect_delay="2s" (PORTSTRIPE_HAPROXY_INSPECT_DELAY)`,
			`striped.tcp[0]="1-1000" (--set)`,
		} {
			if !strings.Contains(head, line) {
				t.Errorf("%s header lacks %s:\n%s", name, line, head)
			}
		}
	}
	if !strings.Contains(out, "  settings sha256 "+p.Node.SettingsSHA256[:12]+", with overrides:\n    haproxy.inspect_delay=") {
		t.Errorf("compile's summary:\n%s", out)
	}
}

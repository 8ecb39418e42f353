package main

import (
	"slices"
	"strings"
	"testing"
)

// complete is what the shell gets for a command line ending in toComplete,
// as cobra's hidden __complete answers it: the values and their
// descriptions, without the trailing directive line.
func complete(t *testing.T, args ...string) map[string]string {
	t.Helper()
	code, out, errOut := portstripe(t, append([]string{"__complete"}, args...)...)
	if code != 0 {
		t.Fatalf("__complete %q: exit %d: %s", args, code, errOut)
	}
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) == 0 || lines[len(lines)-1] != ":4" { // ShellCompDirectiveNoFileComp
		t.Errorf("__complete %q: %q does not end in :4 (no file names)", args, out)
	}
	got := map[string]string{}
	for _, l := range lines[:len(lines)-1] {
		v, desc, _ := strings.Cut(l, "\t")
		got[v] = desc
	}
	return got
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// TestCompletion: the shell completes the values of --proto, -o,
// --log-format and --client (with what the node file's services make of
// them) instead of offering file names.
func TestCompletion(t *testing.T) {
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"route", "--proto", ""}, []string{"tcp", "tcp4", "tcp6", "udp", "udp4", "udp6"}},
		{[]string{"route", "--proto", "udp6", "--client", "w"}, []string{"wireguard"}},
		{[]string{"route", "--proto", "tcp6", "--client", "s"}, []string{"socks5", "ssh"}},
		{[]string{"route", "-o", ""}, []string{"json", "text", "yaml"}},
		{[]string{"explain", "--output", ""}, []string{"json", "text", "yaml"}},
		{[]string{"status", "-o", ""}, []string{"json", "text", "yaml"}},
		{[]string{"apply", "--log-format", ""}, []string{"json", "text"}},
		{[]string{"run", "--log-format", ""}, []string{"json", "text"}},
		{[]string{"route", "--proto", "tcp", "--client", "openvpn:tls-a"},
			[]string{"openvpn:tls-auth:SHA1", "openvpn:tls-auth:SHA256", "openvpn:tls-auth:SHA384", "openvpn:tls-auth:SHA512"}},
		// WireGuard is UDP only; SSH, TLS and HTTP are TCP only.
		{[]string{"route", "--proto", "udp", "--client", "w"}, []string{"wireguard"}},
		{[]string{"route", "--proto", "tcp", "--client", "w"}, nil},
		{[]string{"route", "--proto", "udp", "--client", "s"}, nil},
		// The node file's TLS service names come with the tls kind.
		{[]string{"route", "-c", sshTLSNode, "--client", "tls"}, []string{"tls", "tls:vpn.example.org", "tls:www.example.org"}},
	} {
		if got := keys(complete(t, tt.args...)); !slices.Equal(got, tt.want) {
			t.Errorf("%q: completes %q, want %q", tt.args, got, tt.want)
		}
	}
}

// TestCompletionSaysWhereClientsLand: with --proto and --port, each
// --client value says which service its first packet reaches there, as
// route would answer; without, which of the node file's services it is for.
func TestCompletionSaysWhereClientsLand(t *testing.T) {
	got := complete(t, "route", "-c", sshTLSNode, "--proto", "tcp", "--port", "443", "--client", "")
	for spec, want := range map[string]string{
		"ssh": "tcp 443 → ssh", "tls:www.example.org": "tcp 443 → sites", "tls": "tcp 443 → tls_any",
		"http": "tcp 443 → web", "openvpn:tls-crypt": "tcp 443 → vpn_crypt",
		// A client no service of the node expects meets the TCP default.
		"openvpn:tls-auth:SHA512": "tcp 443 → web",
	} {
		if got[spec] != want {
			t.Errorf("--client %s: %q, want %q", spec, got[spec], want)
		}
	}
	if got := complete(t, "route", "--client", "openvpn:tls-c")["openvpn:tls-crypt"]; got != "for openvpn_ecc, openvpn_ed25519, openvpn_ed448" {
		t.Errorf("seed node, --client openvpn:tls-crypt: %q, want the three tls-crypt services", got)
	}
}

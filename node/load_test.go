package node

import (
	"strings"
	"testing"
)

const okHead = "name: t\naddresses: [198.51.100.2]\n"
const okSvc = "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060}\n"

func TestLoadSeed(t *testing.T) {
	n, err := Load(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "seed" || len(n.Services) != 4 || n.Addresses[0].String() != "195.154.33.73" {
		t.Errorf("seed node: %+v", n)
	}
	if n.HAProxy.InspectDelay.String() != "5s" || n.Striped[TCP].String() != "1-29999" || n.Reserved.String() != "30000-65535" {
		t.Errorf("seed defaults: %+v", n)
	}
	if len(n.SHA256) != 64 {
		t.Errorf("sha256 %q", n.SHA256)
	}
}

func TestBadInput(t *testing.T) {
	tests := []struct {
		name, yaml, path, msg string
	}{
		{"unknown top key", okHead + okSvc + "colour: blue\n", "colour", "unknown key"},
		{"unknown nested key", okHead + "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-crypt, cipher: x}, udp: 5060}\n", "services[0].tls.cipher", "unknown key"},
		{"wrong type", okHead + "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060, sni: {a: 1}}\n", "services[0].sni[0]", "wrong type"},
		{"missing name", "addresses: [198.51.100.2]\n" + okSvc, "name", "required"},
		{"missing addresses", "name: t\n" + okSvc, "addresses", "required"},
		{"no services", okHead, "services", "at least one"},
		{"reversed range", okHead + okSvc + "striped: {udp: [\"300-200\"]}\n", "striped.udp[0]", "reversed"},
		{"port 0", okHead + okSvc + "striped: {udp: [\"0-200\"]}\n", "striped.udp[0]", "out of range"},
		{"port too big", okHead + okSvc + "reserved: [\"30000-70000\"]\n", "reserved[0]", "out of range"},
		{"overlapping ranges", okHead + okSvc + "striped: {tcp: [\"1-3000\", \"2000-4000\"]}\n", "striped.tcp[1]", "overlaps"},
		{"striped overlaps reserved", okHead + okSvc + "striped: {tcp: [\"1-30000\"]}\n", "striped.tcp", "reserved"},
		{"dedicated in reserved", okHead + "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060, dedicated: [\"40000\"]}\n", "services[0].dedicated", "reserved"},
		{"duplicate names", okHead + okSvc + "  - {name: a, kind: ssh, tcp: 127.0.0.1:22}\n", "services[1].name", "already"},
		{"newline in name", okHead + "services:\n  - {name: \"a\\nb\", kind: ssh, tcp: 127.0.0.1:22}\n", "services[0].name", "not allowed"},
		{"space in name", okHead + "services:\n  - {name: \"a b\", kind: ssh, tcp: 127.0.0.1:22}\n", "services[0].name", "not allowed"},
		{"hash in name", okHead + "services:\n  - {name: \"a#b\", kind: ssh, tcp: 127.0.0.1:22}\n", "services[0].name", "not allowed"},
		{"quote in SNI", okHead + "services:\n  - {name: w, kind: tls, sni: [\"a\\\"b.example\"], tcp: 127.0.0.1:443}\n", "services[0].sni[0]", "not a DNS name"},
		{"non-ASCII SNI", okHead + "services:\n  - {name: w, kind: tls, sni: [\"bücher.example\"], tcp: 127.0.0.1:443}\n", "services[0].sni[0]", "not a DNS name"},
		{"backend does not parse", okHead + "services:\n  - {name: s, kind: ssh, tcp: \"localhost:22\"}\n", "services[0].tcp", "IPv4:PORT"},
		{"unreachable backend", okHead + "services:\n  - {name: s, kind: ssh, tcp: \"0.0.0.0:22\"}\n", "services[0].tcp", "unicast"},
		{"unsupported digest", okHead + "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-auth, digest: MD5}, udp: 443}\n", "services[0].tls.digest", "not supported"},
		{"bad tls mode", okHead + "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-magic}, udp: 443}\n", "services[0].tls.mode", "allowed: tls-auth"},
		{"bad kind", okHead + "services:\n  - {name: a, kind: ftp, tcp: 127.0.0.1:21}\n", "services[0].kind", "not a service kind"},
		{"default is not a service", okHead + okSvc + "defaults: {udp: nobody}\n", "defaults.udp", "not a service name"},
		{"default without that protocol", okHead + okSvc + "defaults: {tcp: a}\n", "defaults.tcp", "no tcp endpoint"},
		{"inspect delay unbounded", okHead + okSvc + "haproxy: {inspect_delay: 10m}\n", "haproxy.inspect_delay", "duration"},
		{"socket path injection", okHead + okSvc + "haproxy: {runtime_socket: \"/run/x.sock level admin\"}\n", "haproxy.runtime_socket", "not allowed"},
		{"ipv6 address", "name: t\naddresses: [\"2001:db8::1\"]\n" + okSvc, "addresses[0]", "IPv4"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse([]byte(tt.yaml), "t.yaml", Options{})
			if err == nil {
				t.Fatal("no error")
			}
			if !IsInputError(err) {
				t.Errorf("%v is not an input error", err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, tt.path+": ") {
				t.Errorf("error %q does not start with the field path %q", msg, tt.path)
			}
			if !strings.Contains(msg, tt.msg) {
				t.Errorf("error %q does not say %q", msg, tt.msg)
			}
			if strings.Contains(msg, "\n") {
				t.Errorf("error is not one line: %q", msg)
			}
		})
	}
}

func TestNotANodeFile(t *testing.T) {
	for name, data := range map[string]string{
		"empty":  "  \n",
		"binary": "\x00\x01\x02\xff",
		"yaml":   "name: [unclosed\n",
	} {
		if _, err := Parse([]byte(data), "t.yaml", Options{}); err == nil || !IsInputError(err) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: %v, want a one-line input error", name, err)
		}
	}
}

func TestOverrides(t *testing.T) {
	t.Setenv("PORTSTRIPE_HAPROXY_INSPECT_DELAY", "2s")
	n, err := Parse([]byte(okHead+okSvc), "t.yaml", Options{Env: true, Set: map[string]string{"haproxy.maxconn": "99"}})
	if err != nil {
		t.Fatal(err)
	}
	if n.HAProxy.InspectDelay.String() != "2s" || n.HAProxy.MaxConn != 99 {
		t.Errorf("overrides not applied: %+v", n.HAProxy)
	}
	if _, err := Parse([]byte(okHead+okSvc), "t.yaml", Options{Set: map[string]string{"haproxy.colour": "x"}}); err == nil || !strings.HasPrefix(err.Error(), "haproxy.colour: unknown key") {
		t.Errorf("--set of an unknown key: %v", err)
	}
}

func TestPortSet(t *testing.T) {
	s := NewPortSet(PortRange{1, 100}, PortRange{101, 200}, PortRange{300, 400})
	if s.String() != "1-200,300-400" {
		t.Errorf("merge: %s", s)
	}
	if got := s.Minus(NewPortSet(PortRange{50, 50}, PortRange{150, 350})).String(); got != "1-49,51-149,351-400" {
		t.Errorf("minus: %s", got)
	}
	if !s.Contains(200) || s.Contains(250) {
		t.Error("contains")
	}
}

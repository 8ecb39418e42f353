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

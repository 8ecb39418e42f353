package node

import (
	"strings"
	"testing"

	"github.com/portstripe/portstripe/signature"
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
	if _, err := Parse([]byte(okHead+okSvc), "t.yaml", Options{Set: map[string]string{"haproxy.colour": "x"}}); err == nil || !strings.HasPrefix(err.Error(), "haproxy.colour: --set: unknown key") {
		t.Errorf("--set of an unknown key: %v", err)
	}
}

// TestOverrideListEntries: --set reaches into lists by index.
func TestOverrideListEntries(t *testing.T) {
	two := okHead + okSvc + "  - {name: b, kind: ssh, tcp: 127.0.0.1:22}\n"
	n, err := Parse([]byte(two), "t.yaml", Options{Set: map[string]string{
		"services[0].udp":        "5070",
		"services[1].disabled":   "true",
		"services[0].tls.mode":   "tls-auth",
		"services[0].tls.digest": "SHA256",
		"striped.tcp":            "1-100",
	}})
	if err != nil {
		t.Fatal(err)
	}
	if a, b := n.Services[0], n.Services[1]; a.UDP != 5070 || a.Settings.TLS.Mode != signature.TLSAuth || a.Settings.TLS.Digest != "SHA256" || !b.Disabled || b.Name != "b" {
		t.Errorf("list overrides not applied: %+v / %+v", a, b)
	}
	if n.Striped[TCP].String() != "1-100" {
		t.Errorf("striped.tcp = %s", n.Striped[TCP])
	}
	for key, want := range map[string]string{
		"services[5].udp":    "services[5]: --set: no such entry (services has 1, from [0])",
		"services[x].udp":    "services[x]: --set: no such entry",
		"services[0].colour": "services[0].colour: --set: unknown key",
		"name[0]":            "name: --set: not a list",
		"services[0":         "services: --set:",
	} {
		_, err := Parse([]byte(okHead+okSvc), "t.yaml", Options{Set: map[string]string{key: "1"}})
		if err == nil || !strings.HasPrefix(err.Error(), want) || !IsInputError(err) {
			t.Errorf("--set %s: %v, want %q…", key, err, want)
		}
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

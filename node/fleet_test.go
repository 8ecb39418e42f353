package node

import (
	"bytes"
	"reflect"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/portstripe/portstripe/fixtures"
	"github.com/portstripe/portstripe/signature"
)

func exampleFleet(t *testing.T) *Fleet {
	t.Helper()
	fl, err := ParseFleet(fixtures.Fleet, "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	return fl
}

func TestFleetResolvesEachNode(t *testing.T) {
	fl := exampleFleet(t)
	nodes := map[string]*Node{}
	for i, fn := range fl.Nodes {
		n, _, err := fl.ParseNode(i, "fleet:eu/"+fn.Name)
		if err != nil {
			t.Fatalf("%s: %v", fn.Name, err)
		}
		nodes[fn.Name] = n
	}
	if n := nodes["ams-1"]; len(n.Services) != 3 || n.HAProxy.MaxConn != 4096 || n.Addresses[0].String() != "198.51.100.11" {
		t.Errorf("ams-1: %d services, maxconn %d, addresses %v; want the plan's 3 services, maxconn 4096, its own address", len(n.Services), n.HAProxy.MaxConn, n.Addresses)
	}
	if n := nodes["ams-2"]; n.HAProxy.MaxConn != 16384 || n.HAProxy.InspectDelay.String() != "5s" {
		t.Errorf("ams-2: maxconn %d, inspect delay %s; want its override 16384 and the plan's 5s", n.HAProxy.MaxConn, n.HAProxy.InspectDelay)
	}
	if n := nodes["fra-1"]; len(n.Services) != 3 || n.Services[2].Name != "ssh" {
		t.Errorf("fra-1 runs %v; want the plan's services without openvpn_ed25519, then its ssh", n.serviceNames())
	} else if _, ok := n.Service("openvpn_ed25519"); ok {
		t.Error("fra-1 runs openvpn_ed25519, which its without lists")
	}
	if s, _ := nodes["fra-2"].Service("openvpn_ecc"); !s.Disabled {
		t.Error("fra-2's openvpn_ecc is not disabled, though its disabled lists it")
	}
	if s, _ := nodes["ams-1"].Service("openvpn_ecc"); s.Disabled {
		t.Error("ams-1's openvpn_ecc is disabled: fra-2's disabled leaked")
	}
}

func TestFleetLabelsLeaveNodeFilesAlone(t *testing.T) {
	relabelled := strings.Replace(string(fixtures.Fleet), "region: eu-west, provider: p1", "region: eu-north, provider: p9", 1)
	fl2, err := ParseFleet([]byte(relabelled), "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if fl2.Nodes[0].Labels["region"] != "eu-north" {
		t.Fatalf("labels %v; the edit did not take", fl2.Nodes[0].Labels)
	}
	if a, b := string(exampleFleet(t).NodeFile(0)), string(fl2.NodeFile(0)); a != b {
		t.Errorf("a label change changed the node file:\n%s\n---\n%s", a, b)
	}
}

func TestFleetErrorsNameTheFleetPath(t *testing.T) {
	for _, c := range []struct{ old, new, want string }{
		{"[198.51.100.12]", "[198.51.100.12, bogus]", `nodes[1].addresses[1]: "bogus" is not an IP address`},
		{"udp: 5060", "udp: 99999", `plan.services[1].udp: on node ams-1 (nodes[0]): `},
		{"maxconn: 16384", "maxconn: lots", `nodes[1].overrides.haproxy.maxconn: `},
		{"{name: ssh, kind: ssh", "{name: openvpn_rsa, kind: ssh", `nodes[2].services[0].name: "openvpn_rsa" is already the name of plan.services[0]`},
		{"name: fra-2", "name: ams-1", `nodes[3].name: "ams-1" is already the name of nodes[0]`},
		{"[198.51.100.22]", "[198.51.100.11]", `nodes[3].addresses[0]: 198.51.100.11 is also an address of nodes[0] (ams-1)`},
		{"without: [openvpn_ed25519]", "without: [openvpn_ed448]", `nodes[2].without[0]: "openvpn_ed448" is not a service of the plan`},
		{"disabled: [openvpn_ecc]", "disabled: [openvpn_ecc]\n    labelz: {}", `nodes[3].labelz: unknown key (allowed here: name, addresses, labels, overrides, services, disabled, without)`},
		{"region: eu-central, provider: p2", "region: 'eu central'", `nodes[3].labels.region: "eu central" is not a label value`},
		{"name: eu\n", "name: eu/x\n", `name: "eu/x" is not allowed`},
		{"    overrides:\n", "    overrides:\n      services: []\n", `nodes[1].overrides.services: unknown key`},
	} {
		text := string(fixtures.Fleet)
		if !strings.Contains(text, c.old) {
			t.Fatalf("fixtures/fleet/eu.yaml has no %q", c.old)
		}
		text = strings.Replace(text, c.old, c.new, 1)
		err := parseAll(text)
		if err == nil || !strings.HasPrefix(err.Error(), c.want) || !IsInputError(err) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%q → %q: got %v\nwant an input error starting %s", c.old, c.new, err, c.want)
		}
	}
}

// parseAll parses a fleet file and each of its nodes, as fleet compile does.
func parseAll(text string) error {
	fl, err := ParseFleet([]byte(text), "fleet.yaml")
	if err != nil {
		return err
	}
	for i := range fl.Nodes {
		if _, _, err := fl.ParseNode(i, "x"); err != nil {
			return err
		}
	}
	return nil
}

// TestFleetSchemaFollowsTheNodeFile: a key added to the node file reaches
// the fleet file's plan, and every plan key but services its overrides;
// a fleet node has a node file's own keys.
func TestFleetSchemaFollowsTheNodeFile(t *testing.T) {
	fileKeys := keys(reflect.TypeFor[file]())
	planKeys := keys(reflect.TypeFor[planFile]())
	nodeKeys := keys(reflect.TypeFor[fleetNodeFile]())
	overrideKeys := keys(reflect.TypeFor[overridesFile]())
	for _, k := range fileKeys {
		switch {
		case k == "name" || k == "addresses":
			if !slices.Contains(nodeKeys, k) {
				t.Errorf("a fleet node has no %s", k)
			}
		case !slices.Contains(planKeys, k):
			t.Errorf("the node file's %s is not a key of the fleet file's plan", k)
		case k != "services" && !slices.Contains(overrideKeys, k):
			t.Errorf("the plan's %s is not a key of a node's overrides", k)
		}
	}
	if len(planKeys) != len(fileKeys)-2 || len(overrideKeys) != len(planKeys)-1 {
		t.Errorf("plan keys %v, overrides %v: want the node file's %v but name and addresses (and services)", planKeys, overrideKeys, fileKeys)
	}
}

func TestFleetOverridesTheFirewall(t *testing.T) {
	text := strings.Replace(string(fixtures.Fleet), "haproxy: {maxconn: 16384}", "haproxy: {maxconn: 16384}\n      firewall: nftables", 1)
	fl, err := ParseFleet([]byte(text), "fleet.yaml")
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{IPTables, NFTables} {
		n, _, err := fl.ParseNode(i, "x")
		if err != nil {
			t.Fatal(err)
		}
		if n.Firewall != want {
			t.Errorf("%s: firewall %q, want %q", n.Name, n.Firewall, want)
		}
	}
}

// roundTrip decodes what encode writes of f onto an empty file.
func roundTrip(t testing.TB, f file) (file, string) {
	var b bytes.Buffer
	encode(&b, reflect.ValueOf(f), "")
	root, err := document(b.Bytes(), "x")
	if err != nil {
		t.Fatalf("encode wrote what does not parse: %v\n%s", err, b.String())
	}
	var back file
	if err := decode(root, reflect.ValueOf(&back).Elem(), "", ""); err != nil {
		t.Fatalf("encode wrote what does not decode: %v\n%s", err, b.String())
	}
	return back, b.String()
}

// TestEncodeRoundTrip: text that YAML would read as something else (a
// number, a boolean, null, a date, a comment, a map) comes back as the
// same text.
func TestEncodeRoundTrip(t *testing.T) {
	tricky := []string{"5s", "127.0.0.1:1194", "true", "Yes", "no", "null", "~", "1e3", "0x10", "2026-12-01", "a: b", "#x", "x #y",
		`quo"te`, "line\nbreak", "tab\there", "ünï", "-dash", "1-29999", "443", "[a]", "{a}", "*x", "&x", "!x", "%x", "@x", "`x", " pad", "pad ", "::1", "a,b"}
	for _, s := range tricky {
		f := file{Name: s, Addresses: []string{s, "443"}, Reserved: []string{s, "443"},
			HAProxy: haproxyFile{ListenPort: s, Log: s, Timeouts: timeoutsFile{Client: s}},
			Services: []serviceFile{{Name: s, TCP: s, UDP: s, Striped: s, TLS: signature.RawTLS{Mode: s}, SNI: []string{s}, ALPN: []string{s},
				Custom: signature.RawCustom{Prefix: s, Match: []signature.RawMatch{{Offset: s, Bytes: "0500"}, {Offset: "0", Bytes: s}}}},
				{Name: "b", Striped: "true", UDP: "443"}}}
		if back, text := roundTrip(t, f); !reflect.DeepEqual(back, f) {
			t.Errorf("%q did not come back:\n%s\n%+v", s, text, back)
		}
	}
}

func FuzzEncodeRoundTrip(f *testing.F) {
	for _, s := range []string{"5s", "true", "127.0.0.1:1194", "a: b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		if !utf8.ValidString(s) || strings.ContainsRune(s, 0) {
			return // a node file is text; Parse refuses the rest first
		}
		in := file{Name: s, Addresses: []string{s}, Services: []serviceFile{{Name: s, UDP: s, SNI: []string{s}}}}
		if back, text := roundTrip(t, in); !reflect.DeepEqual(back, in) {
			t.Errorf("%q did not come back:\n%s", s, text)
		}
	})
}

package main

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/fixtures"
	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/internal/etcdtest"
	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/internal/textdiff"
)

// badFleets are fleet files fleet compile and fleet publish refuse: the
// example fleet (fixtures/fleet/eu.yaml) with old replaced by new.
var badFleets = []badInput{
	{name: "a node's bad address", old: "[198.51.100.12]", new: "[198.51.100.12, bogus]",
		want: `nodes[1].addresses[1]: "bogus" is not an IP address (want IPv4 or IPv6, e.g. 195.154.33.73 or 2001:db8::10)`},
	{name: "the plan, bad on every node", old: "udp: 5060", new: "udp: 99999",
		want: "plan.services[1].udp: on node ams-1 (nodes[0]): port 99999 is out of range (allowed 1-65535) (and 3 more nodes fail; fix this one and compile again)"},
	{name: "a bad override", old: "maxconn: 16384", new: "maxconn: lots",
		want: `nodes[1].overrides.haproxy.maxconn: "lots" is not a number from 1 to 1000000`},
	{name: "a node's service named like a plan service", old: "{name: ssh, kind: ssh", new: "{name: openvpn_rsa, kind: ssh",
		want: `nodes[2].services[0].name: "openvpn_rsa" is already the name of plan.services[0] (service names must be unique)`},
	{name: "two nodes with one name", old: "name: fra-2", new: "name: ams-1",
		want: `nodes[3].name: "ams-1" is already the name of nodes[0] (node names must be unique)`},
	{name: "two nodes with one address", old: "[198.51.100.22]", new: "[198.51.100.11]",
		want: "nodes[3].addresses[0]: 198.51.100.11 is also an address of nodes[0] (ams-1); two nodes cannot share one"},
	{name: "without a service the plan lacks", old: "without: [openvpn_ed25519]", new: "without: [openvpn_ed448]",
		want: `nodes[2].without[0]: "openvpn_ed448" is not a service of the plan (plan.services)`},
	{name: "services in overrides", old: "haproxy: {maxconn: 16384}", new: "services: []",
		want: "nodes[1].overrides.services: unknown key (allowed here: firewall, striped, reserved, haproxy, defaults)"},
	{name: "a label value with a space", old: "region: eu-central, provider: p2", new: "region: 'eu central'",
		want: `nodes[3].labels.region: "eu central" is not a label value (1-63 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)`},
	{name: "no fleet name", old: "name: eu\n", new: "",
		want: "name: required: the fleet's name (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)"},
}

// TestBadInputFleet: fleet compile (into a directory holding a previous
// compile) and fleet publish refuse every bad fleet file with exit 2 and
// the one line, writing nothing; publish refuses before it dials the store
// (none listens on the address given).
func TestBadInputFleet(t *testing.T) {
	prev := t.TempDir()
	good := filepath.Join(prev, "fleet.yaml")
	if err := os.WriteFile(good, fixtures.Fleet, 0o644); err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(prev, "out")
	if code, _, errOut := portstripe(t, "fleet", "compile", "-f", good, "--out", out); code != 0 {
		t.Fatalf("compile the example fleet: %s", errOut)
	}
	before := testenv.Snapshot(t, out)
	for _, b := range badFleets {
		t.Run(b.name, func(t *testing.T) {
			if !strings.Contains(string(fixtures.Fleet), b.old) {
				t.Fatalf("fixtures/fleet/eu.yaml has no %q", b.old)
			}
			path := filepath.Join(t.TempDir(), "fleet.yaml")
			if err := os.WriteFile(path, []byte(strings.Replace(string(fixtures.Fleet), b.old, b.new, 1)), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, args := range [][]string{
				{"fleet", "compile", "-f", path, "--out", out},
				{"fleet", "publish", "-f", path, "--store", "etcd://127.0.0.1:9"},
			} {
				code, stdout, errOut := portstripe(t, args...)
				if code != exitInput || strings.TrimSuffix(errOut, "\n") != "portstripe: "+b.want || stdout != "" {
					t.Errorf("%s: exit %d, stdout %q, stderr %q\nwant exit 2 and portstripe: %s", args[1], code, stdout, errOut, b.want)
				}
			}
		})
	}
	if testenv.Snapshot(t, out) != before {
		t.Error("a refused fleet compile changed the output directory")
	}
}

func TestFleetCompileWritesEveryNode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "fleet.yaml")
	if err := os.WriteFile(path, fixtures.Fleet, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := portstripe(t, "fleet", "compile", "-f", path, "--out", filepath.Join(dir, "out"))
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, n := range []string{"ams-1", "ams-2", "fra-1", "fra-2"} {
		if !strings.Contains(out, "\n"+n+" ") {
			t.Errorf("no line for %s in:\n%s", n, out)
		}
		for _, f := range []string{"node.yaml", "haproxy.cfg", "rules.v4", "plan.json"} {
			if _, err := os.Stat(filepath.Join(dir, "out", n, f)); err != nil {
				t.Error(err)
			}
		}
	}
	// The node file written is one compile takes alone, and it compiles
	// to the same haproxy.cfg but for the source named in the header.
	code, _, errOut = portstripe(t, "compile", "-c", filepath.Join(dir, "out", "fra-1", "node.yaml"), "-o", filepath.Join(dir, "alone"))
	if code != 0 {
		t.Fatalf("compile fra-1's node.yaml alone: %s", errOut)
	}
	fleetCfg, _ := os.ReadFile(filepath.Join(dir, "out", "fra-1", "haproxy.cfg"))
	aloneCfg, _ := os.ReadFile(filepath.Join(dir, "alone", "haproxy.cfg"))
	if !strings.Contains(string(fleetCfg), "# source: fleet:eu/fra-1\n") {
		t.Errorf("fra-1's haproxy.cfg does not name its source fleet:eu/fra-1")
	}
	if a, b := withoutSource(fleetCfg), withoutSource(aloneCfg); a != b {
		t.Errorf("fra-1's haproxy.cfg from the fleet and from its node file alone differ beyond the source line:\n%s", textdiff.Unified(a, b))
	}
	code, out, _ = portstripe(t, "fleet", "explain", "fra-1", "-f", path)
	if code != 0 || !strings.Contains(out, "nodes[2].without[0] (openvpn_ed25519)") || !strings.Contains(out, "ssh") {
		t.Errorf("fleet explain fra-1: exit %d\n%s", code, out)
	}
	if code, _, errOut := portstripe(t, "fleet", "explain", "nope", "-f", path); code != exitInput || !strings.Contains(errOut, `no node "nope" (nodes: ams-1, ams-2, fra-1, fra-2)`) {
		t.Errorf("fleet explain of an unknown node: exit %d, %s", code, errOut)
	}
}

func withoutSource(cfg []byte) string {
	var keep []string
	for _, l := range strings.Split(string(cfg), "\n") {
		if !strings.HasPrefix(l, "# source: ") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestFleetStatusJSON: a fleet published to a real etcd, its first rollout
// aborted at the canary (no agent answers), and an agent reporting for a
// node: fleet status says so, and its document is the golden one.
func TestFleetStatusJSON(t *testing.T) {
	cl := etcdtest.Start(t, etcdtest.Options{})
	url := cl.StoreURL()
	if code, out, errOut := portstripe(t, "fleet", "publish", "-f", "../../fixtures/fleet/eu.yaml", "--store", url); code != 0 || !strings.HasPrefix(out, "published generation 1 of fleet eu: 4 nodes") {
		t.Fatalf("publish: exit %d, %s%s", code, out, errOut)
	}
	code, out, errOut := portstripe(t, "fleet", "rollout", "--store", url, "--fleet", "eu", "--soak", "0s", "--ack-timeout", "500ms", "--poll", "50ms")
	if code != exitFailure || !strings.Contains(errOut, "rollout aborted: the canary wave: node fra-1 did not ACK within --ack-timeout 500ms") {
		t.Fatalf("rollout without agents: exit %d, want 1 and the canary aborted:\n%s%s", code, out, errOut)
	}
	status, _ := store.Encode(store.Status{Generation: 1, Result: store.ACK, Version: "(devel)", HAProxyUp: true, StoreReachable: true, UpdatedAt: time.Now().UTC()})
	if _, err := cl.Client().Put(context.Background(), store.StatusKey("eu", "ams-1"), status); err != nil {
		t.Fatal(err)
	}
	doc := documents(t, []string{"fleet", "status", "--store", url, "--fleet", "eu"}, 0, strings.NewReplacer())
	doc = regexp.MustCompile(`"20\d\d-\d\d-\d\dT[0-9:.]+Z"`).ReplaceAll(doc, []byte(`"2026-12-01T21:00:00Z"`))
	doc = regexp.MustCompile(`("start_revision": )\d+`).ReplaceAll(doc, []byte(`${1}7`))
	golden.Check(t, filepath.Join(jsonGoldenDir, "fleet-status.json"), doc)
	code, text, _ := portstripe(t, "fleet", "status", "--store", url, "--fleet", "eu")
	if code != 0 || !strings.Contains(text, "rollout of generation 1: aborted") || !strings.Contains(text, "MISSING (4)") {
		t.Errorf("fleet status: exit %d\n%s", code, text)
	}
	if code, _, errOut := portstripe(t, "fleet", "rollout", "--store", url, "--fleet", "eu", "--generation", "1"); code != exitFailure || !strings.Contains(errOut, "generation 1 is bad") {
		t.Errorf("rolling out the bad generation again: exit %d: %s", code, errOut)
	}
}

func TestFleetDiff(t *testing.T) {
	dir := t.TempDir()
	old := filepath.Join(dir, "old.yaml")
	edited := filepath.Join(dir, "new.yaml")
	text := strings.Replace(string(fixtures.Fleet), "maxconn: 16384", "maxconn: 8192", 1)
	text = strings.Replace(text, "  - name: fra-2\n", "  - name: fra-3\n", 1)
	text = strings.Replace(text, "region: eu-west, provider: p1", "region: eu-north, provider: p1", 1)
	for path, data := range map[string]string{old: string(fixtures.Fleet), edited: text} {
		if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	code, out, errOut := portstripe(t, "fleet", "diff", "-f", edited, "--against", old)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	for _, want := range []string{
		"1 changed, 1 added, 1 removed, 2 unchanged", // ams-1's label changes no node file
		"changed ams-2 (haproxy.cfg or rules change)", "added fra-3", "removed fra-2",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("fleet diff does not say %q:\n%s", want, out)
		}
	}
	if !regexp.MustCompile(`(?m)^- +\d+   maxconn: 16384$`).MatchString(out) || !regexp.MustCompile(`(?m)^\+ +\d+   maxconn: 8192$`).MatchString(out) {
		t.Errorf("fleet diff does not show ams-2's maxconn line, old and new:\n%s", out)
	}
	if code, _, errOut := portstripe(t, "fleet", "diff", "-f", edited, "--against", old, "--store", "etcd://127.0.0.1:9"); code != exitInput || !strings.Contains(errOut, "give one of them") {
		t.Errorf("--against with --store: exit %d, %s", code, errOut)
	}
}

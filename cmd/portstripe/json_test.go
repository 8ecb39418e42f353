package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/supervisor"
)

// jsonGoldenDir holds one golden -o json document per command line below;
// docs/json.md is generated from them (TestJSONDoc).
const jsonGoldenDir = "testdata/json"

const sshTLSNode = "../../fixtures/ssh-tls-node.yaml"

// jsonCases are command lines whose documents are kept as golden files:
// explain and route on the built-in seed node, the SSH/TLS node and the
// dual-stack node, a status with nothing applied (TestStatusJSON adds a live one).
var jsonCases = []struct {
	name string
	args []string
	code int
}{
	{"explain-seed", []string{"explain"}, 0},
	// An override whose value reads as a number in YAML: -o yaml quotes it.
	{"explain-ssh-tls", []string{"explain", "-c", sshTLSNode, "--set", "haproxy.inspect_delay=2s", "--set", "haproxy.maxconn=5000"}, 0},
	{"route-seed-udp", []string{"route", "--proto", "udp", "--port", "5061", "--client", "openvpn:tls-crypt"}, 0},
	{"route-ssh-tls-tcp", []string{"route", "-c", sshTLSNode, "--proto", "tcp", "--port", "443", "--client", "tls:www.example.org"}, 0},
	{"route-seed-reserved", []string{"route", "--proto", "tcp", "--port", "30000", "--payload-hex", ""}, 0},
	{"status-nothing-applied", []string{"status", "--dir", "$DIR"}, exitFailure},
	// Over IPv6: the node's IPv6 address, and what iptables cannot see.
	{"explain-dual-stack", []string{"explain", "-c", dualStackNode}, 0},
	{"route-dual-stack-udp6", []string{"route", "-c", dualStackNode, "--proto", "udp6", "--port", "443", "--client", "openvpn:tls-auth:SHA512"}, 0},
	{"fleet-compile", []string{"fleet", "compile", "-f", "../../fixtures/fleet/eu.yaml"}, 0},
}

const dualStackNode = "../../fixtures/dual-stack-node.yaml"

// TestJSONGolden: every document is what its golden file holds, names its
// schema, and -o yaml says the same as -o json.
func TestJSONGolden(t *testing.T) {
	for _, tc := range jsonCases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := make([]string, len(tc.args))
			for i, a := range tc.args {
				args[i] = strings.ReplaceAll(a, "$DIR", dir)
			}
			doc := documents(t, args, tc.code, strings.NewReplacer(dir, "/var/lib/portstripe", "../../fixtures/", "fixtures/"))
			golden.Check(t, filepath.Join(jsonGoldenDir, tc.name+".json"), doc)
		})
	}
}

// TestStatusJSON: status of a node applied in a network namespace of its
// own (the seed node's rules loaded into the kernel, HAProxy's master and
// worker sockets answering as HAProxy 2.6 does) is the golden document,
// with no problem and no drift, and its text the golden text.
func TestStatusJSON(t *testing.T) {
	if !testenv.Self(t, "iptables-restore", "iptables-save") {
		return
	}
	run, state := liveSeed(t)
	doc := documents(t, []string{"status", "--dir", state}, 0, strings.NewReplacer(run, "/run/portstripe", state, "/var/lib/portstripe"))
	// The overrides name the test's temporary directories: their hash
	// varies from run to run.
	doc = regexp.MustCompile(`("settings_sha256": )"[0-9a-f]{64}"`).ReplaceAll(doc, []byte(`$1"`+strings.Repeat("5e", 32)+`"`))
	golden.Check(t, filepath.Join(jsonGoldenDir, "status-live.json"), doc)
	// The text says the same, for people.
	code, text, errOut := portstripe(t, "status", "--dir", state)
	if code != 0 {
		t.Fatalf("status: exit %d: %s", code, errOut)
	}
	text = regexp.MustCompile(`settings sha256 [0-9a-f]{12}`).ReplaceAllString(text, "settings sha256 5e5e5e5e5e5e")
	golden.Check(t, "testdata/status-live.txt", []byte(strings.NewReplacer(run, "/run/portstripe").Replace(text)))
}

// liveSeed applies the seed node in this (test's own) network namespace,
// as far as a test can without HAProxy: its rules loaded into the kernel,
// its state directory written, fakeHAProxy answering on its sockets.
func liveSeed(t *testing.T) (run, state string) {
	t.Helper()
	run, state = appliedWithSockets(t)
	applied, err := supervisor.LoadApplied(state)
	if err != nil {
		t.Fatal(err)
	}
	rules, err := iptables.New(iptables.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := rules.Apply(context.Background(), applied.Files[compiler.RulesFile]); err != nil {
		t.Fatal(err)
	}
	fakeHAProxy(t, run, applied)
	return run, state
}

// documents runs a command line with -o json and -o yaml, checks the exit
// code, the schema and that both formats hold the same document, and
// returns the JSON with the temporary paths in it replaced by names.
func documents(t *testing.T, args []string, code int, names *strings.Replacer) []byte {
	t.Helper()
	got, out, errOut := portstripe(t, append(args, "-o", "json")...)
	if got != code {
		t.Fatalf("%v -o json: exit %d, want %d: %s", args, got, code, errOut)
	}
	var fromJSON map[string]any
	if err := json.Unmarshal([]byte(out), &fromJSON); err != nil {
		t.Fatalf("%v -o json: %v in %s", args, err, out)
	}
	want := schema(args[0])
	switch args[0] {
	case "apply":
		want = supervisor.PlanSchema // apply's document is a plan, as a saved plan file is
	case "fleet":
		want = schema("fleet-" + args[1])
	}
	if fromJSON["schema"] != want {
		t.Errorf("%v -o json: schema %v, want %s", args, fromJSON["schema"], want)
	}
	_, yout, _ := portstripe(t, append(args, "-o", "yaml")...)
	var fromYAML any
	if err := yaml.Unmarshal([]byte(yout), &fromYAML); err != nil {
		t.Fatalf("%v -o yaml: %v in %s", args, err, yout)
	}
	// Through JSON, so numbers compare as JSON reads them.
	b, err := json.Marshal(fromYAML)
	if err != nil {
		t.Fatal(err)
	}
	var yamlAsJSON map[string]any
	if err := json.Unmarshal(b, &yamlAsJSON); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(yamlAsJSON, fromJSON) {
		t.Errorf("%v: -o yaml and -o json differ:\n%s\n%s", args, yout, out)
	}
	return []byte(names.Replace(out))
}

// fakeHAProxy answers on the node's master and worker sockets (under run)
// what HAProxy 2.6 says when it runs the applied configuration: a master
// and one worker, the worker's config hash, and the frontends, backends
// and servers of the plan with a few sessions.
func fakeHAProxy(t *testing.T, run string, applied *compiler.Result) {
	t.Helper()
	p := applied.Plan
	procs := "#<PID>          <type>          <reloads>       <uptime>        <version>\n" +
		"4100            master          1 [failed: 0]   0d02h03m04s     2.6.12-1+deb12u4\n" +
		"# workers\n" +
		"4213            worker          0               0d01h00m05s     2.6.12-1+deb12u4\n" +
		"# old workers\n# programs\n\n"
	info := fmt.Sprintf("Name: HAProxy\nVersion: 2.6.12-1+deb12u4\nPid: 4213\nUptime_sec: 3605\nCurrConns: 3\nStopping: 0\ndescription: %s\n",
		descriptionOf(t, applied.Files[compiler.HAProxyFile]))
	stat := "# pxname,svname,scur,smax,stot,bin,bout,dreq,status,type,addr\n"
	for _, l := range p.Lists {
		if l.Frontend != nil {
			stat += l.Frontend.Name + ",FRONTEND,3,17,1204,90210,1234567,12,OPEN,0,\n"
		}
	}
	for i, b := range p.Backends {
		stat += fmt.Sprintf("%s,BACKEND,%d,%d,%d,%d,%d,0,UP,1,\n", b.Service, i, 4+i, 300+i, 1000*i, 2000*i)
		stat += fmt.Sprintf("%s,%s,%d,%d,%d,%d,%d,0,UP,2,%s\n", b.Service, b.Service, i, 4+i, 300+i, 1000*i, 2000*i, b.Addr)
	}
	// The master routes "@!<pid> …" to that worker: status sums every
	// live worker's stats.
	answers := map[string]string{"show proc": procs, "show info": info, "show stat": stat, "@!4213 show info": info, "@!4213 show stat": stat}
	for _, name := range []string{p.HAProxy.MasterSocket, p.HAProxy.RuntimeSocket} {
		ln, err := net.Listen("unix", name)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				go func() {
					defer c.Close()
					buf := make([]byte, 512)
					n, _ := c.Read(buf)
					c.Write([]byte(answers[strings.TrimSpace(string(buf[:n]))]))
				}()
			}
		}()
	}
}

// descriptionOf is the global description of an emitted haproxy.cfg,
// which carries its config hash.
func descriptionOf(t *testing.T, cfg []byte) string {
	t.Helper()
	for _, l := range strings.Split(string(cfg), "\n") {
		if d, ok := strings.CutPrefix(strings.TrimSpace(l), "description "); ok && haproxy.HashOf(d) != "" {
			return d
		}
	}
	t.Fatal("haproxy.cfg has no description with the config hash")
	return ""
}

func readGolden(t *testing.T, name string) map[string]any {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(jsonGoldenDir, name+".json"))
	if err != nil {
		t.Fatalf("%v (go test -run 'TestJSONGolden|TestStatusJSON' -update writes it)", err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b, &doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

//go:build e2e

package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/testbed"
)

// TestPlan: apply --dry-run as a reviewer and a script use it on a real
// node: the plan in rules.v4's words, --detailed-exitcode 0/2, -o json, and
// saved plans that apply exactly what was reviewed, or refuse once the
// machine drifted.
func TestPlan(t *testing.T) {
	b := newEchoBed(t)
	node, client, stateDir, nodePath := b.node, b.client, b.stateDir, b.nodePath
	apply := func(extra ...string) (string, error) {
		return livePortstripe(node, append([]string{"apply", "--dir", stateDir}, extra...)...)
	}
	natBefore := natRules(t, node)

	t.Run("first-install", func(t *testing.T) {
		out, err := apply("-c", nodePath, "--dry-run", "--detailed-exitcode")
		t.Logf("dry run on a fresh node:\n%s", strings.TrimSpace(out))
		if code := testbed.ExitCode(err); code != 2 {
			t.Fatalf("dry run on a fresh node: exit %d, want 2 (changes pending)", code)
		}
		for _, want := range []string{
			"(no portstripe rule is installed)", "+ chain nat PORTSTRIPE-TCP",
			`--comment "tcp 1000-2000: frontend fe_striped"`, // rules.v4's words, not iptables-save's
			"+ iptables -t nat -I PREROUTING", "+ frontend fe_striped", "HAProxy: start (",
			"\nPlan: ", " to add, 0 to change, 0 to remove; 3 state file(s) to write; HAProxy: start (",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("plan does not say %q", want)
			}
		}
		if got := natRules(t, node); got != natBefore {
			t.Errorf("a dry run changed the nat table:\n%s", got)
		}
		if _, err := os.Stat(stateDir); err == nil {
			if entries, _ := os.ReadDir(stateDir); len(entries) > 0 {
				t.Errorf("a dry run wrote %d files into the state directory", len(entries))
			}
		}
	})

	if out, err := apply("-c", nodePath); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	echoWorks(t, client, 1001, "apply")

	t.Run("no-changes", func(t *testing.T) {
		out, err := apply("-c", nodePath, "--dry-run", "--detailed-exitcode")
		if code := testbed.ExitCode(err); code != 0 || strings.TrimSpace(out) != "No changes: the machine matches the node file." {
			t.Errorf("dry run on the applied node: exit %d, want 0 and no changes:\n%s", code, out)
		}
		js, err := node.Command(cliPath, "apply", "--dir", stateDir, "-c", nodePath, "--dry-run", "-o", "json").Output()
		var p struct {
			Schema    string `json:"schema"`
			NoChanges bool   `json:"no_changes"`
			Observed  struct {
				HAProxyAlive bool `json:"haproxy_alive"`
			} `json:"observed"`
		}
		if err != nil || json.Unmarshal(js, &p) != nil || p.Schema != "portstripe.plan/v2" || !p.NoChanges || !p.Observed.HAProxyAlive {
			t.Errorf("-o json: %v, %+v:\n%s", err, p, js)
		}
	})

	// A chain flushed behind portstripe's back is no rules.v4 it knows: the
	// plan says so and shows the rule to put back in iptables-save's form.
	t.Run("kernel-edited", func(t *testing.T) {
		if _, err := node.Run("iptables", "-t", "nat", "-F", "PORTSTRIPE-TCP"); err != nil {
			t.Fatal(err)
		}
		out, err := apply("-c", nodePath, "--dry-run", "--detailed-exitcode")
		t.Logf("dry run after a flushed chain:\n%s", strings.TrimSpace(out))
		for _, want := range []string{
			"changed outside portstripe: diff as iptables shows them", "~ chain nat PORTSTRIPE-TCP",
			"+ 1  -A PORTSTRIPE-TCP -p tcp -m tcp --dport 1000:2000 -m comment --comment \"tcp 1000-2000: frontend fe_striped\" -j DNAT --to-destination :20000",
			"Plan: 1 to add, 0 to change, 0 to remove; HAProxy: no change",
		} {
			if !strings.Contains(out, want) {
				t.Errorf("plan does not say %q", want)
			}
		}
		if code := testbed.ExitCode(err); code != 2 {
			t.Errorf("exit %d, want 2", code)
		}
		if out, err := apply("-c", nodePath); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
	})

	// A plan for a new inspect delay (a reload), saved, then applied after
	// the node file moved back: the plan's files are applied, not the file.
	slower := liveNode{listenPort: liveListenPort, inspectDelay: "4s", services: []string{svcEcho}}.yaml(b.dir)
	planPath := filepath.Join(b.dir, "node.plan")
	t.Run("saved-plan-applies", func(t *testing.T) {
		liveWriteLikeEditor(t, nodePath, slower)
		out, err := apply("-c", nodePath, "--dry-run", "--detailed-exitcode", "--out", planPath)
		t.Logf("saved plan:\n%s", strings.TrimSpace(out))
		if code := testbed.ExitCode(err); code != 2 || !strings.Contains(out, "HAProxy: reload (frontend fe_striped changed)") {
			t.Fatalf("dry run --out: exit %d, want 2 and a reload for the frontend:\n%s", code, out)
		}
		if st, err := os.Stat(planPath); err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("plan file: %v (mode %v), want 0600", err, st.Mode().Perm())
		}
		liveWriteLikeEditor(t, nodePath, echoNode(b.dir))
		out, err = apply(planPath)
		t.Logf("apply %s:\n%s", planPath, strings.TrimSpace(out))
		if err != nil || !strings.Contains(out, "Applied: ") {
			t.Fatalf("apply of the saved plan: %v\n%s", err, out)
		}
		if cfg := liveReadFile(t, filepath.Join(stateDir, "haproxy.cfg")); !strings.Contains(cfg, "inspect-delay 4s") {
			t.Error("the saved plan's haproxy.cfg (inspect-delay 4s) is not what was applied")
		}
		echoWorks(t, client, 1002, "saved plan")
		if out, err := apply("--plan", planPath); err == nil || !strings.Contains(out, "the machine changed since the plan was made: ") {
			t.Errorf("the same plan applied twice: %v, want it refused (the state files moved):\n%s", err, out)
		}
	})

	for _, d := range []struct {
		name, want string
		do         []string
	}{
		{"deleted-jump", "jumps differ", []string{"iptables", "-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment", "portstripe", "-j", "PORTSTRIPE"}},
		{"nft-flush-ruleset", "rules, jumps differ", []string{"nft", "flush", "ruleset"}},
	} {
		t.Run("refused-after-"+d.name, func(t *testing.T) {
			if out, err := apply("-c", nodePath); err != nil {
				t.Fatalf("apply: %v\n%s", err, out)
			}
			liveWriteLikeEditor(t, nodePath, slower)
			if out, err := apply("-c", nodePath, "--dry-run", "--out", planPath); err != nil {
				t.Fatalf("dry run --out: %v\n%s", err, out)
			}
			if _, err := node.Run(d.do[0], d.do[1:]...); err != nil {
				t.Fatal(err)
			}
			nat, cfg := natRules(t, node), liveReadFile(t, filepath.Join(stateDir, "haproxy.cfg"))
			out, err := apply(planPath)
			want := "portstripe: the machine changed since the plan was made: " + d.want + "; make a new plan\n"
			if code := testbed.ExitCode(err); code != 1 || out != want {
				t.Errorf("apply of a plan after %s: exit %d, want 1 and %q; got:\n%s", d.name, code, want, out)
			}
			if natRules(t, node) != nat || liveReadFile(t, filepath.Join(stateDir, "haproxy.cfg")) != cfg {
				t.Error("a refused plan changed the rules or the state files")
			}
			liveWriteLikeEditor(t, nodePath, echoNode(b.dir))
		})
	}

	t.Run("not-a-plan", func(t *testing.T) {
		out, err := apply(nodePath)
		if code := testbed.ExitCode(err); code != 2 || !strings.Contains(out, "is not a portstripe plan") || strings.Count(out, "\n") != 1 {
			t.Errorf("apply of a node file as a plan: exit %d, want 2 and one line saying it is not a plan:\n%s", code, out)
		}
	})
}

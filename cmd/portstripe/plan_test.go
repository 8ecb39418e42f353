package main

import (
	"bytes"
	"encoding/json"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/supervisor"
)

// TestPlanText: apply --dry-run prints the plan supervisor's golden JSON
// holds (a port range narrowed, a service added) the way a reviewer reads
// it; the summary is the last line.
func TestPlanText(t *testing.T) {
	data, err := os.ReadFile("../../fixtures/golden/apply-plan/plan.json")
	if err != nil {
		t.Fatal(err)
	}
	var p supervisor.ApplyPlan
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printPlan(&out, &p)
	golden.Check(t, "../../fixtures/golden/apply-plan/plan.txt", out.Bytes())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; last != p.Summary {
		t.Errorf("last line %q, want the summary %q", last, p.Summary)
	}
}

func TestPlanTextNoChanges(t *testing.T) {
	var out bytes.Buffer
	printPlan(&out, &supervisor.ApplyPlan{NoChanges: true, Summary: "No changes: the machine matches the node file."})
	if out.String() != "No changes: the machine matches the node file.\n" {
		t.Errorf("got %q", out.String())
	}
}

// TestCompileUnchangedLeavesFiles: compiling the same node again rewrites
// nothing (the files and their NAME.prev stay as they were, inode and all)
// and says so; a change rewrites only the files that changed.
func TestCompileUnchangedLeavesFiles(t *testing.T) {
	dir, out := t.TempDir(), t.TempDir()
	nodeFile := filepath.Join(dir, "node.yaml")
	node := "name: t\naddresses: [198.51.100.2]\nservices:\n  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}\n"
	write := func(s string) {
		if err := os.WriteFile(nodeFile, []byte(s), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	compile := func() string {
		t.Helper()
		code, stdout, stderr := portstripe(t, "compile", "-c", nodeFile, "-o", out)
		if code != 0 {
			t.Fatalf("compile: exit %d: %s", code, stderr)
		}
		return stdout
	}
	type version struct {
		ino  uint64
		data string
	}
	state := func() map[string]version {
		m := map[string]version{}
		entries, _ := os.ReadDir(out)
		for _, e := range entries {
			st, err := os.Stat(filepath.Join(out, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			data, _ := os.ReadFile(filepath.Join(out, e.Name()))
			m[e.Name()] = version{st.Sys().(*syscall.Stat_t).Ino, string(data)}
		}
		return m
	}
	write(node)
	compile()
	write(node + "  - {name: web, kind: tls, tcp: 127.0.0.1:8443}\n")
	compile()
	before := state()
	if _, ok := before["haproxy.cfg.prev"]; !ok {
		t.Fatalf("no haproxy.cfg.prev after a changed compile: %v", before)
	}
	stdout := compile()
	for _, n := range []string{"haproxy.cfg", "plan.json", "rules.v4"} {
		if want := "unchanged: " + filepath.Join(out, n) + "\n"; !strings.Contains(stdout, want) {
			t.Errorf("output %q, want %q", stdout, want)
		}
	}
	if after := state(); !maps.Equal(before, after) {
		t.Errorf("an unchanged compile touched files:\nbefore %v\nafter  %v", before, after)
	}

	// Every emitted file carries the node's sha256, so any edit of the node
	// changes all three; a file edited by hand is rewritten alone.
	if err := os.WriteFile(filepath.Join(out, "rules.v4"), []byte("edited\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	stdout = compile()
	if !strings.Contains(stdout, "wrote "+filepath.Join(out, "rules.v4")) || !strings.Contains(stdout, "unchanged: "+filepath.Join(out, "haproxy.cfg")) {
		t.Errorf("output %q: want rules.v4 rewritten and haproxy.cfg unchanged", stdout)
	}
	if prev, _ := os.ReadFile(filepath.Join(out, "rules.v4.prev")); string(prev) != "edited\n" {
		t.Errorf("rules.v4.prev = %q, want the version it replaced", prev)
	}
	if after := state(); after["haproxy.cfg.prev"] != before["haproxy.cfg.prev"] {
		t.Error("haproxy.cfg.prev changed though haproxy.cfg did not")
	}
}

// TestApplyPlanRefusals: flags that do not go together, and a PLANFILE
// that is no plan (a node file, a named pipe that must not hang), are exit
// 2 with one line, before anything is observed or touched.
func TestApplyPlanRefusals(t *testing.T) {
	dir := t.TempDir()
	nodeFile := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(nodeFile, []byte("name: t\naddresses: [198.51.100.2]\nservices:\n  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	for _, tt := range []struct {
		args []string
		want string
	}{
		{[]string{"-c", nodeFile, "--detailed-exitcode"}, "--detailed-exitcode goes with --dry-run"},
		{[]string{"-c", nodeFile, "--out", filepath.Join(dir, "p")}, "--out goes with --dry-run"},
		{[]string{"-c", nodeFile, "--dry-run", "-o", "xml"}, `"xml" for "-o, --output" flag: want text, json or yaml`},
		{[]string{"--dry-run", nodeFile}, "a saved plan is applied, not planned again"},
		{[]string{"-c", nodeFile, nodeFile}, "a saved plan carries its compiled files"},
		{[]string{"--plan", fifo, nodeFile}, "two saved plans"},
		{[]string{nodeFile}, nodeFile + " is not a portstripe plan"},
		{[]string{"--plan", fifo}, fifo + " is a named pipe (FIFO), not a regular file"},
		{[]string{nodeFile, fifo}, "accepts at most 1 arg(s)"},
	} {
		code, _, stderr := portstripe(t, append([]string{"apply", "--dir", state}, tt.args...)...)
		if code != exitInput || !strings.Contains(stderr, tt.want) || strings.Count(stderr, "\n") != 1 {
			t.Errorf("apply %v: exit %d, %q; want %d and one line with %q", tt.args, code, stderr, exitInput, tt.want)
		}
	}
	if _, err := os.Stat(state); err == nil {
		t.Error("a refused apply made its state directory")
	}
}

// TestApplyPlanJSON: apply --dry-run -o json on a node applied in a
// network namespace of its own (the seed's rules in the kernel, HAProxy's
// sockets answering as HAProxy 2.6 does), for the seed with its striped TCP
// ports narrowed, is the golden plan document: a rule changed in place, a
// reload naming frontend fe_striped, the fingerprint of what it observed.
func TestApplyPlanJSON(t *testing.T) {
	if !testenv.Self(t, "iptables-restore", "iptables-save") {
		return
	}
	run, state := liveSeed(t)
	args := []string{"apply", "-c", "../../fixtures/seed-node.yaml", "--dir", state, "--dry-run", "--set", "haproxy.run_dir=" + run,
		"--set", "haproxy.master_socket=" + run + "/m.sock", "--set", "haproxy.runtime_socket=" + run + "/api.sock",
		"--set", "striped.tcp[0]=1-20000"}
	doc := documents(t, args, 0, strings.NewReplacer(run, "/run/portstripe", state, "/var/lib/portstripe", "../../fixtures/", "fixtures/"))
	// The state files and the config hash carry the test's temporary
	// directories: their hashes vary from run to run.
	doc = regexp.MustCompile(`"[0-9a-f]{64}"`).ReplaceAll(doc, []byte(`"`+strings.Repeat("5e", 32)+`"`))
	golden.Check(t, filepath.Join(jsonGoldenDir, "apply-plan-live.json"), doc)
	var p supervisor.ApplyPlan
	if err := json.Unmarshal(doc, &p); err != nil {
		t.Fatal(err)
	}
	if p.Rules.From != "state_dir" || p.ToChange != 1 || p.HAProxy.Action != "reload" || p.HAProxy.Reason != "frontend fe_striped changed" {
		t.Errorf("plan %s: want one rule changed in rules.v4's words and a reload for frontend fe_striped", p.Summary)
	}
}

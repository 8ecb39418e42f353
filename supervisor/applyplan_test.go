package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/node"
)

// withWeb adds a TCP service: a new backend, a new rule in the TCP list's
// frontend and so a reload.
const withWeb = testNode + "  - {name: web, kind: tls, tcp: 127.0.0.1:8443}\n"

// narrowed changes the striped TCP range: the rules covering it change in
// place.
var narrowed = testNode + "striped: {tcp: [\"1-20000\"]}\n"

func preview(t *testing.T, a *Applier, yaml string) *ApplyPlan {
	t.Helper()
	p, err := a.Preview(context.Background(), compile(t, yaml))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPlanFirstApply: on a machine portstripe never ran on, everything is
// added, from rules.v4 itself, and HAProxy is started.
func TestPlanFirstApply(t *testing.T) {
	a, _, _ := newApplier(t)
	p := preview(t, a, testNode)
	if p.Rules.From != "none" || len(p.Rules.Chains) == 0 {
		t.Fatalf("rules %+v, want every chain added from rules.v4", p.Rules)
	}
	for _, ch := range p.Rules.Chains {
		if ch.Action != "add" {
			t.Errorf("chain %s: %s, want add", ch.Chain, ch.Action)
		}
	}
	if p.ToChange != 0 || p.ToRemove != 0 || p.HAProxy.Action != "start" || p.HAProxy.Running != "none" || len(p.Files) != 3 {
		t.Errorf("plan %+v; want only additions, 3 files and a start", p)
	}
	if !strings.HasPrefix(p.Summary, "Plan: ") || !strings.Contains(p.Summary, "0 to change, 0 to remove; 3 state file(s) to write; HAProxy: start (no haproxy master answers") {
		t.Errorf("summary %q", p.Summary)
	}
	// Two jumps plus every rule of rules.v4.
	rules := strings.Count(string(compile(t, testNode).Files[compiler.RulesFile]), "\n-A ")
	if p.ToAdd != rules+2 || len(p.Jumps) != 2 {
		t.Errorf("to add %d (jumps %v), want %d rules and 2 jumps", p.ToAdd, p.Jumps, rules)
	}
}

// TestPlanReadsLikeRulesV4: a changed port range shows as rules changed in
// place, in the chain's order, in rules.v4's words (comments naming the
// service and range), and the reload names the HAProxy section.
func TestPlanReadsLikeRulesV4(t *testing.T) {
	a, _, _ := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	p := preview(t, a, narrowed)
	if p.Rules.From != "state_dir" {
		t.Fatalf("rules from %q, want the rendered rules.v4", p.Rules.From)
	}
	var changed []RuleChange
	for _, ch := range p.Rules.Chains {
		last := 0
		for _, r := range ch.Rules {
			if r.Position < last {
				t.Errorf("chain %s: rule at %d after %d, want evaluation order", ch.Chain, r.Position, last)
			}
			last = r.Position
			if r.Action == "change" {
				changed = append(changed, r)
			}
		}
	}
	if len(changed) == 0 || p.ToChange != len(changed) {
		t.Fatalf("plan %+v: want rules changed in place, counted", p.Rules)
	}
	for _, r := range changed {
		if !strings.Contains(r.Old, `--comment "`) || !strings.Contains(r.New, "1-20000") {
			t.Errorf("change %+v: want rules.v4's lines with their comments, the new range in the new one", r)
		}
	}
	if p.HAProxy.Action != "reload" || p.HAProxy.Running != "state_dir" || !strings.Contains(p.HAProxy.Reason, "frontend fe_striped changed") {
		t.Errorf("haproxy %+v; want a reload naming frontend fe_striped", p.HAProxy)
	}
	if !strings.Contains(p.Summary, "; HAProxy: reload (frontend fe_striped changed)") {
		t.Errorf("summary %q", p.Summary)
	}
}

// TestPlanGolden keeps the plan's JSON (apply --dry-run -o json) stable;
// cmd/portstripe prints the same file as text.
func TestPlanGolden(t *testing.T) {
	a, _, _ := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	p := preview(t, a, withWeb+"striped: {tcp: [\"1-20000\"]}\n")
	p.Dir = "/var/lib/portstripe" // the test's temporary directory varies
	got, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	golden.Check(t, "../fixtures/golden/apply-plan/plan.json", append(got, '\n'))
	if p.HAProxy.Reason != "frontend fe_striped changed, backend web added" || len(p.HAProxy.Sections) != 2 {
		t.Errorf("haproxy %+v, want the new backend named", p.HAProxy)
	}
}

func TestPlanNoChanges(t *testing.T) {
	a, _, _ := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	if p := preview(t, a, testNode); !p.NoChanges || p.Summary != "No changes: the machine matches the node file." {
		t.Errorf("plan %+v, want no changes", p)
	}
}

// TestPlanKernelEdited: rules changed in the kernel behind portstripe's
// back match no rendered file; the diff is then in the kernel's form, and
// says so.
func TestPlanKernelEdited(t *testing.T) {
	a, rules, _ := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(rules.installed), "\n")
	for i, l := range lines {
		if strings.HasPrefix(l, "-A PORTSTRIPE-TCP") {
			lines = append(lines[:i], lines[i+1:]...)
			break
		}
	}
	rules.installed = []byte(strings.Join(lines, "\n"))
	p := preview(t, a, testNode)
	if p.Rules.From != "kernel" || p.ToAdd != 1 || p.ToRemove != 0 || p.Rules.Chains[0].Chain != "PORTSTRIPE-TCP" {
		t.Errorf("plan %+v; want one rule added back to PORTSTRIPE-TCP, from the kernel's form", p.Rules)
	}
}

// TestPlanRunningConfigUnknown: a worker on a configuration that is not
// the state directory's gets a reload, but no diff pretending to know.
func TestPlanRunningConfigUnknown(t *testing.T) {
	a, _, proxy := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	proxy.running = []byte("global\n    description portstripe-config sha256:0000\n")
	p := preview(t, a, withWeb)
	if p.HAProxy.Action != "reload" || p.HAProxy.Running != "unknown" || len(p.HAProxy.Sections) != 0 {
		t.Errorf("haproxy %+v; want a reload, the running config unknown, no sections", p.HAProxy)
	}
}

// TestSavedPlanApplies: a saved plan applies its own files, even after the
// node file moved on.
func TestSavedPlanApplies(t *testing.T) {
	a, _, proxy := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "node.plan")
	res := compile(t, withWeb)
	p, err := a.Preview(context.Background(), res)
	if err != nil {
		t.Fatal(err)
	}
	if err := WritePlanFile(path, p, res); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("plan file: %v, mode %v; want 0600", err, st.Mode())
	}
	saved, fromFile, err := ReadPlanFile(path)
	if err != nil {
		t.Fatal(err)
	}
	done, err := a.ApplyPlanned(context.Background(), fromFile, &saved.Observed)
	if err != nil {
		t.Fatal(err)
	}
	if !done.Applied || proxy.reloads != 1 || !strings.HasPrefix(done.Summary, "Applied: ") {
		t.Errorf("applied %+v, %d reloads; want the reload the plan said", done, proxy.reloads)
	}
	for n, want := range res.Files {
		if got, _ := os.ReadFile(filepath.Join(a.Dir, n)); string(got) != string(want) {
			t.Errorf("%s is not the plan's", n)
		}
	}
}

// TestSavedPlanRefusesDrift: each kind of drift since the plan was made is
// refused by name, and nothing is touched.
func TestSavedPlanRefusesDrift(t *testing.T) {
	for _, tt := range []struct {
		name  string
		drift func(*fakeRules, *fakeProxy, string)
		want  string
	}{
		{"jump deleted", func(r *fakeRules, _ *fakeProxy, _ string) { r.missing = []string{"PREROUTING"} }, "jumps differ"},
		{"nat flushed", func(r *fakeRules, _ *fakeProxy, _ string) { r.installed = nil }, "rules, jumps differ"},
		{"haproxy killed", func(_ *fakeRules, p *fakeProxy, _ string) { p.alive = false }, "haproxy master, haproxy configuration, haproxy servers differ"},
		{"state file edited", func(_ *fakeRules, _ *fakeProxy, dir string) {
			os.WriteFile(filepath.Join(dir, compiler.PlanFile), []byte("{}"), 0o600)
		}, "state files differ"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			a, rules, proxy := newApplier(t)
			if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
				t.Fatal(err)
			}
			res := compile(t, withWeb)
			p, err := a.Preview(context.Background(), res)
			if err != nil {
				t.Fatal(err)
			}
			tt.drift(rules, proxy, a.Dir)
			applied, reloads, starts := rules.applied, proxy.reloads, proxy.starts
			_, err = a.ApplyPlanned(context.Background(), res, &p.Observed)
			var de DriftError
			if !errors.As(err, &de) || err.Error() != "the machine changed since the plan was made: "+tt.want+"; make a new plan" {
				t.Fatalf("apply: %v, want the drift refused: %s", err, tt.want)
			}
			if rules.applied != applied || proxy.reloads != reloads || proxy.starts != starts {
				t.Error("a refused plan touched the machine")
			}
			if got, _ := os.ReadFile(filepath.Join(a.Dir, compiler.HAProxyFile)); strings.Contains(string(got), "backend web") {
				t.Error("a refused plan wrote its haproxy.cfg")
			}
		})
	}
}

// TestReadPlanFileRefuses: anything but a plan file apply --dry-run --out
// wrote is refused, without hanging on a FIFO or reading a directory.
func TestReadPlanFileRefuses(t *testing.T) {
	dir := t.TempDir()
	write := func(name, s string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(s), 0o600)
		return p
	}
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		write("node.yaml", "name: x\n"):                                           "is not a portstripe plan",
		write("other.json", `{"schema":"other/v1"}`):                              "is not a portstripe plan",
		write("extra.json", `{"schema":"portstripe.plan/v2","bogus":1}`):          "is not a portstripe plan",
		write("empty.json", `{"schema":"portstripe.plan/v2","desired_files":{}}`): "is not a complete portstripe plan",
		fifo: "a named pipe (FIFO), not a regular file",
		dir:  "a directory, not a regular file",
	} {
		if _, _, err := ReadPlanFile(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: %v, want %q", filepath.Base(path), err, want)
		}
	}
}

// BenchmarkPreviewStripedTLS20000: the dry run of one site removed from
// 20,000 SNI sites on the striped ports (a frontend of some 60,000 lines
// diffed, 20,000 backends compared), against fakes: the plan's own cost.
func BenchmarkPreviewStripedTLS20000(b *testing.B) {
	sites := func(skip int) *compiler.Result {
		var y strings.Builder
		y.WriteString("name: sites\naddresses: [198.51.100.2]\nservices:\n")
		for i := range 20000 {
			if i != skip {
				fmt.Fprintf(&y, "  - {name: site%d, kind: tls, tcp: 127.0.0.1:%d, sni: [s%d.example]}\n", i, 1+i%60000, i)
			}
		}
		return compile(b, y.String())
	}
	dir := b.TempDir()
	r, p := &fakeRules{}, &fakeProxy{dir: dir}
	a := &Applier{Dir: dir, Firewalls: map[string]firewall.Backend{node.IPTables: r}, Proxy: p, Log: slog.New(slog.DiscardHandler)}
	if _, err := a.Apply(context.Background(), sites(-1)); err != nil {
		b.Fatal(err)
	}
	next := sites(10000)
	b.ResetTimer()
	for b.Loop() {
		pl, err := a.Preview(context.Background(), next)
		if err != nil {
			b.Fatal(err)
		}
		if pl.HAProxy.Action != "reload" {
			b.Fatalf("haproxy %s, want a reload", pl.HAProxy.Action)
		}
	}
}

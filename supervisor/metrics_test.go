package supervisor

import (
	"strings"
	"testing"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/version"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
)

// TestUDPRuleLabels: every UDP rule rules.v4 carries is named by list and
// service for portstripe_first_packets_total, by the comment the kernel
// reports back, on the seed node (dedicated ports with defaults included).
func TestUDPRuleLabels(t *testing.T) {
	res, err := compiler.Compile(node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	rules := udpRules(res.Plan)
	seen := 0
	for _, line := range strings.Split(string(res.Files[compiler.RulesFile]), "\n") {
		if !strings.HasPrefix(line, "-A "+iptables.ListChainPrefix) {
			continue
		}
		w, err := iptables.SplitArgs(line)
		if err != nil {
			t.Fatal(err)
		}
		comment := ""
		for i := range w {
			if w[i] == "--comment" && i+1 < len(w) {
				comment = w[i+1]
			}
		}
		r, ok := rules[[2]string{w[1], comment}]
		if !ok {
			t.Errorf("no list/service for %s %q", w[1], comment)
			continue
		}
		if r.list == "" || r.service == "" || r.rule == "" {
			t.Errorf("%s %q → %+v, want list, service and rule", w[1], comment, r)
		}
		seen++
	}
	if seen == 0 {
		t.Fatalf("no UDP list rule in the seed node's rules.v4:\n%s", res.Files[compiler.RulesFile])
	}
}

// /metrics says which portstripe serves it, as --version does.
func TestBuildInfoMetric(t *testing.T) {
	mfs, err := NewMetrics(nil).Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := version.Get()
	want := map[string]string{"version": v.Version, "revision": v.Revision, "goversion": v.GoVersion}
	for _, mf := range mfs {
		if mf.GetName() != "portstripe_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("portstripe_build_info: want one gauge of 1, got %v", mf.GetMetric())
		}
		got := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) {
			t.Errorf("portstripe_build_info labels %v, want %v", got, want)
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("portstripe_build_info{%s=%q}, want %q", k, got[k], w)
			}
		}
		return
	}
	t.Fatal("no portstripe_build_info metric")
}

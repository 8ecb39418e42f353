package iptables

import (
	"strings"
	"testing"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// TestUDPRuleLabels: every UDP rule rules.v4 carries is named by list and
// service for portstripe_first_packets_total, by the comment the kernel
// reports back, on the seed node (dedicated ports with defaults included).
func TestUDPRuleLabels(t *testing.T) {
	n, err := node.Load(node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(n)
	if err != nil {
		t.Fatal(err)
	}
	rules, text := udpRules(p), Render(p)
	seen := 0
	for _, line := range strings.Split(string(text), "\n") {
		if !strings.HasPrefix(line, "-A "+ListChainPrefix) {
			continue
		}
		w, err := SplitArgs(line)
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
		if r.List == "" || r.Service == "" || r.Rule == "" {
			t.Errorf("%s %q → %+v, want list, service and rule", w[1], comment, r)
		}
		seen++
	}
	if seen == 0 {
		t.Fatalf("no UDP list rule in the seed node's rules.v4:\n%s", text)
	}
}

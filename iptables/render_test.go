package iptables

import (
	"bytes"
	"fmt"
	"regexp"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/textdiff"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

func seedPlan(t testing.TB) *plan.Plan {
	t.Helper()
	n, err := node.Load(node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(n)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

const seedGolden = "../fixtures/golden/seed/rules.v4"

func TestRenderGolden(t *testing.T) {
	golden.Check(t, seedGolden, Render(seedPlan(t)))
}

func TestRenderDeterministic(t *testing.T) {
	a, b := Render(seedPlan(t)), Render(seedPlan(t))
	if !bytes.Equal(a, b) {
		t.Errorf("two renders of the seed plan differ:\n%s", textdiff.Unified(string(a), string(b)))
	}
}

// TestJumpTargetsDeclared: every -j to a portstripe chain goes to a chain the
// file declares, and every declared chain is in Chains.
func TestJumpTargetsDeclared(t *testing.T) {
	p := seedPlan(t)
	rules := string(Render(p))
	declared := declaredChains([]byte(rules))
	for _, c := range Chains(p) {
		if !declared[c] {
			t.Errorf("Chains lists %s, which the file does not declare", c)
		}
	}
	if len(declared) != len(Chains(p)) {
		t.Errorf("file declares %d chains, Chains lists %d", len(declared), len(Chains(p)))
	}
	jump := regexp.MustCompile(`-j (\S+)`)
	for i, line := range strings.Split(rules, "\n") {
		m := jump.FindStringSubmatch(line)
		if m == nil || m[1] == "DNAT" {
			continue
		}
		if !declared[m[1]] {
			t.Errorf("line %d jumps to undeclared chain %s: %s", i+1, m[1], line)
		}
	}
}

// TestRenderReserved: no rule matches a reserved port; every range has one.
func TestRenderReserved(t *testing.T) {
	p := seedPlan(t)
	rules := string(Render(p))
	for _, m := range regexp.MustCompile(`--dport (\d+)(?::(\d+))?`).FindAllStringSubmatch(rules, -1) {
		r, err := node.ParsePortRange(strings.Replace(m[0][len("--dport "):], ":", "-", 1))
		if err != nil {
			t.Fatal(err)
		}
		for _, res := range p.Node.Reserved {
			if r.Overlaps(res) {
				t.Errorf("rule matches reserved ports: %s", m[0])
			}
		}
	}
	for _, r := range p.Ranges {
		want := fmt.Sprintf("-A PORTSTRIPE-%s -p %s -m %s --dport %s ", strings.ToUpper(string(r.Proto)), r.Proto, r.Proto, dport(r))
		if !strings.Contains(rules, want) {
			t.Errorf("no rule for %s %s (want %q)", r.Proto, r.Ports(), want)
		}
	}
}

// manyRanges is the seed plan with its striped UDP list spread over 200
// ranges, so its comments must be shortened.
func manyRanges(t testing.TB) *plan.Plan {
	p := seedPlan(t)
	var ports node.PortSet
	for i := range 200 {
		ports = append(ports, node.PortRange{From: uint16(100 + 20*i), To: uint16(110 + 20*i)})
	}
	p.Lists[0].Ports = ports
	return p
}

func TestCommentsFit(t *testing.T) {
	rules := string(Render(manyRanges(t)))
	n := 0
	for _, m := range regexp.MustCompile(`--comment "([^"]*)"`).FindAllStringSubmatch(rules, -1) {
		n++
		if len(m[1]) > maxComment {
			t.Errorf("comment of %d bytes: %q", len(m[1]), m[1])
		}
	}
	if !strings.Contains(rules, "more ranges") || n == 0 {
		t.Errorf("long port lists not shortened:\n%s", rules)
	}
}

func TestPortsComment(t *testing.T) {
	var many node.PortSet
	for i := range 100 {
		many = append(many, node.PortRange{From: uint16(1000 + 10*i), To: uint16(1005 + 10*i)})
	}
	tests := []struct {
		name, prefix string
		ports        node.PortSet
		want         string
	}{
		{"short", "x: ", node.PortSet{{From: 1, To: 5060}, {From: 5063, To: 29999}}, "x: 1-5060,5063-29999"},
		{"many", "svc: label on udp ", many, ""},
		{"long prefix", strings.Repeat("a", 300), many, strings.Repeat("a", maxComment)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := portsComment(tt.prefix, tt.ports)
			if len(got) > maxComment {
				t.Errorf("comment is %d bytes, over %d: %q", len(got), maxComment, got)
			}
			if tt.want != "" && got != tt.want {
				t.Errorf("got %q, want %q", got, tt.want)
			}
			if tt.want == "" && !strings.HasSuffix(got, "more ranges") {
				t.Errorf("long list not shortened to \"… and N more ranges\": %q", got)
			}
			if again := portsComment(tt.prefix, tt.ports); again != got {
				t.Errorf("not deterministic: %q then %q", got, again)
			}
		})
	}
	if got := portsComment("p ", many); !strings.HasPrefix(got, "p 1000-1005,1010-1015,") {
		t.Errorf("shortened list does not keep the leading ranges: %q", got)
	}
}

func TestQuote(t *testing.T) {
	tests := []struct{ in, want string }{
		{"plain words", `"plain words"`},
		{`a"b\c`, `"a'b/c"`},
		{"new\nline", `"new line"`},
	}
	for _, tt := range tests {
		if got := quote(tt.in); got != tt.want {
			t.Errorf("quote(%q) = %s, want %s", tt.in, got, tt.want)
		}
	}
}

package iptables

import (
	"bytes"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/testplan"
	"github.com/portstripe/portstripe/internal/textdiff"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

func seedPlan(t testing.TB) *plan.Plan { return nodePlan(t, "") }

// nodePlan plans a node file of the repository ("" is the built-in seed
// node), named as in the haproxy goldens' headers.
var nodePlan = testplan.Node

const seedGolden = "../fixtures/golden/seed/rules.v4"

func TestRenderGolden(t *testing.T) {
	golden.Check(t, seedGolden, Render(seedPlan(t)))
}

// TestRenderKindsGolden: every UDP kind of the registry, classified in the
// kernel (fixtures/kinds-node.yaml).
func TestRenderKindsGolden(t *testing.T) {
	golden.Check(t, "../fixtures/golden/kinds/rules.v4", Render(nodePlan(t, "fixtures/kinds-node.yaml")))
}

func transparentPlan(t testing.TB) *plan.Plan { return nodePlan(t, "fixtures/transparent-node.yaml") }

// TestRenderTransparentGolden: transparent backends add a mangle section
// marking their replies (the nat part is as for any node); a node without
// one has no mangle section at all.
func TestRenderTransparentGolden(t *testing.T) {
	got := Render(transparentPlan(t))
	golden.Check(t, "../fixtures/golden/transparent/rules.v4", got)
	if !bytes.Contains(got, []byte("*mangle\n:PORTSTRIPE-MARK - [0:0]\n")) {
		t.Errorf("no mangle section:\n%s", got)
	}
	if seed := Render(seedPlan(t)); bytes.Contains(seed, []byte("mangle")) {
		t.Errorf("the seed node, with no transparent backend, has mangle rules:\n%s", seed)
	}
}

func dualStackPlan(t testing.TB) *plan.Plan { return nodePlan(t, "fixtures/dual-stack-node.yaml") }

// TestRenderDualStackGolden: a dual-stack node gets rules.v4 for its IPv4
// address and rules.v6 for its IPv6 one, the same chains and decisions in
// both; the IPv6 checks sit at the fixed offsets behind the next-header
// test, and no address of one family reaches the other's file.
func TestRenderDualStackGolden(t *testing.T) {
	p := dualStackPlan(t)
	v4, v6 := Render(p), Render6(p)
	golden.Check(t, "../fixtures/golden/dual-stack/rules.v4", v4)
	golden.Check(t, "../fixtures/golden/dual-stack/rules.v6", v6)
	if !HasRules6(p) || HasRules6(seedPlan(t)) {
		t.Errorf("HasRules6: dual-stack %v, seed %v; want true, false", HasRules6(p), HasRules6(seedPlan(t)))
	}
	for _, c := range []struct {
		file     []byte
		has, not []string
	}{
		{v4, []string{"-A PORTSTRIPE -d 203.0.113.10/32 -p udp -j PORTSTRIPE-UDP", "0>>22&0x3C@8>>24=0x38"}, []string{"2001:db8", "4>>8&0xFF=17"}},
		{v6, []string{"-A PORTSTRIPE -d 2001:db8::10/128 -p udp -j PORTSTRIPE-UDP", `--u32 "4>>8&0xFF=17 && 48>>24=0x38 && 57=0x1"`, "# Limit: ip6tables u32 reads the fixed 40-byte IPv6 header"}, []string{"203.0.113.10", "0>>22&0x3C"}},
	} {
		for _, w := range c.has {
			if !bytes.Contains(c.file, []byte(w)) {
				t.Errorf("lacks %q:\n%s", w, c.file)
			}
		}
		for _, w := range c.not {
			if bytes.Contains(c.file, []byte(w)) {
				t.Errorf("holds %q:\n%s", w, c.file)
			}
		}
	}
	if a, b := Chains(p), declaredChains(v6); len(b) != len(a) {
		t.Errorf("rules.v6 declares %d chains, Chains lists %d", len(b), len(a))
	}
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

// TestRenderReserved: no rule matches a reserved port, and the dispatch
// rules match exactly the plan's ranges, each once.
func TestRenderReserved(t *testing.T) {
	p := seedPlan(t)
	rules := string(Render(p))
	var got []string
	re := regexp.MustCompile(`-A PORTSTRIPE-(?:UDP|TCP) -p (\w+) -m (?:\w+ --dport|multiport --dports) ([\d:,]+) `)
	for _, m := range re.FindAllStringSubmatch(rules, -1) {
		for _, ports := range strings.Split(m[2], ",") {
			r, err := node.ParsePortRange(strings.Replace(ports, ":", "-", 1))
			if err != nil {
				t.Fatal(err)
			}
			for _, res := range p.Node.Reserved {
				if r.Overlaps(res) {
					t.Errorf("rule matches reserved ports: %s", m[0])
				}
			}
			got = append(got, m[1]+" "+r.String())
		}
	}
	var want []string
	for _, r := range p.Ranges {
		want = append(want, string(r.Proto)+" "+r.Ports().String())
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("dispatch rules match %v, want the plan's ranges %v", got, want)
	}
}

// TestDispatches: ranges of one list share multiport rules of at most 15
// ports (a range counts two); lists keep the order they first appear in.
func TestDispatches(t *testing.T) {
	r := func(list int, from, to uint16) plan.Range {
		return plan.Range{Proto: node.UDP, From: from, To: to, List: list}
	}
	ranges := func(list, n, width int) []plan.Range {
		var out []plan.Range
		for i := range n {
			from := uint16(1000*list + 10*i)
			out = append(out, r(list, from, from+uint16(width)))
		}
		return out
	}
	tests := []struct {
		name   string
		ranges []plan.Range
		want   []string
	}{
		{"one range", []plan.Range{r(0, 1, 29999)}, []string{"-m udp --dport 1:29999"}},
		{"around a dedicated port", []plan.Range{r(0, 1, 5060), r(1, 5061, 5061), r(0, 5062, 29999)},
			[]string{"-m multiport --dports 1:5060,5062:29999", "-m udp --dport 5061"}},
		{"seven ranges fill 14 slots", ranges(1, 7, 5), []string{"-m multiport --dports 1000:1005,1010:1015,1020:1025,1030:1035,1040:1045,1050:1055,1060:1065"}},
		{"the eighth range opens a rule", ranges(1, 8, 5), []string{
			"-m multiport --dports 1000:1005,1010:1015,1020:1025,1030:1035,1040:1045,1050:1055,1060:1065",
			"-m udp --dport 1070:1075"}},
		{"fifteen single ports", ranges(1, 15, 0), []string{"-m multiport --dports 1000,1010,1020,1030,1040,1050,1060,1070,1080,1090,1100,1110,1120,1130,1140"}},
		{"sixteen single ports", ranges(1, 16, 0), []string{"-m multiport --dports 1000,1010,1020,1030,1040,1050,1060,1070,1080,1090,1100,1110,1120,1130,1140", "-m udp --dport 1150"}},
		{"udp and tcp apart", []plan.Range{r(0, 1, 10), {Proto: node.TCP, From: 1, To: 10}},
			[]string{"-m udp --dport 1:10", "-m tcp --dport 1:10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			for _, d := range dispatches(tt.ranges) {
				got = append(got, dportMatch(d))
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got  %q\nwant %q", got, tt.want)
			}
		})
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

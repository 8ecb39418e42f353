package compiler

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/fixtures"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// hostile is text that would start lines of its own in either output if it
// reached them raw: newlines and CRs before a filter table that accepts
// everything and a haproxy section, NUL, C1 controls (NEL), the Unicode line
// separator, bytes that are not UTF-8, and quotes and backslashes that
// would end or escape a quoted iptables argument.
const hostile = "x\n*filter\n-A INPUT -j ACCEPT\nCOMMIT\r\nfrontend evil\n    bind :22\x00\u0085\u2028\xff\xfe\" -j ACCEPT \\\"#"

// TestHostileTextStaysInComments: whatever the node file's path and the
// names in a plan hold, every line of rules.v4 and haproxy.cfg is one of
// the kinds portstripe emits.
func TestHostileTextStaysInComments(t *testing.T) {
	// A real node file at a path with newlines, compiled as compile does.
	dir := filepath.Join(t.TempDir(), strings.ReplaceAll(strings.ReplaceAll(hostile, "\x00", ""), "/", "|"))
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "node\n*filter\n-A INPUT -j ACCEPT\nCOMMIT\n.yaml")
	if err := os.WriteFile(path, fixtures.SeedNode, 0o600); err != nil {
		t.Fatal(err)
	}
	res, err := Compile(node.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	checkRulesLines(t, res.Files[RulesFile])
	checkHAProxyLines(t, res.Files[HAProxyFile])

	// What node validation would refuse, handed to the emitters directly:
	// NUL in the path, and hostile node and service names.
	n, err := node.Load(node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	n.Source, n.Name = hostile, hostile
	p, err := plan.Build(n)
	if err != nil {
		t.Fatal(err)
	}
	cfg := haproxy.FromPlan(p)
	if err := cfg.Validate(); err != nil {
		t.Fatalf("a hostile path or node name is refused, not written as a comment: %v", err)
	}
	checkHAProxyLines(t, cfg.Marshal())
	checkRulesLines(t, iptables.Render(p))
	for i := range n.Services {
		n.Services[i].Name = hostile + n.Services[i].Name
	}
	if p, err = plan.Build(n); err != nil {
		t.Fatal(err)
	}
	checkRulesLines(t, iptables.Render(p))
	if err := haproxy.FromPlan(p).Validate(); err == nil {
		t.Error("haproxy.cfg with hostile section names passes Validate")
	}
}

var (
	chainRE = regexp.MustCompile(`^PORTSTRIPE(-UDP|-TCP|-U-[0-9a-f]+)?$`)
	// ruleArgs are the options a rule of rules.v4 uses, with the shape of
	// their value ("" for none).
	ruleArgs = map[string]*regexp.Regexp{
		"-d":               regexp.MustCompile(`^[0-9.]+/32$`),
		"-p":               regexp.MustCompile(`^(udp|tcp)$`),
		"-m":               regexp.MustCompile(`^(udp|tcp|multiport|u32|comment)$`),
		"--dport":          regexp.MustCompile(`^[0-9]+(:[0-9]+)?$`),
		"--dports":         regexp.MustCompile(`^[0-9]+(:[0-9]+)?(,[0-9]+(:[0-9]+)?)*$`),
		"--u32":            regexp.MustCompile(`^"[0-9A-Fa-fx&@<>=:,  ]+"$`),
		"--comment":        regexp.MustCompile(`^"[^"\\\x00-\x1f\x7f]*"$`),
		"-j":               regexp.MustCompile(`^(DNAT|PORTSTRIPE(-UDP|-TCP|-U-[0-9a-f]+)?)$`),
		"--to-destination": regexp.MustCompile(`^:[0-9]+$`),
	}
)

// ruleWords splits a rule line as iptables-restore does: on spaces, a
// double-quoted argument being one word.
func ruleWords(t *testing.T, line string) []string {
	var out []string
	for rest := line; rest != ""; {
		rest = strings.TrimLeft(rest, " ")
		if strings.HasPrefix(rest, `"`) {
			end := strings.IndexByte(rest[1:], '"')
			if end < 0 {
				t.Fatalf("unterminated quote: %q", line)
			}
			out, rest = append(out, rest[:end+2]), rest[end+2:]
			continue
		}
		w, r, _ := strings.Cut(rest, " ")
		out, rest = append(out, w), r
	}
	return out
}

func checkRulesLines(t *testing.T, rules []byte) {
	t.Helper()
	text := string(rules)
	if !strings.HasSuffix(text, "COMMIT\n") || strings.Count(text, "\nCOMMIT\n") != 1 || strings.Count(text, "\n*") != 1 {
		t.Fatalf("rules.v4 is not one table ending in one COMMIT:\n%s", text)
	}
	for i, line := range strings.Split(strings.TrimSuffix(text, "\n"), "\n") {
		bad := func(why string) { t.Errorf("rules.v4 line %d %s: %q", i+1, why, line) }
		switch {
		case strings.ContainsAny(line, "\r\x00") || strings.ContainsRune(line, '\u2028') || strings.ContainsRune(line, '\u0085'):
			bad("holds a control character")
		case strings.HasPrefix(line, "# "):
		case line == "*nat", line == "COMMIT":
		case strings.HasPrefix(line, ":"):
			name, ok := strings.CutSuffix(line[1:], " - [0:0]")
			if !ok || !chainRE.MatchString(name) {
				bad("is not a declaration of a portstripe chain")
			}
		case strings.HasPrefix(line, "-A "):
			w := ruleWords(t, line)
			if !chainRE.MatchString(w[1]) {
				bad("appends to a chain that is not portstripe's")
			}
			for k := 2; k < len(w); k += 2 {
				re := ruleArgs[w[k]]
				if re == nil || k+1 >= len(w) || !re.MatchString(w[k+1]) {
					bad("has an option portstripe does not emit: " + strings.Join(w[k:min(k+2, len(w))], " "))
					break
				}
			}
		default:
			bad("is no kind of line portstripe emits")
		}
	}
}

var (
	sectionRE = regexp.MustCompile(`^(global|defaults|(frontend|backend) [A-Za-z0-9_.:-]+)$`)
	// keywords starts every line of a section.
	keywords = map[string]bool{
		"master-worker": true, "stats": true, "maxconn": true, "mode": true, "timeout": true,
		"bind": true, "tcp-request": true, "acl": true, "use_backend": true, "default_backend": true,
		"server": true, "user": true, "group": true, "chroot": true, "description": true, "hard-stop-after": true,
		"option": true, "tcp-check": true, "log": true, "stick-table": true,
	}
)

func checkHAProxyLines(t *testing.T, cfg []byte) {
	t.Helper()
	for i, line := range strings.Split(strings.TrimSuffix(string(cfg), "\n"), "\n") {
		bad := func(why string) { t.Errorf("haproxy.cfg line %d %s: %q", i+1, why, line) }
		body, indented := strings.CutPrefix(line, "    ")
		switch {
		case strings.ContainsAny(line, "\r\x00") || strings.ContainsRune(line, '\u2028') || strings.ContainsRune(line, '\u0085'):
			bad("holds a control character")
		case line == "":
		case strings.HasPrefix(body, "# "):
		case body == haproxy.LogFormat(haproxy.DecisionFormat).String():
			// The one quoted line: a constant, no node file text in it.
		case !indented:
			if !sectionRE.MatchString(line) {
				bad("is not a section portstripe emits")
			}
		default:
			w := strings.Fields(body)
			if !keywords[w[0]] || strings.ContainsAny(body, "#\"'\\") || len(w) > 64 {
				bad("is not a line portstripe emits")
			}
		}
	}
}

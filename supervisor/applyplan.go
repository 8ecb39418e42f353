package supervisor

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"maps"
	"slices"
	"strings"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/textdiff"
)

// PlanSchema names the JSON form of an ApplyPlan (apply --dry-run -o json
// and a saved plan file); it changes when a field changes meaning.
const PlanSchema = "portstripe.plan/v2"

// ApplyPlan is what apply would do on this machine, for a reviewer:
// firewall rules in evaluation order and in rules.v4's own words, jumps,
// state files, HAProxy's sections as a diff, and whether HAProxy is
// started, reloaded or changed through its runtime API, and why. It is
// computed from the same observation and Change that Apply acts on.
type ApplyPlan struct {
	Schema     string `json:"schema"`
	Node       string `json:"node"`
	NodeSHA256 string `json:"node_sha256"`
	// Dir is the state directory the plan is for.
	Dir string `json:"dir"`
	// NoChanges: the machine matches the node file.
	NoChanges bool `json:"no_changes"`
	// Applied: apply made these changes (false for a dry run).
	Applied  bool      `json:"applied"`
	Summary  string    `json:"summary"`
	ToAdd    int       `json:"to_add"` // rules and jumps
	ToChange int       `json:"to_change"`
	ToRemove int       `json:"to_remove"`
	Rules    RulesPlan `json:"rules"`
	// Jumps are the hooks (PREROUTING, OUTPUT) whose jump to portstripe's
	// entry chain is added.
	Jumps []string `json:"jumps,omitempty"`
	// Routes are the parts of the transparent backends' reply route added
	// ("+ ip rule …") or removed ("- ip route …").
	Routes  []string     `json:"routes,omitempty"`
	Files   []FileChange `json:"files,omitempty"`
	HAProxy HAProxyPlan  `json:"haproxy"`
	// Observed fingerprints the machine the plan was made against: a saved
	// plan applies only while it still matches.
	Observed Fingerprint `json:"observed"`
}

// RulesPlan is how portstripe's chains change.
type RulesPlan struct {
	// Firewall is the node's backend (iptables, nftables).
	Firewall string `json:"firewall"`
	// From says what the installed side of the diff is: "none" (no
	// portstripe chain is installed), "state_dir" (the kernel runs the state
	// directory's files, so both sides are rendered files) or "kernel"
	// (the installed rules are no file portstripe knows, e.g. edited by
	// hand: both sides as the backend's tool shows them).
	From   string        `json:"from"`
	Chains []ChainChange `json:"chains,omitempty"`
	// Clean are the other backends whose rules are removed once the new
	// ones serve (the node switched backends).
	Clean []string `json:"clean,omitempty"`
}

// ChainChange is one chain's changes, in evaluation order.
type ChainChange struct {
	// Table is where the chain lives: "nat", "ip6 nat", "inet portstripe".
	Table string `json:"table"`
	Chain string `json:"chain"`
	// About is the chain's comment in the rendered file: the decision list
	// and the port range it serves.
	About string `json:"about,omitempty"`
	// Action is "add", "remove" or "change".
	Action string       `json:"action"`
	Rules  []RuleChange `json:"rules"`
}

// RuleChange is one rule added, removed or changed in place.
type RuleChange struct {
	Action string `json:"action"` // add, remove, change
	// Position is the rule's 1-based place in its chain: in the new chain,
	// or in the installed one for a removal.
	Position int    `json:"position"`
	Old      string `json:"old,omitempty"`
	New      string `json:"new,omitempty"`
}

// FileChange is a state directory file apply writes.
type FileChange struct {
	Name   string `json:"name"`
	Action string `json:"action"` // add, change, remove (kept as NAME.prev)
}

// HAProxyPlan is what happens to HAProxy.
type HAProxyPlan struct {
	// Action is "none", "runtime_api", "reload" or "start".
	Action string `json:"action"`
	Reason string `json:"reason,omitempty"`
	// Running says what the diff is against: "state_dir" (the state
	// directory's haproxy.cfg is what the worker runs), "none" (no HAProxy
	// answers) or "unknown" (the worker runs a configuration that is not
	// on disk).
	Running  string          `json:"running"`
	Sections []SectionChange `json:"sections,omitempty"`
	Backends []string        `json:"backends,omitempty"`
	Servers  []ServerChange  `json:"servers,omitempty"`
}

// SectionChange is one haproxy.cfg section (frontend fe_striped, backend
// ssh, global) that differs, with a unified diff of its lines.
type SectionChange struct {
	Section string `json:"section"`
	Action  string `json:"action"` // add, remove, change
	Diff    string `json:"diff"`
}

// describe presents a Change for a reviewer, from the observation it was
// decided on. The rules diff is between rendered files whenever the kernel
// runs one portstripe knows; the canonical form only decides whether the
// kernel matches.
func (a *Applier) describe(ctx context.Context, res *compiler.Result, c Change, obs Observed, applied bool) *ApplyPlan {
	p := &ApplyPlan{
		Schema: PlanSchema, Node: res.Plan.Node.Name, NodeSHA256: res.Plan.Node.SHA256, Dir: a.Dir,
		NoChanges: c.Nothing, Applied: applied, Jumps: c.Jumps, Routes: c.Routes, Observed: fingerprint(obs),
	}
	p.Rules = a.describeRules(ctx, c, obs, res)
	for _, ch := range p.Rules.Chains {
		for _, r := range ch.Rules {
			switch r.Action {
			case "add":
				p.ToAdd++
			case "change":
				p.ToChange++
			case "remove":
				p.ToRemove++
			}
		}
	}
	p.ToAdd += len(c.Jumps)
	for _, r := range c.Routes {
		if strings.HasPrefix(r, "+") {
			p.ToAdd++
		} else {
			p.ToRemove++
		}
	}
	for _, n := range c.Files {
		action := "change"
		if _, ok := obs.Files[n]; !ok {
			action = "add"
		}
		p.Files = append(p.Files, FileChange{Name: n, Action: action})
	}
	for _, n := range c.Retired {
		p.Files = append(p.Files, FileChange{Name: n, Action: "remove"})
	}
	p.HAProxy = describeHAProxy(c, obs, res.Files[compiler.HAProxyFile])
	p.Summary = p.summary()
	return p
}

func (p *ApplyPlan) summary() string {
	if p.NoChanges {
		return "No changes: the machine matches the node file."
	}
	lead, add, change, remove, write := "Plan", "to add", "to change", "to remove", "to write"
	if p.Applied {
		lead, add, change, remove, write = "Applied", "added", "changed", "removed", "written"
	}
	s := fmt.Sprintf("%s: %d %s, %d %s, %d %s", lead, p.ToAdd, add, p.ToChange, change, p.ToRemove, remove)
	if n := len(p.Files); n > 0 {
		s += fmt.Sprintf("; %d state file(s) %s", n, write)
	}
	switch h := p.HAProxy; h.Action {
	case "none":
		s += "; HAProxy: no change"
	case "runtime_api":
		s += fmt.Sprintf("; HAProxy: %d server change(s) through the runtime API, no reload", len(h.Servers))
	default:
		s += fmt.Sprintf("; HAProxy: %s (%s)", h.Action, h.Reason)
	}
	return s
}

func (a *Applier) describeRules(ctx context.Context, c Change, obs Observed, res *compiler.Result) RulesPlan {
	p := RulesPlan{Firewall: c.Firewall, From: "state_dir", Clean: c.Clean}
	fw, files, err := a.firewall(res)
	if err != nil || len(c.Rules) == 0 {
		return p
	}
	rendered := fw.Parse(files)
	installed := obs.Firewall[fw.Name()]
	if !installed.Installed() {
		p.From, p.Chains = "none", diffChains(firewall.State{}, rendered)
		return p
	}
	// The state directory's files stand for the kernel's rules only when
	// they load to exactly what the kernel shows.
	old := map[string][]byte{}
	for _, n := range fw.Files() {
		if b, ok := obs.Files[n]; ok {
			old[n] = b
		}
	}
	if len(old) > 0 {
		if canon, err := a.canonicalRules(ctx, fw, old); err == nil && canon.Equal(installed) {
			p.Chains = diffChains(fw.Parse(old), rendered)
			return p
		}
	}
	want, _ := a.canonicalRules(ctx, fw, files) // remembered: plan() decided on it
	p.From, p.Chains = "kernel", diffChains(installed, want)
	about := map[string]string{}
	for _, ch := range rendered.Chains {
		about[ch.ID()] = ch.About
	}
	for i := range p.Chains {
		p.Chains[i].About = about[firewall.Chain{Table: p.Chains[i].Table, Name: p.Chains[i].Chain}.ID()]
	}
	return p
}

// diffChains lists the chains whose rules differ, the new state's chains
// first in its order, then the removed ones. A removal right before an
// addition is one rule changed in place.
func diffChains(old, cur firewall.State) []ChainChange {
	oldIDs, oldChains := chainsByID(old)
	curIDs, curChains := chainsByID(cur)
	var out []ChainChange
	for _, id := range union(curIDs, oldIDs) {
		o, inOld := oldChains[id]
		n, inCur := curChains[id]
		ch := ChainChange{Table: n.Table, Chain: n.Name, About: n.About, Action: "change"}
		switch {
		case !inOld:
			ch.Action = "add"
		case !inCur:
			ch.Action, ch.Table, ch.Chain, ch.About = "remove", o.Table, o.Name, o.About
		}
		ch.Rules = ruleChanges(textdiff.Edits(o.Rules, n.Rules))
		if len(ch.Rules) > 0 || ch.Action != "change" {
			out = append(out, ch)
		}
	}
	return out
}

func chainsByID(s firewall.State) ([]string, map[string]firewall.Chain) {
	var ids []string
	m := map[string]firewall.Chain{}
	for _, c := range s.Chains {
		ids = append(ids, c.ID())
		m[c.ID()] = c
	}
	return ids, m
}

func ruleChanges(edits []textdiff.Edit) []RuleChange {
	var out []RuleChange
	for i := 0; i < len(edits); i++ {
		e := edits[i]
		switch e.Mark {
		case '-':
			// Pair a run of removals with the additions that follow it.
			j := i
			for j < len(edits) && edits[j].Mark == '-' {
				j++
			}
			k := j
			for k < len(edits) && edits[k].Mark == '+' {
				k++
			}
			for d := 0; d < max(j-i, k-j); d++ {
				switch {
				case d < j-i && d < k-j:
					out = append(out, RuleChange{Action: "change", Position: edits[j+d].N, Old: edits[i+d].Line, New: edits[j+d].Line})
				case d < j-i:
					out = append(out, RuleChange{Action: "remove", Position: edits[i+d].N, Old: edits[i+d].Line})
				default:
					out = append(out, RuleChange{Action: "add", Position: edits[j+d].N, New: edits[j+d].Line})
				}
			}
			i = k - 1
		case '+':
			out = append(out, RuleChange{Action: "add", Position: e.N, New: e.Line})
		}
	}
	return out
}

func describeHAProxy(c Change, obs Observed, newCfg []byte) HAProxyPlan {
	h := HAProxyPlan{Action: "none", Backends: c.Backends, Servers: c.Servers}
	switch {
	case c.Start:
		h.Action, h.Reason = "start", c.StartReason
	case c.Reload:
		h.Action, h.Reason = "reload", c.ReloadReason
	case len(c.Servers) > 0:
		h.Action = "runtime_api"
	}
	hp := obs.HAProxy
	running, onDisk := obs.Files[compiler.HAProxyFile]
	switch {
	case !hp.Alive:
		h.Running, running = "none", nil
	case onDisk && hp.ConfigHash != "" && haproxy.ReadConfigHash(running) == hp.ConfigHash:
		h.Running = "state_dir"
	default:
		h.Running = "unknown"
		return h
	}
	h.Sections = diffSections(running, newCfg)
	if c.Reload && len(h.Sections) > 0 {
		h.Reason = sectionsReason(h.Sections)
	}
	return h
}

// sectionsReason names the sections that differ: "frontend fe_striped
// changed, backend web added".
func sectionsReason(s []SectionChange) string {
	var parts []string
	for _, c := range s {
		parts = append(parts, c.Section+" "+map[string]string{"add": "added", "remove": "removed", "change": "changed"}[c.Action])
	}
	return strings.Join(parts, ", ")
}

// cfgSection is one haproxy.cfg section's lines, with their numbers in the
// file.
type cfgSection struct {
	lines []string
	at    []int
}

// cfgSections splits a haproxy.cfg into its sections, in order, without
// the file's header comments, blank lines and the config hash (it changes
// with any edit and says nothing of what changed).
func cfgSections(cfg []byte) ([]string, map[string]*cfgSection) {
	var order []string
	body := map[string]*cfgSection{}
	cur := ""
	for i, l := range strings.Split(string(cfg), "\n") {
		t := strings.TrimSpace(l)
		switch {
		case t != "" && !strings.HasPrefix(t, "#") && l[0] != ' ' && l[0] != '\t':
			cur = t
			order = append(order, cur)
			body[cur] = &cfgSection{}
		case cur == "" || t == "":
		case haproxy.HashOf(strings.TrimPrefix(t, "description ")) != "":
		default:
			body[cur].lines = append(body[cur].lines, l)
			body[cur].at = append(body[cur].at, i+1)
		}
	}
	return order, body
}

// diffSections lists the sections that differ, the new file's first in
// its order, each with a diff numbered as the files are (removed and
// unchanged lines as in the old file, added lines as in the new one).
func diffSections(old, cur []byte) []SectionChange {
	oldOrder, oldBody := cfgSections(old)
	curOrder, curBody := cfgSections(cur)
	var out []SectionChange
	for _, n := range union(curOrder, oldOrder) {
		o, inOld := oldBody[n]
		c, inCur := curBody[n]
		s := SectionChange{Section: n, Action: "change"}
		switch {
		case !inOld:
			s.Action, o = "add", &cfgSection{}
		case !inCur:
			s.Action, c = "remove", &cfgSection{}
		case slices.Equal(o.lines, c.lines):
			continue
		}
		edits := textdiff.Edits(o.lines, c.lines)
		for i, e := range edits {
			if e.Mark == '+' {
				edits[i].N = c.at[e.N-1]
			} else {
				edits[i].N = o.at[e.N-1]
			}
		}
		s.Diff = textdiff.Format(edits)
		out = append(out, s)
	}
	return out
}

// union is cur's names in order, then those only in old, in theirs.
func union(cur, old []string) []string {
	seen := map[string]bool{}
	for _, n := range cur {
		seen[n] = true
	}
	out := slices.Clone(cur)
	for _, n := range old {
		if !seen[n] {
			out = append(out, n)
		}
	}
	return out
}

// Fingerprint is what a plan was made against: enough of the observed
// machine to tell, before applying a saved plan, that nothing moved.
type Fingerprint struct {
	// RulesSHA256 hashes portstripe's installed chains (iptables-save
	// form); empty when none are installed.
	RulesSHA256  string   `json:"rules_sha256"`
	MissingJumps []string `json:"missing_jumps"`
	// ReplyRoute is which parts of the reply route are in place ("rule",
	// "route", "rule route"); absent when none is.
	ReplyRoute   string `json:"reply_route,omitempty"`
	HAProxyAlive bool   `json:"haproxy_alive"`
	// HAProxyConfig is the config hash the worker reports.
	HAProxyConfig string `json:"haproxy_config_hash"`
	// Servers are the worker's servers as "backend addr maint=false", sorted.
	Servers []string `json:"servers"`
	// Files hash the state directory's files, by name.
	Files map[string]string `json:"files_sha256"`
}

func fingerprint(obs Observed) Fingerprint {
	f := Fingerprint{
		MissingJumps: []string{}, Servers: []string{}, Files: map[string]string{},
		HAProxyAlive: obs.HAProxy.Alive, HAProxyConfig: obs.HAProxy.ConfigHash,
	}
	if anyInstalled(obs.Firewall) {
		h := sha256.New()
		for _, name := range slices.Sorted(maps.Keys(obs.Firewall)) {
			st := obs.Firewall[name]
			for _, n := range slices.Sorted(maps.Keys(st.Saved)) {
				fmt.Fprintf(h, "%s\x00%s\x00%d\x00", name, n, len(st.Saved[n]))
				h.Write(st.Saved[n])
			}
		}
		f.RulesSHA256 = hex.EncodeToString(h.Sum(nil))
	}
	for _, name := range slices.Sorted(maps.Keys(obs.Firewall)) {
		f.MissingJumps = append(f.MissingJumps, obs.Firewall[name].Missing...)
	}
	f.ReplyRoute = strings.TrimSpace(map[bool]string{true: "rule"}[obs.Routes.Rule] + " " + map[bool]string{true: "route"}[obs.Routes.Route])
	for _, name := range slices.Sorted(maps.Keys(obs.HAProxy.Servers)) {
		s := obs.HAProxy.Servers[name]
		f.Servers = append(f.Servers, fmt.Sprintf("%s %s maint=%v", name, s.Addr, inMaintenance(s)))
	}
	for n, b := range obs.Files {
		f.Files[n] = sum(b)
	}
	return f
}

// Drift names what differs between the machine a plan was made against and
// the one observed now ("rules differ"); empty when nothing does.
func (f Fingerprint) Drift(now Fingerprint) string {
	var what []string
	if f.RulesSHA256 != now.RulesSHA256 {
		what = append(what, "rules")
	}
	if !slices.Equal(f.MissingJumps, now.MissingJumps) {
		what = append(what, "jumps")
	}
	if f.ReplyRoute != now.ReplyRoute {
		what = append(what, "reply route")
	}
	if f.HAProxyAlive != now.HAProxyAlive {
		what = append(what, "haproxy master")
	}
	if f.HAProxyConfig != now.HAProxyConfig {
		what = append(what, "haproxy configuration")
	}
	if !slices.Equal(f.Servers, now.Servers) {
		what = append(what, "haproxy servers")
	}
	if !maps.Equal(f.Files, now.Files) {
		what = append(what, "state files")
	}
	if len(what) == 0 {
		return ""
	}
	return strings.Join(what, ", ") + " differ"
}

func anyInstalled(states map[string]firewall.State) bool {
	for _, st := range states {
		if st.Installed() {
			return true
		}
	}
	return false
}

func sum(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// Package compiler runs the one-way pipeline node file → model → plan →
// emitters and hands back everything a command writes, checks or applies.
package compiler

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/version"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/nftables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// File names of the compiled artefacts, as written by compile and apply.
const (
	HAProxyFile = "haproxy.cfg"
	RulesFile   = iptables.RulesFile
	Rules6File  = iptables.Rules6File
	NFTFile     = nftables.File
	PlanFile    = "plan.json"
)

// firewalls render a plan for each backend: its files, by name. The
// first of a backend's FirewallFiles is always written.
var firewalls = map[string]struct {
	files  []string
	render func(*plan.Plan) map[string][]byte
}{
	node.IPTables: {iptables.Files, iptables.RenderFiles},
	node.NFTables: {nftables.Files, nftables.RenderFiles},
}

// FirewallFiles names the files the named backend's rules may take, the
// one always written first; nil for a backend portstripe does not have.
func FirewallFiles(name string) []string { return firewalls[name].files }

// Unmade names the firewall files of every backend that r does not have
// (rules.v6 of a node without IPv6 addresses, rules.v4 of an nftables
// node): such a file left beside r's is stale, and would be read as this
// node's rules.
func (r *Result) Unmade() []string {
	var out []string
	for _, fw := range slices.Sorted(maps.Keys(firewalls)) {
		for _, n := range firewalls[fw].files {
			if _, ok := r.Files[n]; !ok && !slices.Contains(out, n) {
				out = append(out, n)
			}
		}
	}
	return out
}

// Result is a compiled node.
type Result struct {
	Node *node.Node
	Plan *plan.Plan
	// Files maps the artefact names above to their content.
	Files map[string][]byte
}

// Compile loads, validates and plans a node, then renders both artefacts.
// Input errors are *node.FieldError (see node.IsInputError).
func Compile(o node.Options) (*Result, error) {
	n, err := node.Load(o)
	if err != nil {
		return nil, err
	}
	return FromNode(n)
}

// FromNode plans and renders an already loaded node.
func FromNode(n *node.Node) (*Result, error) {
	p, err := plan.Build(n)
	if err != nil {
		return nil, err
	}
	p.Generator = version.Get().String()
	pj, err := json.MarshalIndent(p, "", "  ")
	if err != nil {
		return nil, fmt.Errorf("encode plan: %w", err)
	}
	cfg := haproxy.FromPlan(p)
	if err := cfg.Validate(); err != nil {
		return nil, fmt.Errorf("render haproxy.cfg: %w", err)
	}
	fw, ok := firewalls[p.Firewall]
	if !ok {
		return nil, fmt.Errorf("no firewall backend %q", p.Firewall)
	}
	files := fw.render(p)
	files[HAProxyFile] = cfg.Marshal()
	files[PlanFile] = append(pj, '\n')
	return &Result{Node: n, Plan: p, Files: files}, nil
}

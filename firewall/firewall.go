// Package firewall is the one seam between portstripe's live side (apply,
// run, status, metrics, clean) and a firewall backend: iptables (rules.v4,
// rules.v6) or nftables (one `table inet portstripe`). Both render the same
// plan; the supervisor compares States line for line and never reads a
// backend's own text.
package firewall

import (
	"context"
	"errors"
	"slices"
	"strings"

	"github.com/portstripe/portstripe/plan"
)

// Backend installs, observes and removes one backend's rules on this
// machine (or in one network namespace).
type Backend interface {
	// Name is the node file's `firewall` value that picks this backend
	// (node.IPTables, node.NFTables).
	Name() string
	// Files names the compiled files this backend loads, as the compiler
	// writes them (rules.v4 and rules.v6; portstripe.nft). A file the
	// compiled node does not have (rules.v6 for an IPv4-only node) means
	// that part holds no rules.
	Files() []string
	// Canonical validates files by loading them where they cannot harm (a
	// throwaway network namespace) and returns them as Observe would show
	// them once applied, so the two compare with Equal.
	Canonical(ctx context.Context, files map[string][]byte) (State, error)
	// Parse reads files as rendered, without loading them: what a reviewer
	// reads (apply --dry-run) when the installed rules are a rendered file.
	Parse(files map[string][]byte) State
	// Observe reads the backend's rules as the kernel holds them.
	Observe(ctx context.Context) (State, error)
	// Apply installs files' rules and hooks atomically per table,
	// replacing the backend's previous rules and leaving every other
	// rule alone.
	Apply(ctx context.Context, files map[string][]byte) error
	// Restore puts an observed state back as it was: Clean when it held
	// nothing, hooks that were missing left missing.
	Restore(ctx context.Context, was State) error
	// Clean removes every rule, chain, set and hook of this backend.
	Clean(ctx context.Context) error
	// Counters reads how many packets each commented rule took, in chain
	// and rule order, naming p's UDP decisions.
	Counters(ctx context.Context, p *plan.Plan) ([]Counter, error)
}

// State is a backend's rules, observed or as they would be once applied.
type State struct {
	// Chains are the backend's chains (and sets and maps) in declaration
	// order, each with its rules in evaluation order, as the backend's own
	// tool shows them without counters or handles; empty when nothing is
	// installed.
	Chains []Chain `json:"chains,omitempty"`
	// Missing names the hooks that do not reach portstripe's rules
	// ("PREROUTING", "mangle OUTPUT", "ip6 OUTPUT"): none were added yet,
	// or another tool flushed a built-in chain.
	Missing []string `json:"missing,omitempty"`
	// Hooks, in a Canonical state, are the hooks the rules need reaching
	// them once applied: a missing one is a change to make.
	Hooks []string `json:"hooks,omitempty"`
	// Saved is what Restore takes to put this state back, per file name;
	// nil when nothing is installed.
	Saved map[string][]byte `json:"-"`
}

// Chain is one chain (or set or map) with its rules (or elements).
type Chain struct {
	// Table is where the chain lives ("nat", "ip6 nat", "inet portstripe").
	Table string `json:"table"`
	Name  string `json:"name"`
	// About says what the chain is for (the decision list and the ports it
	// serves), when the rendered file says so.
	About string   `json:"about,omitempty"`
	Rules []string `json:"rules,omitempty"`
}

// ID names the chain with its table: "[ip6 nat] PORTSTRIPE".
func (c Chain) ID() string { return "[" + c.Table + "] " + c.Name }

// Installed reports whether any of the backend's rules are there.
func (s State) Installed() bool { return len(s.Chains) > 0 }

// Lines are the state as sorted "[table] chain" and "[table] chain: rule"
// lines: what Equal compares and a Change lists.
func (s State) Lines() []string {
	var out []string
	for _, c := range s.Chains {
		out = append(out, c.ID())
		for _, r := range c.Rules {
			out = append(out, c.ID()+": "+r)
		}
	}
	slices.Sort(out)
	return out
}

// Equal reports whether two states hold the same rules.
func (s State) Equal(o State) bool { return slices.Equal(s.Lines(), o.Lines()) }

// MissingOf are the hooks want needs that s lacks.
func (s State) MissingOf(want State) []string {
	var out []string
	for _, h := range s.Missing {
		if slices.Contains(want.Hooks, h) {
			out = append(out, h)
		}
	}
	return out
}

// Diff lists the lines to remove ("- …") and to add ("+ …") to turn was
// into want, chains before the rules in them.
func Diff(was, want State) []string {
	old, cur := was.Lines(), want.Lines()
	var out []string
	for _, l := range old {
		if _, ok := slices.BinarySearch(cur, l); !ok {
			out = append(out, "- "+l)
		}
	}
	for _, l := range cur {
		if _, ok := slices.BinarySearch(old, l); !ok {
			out = append(out, "+ "+l)
		}
	}
	chain := func(l string) bool { return !strings.Contains(l, ": ") }
	slices.SortStableFunc(out, func(a, b string) int {
		switch {
		case chain(a) == chain(b):
			return 0
		case chain(a):
			return -1
		}
		return 1
	})
	return out
}

// Counter is how many packets one of portstripe's rules took.
type Counter struct {
	// List, Service and Rule say what a UDP decision's rule is: the plan's
	// list, the service it sends first packets to, and the signature it
	// checks ("default" for the rule taking what no signature matched);
	// empty for other rules.
	List    string `json:"list,omitempty"`
	Service string `json:"service,omitempty"`
	Rule    string `json:"rule,omitempty"`
	// Chain and Comment are where the backend keeps it.
	Chain   string `json:"chain"`
	Comment string `json:"comment"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// ErrNotRoot is returned by Canonical when this process cannot create the
// throwaway network namespace it loads rules into.
var ErrNotRoot = errors.New("checking rules needs root, to load them into a throwaway network namespace")

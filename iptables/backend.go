package iptables

import (
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// The files this backend loads: rules.v4 through iptables and, for a node
// with IPv6 addresses, rules.v6 through ip6tables.
const (
	RulesFile  = "rules.v4"
	Rules6File = "rules.v6"
)

// Files are the files this backend loads, rules.v4 always there.
var Files = []string{RulesFile, Rules6File}

// RenderFiles renders the plan's files: rules.v4, and rules.v6 for a node
// with an IPv6 address.
func RenderFiles(p *plan.Plan) map[string][]byte {
	files := map[string][]byte{RulesFile: Render(p)}
	if HasRules6(p) {
		files[Rules6File] = Render6(p)
	}
	return files
}

// Backend is the iptables firewall backend (firewall.Backend): one Manager
// per address family.
type Backend struct {
	families []family
}

// family is one address family's file and the Manager that loads it.
type family struct {
	file string
	// table prefixes the tables' names in a State ("ip6 " for IPv6), so the
	// two families' same-named chains stay apart.
	table string
	m     *Manager
	// err says why there is no Manager: a machine without ip6tables
	// serves IPv4-only nodes still.
	err error
}

// NewBackend returns the iptables backend for this machine (or o.Netns);
// o.IPv6 is ignored: the backend drives both families.
func NewBackend(o Options) (*Backend, error) {
	b := &Backend{}
	for _, f := range families {
		o.IPv6 = f.table != ""
		f.m, f.err = New(o)
		if f.err != nil && !o.IPv6 {
			return nil, f.err
		}
		b.families = append(b.families, f)
	}
	return b, nil
}

// families are the address families' files, without their Managers.
var families = []family{{file: RulesFile}, {file: Rules6File, table: "ip6 "}}

// Name is node.IPTables.
func (b *Backend) Name() string { return node.IPTables }

// Files are rules.v4 and rules.v6.
func (b *Backend) Files() []string { return Files }

// Canonical loads each family's file into a throwaway namespace; a family
// without a file holds nothing.
func (b *Backend) Canonical(ctx context.Context, files map[string][]byte) (firewall.State, error) {
	var st firewall.State
	for _, f := range b.families {
		rules, ok := files[f.file]
		if !ok {
			continue
		}
		if f.err != nil {
			return firewall.State{}, fmt.Errorf("%s: %w", f.file, f.err)
		}
		canon, err := f.m.Canonical(ctx, rules)
		if err != nil {
			return firewall.State{}, fmt.Errorf("%s: %w", f.file, err)
		}
		f.add(&st, Observed{Rules: canon})
		for _, h := range Hooks {
			st.Hooks = append(st.Hooks, f.table+string(h))
		}
		if declaredChains(canon)[string(ChainMark)] {
			st.Hooks = append(st.Hooks, f.table+string(Mangle)+" "+string(MarkHook))
		}
	}
	return st, nil
}

// Parse is ParseFiles.
func (b *Backend) Parse(files map[string][]byte) firewall.State { return ParseFiles(files) }

// ParseFiles reads rendered (or iptables-save) files' chains and rules as
// they are written, with the chains' "# CHAIN: about" comments.
func ParseFiles(files map[string][]byte) firewall.State {
	var st firewall.State
	for _, f := range families {
		if rules, ok := files[f.file]; ok {
			f.add(&st, Observed{Rules: rules})
		}
	}
	return st
}

// Observe reads both families' tables.
func (b *Backend) Observe(ctx context.Context) (firewall.State, error) {
	var st firewall.State
	for _, f := range b.families {
		if f.err != nil {
			continue // without ip6tables, nothing of it can be installed
		}
		obs, err := f.m.Observe(ctx)
		if err != nil {
			return firewall.State{}, fmt.Errorf("%s: %w", f.file, err)
		}
		f.add(&st, obs)
	}
	return st, nil
}

// add appends a family's observation to st: its chains, its missing hooks
// ("PREROUTING", "mangle OUTPUT", "ip6 OUTPUT"), and its rules to restore.
func (f family) add(st *firewall.State, obs Observed) {
	for _, h := range obs.MissingJumps {
		st.Missing = append(st.Missing, f.table+string(h))
	}
	if obs.MissingMarkJump {
		st.Missing = append(st.Missing, f.table+string(Mangle)+" "+string(MarkHook))
	}
	if obs.Rules == nil {
		return
	}
	st.Chains = append(st.Chains, parseChains(obs.Rules, f.table)...)
	if st.Saved == nil {
		st.Saved = map[string][]byte{}
	}
	st.Saved[f.file] = obs.Rules
}

// parseChains splits an iptables-restore text (rendered or iptables-save's)
// into its chains, in declaration order, each with its "-A" lines in order.
func parseChains(text []byte, tablePrefix string) []firewall.Chain {
	var out []firewall.Chain
	at := map[string]int{}
	table := ""
	for _, l := range strings.Split(string(text), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "*"):
			table = l[1:]
		case strings.HasPrefix(l, ":"):
			name, _, _ := strings.Cut(l[1:], " ")
			at[name] = len(out)
			out = append(out, firewall.Chain{Table: tablePrefix + table, Name: name})
		case strings.HasPrefix(l, "-A "):
			name, _, _ := strings.Cut(l[3:], " ")
			if i, ok := at[name]; ok {
				out[i].Rules = append(out[i].Rules, l)
			}
		case strings.HasPrefix(l, "# "):
			// rules.v4 heads a decision list's chain with "# CHAIN: about".
			if name, about, ok := strings.Cut(l[2:], ": "); ok {
				if i, ok := at[name]; ok {
					out[i].About = about
				}
			}
		}
	}
	return out
}

// Apply loads each family's file; a family the files do not have is
// cleaned (a node that lost its last IPv6 address).
func (b *Backend) Apply(ctx context.Context, files map[string][]byte) error {
	for _, f := range b.families {
		var err error
		rules, ok := files[f.file]
		switch {
		case f.err != nil && ok:
			err = f.err
		case f.err != nil:
		case ok:
			err = f.m.Apply(ctx, rules)
		default:
			err = f.m.Clean(ctx)
		}
		if err != nil {
			return fmt.Errorf("%s: %w", f.file, err)
		}
	}
	return nil
}

// Restore puts each family back as observed: its saved rules without the
// jumps that were missing, or nothing.
func (b *Backend) Restore(ctx context.Context, was firewall.State) error {
	var errs []error
	for _, f := range b.families {
		rules, ok := was.Saved[f.file]
		if f.err != nil {
			continue // Observe saw nothing of it
		}
		if !ok {
			if err := f.m.Clean(ctx); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.file, err))
			}
			continue
		}
		if err := f.m.Apply(ctx, rules); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.file, err))
			continue
		}
		var hooks []Chain
		for _, h := range was.Missing {
			if rest, ok := strings.CutPrefix(h, f.table); ok && !strings.Contains(rest, " ") {
				hooks = append(hooks, Chain(rest))
			}
		}
		if len(hooks) > 0 {
			if err := f.m.RemoveJumps(ctx, hooks); err != nil {
				errs = append(errs, fmt.Errorf("%s: %w", f.file, err))
			}
		}
	}
	return errors.Join(errs...)
}

// Clean removes both families' chains and jumps.
func (b *Backend) Clean(ctx context.Context) error {
	var errs []error
	for _, f := range b.families {
		if f.err != nil {
			continue
		}
		if err := f.m.Clean(ctx); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", f.file, err))
		}
	}
	return errors.Join(errs...)
}

// Counters reads both families' commented rules' counters, the UDP
// decisions named by what they are in p.
func (b *Backend) Counters(ctx context.Context, p *plan.Plan) ([]firewall.Counter, error) {
	rules := udpRules(p)
	var out []firewall.Counter
	for _, f := range b.families {
		if f.err != nil || f.table != "" && !HasRules6(p) {
			continue
		}
		cs, err := f.m.Counters(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", f.file, err)
		}
		for _, c := range cs {
			r := rules[[2]string{c.Chain, c.Comment}]
			r.Chain, r.Comment, r.Packets, r.Bytes = f.table+c.Chain, c.Comment, c.Packets, c.Bytes
			out = append(out, r)
		}
	}
	return out, nil
}

// udpRules maps each UDP rule of p, by chain and comment, to what it is.
func udpRules(p *plan.Plan) map[[2]string]firewall.Counter {
	out := map[[2]string]firewall.Counter{}
	if p == nil {
		return out
	}
	for _, l := range p.Lists {
		if l.Proto != node.UDP {
			continue
		}
		chain := string(ListChain(l))
		for _, d := range l.Decisions {
			out[[2]string{chain, DecisionComment(l, d)}] = firewall.Counter{List: l.Name, Service: d.Target.Service, Rule: d.Signature.Label}
		}
		if !l.Default.Rejects() {
			out[[2]string{chain, DefaultComment(l)}] = firewall.Counter{List: l.Name, Service: l.Default.Service, Rule: "default"}
		}
	}
	return out
}

// JumpTarget is the chain a missing hook of State.Missing ("PREROUTING",
// "mangle OUTPUT", "ip6 OUTPUT") jumps to.
func JumpTarget(hook string) Chain {
	_, _, target := jumpOf(hook)
	return target
}

// JumpCommand is the command that adds a missing hook's jump, for a
// reviewer: "iptables -t nat -I PREROUTING -m comment --comment portstripe -j PORTSTRIPE".
func JumpCommand(hook string) string {
	cmd, rest := "iptables", hook
	if r, ok := strings.CutPrefix(hook, "ip6 "); ok {
		cmd, rest = "ip6tables", r
	}
	table, h, target := jumpOf(rest)
	return fmt.Sprintf("%s -t %s -I %s %s", cmd, table, h, strings.Join(jumpTo(target), " "))
}

// jumpOf reads a hook of State.Missing without its family: a nat hook's
// jump to the entry chain ("OUTPUT"), or mangle OUTPUT's to the mark chain.
func jumpOf(hook string) (Table, string, Chain) {
	hook = strings.TrimPrefix(hook, "ip6 ")
	if h, ok := strings.CutPrefix(hook, string(Mangle)+" "); ok {
		return Mangle, h, ChainMark
	}
	return NAT, hook, ChainEntry
}

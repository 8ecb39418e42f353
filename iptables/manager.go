package iptables

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	goiptables "github.com/coreos/go-iptables/iptables"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/internal/sysexec"
)

// Tables is the part of go-iptables the Manager uses: inspection, the jumps
// from the built-in chains, chain removal. *goiptables.IPTables has it.
type Tables interface {
	Exists(table, chain string, rulespec ...string) (bool, error)
	Insert(table, chain string, pos int, rulespec ...string) error
	DeleteIfExists(table, chain string, rulespec ...string) error
	ListChains(table string) ([]string, error)
	ListWithCounters(table, chain string) ([]string, error)
	ClearChain(table, chain string) error
	DeleteChain(table, chain string) error
}

// Options configure a Manager.
type Options struct {
	// Netns runs every command in that network namespace (from `ip netns
	// add`); empty means this process's namespace.
	Netns string
	// Runner runs iptables-restore, iptables-save and ip; nil means OS.
	Runner Runner
	// Tables inspects and edits chains; nil means go-iptables.
	Tables Tables
	// IPv6 drives ip6tables (rules.v6) instead of iptables (rules.v4).
	IPv6 bool
}

// Manager installs, inspects and removes portstripe's rules.
type Manager struct {
	run    Runner
	tables Tables
	netns  string
	// v6 drives ip6tables-restore and ip6tables-save.
	v6 bool
}

// restoreCmd and saveCmd are the family's iptables-restore and
// iptables-save.
func (m *Manager) restoreCmd() string {
	if m.v6 {
		return "ip6tables-restore"
	}
	return "iptables-restore"
}

func (m *Manager) saveCmd() string {
	if m.v6 {
		return "ip6tables-save"
	}
	return "iptables-save"
}

// New returns a Manager for this machine (or o.Netns).
func New(o Options) (*Manager, error) {
	m := &Manager{run: o.Runner, tables: o.Tables, netns: o.Netns, v6: o.IPv6}
	proto := goiptables.ProtocolIPv4
	if o.IPv6 {
		proto = goiptables.ProtocolIPv6
	}
	if m.run == nil {
		m.run = OS{}
	}
	if m.tables == nil {
		ipt, err := goiptables.New(goiptables.IPFamily(proto), goiptables.Timeout(5))
		if err != nil {
			return nil, fmt.Errorf("find iptables: %w", err)
		}
		m.tables = ipt
		if o.Netns != "" {
			m.tables = netnsTables{ipt, o.Netns}
		}
	}
	return m, nil
}

// Apply installs rules (as rendered by Render, or as returned by Observe
// for a rollback): one iptables-restore --noflush, which replaces the
// chains the file declares and leaves every other rule alone; then the
// jumps from PREROUTING and OUTPUT (and mangle OUTPUT to the mark chain),
// added once; then it deletes the portstripe chains the file no longer
// declares.
func (m *Manager) Apply(ctx context.Context, rules []byte) error {
	declared := declaredChains(rules)
	if !declared[string(ChainEntry)] {
		return fmt.Errorf("apply rules: the file declares no %s chain (to remove the rules, use Clean)", ChainEntry)
	}
	if _, err := m.run.Run(ctx, inNetns(m.netns, Command{Name: m.restoreCmd(), Args: []string{"--noflush"}, Stdin: rules})); err != nil {
		return fmt.Errorf("apply rules: %w", restoreError(rules, err))
	}
	if err := m.ensureJumps(declared[string(ChainMark)]); err != nil {
		return fmt.Errorf("apply rules: %w", err)
	}
	if !declared[string(ChainMark)] {
		if err := m.cleanMarks(); err != nil {
			return fmt.Errorf("apply rules: %w", err)
		}
	}
	chains, err := m.chains()
	if err != nil {
		return fmt.Errorf("apply rules: %w", err)
	}
	var stale []string
	for _, c := range chains {
		if !declared[c] {
			stale = append(stale, c)
		}
	}
	if err := m.deleteChains(stale); err != nil {
		return fmt.Errorf("apply rules: remove chains no longer in the plan: %w", err)
	}
	return nil
}

// ensureJumps puts the jump to ChainEntry at the top of each hook unless it
// is there already: at the top so that other tools' DNAT rules cannot take
// striped ports first; with marks, the jump to ChainMark too.
func (m *Manager) ensureJumps(marks bool) error {
	for _, h := range Hooks {
		if err := m.ensureJump(NAT, h, JumpRule()); err != nil {
			return err
		}
	}
	if marks {
		return m.ensureJump(Mangle, MarkHook, MarkJumpRule())
	}
	return nil
}

func (m *Manager) ensureJump(t Table, h Chain, rule []string) error {
	ok, err := m.tables.Exists(string(t), string(h), rule...)
	if err != nil {
		return fmt.Errorf("look for the jump from %s %s: %w", t, h, err)
	}
	if ok {
		return nil
	}
	if err := m.tables.Insert(string(t), string(h), 1, rule...); err != nil {
		return fmt.Errorf("add the jump from %s %s: %w", t, h, err)
	}
	return nil
}

// cleanMarks removes the mark chain and the jump to it, if present.
func (m *Manager) cleanMarks() error {
	all, err := m.tables.ListChains(string(Mangle))
	if err != nil {
		return fmt.Errorf("list mangle chains: %w", err)
	}
	if !slices.Contains(all, string(ChainMark)) {
		return nil
	}
	if err := m.removeJumps(Mangle, []Chain{MarkHook}, MarkJumpRule()); err != nil {
		return err
	}
	if err := m.tables.ClearChain(string(Mangle), string(ChainMark)); err != nil {
		return fmt.Errorf("flush chain %s: %w", ChainMark, err)
	}
	if err := m.tables.DeleteChain(string(Mangle), string(ChainMark)); err != nil {
		return fmt.Errorf("delete chain %s: %w", ChainMark, err)
	}
	return nil
}

// Clean removes the jumps and every portstripe chain, the mark chain too.
func (m *Manager) Clean(ctx context.Context) error {
	chains, err := m.chains()
	if err != nil {
		return fmt.Errorf("clean rules: %w", err)
	}
	// Without the entry chain there is no jump to it, and iptables -C
	// fails on a rule naming a missing chain.
	if slices.Contains(chains, string(ChainEntry)) {
		if err := m.removeJumps(NAT, Hooks, JumpRule()); err != nil {
			return fmt.Errorf("clean rules: %w", err)
		}
	}
	if err := m.deleteChains(chains); err != nil {
		return fmt.Errorf("clean rules: %w", err)
	}
	if err := m.cleanMarks(); err != nil {
		return fmt.Errorf("clean rules: %w", err)
	}
	return nil
}

func (m *Manager) removeJumps(t Table, hooks []Chain, rule []string) error {
	for _, h := range hooks {
		// DeleteIfExists removes one copy; a hand-added duplicate would
		// keep the entry chain referenced.
		for range 100 {
			ok, err := m.tables.Exists(string(t), string(h), rule...)
			if err != nil {
				return fmt.Errorf("look for the jump from %s: %w", h, err)
			}
			if !ok {
				break
			}
			if err := m.tables.DeleteIfExists(string(t), string(h), rule...); err != nil {
				return fmt.Errorf("remove the jump from %s: %w", h, err)
			}
		}
	}
	return nil
}

// deleteChains flushes all the chains before deleting any, since they jump
// to each other.
func (m *Manager) deleteChains(chains []string) error {
	for _, c := range chains {
		if err := m.tables.ClearChain(string(NAT), c); err != nil {
			return fmt.Errorf("flush chain %s: %w", c, err)
		}
	}
	for _, c := range chains {
		if err := m.tables.DeleteChain(string(NAT), c); err != nil {
			return fmt.Errorf("delete chain %s: %w", c, err)
		}
	}
	return nil
}

// chains lists the installed portstripe chains.
func (m *Manager) chains() ([]string, error) {
	all, err := m.tables.ListChains(string(NAT))
	if err != nil {
		return nil, fmt.Errorf("list chains: %w", err)
	}
	var out []string
	for _, c := range all {
		if owned(c) {
			out = append(out, c)
		}
	}
	return out, nil
}

// owned reports whether a chain name is portstripe's.
func owned(chain string) bool {
	return chain == Prefix || strings.HasPrefix(chain, Prefix+"-")
}

// Observed is what the kernel holds of portstripe's: its chains and rules,
// and which hooks jump to the entry chain.
type Observed struct {
	// Rules are the installed portstripe chains as an iptables-restore file
	// (nil when none are installed), counters left out: what Apply takes to
	// roll back, and, compared with Canonical, the test for "nothing to
	// change".
	Rules []byte
	// MissingJumps are the hooks without a jump to the entry chain, in
	// Hooks order (a flushed PREROUTING, another tool's restore).
	MissingJumps []Chain
	// MissingMarkJump: the mark chain is there, but mangle OUTPUT does not
	// jump to it.
	MissingMarkJump bool
}

// Observe reads the nat and mangle tables (one iptables-save each) and
// returns portstripe's part of them.
func (m *Manager) Observe(ctx context.Context) (Observed, error) {
	nat, mangle, err := m.save(ctx, m.netns)
	if err != nil {
		return Observed{}, fmt.Errorf("read current rules: %w", err)
	}
	marks := ownedRules(mangle, Mangle)
	o := Observed{Rules: append(ownedRules(nat, NAT), marks...)}
	jumps := hookJumps(nat, Hooks, ChainEntry)
	for _, h := range Hooks {
		if !jumps[h] {
			o.MissingJumps = append(o.MissingJumps, h)
		}
	}
	o.MissingMarkJump = marks != nil && !hookJumps(mangle, []Chain{MarkHook}, ChainMark)[MarkHook]
	return o, nil
}

// save runs iptables-save for the nat and the mangle table in netns.
func (m *Manager) save(ctx context.Context, netns string) (nat, mangle []byte, err error) {
	if nat, err = m.run.Run(ctx, inNetns(netns, Command{Name: m.saveCmd(), Args: []string{"-t", string(NAT)}})); err != nil {
		return nil, nil, err
	}
	if mangle, err = m.run.Run(ctx, inNetns(netns, Command{Name: m.saveCmd(), Args: []string{"-t", string(Mangle)}})); err != nil {
		return nil, nil, err
	}
	return nat, mangle, nil
}

// hookJumps reports which hooks have a rule jumping to target.
func hookJumps(save []byte, hooks []Chain, target Chain) map[Chain]bool {
	out := map[Chain]bool{}
	for _, line := range strings.Split(string(save), "\n") {
		f := strings.Fields(line)
		if len(f) >= 4 && f[0] == "-A" && slices.Contains(hooks, Chain(f[1])) &&
			f[len(f)-2] == "-j" && f[len(f)-1] == string(target) {
			out[Chain(f[1])] = true
		}
	}
	return out
}

// RemoveJumps deletes the jumps from the given hooks: a rollback puts back
// a machine whose hooks had none.
func (m *Manager) RemoveJumps(ctx context.Context, hooks []Chain) error {
	if err := m.removeJumps(NAT, hooks, JumpRule()); err != nil {
		return fmt.Errorf("remove jumps: %w", err)
	}
	return nil
}

// ownedRules keeps portstripe's chains and rules of one table from
// iptables-save output.
func ownedRules(save []byte, table Table) []byte {
	var decls, rules bytes.Buffer
	sc := bufio.NewScanner(bytes.NewReader(save))
	sc.Buffer(nil, 1<<20)
	in := false
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "*"):
			in = line == "*"+string(table)
		case !in:
		case strings.HasPrefix(line, ":"):
			if f := strings.Fields(line[1:]); len(f) > 0 && owned(f[0]) {
				decls.WriteString(line + "\n")
			}
		case strings.HasPrefix(line, "-A "):
			if f := strings.Fields(line); len(f) > 1 && owned(f[1]) {
				rules.WriteString(line + "\n")
			}
		}
	}
	if decls.Len() == 0 {
		return nil
	}
	var out bytes.Buffer
	out.WriteString("*" + string(table) + "\n")
	out.Write(decls.Bytes())
	out.Write(rules.Bytes())
	out.WriteString("COMMIT\n")
	return out.Bytes()
}

// Counter is how many packets and bytes one portstripe rule took.
type Counter struct {
	Chain   string `json:"chain"`
	Comment string `json:"comment"`
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// Counters returns the counters of the commented rules in the portstripe
// chains other than the entry chain, in chain and rule order: per UDP
// decision (which service first packets went to), per range.
func (m *Manager) Counters(ctx context.Context) ([]Counter, error) {
	chains, err := m.chains()
	if err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	var out []Counter
	for _, c := range chains {
		if c == string(ChainEntry) {
			continue
		}
		rules, err := m.tables.ListWithCounters(string(NAT), c)
		if err != nil {
			return nil, fmt.Errorf("read counters of %s: %w", c, err)
		}
		for _, r := range rules {
			cnt, ok, err := parseCounter(r)
			if err != nil {
				return nil, fmt.Errorf("read counters of %s: %w", c, err)
			}
			if ok {
				out = append(out, cnt)
			}
		}
	}
	return out, nil
}

// parseCounter reads an `iptables -v -S` rule line:
// -A CHAIN ... -m comment --comment "text" -c PACKETS BYTES -j ...
func parseCounter(line string) (Counter, bool, error) {
	w, err := SplitArgs(line)
	if err != nil {
		return Counter{}, false, err
	}
	if len(w) < 2 || w[0] != "-A" {
		return Counter{}, false, nil
	}
	c := Counter{Chain: w[1]}
	hasComment, hasCount := false, false
	for i := 2; i < len(w); i++ {
		switch {
		case w[i] == "--comment" && i+1 < len(w):
			c.Comment, hasComment = w[i+1], true
			i++
		case w[i] == "-c" && i+2 < len(w):
			if c.Packets, err = strconv.ParseUint(w[i+1], 10, 64); err != nil {
				return Counter{}, false, fmt.Errorf("packet count in %q: %w", line, err)
			}
			if c.Bytes, err = strconv.ParseUint(w[i+2], 10, 64); err != nil {
				return Counter{}, false, fmt.Errorf("byte count in %q: %w", line, err)
			}
			hasCount = true
			i += 2
		}
	}
	return c, hasComment && hasCount, nil
}

// SplitArgs splits a rule line (of iptables-save output or a restore file)
// as iptables-restore does: on blanks, with double-quoted arguments in which
// a backslash escapes the next character.
func SplitArgs(line string) ([]string, error) {
	var out []string
	var cur strings.Builder
	inWord, inQuote, escaped := false, false, false
	for _, r := range line {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case inQuote && r == '\\':
			escaped = true
		case r == '"':
			inQuote = !inQuote
			inWord = true
		case !inQuote && (r == ' ' || r == '\t'):
			if inWord {
				out = append(out, cur.String())
				cur.Reset()
				inWord = false
			}
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if inQuote {
		return nil, fmt.Errorf("unterminated quote in %q", line)
	}
	if inWord {
		out = append(out, cur.String())
	}
	return out, nil
}

// ErrNotRoot is returned by Check and Canonical when this process cannot
// create the throwaway network namespace they need (firewall.ErrNotRoot).
var ErrNotRoot = firewall.ErrNotRoot

// Check loads rules into a throwaway network namespace and reports whether
// the kernel takes them. It loads them for real rather than with
// iptables-restore --test, because --test accepts a jump to a chain that
// does not exist.
func (m *Manager) Check(ctx context.Context, rules []byte) error {
	_, err := m.Canonical(ctx, rules)
	return err
}

// Canonical loads rules into a throwaway network namespace and returns them
// as Observe would after Apply: the form to compare with Observe to tell
// whether an apply would change anything.
func (m *Manager) Canonical(ctx context.Context, rules []byte) (out []byte, err error) {
	if !isRoot() {
		return nil, fmt.Errorf("check rules: %w", ErrNotRoot)
	}
	err = sysexec.Throwaway(ctx, m.run, func(ns string) error {
		if _, err := m.run.Run(ctx, inNetns(ns, Command{Name: m.restoreCmd(), Args: []string{"--noflush"}, Stdin: rules})); err != nil {
			return restoreError(rules, err)
		}
		nat, mangle, err := m.save(ctx, ns)
		out = append(ownedRules(nat, NAT), ownedRules(mangle, Mangle)...)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("check rules: %w", err)
	}
	return out, nil
}

// declaredChains returns the chains a restore file declares (":NAME ...").
func declaredChains(rules []byte) map[string]bool {
	out := map[string]bool{}
	for _, line := range strings.Split(string(rules), "\n") {
		if strings.HasPrefix(line, ":") {
			if f := strings.Fields(line[1:]); len(f) > 0 {
				out[f[0]] = true
			}
		}
	}
	return out
}

// RestoreError is an iptables-restore failure located in the file.
type RestoreError struct {
	// Line is the 1-based line iptables-restore names; 0 if it names none.
	// iptables-nft checks some things (jump targets) only at COMMIT, and
	// then names the COMMIT line.
	Line int
	// Context is that line with the two before and after, numbered, and,
	// when the line is COMMIT, the first rule using the name the message
	// quotes.
	Context string
	Err     error
}

func (e *RestoreError) Error() string {
	if e.Line == 0 {
		return e.Err.Error()
	}
	return fmt.Sprintf("line %d failed: %v\n%s", e.Line, e.Err, e.Context)
}

func (e *RestoreError) Unwrap() error { return e.Err }

var (
	// failedLine matches iptables-restore's "line 12 failed" (legacy) and
	// "Error occurred at line: 12" (nft).
	failedLine = regexp.MustCompile(`line:? (\d+)`)
	// quotedName matches "Chain 'X' does not exist" and the like.
	quotedName = regexp.MustCompile(`'([^' ]+)'`)
)

func restoreError(rules []byte, err error) error {
	var ee *ExecError
	if !errors.As(err, &ee) {
		return err
	}
	m := failedLine.FindStringSubmatch(ee.Stderr)
	if m == nil {
		return err
	}
	n, _ := strconv.Atoi(m[1])
	lines := strings.Split(string(rules), "\n")
	var ctx strings.Builder
	show := func(i int, mark string) {
		fmt.Fprintf(&ctx, "%s%4d | %s\n", mark, i, lines[i-1])
	}
	for i := max(n-2, 1); i <= min(n+2, len(lines)); i++ {
		mark := "  "
		if i == n {
			mark = "> "
		}
		show(i, mark)
	}
	if n >= 1 && n <= len(lines) && strings.TrimSpace(lines[n-1]) == "COMMIT" {
		if q := quotedName.FindStringSubmatch(ee.Stderr); q != nil {
			for i, l := range lines {
				if strings.HasPrefix(l, "-") && slices.Contains(strings.Fields(l), q[1]) {
					ctx.WriteString("the first rule naming " + q[1] + ":\n")
					show(i+1, "> ")
					break
				}
			}
		}
	}
	return &RestoreError{Line: n, Context: strings.TrimSuffix(ctx.String(), "\n"), Err: err}
}

// netnsTables runs go-iptables in a network namespace.
type netnsTables struct {
	t     Tables
	netns string
}

func (n netnsTables) do(f func() error) error { return InNetns(n.netns, f) }

func (n netnsTables) Exists(table, chain string, rulespec ...string) (ok bool, err error) {
	err = n.do(func() error { ok, err = n.t.Exists(table, chain, rulespec...); return err })
	return ok, err
}

func (n netnsTables) Insert(table, chain string, pos int, rulespec ...string) error {
	return n.do(func() error { return n.t.Insert(table, chain, pos, rulespec...) })
}

func (n netnsTables) DeleteIfExists(table, chain string, rulespec ...string) error {
	return n.do(func() error { return n.t.DeleteIfExists(table, chain, rulespec...) })
}

func (n netnsTables) ListChains(table string) (out []string, err error) {
	err = n.do(func() error { out, err = n.t.ListChains(table); return err })
	return out, err
}

func (n netnsTables) ListWithCounters(table, chain string) (out []string, err error) {
	err = n.do(func() error { out, err = n.t.ListWithCounters(table, chain); return err })
	return out, err
}

func (n netnsTables) ClearChain(table, chain string) error {
	return n.do(func() error { return n.t.ClearChain(table, chain) })
}

func (n netnsTables) DeleteChain(table, chain string) error {
	return n.do(func() error { return n.t.DeleteChain(table, chain) })
}

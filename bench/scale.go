package main

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"slices"
	"strings"
	"time"

	goiptables "github.com/coreos/go-iptables/iptables"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
)

// scalePoint is one generated node's compile and apply numbers.
type scalePoint struct {
	Series             string // "services" or "ranges"
	X                  int    // services or striped ranges asked for
	Services, Ranges   int    // in the plan
	Lists, Rules       int
	NaiveRules         int
	Compile            time.Duration
	Restore            time.Duration // iptables.Manager.Apply, from empty chains
	PerRule            time.Duration // one go-iptables call per chain and rule (extrapolated when cut)
	PerRuleDone        int           // calls made before the time cap
	PerRuleCalls       int           // calls needed
	PerRuleExtrapolate bool
}

// scaleNode generates a node: for the services series, one striped tls-auth
// instance plus n-1 tls-crypt instances each owning a 5-port range; for the
// ranges series, two striped instances on n disjoint 2-port ranges.
func scaleNode(series string, n int) []byte {
	var b strings.Builder
	b.WriteString("name: scale\naddresses: [198.51.100.2]\nhaproxy: {listen_port: 29000}\n")
	if series == "ranges" {
		var rs []string
		if n == 1 {
			rs = []string{`"1-29999"`}
		}
		for k := 0; n > 1 && k < n; k++ {
			rs = append(rs, fmt.Sprintf(`"%d-%d"`, 3*k+1, 3*k+2))
		}
		fmt.Fprintf(&b, "striped: {tcp: [%s], udp: [%s]}\n", strings.Join(rs, ","), strings.Join(rs, ","))
		b.WriteString("services:\n")
		b.WriteString("  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443, tcp: 127.0.0.1:1194}\n")
		b.WriteString("  - {name: ecc, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060, tcp: 127.0.0.1:5060}\n")
		return []byte(b.String())
	}
	b.WriteString("services:\n")
	b.WriteString("  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443, tcp: 127.0.0.1:1194}\n")
	for i := 0; i < n-1; i++ {
		p := 1000 + 25*i
		fmt.Fprintf(&b, "  - {name: ed%d, kind: openvpn, tls: {mode: tls-crypt}, udp: %d, tcp: \"127.0.0.1:%d\", dedicated: [\"%d-%d\"]}\n", i, p, p, p, p+4)
	}
	return []byte(b.String())
}

// median is the middle value of s (the upper one of an even count).
func median[T cmp.Ordered](s []T) T {
	s = slices.Clone(s)
	slices.Sort(s)
	return s[len(s)/2]
}

// naiveRules counts one rule per port and decision, as hand-written rules
// without ranges would need: per UDP port one rule per signature (plus one
// for a default that diverts), per TCP port one DNAT.
func naiveRules(res *compiler.Result) int {
	total := 0
	for _, rg := range res.Plan.Ranges {
		ports := int(rg.To) - int(rg.From) + 1
		l := res.Plan.Lists[rg.List]
		per := 1
		if rg.Proto == node.UDP {
			per = len(l.Decisions)
			if !l.Default.Rejects() {
				per++
			}
		}
		total += ports * per
	}
	return total
}

func countRules(rules []byte) int { return bytes.Count(rules, []byte("\n-A ")) }

// scale measures compile time, apply time with one iptables-restore and
// with one go-iptables call per rule, and rule counts, as the node grows;
// then the seed node's apply time. Everything runs in a namespace of its
// own with no traffic.
func (r *run) scale(ctx context.Context) error {
	// Every apply gets a new namespace: removing thousands of chains one
	// go-iptables call at a time (Manager.Clean) would take longer than
	// the measurements.
	var del func() error
	defer func() {
		if del != nil {
			del()
		}
	}()
	fresh := func() (testbed.Netns, *iptables.Manager, error) {
		if del != nil {
			del()
		}
		ns, d, err := testbed.NewNetns(nsPrefix + "s")
		if err != nil {
			return "", nil, err
		}
		del = d
		m, err := iptables.New(iptables.Options{Netns: string(ns)})
		return ns, m, err
	}
	sizes := map[string][]int{"services": {1, 10, 100, 1000}, "ranges": {1, 10, 100, 1000, 10000}}
	if r.cfg.quick {
		sizes = map[string][]int{"services": {1, 10, 100}, "ranges": {1, 100, 1000}}
	}
	perRuleCap := r.d(15*time.Second, 2*time.Second)
	for _, series := range []string{"services", "ranges"} {
		for _, n := range sizes[series] {
			data := scaleNode(series, n)
			var (
				res *compiler.Result
				err error
			)
			var cts []time.Duration
			for range 3 {
				t0 := time.Now()
				if res, err = compileNode(data, fmt.Sprintf("%s-%d.yaml", series, n)); err != nil {
					return fmt.Errorf("%s %d: %w", series, n, err)
				}
				cts = append(cts, time.Since(t0))
			}
			rules := res.Files[compiler.RulesFile]
			p := scalePoint{Series: series, X: n, Services: len(res.Node.Services), Ranges: len(res.Plan.Ranges),
				Lists: len(res.Plan.Lists), Rules: countRules(rules), NaiveRules: naiveRules(res), Compile: median(cts)}
			var ats []time.Duration
			for range 3 {
				_, m, err := fresh()
				if err != nil {
					return err
				}
				t0 := time.Now()
				if err := m.Apply(ctx, rules); err != nil {
					return fmt.Errorf("%s %d: %w", series, n, err)
				}
				ats = append(ats, time.Since(t0))
			}
			p.Restore = median(ats)
			ns, _, err := fresh()
			if err != nil {
				return err
			}
			if err := perRule(ns, rules, perRuleCap, &p); err != nil {
				return fmt.Errorf("%s %d per rule: %w", series, n, err)
			}
			r.rep.scale = append(r.rep.scale, p)
			r.log.Info("scale", "series", series, "n", n, "ranges", p.Ranges, "rules", p.Rules, "naive", p.NaiveRules,
				"compile", p.Compile.Round(time.Microsecond), "restore", p.Restore.Round(time.Microsecond), "per_rule", p.PerRule.Round(time.Millisecond), "extrapolated", p.PerRuleExtrapolate)
		}
	}
	_, m, err := fresh()
	if err != nil {
		return err
	}
	return r.seedApply(ctx, m)
}

// perRule installs rules the slow way: one go-iptables call (one iptables
// process) per chain, per rule and per jump, stopping at the time cap.
func perRule(ns testbed.Netns, rules []byte, limit time.Duration, p *scalePoint) error {
	type call struct {
		chain string
		args  []string // nil: create the chain
		jump  bool
	}
	var calls []call
	for _, line := range strings.Split(string(rules), "\n") {
		switch {
		case strings.HasPrefix(line, ":"):
			calls = append(calls, call{chain: strings.Fields(line[1:])[0]})
		case strings.HasPrefix(line, "-A "):
			args, err := iptables.SplitArgs(line)
			if err != nil {
				return err
			}
			calls = append(calls, call{chain: args[1], args: args[2:]})
		}
	}
	for _, h := range iptables.Hooks {
		calls = append(calls, call{chain: string(h), args: iptables.JumpRule(), jump: true})
	}
	p.PerRuleCalls = len(calls)
	return ns.Do(func() error {
		ipt, err := goiptables.New(goiptables.IPFamily(goiptables.ProtocolIPv4), goiptables.Timeout(5))
		if err != nil {
			return err
		}
		t0 := time.Now()
		for i, c := range calls {
			if time.Since(t0) > limit {
				p.PerRuleDone = i
				p.PerRuleExtrapolate = true
				p.PerRule = time.Duration(float64(time.Since(t0)) * float64(len(calls)) / float64(i))
				return nil
			}
			switch {
			case c.args == nil:
				err = ipt.NewChain("nat", c.chain)
			case c.jump:
				err = ipt.Insert("nat", c.chain, 1, c.args...)
			default:
				err = ipt.Append("nat", c.chain, c.args...)
			}
			if err != nil {
				return err
			}
		}
		p.PerRuleDone = len(calls)
		p.PerRule = time.Since(t0)
		return nil
	})
}

// seedResult is the built-in seed node's compile and apply time.
type seedResult struct {
	Compile, Fresh, Reapply time.Duration
	Rules                   int
}

func (r *run) seedApply(ctx context.Context, m *iptables.Manager) error {
	var s seedResult
	var cs, fs, rs []time.Duration
	for range 7 {
		t0 := time.Now()
		res, err := compiler.Compile(node.Options{})
		if err != nil {
			return err
		}
		cs = append(cs, time.Since(t0))
		rules := res.Files[compiler.RulesFile]
		s.Rules = countRules(rules)
		if err := m.Clean(ctx); err != nil {
			return err
		}
		t0 = time.Now()
		if err := m.Apply(ctx, rules); err != nil {
			return err
		}
		fs = append(fs, time.Since(t0))
		t0 = time.Now()
		if err := m.Apply(ctx, rules); err != nil {
			return err
		}
		rs = append(rs, time.Since(t0))
	}
	s.Compile, s.Fresh, s.Reapply = median(cs), median(fs), median(rs)
	r.rep.seed = &s
	r.log.Info("seed", "compile", s.Compile, "apply", s.Fresh, "reapply", s.Reapply)
	return m.Clean(ctx)
}

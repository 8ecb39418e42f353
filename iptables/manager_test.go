package iptables

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
)

// recorder is a Runner that records commands and answers from a script.
type recorder struct {
	cmds []Command
	// answer returns the stdout and error for a command; nil answers "".
	answer func(Command) ([]byte, error)
}

func (r *recorder) Run(_ context.Context, c Command) ([]byte, error) {
	r.cmds = append(r.cmds, c)
	if r.answer == nil {
		return nil, nil
	}
	return r.answer(c)
}

func (r *recorder) commands() []string {
	var out []string
	for _, c := range r.cmds {
		out = append(out, c.String())
	}
	return out
}

// fakeTables keeps nat chains in memory and records what changed them.
type fakeTables struct {
	chains map[string][]string // chain -> rule specs, joined by spaces
	order  []string
	calls  []string
}

func newFakeTables(chains ...string) *fakeTables {
	f := &fakeTables{chains: map[string][]string{}}
	for _, c := range append([]string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING"}, chains...) {
		f.chains[c] = nil
		f.order = append(f.order, c)
	}
	return f
}

func (f *fakeTables) Exists(_, chain string, spec ...string) (bool, error) {
	return slices.Contains(f.chains[chain], strings.Join(spec, " ")), nil
}

func (f *fakeTables) Insert(_, chain string, pos int, spec ...string) error {
	f.calls = append(f.calls, fmt.Sprintf("-I %s %d %s", chain, pos, strings.Join(spec, " ")))
	f.chains[chain] = slices.Insert(f.chains[chain], pos-1, strings.Join(spec, " "))
	return nil
}

func (f *fakeTables) DeleteIfExists(_, chain string, spec ...string) error {
	f.calls = append(f.calls, fmt.Sprintf("-D %s %s", chain, strings.Join(spec, " ")))
	if i := slices.Index(f.chains[chain], strings.Join(spec, " ")); i >= 0 {
		f.chains[chain] = slices.Delete(f.chains[chain], i, i+1)
	}
	return nil
}

func (f *fakeTables) ListChains(string) ([]string, error) { return slices.Clone(f.order), nil }

func (f *fakeTables) ListWithCounters(_, chain string) ([]string, error) {
	out := []string{"-N " + chain}
	for _, r := range f.chains[chain] {
		out = append(out, "-A "+chain+" "+r)
	}
	return out, nil
}

func (f *fakeTables) ClearChain(_, chain string) error {
	f.calls = append(f.calls, "-F "+chain)
	f.chains[chain] = nil
	return nil
}

func (f *fakeTables) DeleteChain(_, chain string) error {
	f.calls = append(f.calls, "-X "+chain)
	if len(f.chains[chain]) > 0 {
		return fmt.Errorf("chain %s is not empty", chain)
	}
	delete(f.chains, chain)
	f.order = slices.DeleteFunc(f.order, func(c string) bool { return c == chain })
	return nil
}

// restoreCreates makes a recorder whose iptables-restore declares the file's
// chains in the fake tables, as the real one would.
func restoreCreates(f *fakeTables) *recorder {
	return &recorder{answer: func(c Command) ([]byte, error) {
		if c.Name == "iptables-restore" || slices.Contains(c.Args, "iptables-restore") {
			for ch := range declaredChains(c.Stdin) {
				if _, ok := f.chains[ch]; !ok {
					f.chains[ch] = nil
					f.order = append(f.order, ch)
				}
			}
		}
		return nil, nil
	}}
}

func TestApply(t *testing.T) {
	ctx := context.Background()
	rules := Render(seedPlan(t))
	tables := newFakeTables("KUBE-SERVICES", "PORTSTRIPE-U-deadbeef")
	tables.chains["PREROUTING"] = []string{"-j KUBE-SERVICES"}
	run := restoreCreates(tables)
	m, err := New(Options{Runner: run, Tables: tables})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Apply(ctx, rules); err != nil {
		t.Fatal(err)
	}
	if got := run.commands(); len(got) != 1 || got[0] != "iptables-restore --noflush" || string(run.cmds[0].Stdin) != string(rules) {
		t.Errorf("commands = %q, want one iptables-restore --noflush fed the rules", got)
	}
	jump := strings.Join(JumpRule(), " ")
	wantCalls := []string{
		"-I PREROUTING 1 " + jump,
		"-I OUTPUT 1 " + jump,
		"-F PORTSTRIPE-U-deadbeef",
		"-X PORTSTRIPE-U-deadbeef",
	}
	if !slices.Equal(tables.calls, wantCalls) {
		t.Errorf("table calls =\n  %q\nwant\n  %q", tables.calls, wantCalls)
	}
	if got := tables.chains["PREROUTING"]; !slices.Equal(got, []string{jump, "-j KUBE-SERVICES"}) {
		t.Errorf("PREROUTING = %q, want the jump first and the other rule kept", got)
	}

	// Applying again adds no second jump and deletes nothing.
	tables.calls = nil
	if err := m.Apply(ctx, rules); err != nil {
		t.Fatal(err)
	}
	if len(tables.calls) != 0 {
		t.Errorf("second apply changed tables: %q", tables.calls)
	}
	if _, ok := tables.chains["KUBE-SERVICES"]; !ok {
		t.Error("apply deleted another tool's chain")
	}
}

func TestApplyNetns(t *testing.T) {
	run := &recorder{}
	m, _ := New(Options{Netns: "ns1", Runner: run, Tables: newFakeTables()})
	_ = m.Apply(context.Background(), Render(seedPlan(t)))
	if got := run.commands(); len(got) == 0 || got[0] != "ip netns exec ns1 iptables-restore --noflush" {
		t.Errorf("commands = %q, want iptables-restore inside ns1", got)
	}
}

func TestApplyRestoreError(t *testing.T) {
	rules := Render(seedPlan(t))
	lines := strings.Split(string(rules), "\n")
	bad := 0
	for i, l := range lines {
		if strings.HasPrefix(l, "-A PORTSTRIPE-TCP") {
			bad = i + 1
			break
		}
	}
	run := &recorder{answer: func(c Command) ([]byte, error) {
		return nil, &ExecError{Command: c, Err: errors.New("exit status 2"),
			Stderr: fmt.Sprintf("iptables-restore v1.8.9 (nf_tables): unknown option\nError occurred at line: %d\nTry `iptables-restore -h'", bad)}
	}}
	tables := newFakeTables()
	m, _ := New(Options{Runner: run, Tables: tables})
	err := m.Apply(context.Background(), rules)
	var re *RestoreError
	if !errors.As(err, &re) || re.Line != bad {
		t.Fatalf("err = %v, want a RestoreError at line %d", err, bad)
	}
	for _, want := range []string{fmt.Sprintf("line %d failed", bad), "> " + fmt.Sprintf("%4d | ", bad) + lines[bad-1], lines[bad-2], lines[bad]} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error does not show %q:\n%v", want, err)
		}
	}
	if len(tables.calls) != 0 {
		t.Errorf("failed restore still changed tables: %q", tables.calls)
	}
}

func TestApplyNeedsEntry(t *testing.T) {
	m, _ := New(Options{Runner: &recorder{}, Tables: newFakeTables()})
	if err := m.Apply(context.Background(), []byte("*nat\nCOMMIT\n")); err == nil {
		t.Error("apply of a file without PORTSTRIPE succeeded")
	}
}

func TestClean(t *testing.T) {
	jump := strings.Join(JumpRule(), " ")
	tables := newFakeTables("PORTSTRIPE", "PORTSTRIPE-UDP", "PORTSTRIPE-U-1", "PORTSTRIPEX", "OTHER")
	tables.chains["PREROUTING"] = []string{jump, "-j OTHER", jump}
	tables.chains["OUTPUT"] = []string{jump}
	tables.chains["PORTSTRIPE"] = []string{"-j PORTSTRIPE-UDP"}
	tables.chains["PORTSTRIPE-UDP"] = []string{"-j PORTSTRIPE-U-1"}
	m, _ := New(Options{Runner: &recorder{}, Tables: tables})
	if err := m.Clean(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := tables.order; !slices.Equal(got, []string{"PREROUTING", "INPUT", "OUTPUT", "POSTROUTING", "PORTSTRIPEX", "OTHER"}) {
		t.Errorf("chains left = %q", got)
	}
	if got := tables.chains["PREROUTING"]; !slices.Equal(got, []string{"-j OTHER"}) {
		t.Errorf("PREROUTING = %q, want only the other tool's rule", got)
	}
	if len(tables.chains["OUTPUT"]) != 0 {
		t.Errorf("OUTPUT = %q", tables.chains["OUTPUT"])
	}
}

func TestObserve(t *testing.T) {
	save := `# Generated by iptables-save v1.8.9 (nf_tables) on Wed Nov 25 11:48:34 2026
*nat
:PREROUTING ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:PORTSTRIPE - [0:0]
:PORTSTRIPE-UDP - [0:0]
:DOCKER - [0:0]
-A PREROUTING -m comment --comment portstripe -j PORTSTRIPE
-A PREROUTING -j DOCKER
-A PORTSTRIPE -d 198.51.100.1/32 -p udp -j PORTSTRIPE-UDP
-A DOCKER -j RETURN
COMMIT
# Completed on Wed Nov 25 11:48:34 2026
`
	want := `*nat
:PORTSTRIPE - [0:0]
:PORTSTRIPE-UDP - [0:0]
-A PORTSTRIPE -d 198.51.100.1/32 -p udp -j PORTSTRIPE-UDP
COMMIT
`
	run := &recorder{answer: func(Command) ([]byte, error) { return []byte(save), nil }}
	m, _ := New(Options{Runner: run, Tables: newFakeTables()})
	got, err := m.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if string(got.Rules) != want {
		t.Errorf("Observe().Rules =\n%s\nwant\n%s", got.Rules, want)
	}
	// PREROUTING has the jump, OUTPUT lost it (a flush, another tool).
	if !slices.Equal(got.MissingJumps, []Chain{"OUTPUT"}) {
		t.Errorf("MissingJumps = %q, want [OUTPUT]", got.MissingJumps)
	}
	if run.cmds[0].String() != "iptables-save -t nat" {
		t.Errorf("ran %s", run.cmds[0])
	}

	run.answer = func(Command) ([]byte, error) { return []byte("*nat\n:PREROUTING ACCEPT [0:0]\nCOMMIT\n"), nil }
	if got, _ := m.Observe(context.Background()); got.Rules != nil || len(got.MissingJumps) != len(Hooks) {
		t.Errorf("Observe with nothing installed = %q, missing jumps %q; want nil and every hook", got.Rules, got.MissingJumps)
	}
}

func TestCounters(t *testing.T) {
	tables := newFakeTables("PORTSTRIPE", "PORTSTRIPE-U-1")
	tables.chains["PORTSTRIPE"] = []string{`-d 198.51.100.1/32 -p udp -c 9 9 -j PORTSTRIPE-UDP`}
	tables.chains["PORTSTRIPE-U-1"] = []string{
		`-p udp -m u32 --u32 "0x0>>0x16&0x3c@0x4>>0x10=0x5e" -m comment --comment "openvpn_rsa: OpenVPN tls-auth SHA512 on udp 1-5060" -c 3 342 -j DNAT --to-destination :443`,
		`-p udp -m comment --comment default -c 1 42 -j DNAT --to-destination :5061`,
		`-p udp -c 5 5 -j RETURN`,
	}
	m, _ := New(Options{Runner: &recorder{}, Tables: tables})
	got, err := m.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []Counter{
		{Chain: "PORTSTRIPE-U-1", Comment: "openvpn_rsa: OpenVPN tls-auth SHA512 on udp 1-5060", Packets: 3, Bytes: 342},
		{Chain: "PORTSTRIPE-U-1", Comment: "default", Packets: 1, Bytes: 42},
	}
	if !slices.Equal(got, want) {
		t.Errorf("Counters =\n  %+v\nwant\n  %+v", got, want)
	}
}

func TestSplitArgs(t *testing.T) {
	tests := []struct {
		in   string
		want []string
		err  bool
	}{
		{`-A X -j Y`, []string{"-A", "X", "-j", "Y"}, false},
		{`--comment "a b"  -c 1 2`, []string{"--comment", "a b", "-c", "1", "2"}, false},
		{`--comment "say \"hi\""`, []string{"--comment", `say "hi"`}, false},
		{`--comment ""`, []string{"--comment", ""}, false},
		{`--comment "open`, nil, true},
	}
	for _, tt := range tests {
		got, err := SplitArgs(tt.in)
		if (err != nil) != tt.err || !slices.Equal(got, tt.want) {
			t.Errorf("SplitArgs(%q) = %q, %v; want %q, error %v", tt.in, got, err, tt.want, tt.err)
		}
	}
}

func TestCheckCleansUp(t *testing.T) {
	if !isRoot() {
		m, _ := New(Options{Runner: &recorder{}, Tables: newFakeTables()})
		if err := m.Check(context.Background(), nil); !errors.Is(err, ErrNotRoot) {
			t.Errorf("Check as non-root: err = %v, want ErrNotRoot", err)
		}
		return
	}
	run := &recorder{answer: func(c Command) ([]byte, error) {
		if slices.Contains(c.Args, "iptables-restore") {
			return nil, &ExecError{Command: c, Err: errors.New("exit status 2"), Stderr: "Error occurred at line: 1"}
		}
		return nil, nil
	}}
	m, _ := New(Options{Runner: run, Tables: newFakeTables()})
	if err := m.Check(context.Background(), []byte("bad\n")); err == nil {
		t.Fatal("Check passed a failing restore")
	}
	got := run.commands()
	if len(got) != 3 || !strings.HasPrefix(got[0], "ip netns add portstripe-check-") ||
		!strings.Contains(got[1], "iptables-restore --noflush") || !strings.HasPrefix(got[2], "ip netns delete portstripe-check-") {
		t.Errorf("commands = %q, want netns add, restore, netns delete", got)
	}
}

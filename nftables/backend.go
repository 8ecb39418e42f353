package nftables

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"

	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/internal/sysexec"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// Options configure a Backend.
type Options struct {
	// Netns runs every nft in that network namespace (from `ip netns
	// add`); empty means this process's namespace.
	Netns string
	// Runner runs nft and ip; nil means sysexec.OS, on a machine that has
	// nft.
	Runner sysexec.Runner
}

// Backend is the nftables firewall backend: portstripe's rules are the one
// table inet portstripe, loaded, listed and deleted with nft.
type Backend struct {
	run   sysexec.Runner
	netns string
	// noNft says why nft cannot run here: a machine without it holds no
	// table of ours that portstripe could see, and serves iptables nodes.
	noNft error
}

var _ firewall.Backend = (*Backend)(nil)

// New returns the nftables backend for this machine (or o.Netns).
func New(o Options) *Backend {
	b := &Backend{run: o.Runner, netns: o.Netns}
	if b.run == nil {
		b.run = sysexec.OS{}
		if _, err := exec.LookPath("nft"); err != nil {
			b.noNft = fmt.Errorf("nft not found (Debian: apt-get install nftables): %w", err)
		}
	}
	return b
}

// in returns b working in another network namespace.
func (b *Backend) in(netns string) *Backend {
	return &Backend{run: b.run, netns: netns, noNft: b.noNft}
}

func (b *Backend) nft(ctx context.Context, stdin []byte, args ...string) ([]byte, error) {
	if b.noNft != nil {
		return nil, b.noNft
	}
	return b.run.Run(ctx, sysexec.Command{Name: "nft", Args: args, Stdin: stdin}.In(b.netns))
}

// Name is the node file's `firewall` value for this backend.
func (b *Backend) Name() string { return node.NFTables }

// Files is the one file this backend loads.
var Files = []string{File}

// RenderFiles renders the plan's files: portstripe.nft.
func RenderFiles(p *plan.Plan) map[string][]byte { return map[string][]byte{File: Render(p)} }

// Files is portstripe.nft.
func (b *Backend) Files() []string { return Files }

// Apply loads portstripe.nft with one `nft -f`: one transaction, which
// replaces the table as a whole or, failing, leaves the previous one. A
// state saved by Observe (nft's JSON listing) is made loadable and loaded
// with `nft -j -f`, the same way.
func (b *Backend) Apply(ctx context.Context, files map[string][]byte) error {
	data, ok := files[File]
	if !ok {
		return fmt.Errorf("apply rules: no %s (to remove the table, use Clean)", File)
	}
	args := []string{"-f", "-"}
	if isJSON(data) {
		l, err := decodeListing(data)
		if err == nil {
			data, err = l.loadable()
		}
		if err != nil {
			return fmt.Errorf("apply rules: saved table: %w", err)
		}
		args = []string{"-j", "-f", "-"}
	}
	if _, err := b.nft(ctx, data, args...); err != nil {
		// nft reads the file on stdin and names it /dev/stdin in its
		// "FILE:LINE:COLUMNS: Error: ..." lines.
		var ee *sysexec.ExecError
		if errors.As(err, &ee) {
			ee.Stderr = strings.ReplaceAll(ee.Stderr, "/dev/stdin:", File+":")
		}
		return fmt.Errorf("apply rules: %w", err)
	}
	return nil
}

func isJSON(data []byte) bool { return bytes.HasPrefix(bytes.TrimSpace(data), []byte("{")) }

// Clean deletes the table, in one transaction that first creates it, so
// that a missing table is no error.
func (b *Backend) Clean(ctx context.Context) error {
	if b.noNft != nil {
		return nil
	}
	script := fmt.Sprintf("table %s %s {}\ndelete table %s %s\n", Family, Table, Family, Table)
	if _, err := b.nft(ctx, []byte(script), "-f", "-"); err != nil {
		return fmt.Errorf("clean rules: %w", err)
	}
	return nil
}

// Restore puts an observed state back: its saved table, or none.
func (b *Backend) Restore(ctx context.Context, was firewall.State) error {
	if !was.Installed() {
		return b.Clean(ctx)
	}
	return b.Apply(ctx, was.Saved)
}

// Observe lists the table as the kernel holds it (`nft -j list table`);
// no table, no state. The table's own base chains hook it in, so no hook
// can go missing while the table is there. Saved is the listing itself,
// made loadable only when Restore needs it.
func (b *Backend) Observe(ctx context.Context) (firewall.State, error) {
	l, raw, err := b.list(ctx)
	if err != nil {
		return firewall.State{}, fmt.Errorf("read current rules: %w", err)
	}
	st, err := l.state()
	if err != nil || !st.Installed() {
		return st, err
	}
	st.Saved = map[string][]byte{File: raw}
	return st, nil
}

// list reads our table's JSON listing, decoded and as nft wrote it; nil
// when there is no table (or no nft to see one with).
func (b *Backend) list(ctx context.Context) (listing, []byte, error) {
	if b.noNft != nil {
		return nil, nil, nil
	}
	out, err := b.nft(ctx, nil, "-j", "list", "table", Family, Table)
	if err == nil {
		l, derr := decodeListing(out)
		return l, out, derr
	}
	// nft says only "No such file or directory" for a missing table: ask
	// which tables there are rather than read its message.
	tables, terr := b.nft(ctx, nil, "-j", "list", "tables", Family)
	if terr != nil {
		return nil, nil, err
	}
	if l, derr := decodeListing(tables); derr == nil && !l.hasTable() {
		return nil, nil, nil
	}
	return nil, nil, err
}

// Canonical loads files into a throwaway network namespace and returns the
// table as Observe shows it there: what Observe shows once Apply loaded
// them. Loading for real checks what `nft -c` checks, and more.
func (b *Backend) Canonical(ctx context.Context, files map[string][]byte) (st firewall.State, err error) {
	if !sysexec.IsRoot() {
		return firewall.State{}, fmt.Errorf("check rules: %w", firewall.ErrNotRoot)
	}
	err = sysexec.Throwaway(ctx, b.run, func(ns string) error {
		in := b.in(ns)
		if err := in.Apply(ctx, files); err != nil {
			return err
		}
		st, err = in.Observe(ctx)
		return err
	})
	if err != nil {
		return firewall.State{}, fmt.Errorf("check rules: %w", err)
	}
	return st, nil
}

// Parse reads portstripe.nft as Render writes it, without loading it:
// the same sets, maps, chains and rules Canonical returns for it, and the
// chains' comments as About.
func (b *Backend) Parse(files map[string][]byte) firewall.State {
	data, ok := files[File]
	if !ok {
		return firewall.State{}
	}
	st := parseRendered(data)
	if st.Installed() {
		st.Saved = map[string][]byte{File: data}
	}
	return st
}

// parseRendered reads the table block of a rendered file: a line per
// rule, declaration or element, comments and punctuation left out.
func parseRendered(data []byte) firewall.State {
	var st firewall.State
	open := fmt.Sprintf("table %s %s {", Family, Table)
	inTable, inElems, cur := false, false, -1
	for _, line := range strings.Split(string(data), "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "" || strings.HasPrefix(t, "#"):
		case !inTable:
			inTable = t == open
		case inElems && t == "}":
			inElems = false
		case inElems:
			st.Chains[cur].Rules = append(st.Chains[cur].Rules, strings.TrimSuffix(t, ","))
		case cur < 0 && t == "}":
			inTable = false
		case cur < 0:
			f := strings.Fields(t)
			if len(f) != 3 || f[2] != "{" {
				continue
			}
			name := f[1]
			if f[0] == "set" || f[0] == "map" {
				name = "@" + name
			}
			cur = len(st.Chains)
			st.Chains = append(st.Chains, firewall.Chain{Table: StateTable, Name: name})
		case t == "}":
			cur = -1
		case t == "elements = {":
			inElems = true
		case strings.HasPrefix(t, "comment "):
			st.Chains[cur].About = strings.Trim(strings.TrimPrefix(t, "comment "), `"`)
		default:
			st.Chains[cur].Rules = append(st.Chains[cur].Rules, t)
		}
	}
	return st
}

// Counters reads how many packets each commented rule of the table took
// (the UDP decisions, the TCP map's rule), in chain and rule order,
// naming the list, service and signature of p's UDP decisions.
func (b *Backend) Counters(ctx context.Context, p *plan.Plan) ([]firewall.Counter, error) {
	l, _, err := b.list(ctx)
	if err != nil {
		return nil, fmt.Errorf("read counters: %w", err)
	}
	type decision struct{ list, service, rule string }
	named := map[[2]string]decision{}
	for _, i := range p.UDPLists() {
		list := p.Lists[i]
		chain := ListChain(list)
		for _, d := range list.Decisions {
			named[[2]string{chain, DecisionComment(list, d)}] = decision{list.Name, d.Target.Service, d.Signature.Label}
		}
		if !list.Default.Rejects() {
			named[[2]string{chain, DefaultComment(list)}] = decision{list.Name, list.Default.Service, "default"}
		}
	}
	out := l.counters()
	for i, c := range out {
		if d, ok := named[[2]string{c.Chain, c.Comment}]; ok {
			out[i].List, out[i].Service, out[i].Rule = d.list, d.service, d.rule
		}
	}
	return out, nil
}

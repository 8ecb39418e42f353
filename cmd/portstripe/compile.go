package main

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/supervisor"
)

func compileCmd(nf *nodeFlags) *cobra.Command {
	out := "out"
	c := &cobra.Command{
		Use:   "compile [-c node.yaml] [-o DIR]",
		Short: "Write haproxy.cfg, the firewall rules and plan.json for a node",
		Long: `compile reads the node file, plans every striped port and writes:

  DIR/haproxy.cfg  HAProxy 2.6 configuration: one classification frontend per
                   distinct TCP decision list, one backend per TCP service
  DIR/rules.v4     with firewall: iptables, iptables-restore input for the nat
                   table (portstripe's own chains; 'portstripe apply' hooks
                   them into PREROUTING/OUTPUT); DIR/rules.v6 the same for
                   ip6tables when the node has IPv6 addresses
  DIR/plan.json    the plan itself, as 'explain' and 'route' read it

Files are replaced atomically; the previous version of each is kept as
NAME.prev. A file whose content is already what compile makes is left alone
(said as "unchanged: DIR/NAME"), so NAME.prev keeps the real previous
version. A firewall file the node no longer has (rules.v6 once its last
IPv6 address is gone, rules.v4 after a switch to nftables) is moved to
NAME.prev ("retired: DIR/NAME"). A bad node file writes nothing and exits 2.`,
		Example: `  portstripe compile                       # the built-in seed node into ./out
  portstripe compile -c node.yaml -o /etc/portstripe`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := nf.resolve(cmd, exampleNode); err != nil {
				return err
			}
			res, err := nf.compile()
			if err != nil {
				return err
			}
			changed := changedFiles(out, res.Files)
			if err := artifact.WriteAll(out, changed); err != nil {
				return fmt.Errorf("compile: %w", err)
			}
			stale := staleFirewallFiles(out, res)
			if err := artifact.Retire(out, stale...); err != nil {
				return fmt.Errorf("compile: %w", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "node %s (%s, sha256 %.12s): %d services, %d port ranges, %d decision lists\n",
				res.Plan.Node.Name, res.Plan.Node.Source, res.Plan.Node.SHA256, len(res.Node.Services), len(res.Plan.Ranges), len(res.Plan.Lists))
			writeOverrides(w, res.Plan.Node)
			for _, n := range slices.Sorted(maps.Keys(res.Files)) {
				if _, ok := changed[n]; ok {
					fmt.Fprintf(w, "wrote %s (%d bytes)\n", filepath.Join(out, n), len(res.Files[n]))
				} else {
					fmt.Fprintf(w, "unchanged: %s\n", filepath.Join(out, n))
				}
			}
			for _, n := range stale {
				fmt.Fprintf(w, "retired: %s (kept as %s.prev): this node has no such rules\n", filepath.Join(out, n), n)
			}
			return nil
		},
	}
	c.Flags().StringVarP(&out, "output", "o", out, "directory to write haproxy.cfg, the firewall rules and plan.json into")
	return c
}

func checkCmd(nf *nodeFlags) *cobra.Command {
	dir := ""
	c := &cobra.Command{
		Use:   "check [-c node.yaml] [--dir DIR]",
		Short: "Validate the compiled haproxy.cfg and rules with the real haproxy and kernel",
		Long: `check compiles the node file (without -c: /etc/portstripe/node.yaml, or the
built-in example node when there is none) or, with --dir, reads
DIR/haproxy.cfg and the firewall files written by compile or apply, and
validates them with the real tools: 'haproxy -c -f haproxy.cfg', and the
rules loaded by the node's firewall backend (iptables-restore and
ip6tables-restore) inside a throwaway network namespace (needs root), so the
host's rules are never touched.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if dir == "" {
				if err := nf.resolve(cmd, nodeFileOrSeed); err != nil {
					return err
				}
			}
			files, cleanup, err := checkInputs(nf, dir)
			if err != nil {
				return err
			}
			defer cleanup()
			ctx := context.Background()
			w := cmd.OutOrStdout()
			if err := haproxy.Check(ctx, files.cfgPath); err != nil {
				return fmt.Errorf("check %s: %w", files.cfgName, err)
			}
			fmt.Fprintf(w, "ok  %s: haproxy -c accepts it\n", files.cfgName)
			fws, err := firewalls()
			if err != nil {
				return fmt.Errorf("check: %w", err)
			}
			fw, err := firewallOf(fws, files.plan)
			if err != nil {
				return fmt.Errorf("check: %w", err)
			}
			rules := map[string][]byte{}
			for _, n := range fw.Files() {
				if b, ok := files.files[n]; ok {
					rules[n] = b
				}
			}
			if _, err := fw.Canonical(ctx, rules); err != nil {
				return fmt.Errorf("check %s: %w", filepath.Join(files.dir, slices.Sorted(maps.Keys(rules))[0]), err)
			}
			for _, n := range slices.Sorted(maps.Keys(rules)) {
				fmt.Fprintf(w, "ok  %s: the kernel accepts it (%s, loaded into a throwaway network namespace)\n", filepath.Join(files.dir, n), fw.Name())
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", "", "check the files compile wrote into DIR instead of compiling")
	return c
}

type checkFiles struct {
	// dir is where the files are named from ("" for a fresh compile).
	dir, cfgName, cfgPath string
	files                 map[string][]byte
	plan                  *plan.Plan
}

// checkInputs finds the files to check: written by compile into dir, or
// compiled now into a temporary directory.
func checkInputs(nf *nodeFlags, dir string) (checkFiles, func(), error) {
	noop := func() {}
	if dir != "" {
		res, err := supervisor.LoadApplied(dir)
		if err != nil {
			return checkFiles{}, noop, fmt.Errorf("check: %w", err)
		}
		return checkFiles{
			dir: dir, cfgName: filepath.Join(dir, compiler.HAProxyFile), cfgPath: filepath.Join(dir, compiler.HAProxyFile),
			files: res.Files, plan: res.Plan,
		}, noop, nil
	}
	res, err := nf.compile()
	if err != nil {
		return checkFiles{}, noop, err
	}
	tmp, err := os.MkdirTemp("", "portstripe-check-")
	if err != nil {
		return checkFiles{}, noop, fmt.Errorf("check: %w", err)
	}
	cleanup := func() { os.RemoveAll(tmp) }
	if err := artifact.WriteAll(tmp, res.Files); err != nil {
		cleanup()
		return checkFiles{}, noop, fmt.Errorf("check: %w", err)
	}
	return checkFiles{
		cfgName: compiler.HAProxyFile, cfgPath: filepath.Join(tmp, compiler.HAProxyFile),
		files: res.Files, plan: res.Plan,
	}, cleanup, nil
}

// staleFirewallFiles are the firewall files in dir that this compile did
// not make (res.Unmade) but are there.
func staleFirewallFiles(dir string, res *compiler.Result) []string {
	var out []string
	for _, n := range res.Unmade() {
		if _, err := os.Lstat(filepath.Join(dir, n)); err == nil {
			out = append(out, n)
		}
	}
	return out
}

// changedFiles are the files whose content in dir differs from what was
// compiled (or that are missing): the only ones worth rewriting, since a
// rewrite moves the current version to NAME.prev. Anything unreadable at
// a name counts as changed, and WriteAll says why it cannot replace it.
func changedFiles(dir string, files map[string][]byte) map[string][]byte {
	changed := map[string][]byte{}
	for n, b := range files {
		if old, err := artifact.ReadFile(filepath.Join(dir, n)); err != nil || !bytes.Equal(old, b) {
			changed[n] = b
		}
	}
	return changed
}

// writeOverrides lists, under a command's first line about the node, what
// the environment and --set changed: what the node file does not show.
func writeOverrides(w io.Writer, n plan.NodeInfo) {
	if len(n.Overrides) == 0 {
		return
	}
	fmt.Fprintf(w, "  settings sha256 %.12s, with overrides:\n", n.SettingsSHA256)
	for _, o := range n.Overrides {
		fmt.Fprintf(w, "    %s\n", o)
	}
}

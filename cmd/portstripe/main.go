// Command portstripe compiles a VPN node's port-striping plan into iptables
// rules and haproxy.cfg, explains it, and keeps it applied on a live node.
package main

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/node"
)

// Exit codes: 2 means the operator's input (node file, flags) is wrong and
// nothing was written or applied; 1 means the machine failed. Under
// apply --dry-run --detailed-exitcode, 2 means changes are pending and
// every error is 1.
const (
	exitFailure = 1
	exitInput   = 2
	exitPending = 2
)

// usageError marks a bad command line.
type usageError struct{ error }

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	root := newRoot(stdout, stderr)
	root.SetArgs(args)
	if err := root.Execute(); err != nil {
		if errors.As(err, new(changesPending)) {
			return exitPending
		}
		fmt.Fprintln(stderr, "portstripe: "+oneLine(err.Error()))
		var ue usageError
		if errors.As(err, new(detailedError)) {
			return exitFailure
		}
		if errors.As(err, &ue) || node.IsInputError(err) {
			return exitInput
		}
		return exitFailure
	}
	return 0
}

func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// nodeFlags are the flags every command that reads a node file shares.
type nodeFlags struct {
	path string
	set  []string
}

func (f *nodeFlags) register(c *cobra.Command) {
	c.PersistentFlags().StringVarP(&f.path, "config", "c", os.Getenv("PORTSTRIPE_CONFIG"),
		"node file (YAML); env PORTSTRIPE_CONFIG; default: "+defaultNodeFile+" for apply, run, check and install-unit, the built-in example node (fixtures/seed-node.yaml) for compile, explain and route (and check when there is no "+defaultNodeFile+")")
	c.PersistentFlags().StringArrayVar(&f.set, "set", nil,
		"override a node file key, e.g. --set haproxy.inspect_delay=2s or --set 'services[1].disabled=true' (repeatable; PORTSTRIPE_HAPROXY_INSPECT_DELAY=2s works too); checked like the file, and recorded in plan.json and the headers")
}

func (f *nodeFlags) options() (node.Options, error) {
	o := node.Options{Path: f.path, Env: true, Set: map[string]string{}}
	for _, kv := range f.set {
		k, v, ok := strings.Cut(kv, "=")
		if !ok || k == "" {
			return o, usageError{fmt.Errorf("--set %q: want KEY=VALUE", kv)}
		}
		o.Set[k] = v
	}
	return o, nil
}

// defaultNodeFile is where a live node keeps its node file (a variable so
// tests can point it elsewhere).
var defaultNodeFile = "/etc/portstripe/node.yaml"

// nodeDefault is what a command reads when no node file is named.
type nodeDefault int

const (
	exampleNode    nodeDefault = iota // compile, explain, route: the built-in example
	nodeFileOrSeed                    // check: defaultNodeFile if it exists, else the example
	nodeFileOnly                      // apply, run: defaultNodeFile; the example is never applied
)

// resolve picks the node file when neither -c nor PORTSTRIPE_CONFIG named
// one, and says so on stderr when it is the built-in example.
func (f *nodeFlags) resolve(cmd *cobra.Command, d nodeDefault) error {
	if f.path != "" {
		return nil
	}
	if d != exampleNode {
		if _, err := os.Stat(defaultNodeFile); !errors.Is(err, fs.ErrNotExist) {
			f.path = defaultNodeFile
			return nil
		}
		if d == nodeFileOnly {
			return usageError{fmt.Errorf("no node file: %s does not exist; -c FILE names yours (the built-in example node is never applied)", defaultNodeFile)}
		}
	}
	fmt.Fprintln(cmd.ErrOrStderr(), "portstripe: using the built-in example node; -c FILE for yours")
	return nil
}

// compile loads and compiles the node the flags name.
func (f *nodeFlags) compile() (*compiler.Result, error) {
	o, err := f.options()
	if err != nil {
		return nil, err
	}
	return compiler.Compile(o)
}

func newRoot(stdout, stderr io.Writer) *cobra.Command {
	var nf nodeFlags
	root := &cobra.Command{
		Use:   "portstripe",
		Short: "Share every public port of a VPN node between OpenVPN, SSH, TLS and more",
		Long: `portstripe turns one declarative node file into the iptables rules and the
haproxy.cfg that let many services share every public port ("port striping"):
UDP is classified in the kernel by the first datagram's signature (u32), TCP
lands on HAProxy frontends that read the client's first bytes.

Without -c, compile, explain and route work on the built-in example node
(fixtures/seed-node.yaml), so 'portstripe explain' shows what it does at
once; apply, run and check read /etc/portstripe/node.yaml.

Exit codes: 0 ok, 1 the machine failed, 2 the node file or flags are wrong
(nothing was written or applied).`,
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	// A bare `portstripe` shows help; an unknown command is a usage error.
	root.Args = func(_ *cobra.Command, args []string) error {
		if len(args) > 0 {
			return usageError{fmt.Errorf("unknown command %q; see portstripe --help", args[0])}
		}
		return nil
	}
	root.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	root.SetOut(stdout)
	root.SetErr(stderr)
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	nf.register(root)
	root.AddCommand(
		compileCmd(&nf),
		checkCmd(&nf),
		explainCmd(&nf),
		routeCmd(&nf),
		applyCmd(&nf),
		runCmd(&nf),
		statusCmd(),
		cleanCmd(),
		installUnitCmd(&nf),
	)
	for _, c := range root.Commands() {
		c.Args = wrapArgs(c.Args)
	}
	return root
}

// wrapArgs turns positional-argument errors into usage errors (exit 2).
func wrapArgs(check cobra.PositionalArgs) cobra.PositionalArgs {
	if check == nil {
		check = cobra.NoArgs
	}
	return func(c *cobra.Command, args []string) error {
		if err := check(c, args); err != nil {
			return usageError{err}
		}
		return nil
	}
}

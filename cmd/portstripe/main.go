// Command portstripe compiles a VPN node's port-striping plan into iptables
// rules and haproxy.cfg, explains it, and keeps it applied on a live node.
package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/version"
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

// stopGrace is how long a command may take to stop after SIGTERM or
// SIGINT before portstripe exits anyway; a command whose stop does real
// work (run's cleanup) names a longer one in its stopGraceKey annotation.
const (
	stopGrace    = 750 * time.Millisecond
	stopGraceKey = "portstripe/stop-grace"
)

func main() {
	root := newRoot(os.Stdout, os.Stderr)
	args := os.Args[1:]
	ctx := stopOnSignal(root, args, os.Stderr)
	os.Exit(execute(ctx, root, args, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	return execute(context.Background(), newRoot(stdout, stderr), args, stderr)
}

// execute runs one command line and returns its exit code. A panic is a
// bug, whatever it carries: one line and exit 1, never exit 2, which says
// the operator's input is wrong.
func execute(ctx context.Context, root *cobra.Command, args []string, stderr io.Writer) (code int) {
	defer func() {
		if r := recover(); r != nil {
			fmt.Fprintf(stderr, "portstripe: internal error: %s (at %s); please report\n", oneLine(fmt.Sprint(r)), panicSite())
			code = exitFailure
		}
	}()
	root.SetArgs(args)
	if err := root.ExecuteContext(ctx); err != nil {
		if errors.As(err, new(changesPending)) {
			return exitPending
		}
		msg := err.Error()
		if cause := context.Cause(ctx); cause != nil && !strings.Contains(msg, cause.Error()) {
			msg = cause.Error() + ": " + msg
		}
		fmt.Fprintln(stderr, "portstripe: "+oneLine(msg))
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

// panicSite names the function and line that panicked, for the report:
// the first frame past the runtime's panic machinery.
func panicSite() string {
	pcs := make([]uintptr, 32)
	frames := runtime.CallersFrames(pcs[:runtime.Callers(3, pcs)])
	for inPanic := false; ; {
		f, more := frames.Next()
		switch {
		case f.Function == "runtime.gopanic" || strings.HasPrefix(f.Function, "runtime.panic"):
			inPanic = true
		case inPanic && !strings.HasPrefix(f.Function, "runtime."):
			return fmt.Sprintf("%s:%d", strings.TrimPrefix(f.Function, "github.com/portstripe/portstripe/"), f.Line)
		}
		if !more {
			return "unknown"
		}
	}
}

// stopOnSignal returns a context that SIGTERM or SIGINT cancels, with the
// signal as its cause, so every command stops what it waits for (a lock,
// a socket, a child process). A command still running its stop-grace
// later (blocked where no context reaches), or a second signal, ends the
// process with exit 1.
func stopOnSignal(root *cobra.Command, args []string, stderr io.Writer) context.Context {
	grace := stopGrace
	if c, _, err := root.Find(args); err == nil {
		if d, err := time.ParseDuration(c.Annotations[stopGraceKey]); err == nil {
			grace = d
		}
	}
	ctx, cancel := context.WithCancelCause(context.Background())
	sigs := make(chan os.Signal, 2)
	signal.Notify(sigs, syscall.SIGTERM, os.Interrupt)
	go func() {
		sig := <-sigs
		cancel(fmt.Errorf("stopped by %s", sigName(sig)))
		select {
		case sig = <-sigs:
			fmt.Fprintf(stderr, "portstripe: stopped by a second %s\n", sigName(sig))
		case <-time.After(grace):
			fmt.Fprintf(stderr, "portstripe: stopped by %s; gave up waiting %s for the command to finish\n", sigName(sig), grace)
		}
		os.Exit(exitFailure)
	}()
	return ctx
}

func sigName(s os.Signal) string {
	if s == os.Interrupt {
		return "SIGINT"
	}
	return "SIGTERM"
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
		Version:       version.Get().String(),
		SilenceErrors: true,
		SilenceUsage:  true,
	}
	root.SetVersionTemplate("portstripe {{.Version}}\n")
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
		fleetCmd(),
		logsCmd(),
		cleanCmd(),
		installUnitCmd(&nf),
		versionCmd(),
		genManCmd(),
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

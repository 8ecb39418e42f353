package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/fleet/agent"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/nftables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/routing"
	"github.com/portstripe/portstripe/supervisor"
)

const defaultDir = "/var/lib/portstripe"

// liveFlags are shared by the commands that act on this machine.
type liveFlags struct {
	dir       string
	logFormat string
}

func (f *liveFlags) register(c *cobra.Command) {
	c.Flags().StringVar(&f.dir, "dir", defaultDir, "state directory: the applied haproxy.cfg, rules.v4, plan.json (and *.prev)")
	c.Flags().StringVar(&f.logFormat, "log-format", "text", "log format on stderr: text or json")
	completeValues(c, "log-format", "text", "json")
}

func (f *liveFlags) logger(w io.Writer) (*slog.Logger, error) {
	switch f.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, nil)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, nil)), nil
	}
	return nil, usageError{fmt.Errorf("--log-format %q: want text or json", f.logFormat)}
}

// live wires the machine's firewall backends and HAProxy under an Applier.
type live struct {
	proxy   *supervisor.HAProxy
	applier *supervisor.Applier
}

// firewalls are this machine's firewall backends, by name.
func firewalls() (map[string]firewall.Backend, error) {
	ipt, err := iptables.NewBackend(iptables.Options{})
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	nft := nftables.New(nftables.Options{})
	return map[string]firewall.Backend{ipt.Name(): ipt, nft.Name(): nft}, nil
}

// firewallOf is the backend a plan's rules are in.
func firewallOf(fws map[string]firewall.Backend, p *plan.Plan) (firewall.Backend, error) {
	name := p.FirewallName()
	if fw, ok := fws[name]; ok {
		return fw, nil
	}
	return nil, fmt.Errorf("firewall %q: this portstripe has no such backend", name)
}

func newLive(dir string, p *plan.Plan, log *slog.Logger) (*live, error) {
	fws, err := firewalls()
	if err != nil {
		return nil, err
	}
	proxy := &supervisor.HAProxy{
		Config:        filepath.Join(dir, compiler.HAProxyFile),
		RunDir:        p.HAProxy.RunDir,
		MasterSocket:  p.HAProxy.MasterSocket,
		RuntimeSocket: p.HAProxy.RuntimeSocket,
		LogFile:       filepath.Join(dir, supervisor.LogFile),
		Log:           log,
	}
	return &live{
		proxy:   proxy,
		applier: &supervisor.Applier{Dir: dir, Firewalls: fws, Routes: routing.Manager{}, Proxy: proxy, Log: log},
	}, nil
}

// prepare compiles the node and wires the machine's iptables and HAProxy.
func prepare(cmd *cobra.Command, nf *nodeFlags, lf *liveFlags) (*compiler.Result, *live, error) {
	log, err := lf.logger(cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	if err := nf.resolve(cmd, nodeFileOnly); err != nil {
		return nil, nil, err
	}
	res, err := nf.compile()
	if err != nil {
		return nil, nil, err
	}
	if err := needRoot(cmd); err != nil {
		return nil, nil, err
	}
	l, err := newLive(lf.dir, res.Plan, log)
	return res, l, err
}

func needRoot(cmd *cobra.Command) error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("%s needs root: it reads and changes iptables rules and runs HAProxy on the node's ports", cmd.Name())
	}
	return nil
}

// Procs, Stats and Counters feed the metrics read at scrape time.
func (l *live) Procs(ctx context.Context) (haproxy.Procs, error)  { return l.proxy.Procs(ctx) }
func (l *live) Stats(ctx context.Context) ([]haproxy.Stat, error) { return l.proxy.Stats(ctx) }
func (l *live) Counters(ctx context.Context, p *plan.Plan) ([]firewall.Counter, error) {
	fw, err := firewallOf(l.applier.Firewalls, p)
	if err != nil {
		return nil, err
	}
	return fw.Counters(ctx, p)
}

// applyFlags are apply's flags.
type applyFlags struct {
	lf          liveFlags
	dryRun      bool
	detailed    bool
	lockTimeout time.Duration
	out         string // --out: save the dry run's plan
	planFile    string // --plan or the positional argument
	output      outputFormat
}

func applyCmd(nf *nodeFlags) *cobra.Command {
	var f applyFlags
	c := &cobra.Command{
		Use: "apply [-c node.yaml] [--dir DIR] [--dry-run [--out PLANFILE] [--detailed-exitcode]] [-o text|json|yaml] [PLANFILE]",
		// A signal mid-apply lets the rollback finish (waits end at once).
		Annotations: map[string]string{stopGraceKey: (supervisor.RollbackTimeout + time.Second).String()},
		Short:       "Compile, validate and apply a node: rules, files and HAProxy together, or nothing",
		Long: `apply compiles the node file (without -c: /etc/portstripe/node.yaml; the
built-in example node is never applied) and compares it with what the machine runs,
observed fresh (never taken from portstripe's own files): portstripe's chains
and the jumps to them in the kernel (one iptables-save), the HAProxy master on
the master socket, and the configuration hash and servers of its worker (show
info, show stat). Then it changes only what differs:

  - rules or jumps missing or different: validated in a throwaway network
    namespace, then loaded with one iptables-restore into portstripe's own
    chains, jumps from PREROUTING and OUTPUT put back;
  - files in --dir that differ: written atomically (previous versions kept as
    *.prev);
  - no HAProxy master answers (a reboot, a kill): one is started on
    <dir>/haproxy.cfg (haproxy -W -S <master socket>) in a session of its own
    that outlives portstripe, logging to <dir>/haproxy.log;
  - the worker runs another configuration: haproxy -c, then a reload through
    the master CLI, verified with show proc, show info and show stat;
  - only server addresses or maintenance differ: the runtime API, no reload.

Any failure puts the machine back as it was observed: the previous rules (or
none at all, on a first apply), the previous files, the previous worker (or no
HAProxy). Two applies at once take turns (a lock in --dir).

The plan. --dry-run touches nothing and prints what apply would do:
firewall rules added (+), removed (-) and changed in place (~), chain by chain
in evaluation order, as rules.v4 writes them (each rule's comment names its
service and port range); the jumps to add; the state files to write; for
HAProxy, the sections of haproxy.cfg that change as a diff against the one the
worker runs (when <dir>/haproxy.cfg is what it runs; otherwise the running
configuration is unknown), and whether it is started, reloaded (with the
reason) or changed through the runtime API. The last line sums it up, as
terraform does:

  Plan: 3 to add, 1 to change, 0 to remove; HAProxy: reload (frontend fe_striped changed)
  No changes: the machine matches the node file.

(to add / to change / to remove count firewall rules and jumps.) -o json
(or yaml) prints the same, typed (schema "portstripe.plan/v2", docs/json.md).

Exit codes: 0 done (or, dry, printed); 1 the machine failed (or refused a
saved plan); 2 the node file or the flags are wrong, or PLANFILE is no
portstripe plan (or one made for another --dir). With --detailed-exitcode
a dry run exits 0 when the machine matches, 2 when something would change, 1
on any error.

Saved plans. --dry-run --out FILE also saves the plan (mode 0600): the compiled
files and a fingerprint of what was observed (the installed rules, the
missing jumps, the HAProxy master, its worker's config hash and servers, the
state files). 'apply FILE' (or --plan FILE) applies exactly those files, not
a recompile of the node file, and only if the machine is still the one the
plan was made against; otherwise it refuses, exit 1, touching nothing:
"the machine changed since the plan was made: rules differ; make a new plan".`,
		Example: `  portstripe apply -c /etc/portstripe/node.yaml --dry-run
  portstripe apply --dry-run --detailed-exitcode || echo "drift or pending changes (exit 2), or an error (exit 1)"
  portstripe apply --dry-run -o json | jq .summary
  portstripe apply --dry-run --out /root/node.plan    # review it, then:
  portstripe apply /root/node.plan
  portstripe apply -c /etc/portstripe/node.yaml`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := f.check(cmd, args); err != nil {
				return err
			}
			err := f.apply(cmd, nf)
			if f.detailed && err != nil && !errors.As(err, new(changesPending)) {
				return detailedError{err}
			}
			return err
		},
	}
	f.lf.register(c)
	registerOutput(c, &f.output)
	c.Flags().BoolVar(&f.dryRun, "dry-run", false, "print the plan: what would change (rules, jumps, files, HAProxy) and why; touch nothing")
	c.Flags().BoolVar(&f.detailed, "detailed-exitcode", false, "with --dry-run: exit 0 when nothing would change, 2 when something would, 1 on any error")
	c.Flags().StringVar(&f.out, "out", "", "with --dry-run: also save the plan to this file, for 'apply FILE'")
	c.Flags().StringVar(&f.planFile, "plan", "", "apply this saved plan (same as the PLANFILE argument)")
	c.Flags().DurationVar(&f.lockTimeout, "lock-timeout", 30*time.Second, "how long to wait for another apply to finish")
	return c
}

// check refuses flags that do not go together.
func (f *applyFlags) check(cmd *cobra.Command, args []string) error {
	if len(args) == 1 {
		if f.planFile != "" && f.planFile != args[0] {
			return usageError{errors.New("two saved plans: the PLANFILE argument and --plan; name one")}
		}
		f.planFile = args[0]
	}
	switch {
	case f.detailed && !f.dryRun:
		return usageError{errors.New("--detailed-exitcode goes with --dry-run")}
	case f.out != "" && !f.dryRun:
		return usageError{errors.New("--out goes with --dry-run: it saves the plan a dry run makes")}
	case f.planFile != "" && f.dryRun:
		return usageError{errors.New("a saved plan is applied, not planned again: drop --dry-run, or make a new plan from the node file")}
	case f.planFile != "" && (cmd.Flags().Changed("config") || cmd.Flags().Changed("set")):
		return usageError{errors.New("a saved plan carries its compiled files: -c and --set go with making a plan (apply --dry-run --out FILE)")}
	}
	return nil
}

func (f *applyFlags) apply(cmd *cobra.Command, nf *nodeFlags) error {
	var (
		res   *compiler.Result
		saved *supervisor.SavedPlan
		l     *live
		err   error
	)
	if f.planFile != "" {
		saved, res, l, err = f.prepareSaved(cmd)
	} else {
		res, l, err = prepare(cmd, nf, &f.lf)
	}
	if err != nil {
		return err
	}
	// SIGTERM and SIGINT cancel it (main's stopOnSignal).
	ctx := cmd.Context()
	if f.dryRun {
		p, err := l.applier.Preview(ctx, res)
		if err != nil {
			return fmt.Errorf("dry run: %w", err)
		}
		if err := f.print(cmd, p); err != nil {
			return err
		}
		if f.out != "" {
			if err := supervisor.WritePlanFile(f.out, p, res); err != nil {
				return fmt.Errorf("save the plan: %w", err)
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "saved the plan to %s; 'portstripe apply %s' applies exactly it\n", f.out, f.out)
		}
		if f.detailed && !p.NoChanges {
			return changesPending{}
		}
		return nil
	}
	lctx, lcancel := context.WithTimeout(ctx, f.lockTimeout)
	unlock, err := supervisor.Lock(lctx, f.lf.dir)
	lcancel()
	if err != nil {
		return err
	}
	defer unlock()
	var made *supervisor.Fingerprint
	if saved != nil {
		made = &saved.Observed
	}
	p, err := l.applier.ApplyPlanned(ctx, res, made)
	if err != nil {
		return err
	}
	return f.print(cmd, p)
}

// prepareSaved reads a saved plan and wires the machine it was made for.
func (f *applyFlags) prepareSaved(cmd *cobra.Command) (*supervisor.SavedPlan, *compiler.Result, *live, error) {
	log, err := f.lf.logger(cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, nil, err
	}
	saved, res, err := supervisor.ReadPlanFile(f.planFile)
	if err != nil {
		return nil, nil, nil, usageError{err}
	}
	if saved.Dir != f.lf.dir {
		return nil, nil, nil, usageError{fmt.Errorf("%s was made for --dir %s, not %s", f.planFile, saved.Dir, f.lf.dir)}
	}
	if err := needRoot(cmd); err != nil {
		return nil, nil, nil, err
	}
	l, err := newLive(f.lf.dir, res.Plan, log)
	return saved, res, l, err
}

func (f *applyFlags) print(cmd *cobra.Command, p *supervisor.ApplyPlan) error {
	return f.output.write(cmd.OutOrStdout(), p, func(w io.Writer) error {
		printPlan(w, p)
		return nil
	})
}

// ruleMarks are the marks the text plan puts before a rule, a chain, a
// file or a section.
var ruleMarks = map[string]string{"add": "+", "remove": "-", "change": "~"}

// printPlan writes a plan for a reviewer: rules by chain in evaluation
// order, jumps, files, HAProxy, then the summary line.
func printPlan(w io.Writer, p *supervisor.ApplyPlan) {
	if p.NoChanges {
		fmt.Fprintln(w, p.Summary)
		return
	}
	if len(p.Rules.Chains) > 0 {
		fmt.Fprintf(w, "Firewall rules (%s), in evaluation order (%s):\n", p.Rules.Firewall, map[string]string{
			"none":      "no portstripe rule is installed",
			"state_dir": "diff of the installed files in " + p.Dir + " and the new ones",
			"kernel":    "the installed rules are not the files in " + p.Dir + ", changed outside portstripe: diff as " + p.Rules.Firewall + " shows them",
		}[p.Rules.From])
		for _, ch := range p.Rules.Chains {
			about := ""
			if ch.About != "" {
				about = ": " + ch.About
			}
			fmt.Fprintf(w, "  %s chain %s %s%s\n", ruleMarks[ch.Action], ch.Table, ch.Chain, about)
			for _, r := range ch.Rules {
				switch r.Action {
				case "add":
					fmt.Fprintf(w, "      + %d  %s\n", r.Position, r.New)
				case "remove":
					fmt.Fprintf(w, "      - %d  %s\n", r.Position, r.Old)
				case "change":
					fmt.Fprintf(w, "      ~ %d  %s\n          → %s\n", r.Position, r.Old, r.New)
				}
			}
		}
	}
	for _, name := range p.Rules.Clean {
		fmt.Fprintf(w, "Firewall rules (%s): all removed once the %s rules serve (the node switched backends)\n", name, p.Rules.Firewall)
	}
	if len(p.Jumps) > 0 {
		fmt.Fprintln(w, "Jumps:")
		for _, h := range p.Jumps {
			fmt.Fprintf(w, "  + %s\n", iptables.JumpCommand(h))
		}
	}
	if len(p.Routes) > 0 {
		fmt.Fprintln(w, "Reply route of the transparent backends:")
		for _, r := range p.Routes {
			fmt.Fprintf(w, "  %s\n", r)
		}
	}
	if len(p.Files) > 0 {
		fmt.Fprintf(w, "State files in %s:\n", p.Dir)
		for _, f := range p.Files {
			fmt.Fprintf(w, "  %s %s\n", ruleMarks[f.Action], f.Name)
		}
	}
	printHAProxy(w, p.HAProxy)
	fmt.Fprintln(w)
	fmt.Fprintln(w, p.Summary)
}

func printHAProxy(w io.Writer, h supervisor.HAProxyPlan) {
	switch h.Action {
	case "none":
		fmt.Fprintln(w, "HAProxy: no change")
	case "runtime_api":
		fmt.Fprintln(w, "HAProxy: runtime API changes, no reload")
	default:
		fmt.Fprintf(w, "HAProxy: %s (%s)\n", h.Action, h.Reason)
	}
	if h.Running == "unknown" && h.Action != "none" {
		fmt.Fprintln(w, "  the running configuration is unknown (the worker's config hash is not that of the state directory's haproxy.cfg): no diff")
	}
	for _, s := range h.Sections {
		fmt.Fprintf(w, "  %s %s\n", ruleMarks[s.Action], s.Section)
		for _, l := range strings.Split(strings.TrimSuffix(s.Diff, "\n"), "\n") {
			fmt.Fprintln(w, "    "+l)
		}
	}
	for _, b := range h.Backends {
		// "+ web 127.0.0.1:8443", "~ ssh a → b": the mark, then the server.
		fmt.Fprintf(w, "  %s server %s\n", b[:1], b[2:])
	}
	for _, s := range h.Servers {
		if s.Addr.IsValid() {
			fmt.Fprintf(w, "  runtime API: set server %s/%s addr %s port %d\n", s.Backend, s.Server, s.Addr.Addr(), s.Addr.Port())
		}
		if s.State != "" {
			fmt.Fprintf(w, "  runtime API: %s server %s/%s\n", strings.TrimSuffix(s.State, "d"), s.Backend, s.Server)
		}
	}
}

// changesPending is apply --dry-run --detailed-exitcode's "something would
// change" (exit 2), for scripts that ask whether the machine matches.
type changesPending struct{}

func (changesPending) Error() string { return "changes pending (see above)" }

// detailedError is any error under --detailed-exitcode: exit 1, since 2
// says "changes pending" there.
type detailedError struct{ error }

func (e detailedError) Unwrap() error { return e.error }

func runCmd(nf *nodeFlags) *cobra.Command {
	var (
		lf       liveFlags
		sf       storeFlags
		metrics  string
		cleanup  bool
		debounce time.Duration
		period   time.Duration
	)
	c := &cobra.Command{
		Use: "run [-c node.yaml | --store etcd://HOST:PORT,… --fleet NAME --node NAME] [--dir DIR] [--metrics ADDR] [--period 10s] [--cleanup]",
		// Stopping with --cleanup stops HAProxy and removes the chains.
		Annotations: map[string]string{stopGraceKey: "40s"},
		Short:       "Own a live node: keep the machine running the node file, repairing drift",
		Long: `run is a controller: it keeps the machine running the node file (without
-c: /etc/portstripe/node.yaml), comparing
what it wants with what it observes (as apply does) at start, when the node
file changes (editors that write a temporary file and rename it are fine;
changes are debounced), on SIGHUP, when the HAProxy master dies, and every
--period. Whatever differs is put back and logged with the reason and what
drifted (portstripe_drift_repairs_total{what}): a jump deleted by another
firewall tool, flushed chains, a killed HAProxy, a worker on another config.

A broken node file (at start too, when an earlier apply left its state in
--dir) is logged and counted; the last applied state keeps serving until the
file is fixed. Only with no applied state does a broken file stop run (exit 2).

It attaches to a master already answering on the node's master socket (one an
earlier run or apply started); one it starts runs in a session of its own. On
SIGTERM or SIGINT, run stops and leaves HAProxy and the rules serving, so a
restart or an upgrade of portstripe drops no client; --cleanup tears down
instead (HAProxy stopped, portstripe's rules removed).

It serves, on --metrics (127.0.0.1 only unless told otherwise), /metrics,
/healthz (200 while the node serves what was last applied) and /readyz (200
only when the node file as it is now is applied). Under systemd (Type=notify)
it reports READY after the first successful pass and feeds the watchdog.

A fleet node: with --store, --fleet and --node, the node file comes from the
fleet's etcd store (written by 'portstripe fleet publish' and 'fleet
rollout') instead of -c. run reads the node's desired key, compiles the node
file in it with this portstripe's own loader and compiler (a file it refuses
is never applied: it answers NACK with the error line and keeps serving),
applies it as it would a local node file, and writes the node's status key
(ACK or NACK, generation, hashes, version, HAProxy up, drift, restarts,
counters) under a lease, so the key goes away when the node does; then it
watches the desired key. If the store is out of reach, run keeps serving
the state last applied in --dir (at start too), says so in the log, on
/readyz and in portstripe_store_connected, and reconnects with jittered
backoff. TLS and authentication as etcdctl takes them: --store-ca,
--store-cert, --store-key (etcds:// for TLS with the system's CAs), and
--store-user NAME with the password in env PORTSTRIPE_STORE_PASSWORD (NAME:PASSWORD
works too, but is visible to every user of the machine).`,
		Example: `  portstripe run -c /etc/portstripe/node.yaml
  PORTSTRIPE_STORE_PASSWORD=… portstripe run --store etcds://etcd1.example:2379,etcd2.example:2379,etcd3.example:2379 \
      --store-ca /etc/portstripe/etcd-ca.pem --store-user node-par1 --fleet vpn --node par1`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := lf.logger(cmd.ErrOrStderr())
			if err != nil {
				return err
			}
			var (
				st runStart
				ag *agent.Agent
			)
			if sf.enabled() {
				ag, st, err = sf.agent(cmd, lf.dir, log)
			} else {
				st, err = fileSource(cmd, nf, lf.dir, debounce, log)
			}
			if err != nil {
				return err
			}
			l, err := newLive(lf.dir, st.res.Plan, log)
			if err != nil {
				return err
			}
			m := supervisor.NewMetrics(l)
			if ag != nil {
				ag.SetProbe(agent.LiveProbe(l))
				if err := ag.Register(m.Registry); err != nil {
					return err
				}
			}
			r := &supervisor.Runner{
				Source:      st.src,
				Applier:     l.applier,
				HAProxy:     l.proxy,
				Metrics:     m,
				Log:         log,
				Desired:     st.res,
				InputErr:    st.inputErr,
				Period:      period,
				MetricsAddr: metrics,
				Cleanup:     cleanup,
				Notify:      sdNotify(log),
			}
			return r.Run(cmd.Context()) // until SIGTERM or SIGINT
		},
	}
	sf.register(c)
	lf.register(c)
	c.Flags().StringVar(&metrics, "metrics", "127.0.0.1:9642", "address for /metrics, /healthz and /readyz; empty disables")
	c.Flags().BoolVar(&cleanup, "cleanup", false, "tear down when stopping: stop HAProxy and remove portstripe's rules")
	c.Flags().DurationVar(&debounce, "debounce", 200*time.Millisecond, "wait this long after the last node file change before applying")
	c.Flags().DurationVar(&period, "period", supervisor.DefaultPeriod, "how often to observe the machine and repair drift")
	return c
}

// runStart is where run's desired state comes from and what it serves at
// start: the source's compile, or, when the source's input is refused
// (inputErr), the state an earlier apply left in --dir.
type runStart struct {
	src      supervisor.Source
	res      *compiler.Result
	inputErr error
}

// fileSource is run's start from the node file.
func fileSource(cmd *cobra.Command, nf *nodeFlags, dir string, debounce time.Duration, log *slog.Logger) (runStart, error) {
	if err := nf.resolve(cmd, nodeFileOnly); err != nil {
		return runStart{}, err
	}
	res, fileErr := nf.compile()
	if fileErr != nil && !node.IsInputError(fileErr) {
		return runStart{}, fileErr
	}
	if err := needRoot(cmd); err != nil {
		return runStart{}, err
	}
	if fileErr != nil {
		last, err := supervisor.LoadApplied(dir)
		if err != nil {
			// Nothing to fall back on: the input error stops run.
			return runStart{}, fileErr
		}
		res = last
	}
	o, _ := nf.options()
	return runStart{src: &supervisor.FileSource{Node: o, Debounce: debounce, Log: log}, res: res, inputErr: fileErr}, nil
}

// sdNotify tells systemd about run's state when it runs under a unit with
// Type=notify (NOTIFY_SOCKET set); elsewhere it does nothing.
func sdNotify(log *slog.Logger) func(string) {
	return func(state string) {
		if _, err := daemon.SdNotify(false, state); err != nil {
			log.Warn("sd_notify", "state", state, "error", err)
		}
	}
}

// Status is what `portstripe status -o json` prints (schema
// portstripe.status/v1, docs/json.md).
type Status struct {
	Schema string   `json:"schema"`
	Node   *nodeDoc `json:"node,omitempty"`
	// Drift is how the machine differs from the applied state (nil when
	// it matches or could not be observed).
	Drift   *supervisor.Change `json:"drift,omitempty"`
	HAProxy *haproxy.Procs     `json:"haproxy,omitempty"`
	// OldWorkerSessions are the sessions old workers still carry (until
	// haproxy.hard_stop_after); nil when there is no old worker.
	OldWorkerSessions *int               `json:"old_worker_sessions,omitempty"`
	Backends          []haproxy.Stat     `json:"backends,omitempty"`
	Rules             []firewall.Counter `json:"rules,omitempty"`
	// Problems is [] when all is well: status exits 1 when it is not.
	Problems []string `json:"problems"`
}

func statusCmd() *cobra.Command {
	var (
		dir string
		out outputFormat
	)
	c := &cobra.Command{
		Use:   "status [--dir DIR] [-o text|json|yaml]",
		Short: "Show the applied node, the HAProxy master and workers, backends and rule counters",
		Long: `status reads the node applied in --dir (its plan.json), asks the HAProxy
master and worker what runs (show proc, show stat), reads portstripe's rule
counters, and compares the machine with the applied state as apply would
(drift; needs root). Whatever is wrong is listed as a problem, and then
status exits 1. -o json prints it all as one document (schema
portstripe.status/v1, docs/json.md).`,
		Example: `  portstripe status
  portstripe status -o json | jq '.haproxy.workers | length'`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st := readStatus(ctx, dir)
			err := out.write(cmd.OutOrStdout(), st, func(w io.Writer) error { writeStatus(w, st); return nil })
			if err != nil {
				return err
			}
			if n := len(st.Problems); n > 0 {
				// The problems are in the output; the error sets the exit code.
				return fmt.Errorf("status: %d problem(s), listed in the output", n)
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", defaultDir, "state directory apply/run write to")
	registerOutput(c, &out)
	return c
}

func readStatus(ctx context.Context, dir string) Status {
	st := Status{Schema: schema("status"), Problems: []string{}}
	data, err := artifact.ReadFile(filepath.Join(dir, compiler.PlanFile))
	var p plan.Plan
	if err == nil {
		err = json.Unmarshal(data, &p)
	}
	switch {
	case errors.Is(err, fs.ErrNotExist):
		st.Problems = append(st.Problems, fmt.Sprintf("nothing applied in %s yet (no %s): 'portstripe apply' or 'portstripe run' applies a node, --dir names another state directory", dir, compiler.PlanFile))
		return st
	case err != nil:
		st.Problems = append(st.Problems, fmt.Sprintf("applied plan in %s unreadable: %v", dir, err))
		return st
	}
	nd := docNode(p.Node)
	st.Node = &nd
	m := haproxy.NewMaster(p.HAProxy.MasterSocket, nil)
	if ps, err := m.ShowProc(ctx); err == nil {
		st.HAProxy = &ps
		if len(ps.OldWorkers) > 0 {
			n := 0
			for _, w := range ps.OldWorkers {
				info, err := m.ShowInfoOf(ctx, w.PID)
				if err != nil {
					st.Problems = append(st.Problems, fmt.Sprintf("haproxy old worker %d: %v", w.PID, err))
					continue
				}
				n += info.CurrConns
			}
			st.OldWorkerSessions = &n
		}
	} else {
		st.Problems = append(st.Problems, "haproxy master: "+err.Error())
	}
	proxy := &supervisor.HAProxy{MasterSocket: p.HAProxy.MasterSocket, RuntimeSocket: p.HAProxy.RuntimeSocket}
	if stats, err := proxy.Stats(ctx); err == nil {
		for _, s := range stats {
			if s.Type != haproxy.StatServer {
				st.Backends = append(st.Backends, s)
			}
		}
	} else {
		st.Problems = append(st.Problems, "haproxy runtime API: "+err.Error())
	}
	fws, err := firewalls()
	var fw firewall.Backend
	if err == nil {
		fw, err = firewallOf(fws, &p)
	}
	if err == nil {
		st.Rules, err = fw.Counters(ctx, &p)
	}
	if err != nil {
		st.Problems = append(st.Problems, "firewall counters: "+err.Error())
	}
	st.Problems = append(st.Problems, drift(ctx, dir, &st)...)
	return st
}

// drift compares the machine with the state the last apply left in dir,
// as apply would, and names what differs.
func drift(ctx context.Context, dir string, st *Status) []string {
	if os.Geteuid() != 0 {
		return []string{"drift not checked: reading the kernel's rules needs root"}
	}
	applied, err := supervisor.LoadApplied(dir)
	if err != nil {
		return []string{"drift not checked: " + err.Error()}
	}
	l, err := newLive(dir, applied.Plan, slog.New(slog.DiscardHandler))
	if err != nil {
		return []string{"drift not checked: " + err.Error()}
	}
	c, err := l.applier.Plan(ctx, applied)
	if err != nil {
		return []string{"drift not checked: " + err.Error()}
	}
	if c.Nothing {
		return nil
	}
	st.Drift = &c
	var out []string
	for _, h := range c.Jumps {
		out = append(out, fmt.Sprintf("drift: the jump from %s to %s is missing", h, iptables.JumpTarget(h)))
	}
	for _, r := range c.Routes {
		out = append(out, "drift: reply route of the transparent backends: "+r)
	}
	if len(c.Rules) > 0 {
		out = append(out, fmt.Sprintf("drift: %d rule lines differ from the applied %s rules (portstripe apply --dry-run shows them)", len(c.Rules), c.Firewall))
	}
	if len(c.Clean) > 0 {
		out = append(out, fmt.Sprintf("drift: rules of %s are installed too (the node uses %s)", strings.Join(c.Clean, ", "), c.Firewall))
	}
	for _, f := range c.Files {
		out = append(out, fmt.Sprintf("drift: %s in %s differs from the applied state", f, dir))
	}
	for _, f := range c.Retired {
		out = append(out, fmt.Sprintf("drift: %s in %s is not part of the applied state", f, dir))
	}
	switch {
	case c.Start:
		out = append(out, "drift: "+c.StartReason)
	case c.Reload:
		out = append(out, "drift: haproxy needs a reload: "+c.ReloadReason)
	}
	for _, s := range c.Servers {
		out = append(out, fmt.Sprintf("drift: server %s/%s differs from the applied one (addr %v, state %q)", s.Backend, s.Server, s.Addr, s.State))
	}
	return append(out, "drift repair: 'portstripe apply' (or a running 'portstripe run') puts the applied state back")
}

func writeStatus(w io.Writer, st Status) {
	if st.Node != nil {
		fmt.Fprintf(w, "node %s applied from %s (sha256 %s)\n", st.Node.Name, st.Node.Source, st.Node.SHA256)
		writeOverrides(w, st.Node.NodeInfo)
		fmt.Fprintf(w, "  addresses: %s\n", familyAddresses(st.Node.Addresses))
	}
	if st.HAProxy != nil {
		fmt.Fprintf(w, "haproxy master pid %d, %d reloads (last failed: %d), workers %v, old workers %v\n",
			st.HAProxy.Master.PID, st.HAProxy.Master.Reloads, st.HAProxy.Master.FailedReloads,
			haproxy.PIDs(st.HAProxy.Workers), haproxy.PIDs(st.HAProxy.OldWorkers))
		if st.OldWorkerSessions != nil {
			fmt.Fprintf(w, "  old workers still carry %d sessions (they end at haproxy.hard_stop_after)\n", *st.OldWorkerSessions)
		}
	}
	for _, s := range st.Backends {
		fmt.Fprintf(w, "  %-9s %-24s %-6s sessions %d (max %d, total %d)\n", s.Type, s.Proxy, s.Status, s.Scur, s.Smax, s.Stot)
	}
	for _, r := range st.Rules {
		fmt.Fprintf(w, "  rule %-26s %8d packets  %s\n", r.Chain, r.Packets, r.Comment)
	}
	for _, p := range st.Problems {
		fmt.Fprintln(w, "problem: "+p)
	}
}

func cleanCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Remove everything portstripe installed in the firewall and the routing table",
		Long: `clean removes what every firewall backend installed: for iptables, the jumps
from PREROUTING and OUTPUT and every PORTSTRIPE chain of the nat table (IPv4
and IPv6), the PORTSTRIPE-MARK chain and its jump from the mangle table; and
the transparent backends' reply route (the ip rule for fwmark 0x5053 and
table 20563). Other rules and routes are left alone. It does not stop HAProxy.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			fws, err := firewalls()
			if err != nil {
				return fmt.Errorf("clean: %w", err)
			}
			for _, name := range slices.Sorted(maps.Keys(fws)) {
				if err := fws[name].Clean(cmd.Context()); err != nil {
					return fmt.Errorf("clean: %w", err)
				}
			}
			if err := (routing.Manager{}).Remove(plan.TransparentReplyRoute); err != nil {
				return fmt.Errorf("clean: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "removed portstripe's firewall rules ("+strings.Join(slices.Sorted(maps.Keys(fws)), ", ")+") and its reply route")
			return nil
		},
	}
}

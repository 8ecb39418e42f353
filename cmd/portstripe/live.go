package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
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

// live wires the real iptables and HAProxy under an Applier.
type live struct {
	rules   *iptables.Manager
	proxy   *supervisor.HAProxy
	applier *supervisor.Applier
}

func newLive(dir string, h node.HAProxy, log *slog.Logger, detach bool) (*live, error) {
	rules, err := iptables.New(iptables.Options{})
	if err != nil {
		return nil, fmt.Errorf("iptables: %w", err)
	}
	proxy := &supervisor.HAProxy{
		Config:        filepath.Join(dir, compiler.HAProxyFile),
		MasterSocket:  h.MasterSocket,
		RuntimeSocket: h.RuntimeSocket,
		Detach:        detach,
		LogFile:       filepath.Join(dir, supervisor.LogFile),
		Log:           log,
	}
	return &live{
		rules:   rules,
		proxy:   proxy,
		applier: &supervisor.Applier{Dir: dir, Rules: rules, Proxy: proxy, Log: log},
	}, nil
}

// prepare compiles the node and wires the machine's iptables and HAProxy.
func prepare(cmd *cobra.Command, nf *nodeFlags, lf *liveFlags, detach bool) (*compiler.Result, *live, error) {
	log, err := lf.logger(cmd.ErrOrStderr())
	if err != nil {
		return nil, nil, err
	}
	res, err := nf.compile()
	if err != nil {
		return nil, nil, err
	}
	if os.Geteuid() != 0 {
		return nil, nil, fmt.Errorf("%s needs root: it changes iptables rules and runs HAProxy on the node's ports", cmd.Name())
	}
	l, err := newLive(lf.dir, res.Node.HAProxy, log, detach)
	return res, l, err
}

// Procs, Stats and Counters feed the metrics read at scrape time.
func (l *live) Procs(ctx context.Context) (haproxy.Procs, error)  { return l.proxy.Procs(ctx) }
func (l *live) Stats(ctx context.Context) ([]haproxy.Stat, error) { return l.proxy.Stats(ctx) }
func (l *live) Counters(ctx context.Context) ([]iptables.Counter, error) {
	return l.rules.Counters(ctx)
}

func applyCmd(nf *nodeFlags) *cobra.Command {
	var (
		lf          liveFlags
		dryRun      bool
		lockTimeout time.Duration
	)
	c := &cobra.Command{
		Use:   "apply [-c node.yaml] [--dir DIR] [--dry-run]",
		Short: "Compile, validate and apply a node: rules, files and HAProxy together, or nothing",
		Long: `apply compiles the node file, validates the result (haproxy -c, and the rules
loaded into a throwaway network namespace), writes haproxy.cfg, rules.v4 and
plan.json into --dir atomically (previous versions kept as *.prev), loads the
rules with one iptables-restore into portstripe's own chains (jumps from
PREROUTING and OUTPUT ensured), and then:

  - if only backend server addresses changed: changes them through the HAProxy
    runtime API, without a reload;
  - otherwise: reloads HAProxy through its master CLI, and verifies with
    'show proc' that a new worker runs and with 'show stat' that every frontend
    is open. With no master answering on the master socket, it starts one
    (haproxy -W -S <master socket> -f <dir>/haproxy.cfg) in a session of its
    own that outlives apply, logging to <dir>/haproxy.log.

Any failure puts the previous files and rules back, and the previous HAProxy
worker keeps serving. Applying an unchanged node file changes nothing: no
reload, same rules, same counters. Two applies at once take turns (a lock
in --dir); --dry-run prints what would change and touches nothing.`,
		Example: `  portstripe apply -c /etc/portstripe/node.yaml --dry-run
  portstripe apply -c /etc/portstripe/node.yaml`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			res, l, err := prepare(cmd, nf, &lf, true)
			if err != nil {
				return err
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			if dryRun {
				ch, err := l.applier.Plan(ctx, res)
				if err != nil {
					return fmt.Errorf("dry run: %w", err)
				}
				printChange(cmd.OutOrStdout(), ch, true)
				return nil
			}
			lctx, lcancel := context.WithTimeout(ctx, lockTimeout)
			unlock, err := supervisor.Lock(lctx, lf.dir)
			lcancel()
			if err != nil {
				return err
			}
			defer unlock()
			ch, err := l.applier.Apply(ctx, res)
			if err != nil {
				return err
			}
			printChange(cmd.OutOrStdout(), ch, false)
			return nil
		},
	}
	lf.register(c)
	c.Flags().BoolVar(&dryRun, "dry-run", false, "print what would change (rules, backends, reload) and touch nothing")
	c.Flags().DurationVar(&lockTimeout, "lock-timeout", 30*time.Second, "how long to wait for another apply to finish")
	return c
}

func printChange(w io.Writer, c supervisor.Change, dry bool) {
	verb := map[bool]string{true: "would ", false: ""}[dry]
	if c.Nothing {
		fmt.Fprintln(w, "nothing to change: files, rules and HAProxy already match the node file")
		return
	}
	fmt.Fprintf(w, "rules: %d lines %schange\n", len(c.Rules), verb)
	for _, l := range c.Rules {
		fmt.Fprintln(w, "  "+l)
	}
	for _, b := range c.Backends {
		fmt.Fprintln(w, "backend "+b)
	}
	for _, s := range c.Servers {
		if s.Addr.IsValid() {
			fmt.Fprintf(w, "runtime API: %sset server %s/%s addr %s port %d (no reload)\n", verb, s.Backend, s.Server, s.Addr.Addr(), s.Addr.Port())
		}
		if s.State != "" {
			fmt.Fprintf(w, "runtime API: %s%s server %s/%s (no reload)\n", verb, strings.TrimSuffix(s.State, "d"), s.Backend, s.Server)
		}
	}
	if c.Reload {
		fmt.Fprintf(w, "haproxy: %sreload (%s)\n", verb, c.ReloadReason)
	} else {
		fmt.Fprintf(w, "haproxy: no reload\n")
	}
}

func runCmd(nf *nodeFlags) *cobra.Command {
	var (
		lf       liveFlags
		metrics  string
		cleanup  bool
		debounce time.Duration
	)
	c := &cobra.Command{
		Use:   "run [-c node.yaml] [--dir DIR] [--metrics ADDR] [--cleanup]",
		Short: "Own a live node: apply, watch the node file, keep HAProxy running",
		Long: `run starts HAProxy in master-worker mode (or attaches to a master already
answering on the node's master socket), applies the node file as 'apply' does,
and then:

  - re-applies when the node file changes (editors that write a temporary file
    and rename it are fine; changes are debounced) and on SIGHUP;
  - restarts the HAProxy master if it dies;
  - serves Prometheus metrics on /metrics and a health check on /healthz
    (127.0.0.1 only unless --metrics says otherwise);
  - on SIGTERM or SIGINT stops HAProxy (if it started it) and, with --cleanup,
    removes portstripe's iptables chains.

A broken edit is logged and counted (portstripe_applies_total{result="failed"});
the previous rules and worker keep serving until the file is fixed.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// The first compile decides the sockets; a node file that fails
			// at start is an input error (exit 2), later ones are logged.
			_, l, err := prepare(cmd, nf, &lf, false)
			if err != nil {
				return err
			}
			o, _ := nf.options()
			log := l.applier.Log
			r := &supervisor.Runner{
				Node:        o,
				Applier:     l.applier,
				HAProxy:     l.proxy,
				Metrics:     supervisor.NewMetrics(l),
				Log:         log,
				Debounce:    debounce,
				MetricsAddr: metrics,
			}
			if cleanup {
				r.Cleanup = l.rules.Clean
			}
			ctx, cancel := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer cancel()
			return r.Run(ctx)
		},
	}
	lf.register(c)
	c.Flags().StringVar(&metrics, "metrics", "127.0.0.1:9642", "address for /metrics and /healthz; empty disables")
	c.Flags().BoolVar(&cleanup, "cleanup", false, "remove portstripe's iptables chains when stopping")
	c.Flags().DurationVar(&debounce, "debounce", 200*time.Millisecond, "wait this long after the last node file change before applying")
	return c
}

// Status is what `portstripe status --json` prints.
type Status struct {
	Node     *plan.NodeInfo     `json:"node,omitempty"`
	HAProxy  *haproxy.Procs     `json:"haproxy,omitempty"`
	Backends []haproxy.Stat     `json:"backends,omitempty"`
	Rules    []iptables.Counter `json:"rules,omitempty"`
	Problems []string           `json:"problems,omitempty"`
}

func statusCmd() *cobra.Command {
	var (
		dir    string
		asJSON bool
	)
	c := &cobra.Command{
		Use:   "status [--dir DIR] [--json]",
		Short: "Show the applied node, the HAProxy master and workers, backends and rule counters",
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, cancel := context.WithTimeout(cmd.Context(), 10*time.Second)
			defer cancel()
			st := readStatus(ctx, dir)
			if asJSON {
				if err := writeJSON(cmd.OutOrStdout(), st); err != nil {
					return err
				}
			} else {
				writeStatus(cmd.OutOrStdout(), st)
			}
			if n := len(st.Problems); n > 0 {
				// The problems are in the output; the error sets the exit code.
				return fmt.Errorf("status: %d problem(s), listed in the output", n)
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", defaultDir, "state directory apply/run write to")
	c.Flags().BoolVar(&asJSON, "json", false, "print as JSON")
	return c
}

func readStatus(ctx context.Context, dir string) Status {
	var st Status
	data, err := os.ReadFile(filepath.Join(dir, compiler.PlanFile))
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
	st.Node = &p.Node
	m := haproxy.NewMaster(p.HAProxy.MasterSocket, nil)
	if ps, err := m.ShowProc(ctx); err == nil {
		st.HAProxy = &ps
	} else {
		st.Problems = append(st.Problems, "haproxy master: "+err.Error())
	}
	if stats, err := haproxy.NewRuntime(p.HAProxy.RuntimeSocket, nil).ShowStat(ctx); err == nil {
		for _, s := range stats {
			if s.Type != haproxy.StatServer {
				st.Backends = append(st.Backends, s)
			}
		}
	} else {
		st.Problems = append(st.Problems, "haproxy runtime API: "+err.Error())
	}
	rules, err := iptables.New(iptables.Options{})
	if err == nil {
		st.Rules, err = rules.Counters(ctx)
	}
	if err != nil {
		st.Problems = append(st.Problems, "iptables: "+err.Error())
	}
	return st
}

func writeStatus(w io.Writer, st Status) {
	if st.Node != nil {
		fmt.Fprintf(w, "node %s applied from %s (sha256 %s)\n", st.Node.Name, st.Node.Source, st.Node.SHA256)
	}
	if st.HAProxy != nil {
		fmt.Fprintf(w, "haproxy master pid %d, %d reloads (last failed: %d), workers %v, old workers %v\n",
			st.HAProxy.Master.PID, st.HAProxy.Master.Reloads, st.HAProxy.Master.FailedReloads,
			haproxy.PIDs(st.HAProxy.Workers), haproxy.PIDs(st.HAProxy.OldWorkers))
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
		Short: "Remove everything portstripe installed in iptables (jumps and chains)",
		Long: `clean removes portstripe's jumps from PREROUTING and OUTPUT and every
PORTSTRIPE chain from the nat table; other rules are left alone. It does not
stop HAProxy.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			rules, err := iptables.New(iptables.Options{})
			if err != nil {
				return fmt.Errorf("clean: %w", err)
			}
			if err := rules.Clean(cmd.Context()); err != nil {
				return fmt.Errorf("clean: %w", err)
			}
			fmt.Fprintln(cmd.OutOrStdout(), "removed portstripe's iptables jumps and chains")
			return nil
		},
	}
}

package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/fleet"
	"github.com/portstripe/portstripe/fleet/store"
)

// nodeFileFlags are the root's flags for a node file.
var nodeFileFlags = []string{"config", "set"}

// fleetFlags are what the fleet commands share: the fleet file, the store
// and the fleet's name in it.
type fleetFlags struct {
	file  string
	name  string
	store store.Options
}

func (f *fleetFlags) registerFile(c *cobra.Command) {
	c.Flags().StringVarP(&f.file, "file", "f", os.Getenv("PORTSTRIPE_FLEET_FILE"), "fleet file (YAML; see fixtures/fleet/eu.yaml); env PORTSTRIPE_FLEET_FILE")
}

func (f *fleetFlags) registerStore(c *cobra.Command) {
	store.AddFlags(c.Flags(), &f.store)
	c.Flags().StringVar(&f.name, "fleet", os.Getenv("PORTSTRIPE_FLEET"), "the fleet's name in the store; env PORTSTRIPE_FLEET (publish: the fleet file's name)")
}

// compile loads and compiles the fleet file.
func (f *fleetFlags) compile() (*fleet.Generation, error) {
	if f.file == "" {
		return nil, usageError{errors.New("no fleet file: -f FILE names it (fixtures/fleet/eu.yaml is an example)")}
	}
	return fleet.Load(f.file)
}

// dial connects to the store, after checking the flags.
func (f *fleetFlags) dial(ctx context.Context) (*clientv3.Client, error) {
	if f.store.URL == "" {
		return nil, usageError{errors.New("no store: --store etcd://HOST:PORT names it")}
	}
	if _, _, err := f.store.Endpoints(); err != nil {
		return nil, usageError{err}
	}
	if f.name == "" {
		return nil, usageError{errors.New("no fleet: --fleet NAME (or env PORTSTRIPE_FLEET) names it")}
	}
	if err := store.CheckName(f.name); err != nil {
		return nil, usageError{fmt.Errorf("--fleet: %w", err)}
	}
	return store.Dial(ctx, f.store)
}

func fleetCmd() *cobra.Command {
	c := &cobra.Command{
		Use:   "fleet",
		Short: "Compile a fleet file, publish it to etcd, roll it out in waves, see where every node stands",
		Long: `A fleet file describes many nodes at once: one shared plan (the keys of a
node file but name and addresses) and, per node, its name, addresses, labels
(region, provider…) and what it does otherwise (overrides, its own services,
plan services disabled or left out). See fixtures/fleet/eu.yaml.

The way of a change:
  fleet compile   resolve every node's node file and compile it (nothing leaves the machine)
  fleet diff      what the change does to which nodes
  fleet publish   write it to etcd as a new, immutable generation
  fleet rollout   move the nodes to it in waves: a canary first, each wave soaked,
                  an unhealthy canary (or too many failures later) rolls every moved
                  node back to the stable generation
  fleet status    per node: SYNCED, APPLYING, NACKED, STALE, DRIFTED or MISSING

Each node runs 'portstripe run --store … --fleet NAME --node NAME', which
watches its one desired key, applies it like a local node file and reports.`,
		Args: cobra.NoArgs,
		RunE: func(c *cobra.Command, _ []string) error { return c.Help() },
		// The node file flags are the root's; a fleet command reads a
		// fleet file (-f) and would silently ignore them.
		PersistentPreRunE: func(cmd *cobra.Command, _ []string) error {
			for _, f := range nodeFileFlags {
				if cmd.Flags().Changed(f) {
					return usageError{fmt.Errorf("--%s is for a node file; fleet commands read the fleet file (-f), whose nodes say their own settings", f)}
				}
			}
			return nil
		},
	}
	c.SetHelpFunc(func(cmd *cobra.Command, args []string) {
		for _, f := range nodeFileFlags {
			cmd.Root().PersistentFlags().Lookup(f).Hidden = true
		}
		cmd.Root().HelpFunc()(cmd, args)
	})
	c.AddCommand(fleetCompileCmd(), fleetExplainCmd(), fleetDiffCmd(), fleetPublishCmd(), fleetRolloutCmd(), fleetStatusCmd())
	for _, sub := range c.Commands() {
		sub.Args = wrapArgs(sub.Args)
	}
	return c
}

type fleetCompileDoc struct {
	Schema      string            `json:"schema"`
	Fleet       string            `json:"fleet"`
	Source      string            `json:"source"`
	FleetSHA256 string            `json:"fleet_sha256"`
	Nodes       []fleetCompileRow `json:"nodes"`
}

type fleetCompileRow struct {
	Node          string            `json:"node"`
	Labels        map[string]string `json:"labels,omitempty"`
	Services      int               `json:"services"`
	NodeSHA256    string            `json:"node_sha256"`
	Outputs       map[string]string `json:"outputs"`
	OutputsSHA256 string            `json:"outputs_sha256"`
}

func fleetCompileCmd() *cobra.Command {
	var (
		ff  fleetFlags
		out outputFormat
		dir string
	)
	c := &cobra.Command{
		Use:   "compile -f fleet.yaml [-o text|json|yaml] [--out DIR]",
		Short: "Resolve and compile every node of a fleet file",
		Long: `compile resolves each node of the fleet file into a node file (the plan with
the node's own keys applied) and compiles it with the same compiler as
'portstripe compile', on every core. One node that does not compile refuses
the whole fleet: the error names the field path in the fleet file
(nodes[12].addresses[0]: …, or plan.services[2].udp: on node ams-1 …) and
how many other nodes fail; exit 2, nothing written.

It prints a line per node: its labels, services and the hashes an agent will
report (node file, outputs). With --out DIR it writes DIR/NODE/node.yaml
and the node's haproxy.cfg, rules.v4 and plan.json, as compile does.`,
		Example: `  portstripe fleet compile -f fleet.yaml
  portstripe fleet compile -f fleet.yaml --out build/   # build/ams-1/haproxy.cfg …
  portstripe fleet compile -f fleet.yaml -o json | jq -r '.nodes[].outputs_sha256'`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g, err := ff.compile()
			if err != nil {
				return err
			}
			if dir != "" {
				for _, n := range g.Nodes {
					files := maps.Clone(n.Result.Files)
					files["node.yaml"] = n.File
					if err := artifact.WriteAll(filepath.Join(dir, n.Name), files); err != nil {
						return fmt.Errorf("fleet compile: %w", err)
					}
				}
			}
			doc := fleetCompileDoc{Schema: schema("fleet-compile"), Fleet: g.Fleet.Name, Source: g.Fleet.Source, FleetSHA256: g.Fleet.SHA256}
			for _, n := range g.Nodes {
				doc.Nodes = append(doc.Nodes, fleetCompileRow{
					Node: n.Name, Labels: n.Labels, Services: len(n.Result.Node.Services),
					NodeSHA256: n.Result.Node.SHA256, Outputs: n.Outputs, OutputsSHA256: n.OutputsSHA256,
				})
			}
			return out.write(cmd.OutOrStdout(), doc, func(w io.Writer) error {
				fmt.Fprintf(w, "fleet %s (%s, sha256 %.12s): %d nodes compiled\n", g.Fleet.Name, g.Fleet.Source, g.Fleet.SHA256, len(g.Nodes))
				tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "NODE\tLABELS\tSERVICES\tNODE FILE\tOUTPUTS")
				for _, r := range doc.Nodes {
					fmt.Fprintf(tw, "%s\t%s\t%d\t%.12s\t%.12s\n", r.Node, labels(r.Labels), r.Services, r.NodeSHA256, r.OutputsSHA256)
				}
				if dir != "" {
					fmt.Fprintf(tw, "wrote %s/NODE/{node.yaml,haproxy.cfg,rules.v4,plan.json}\n", dir)
				}
				return tw.Flush()
			})
		},
	}
	ff.registerFile(c)
	registerOutput(c, &out)
	c.Flags().StringVar(&dir, "out", "", "also write DIR/NODE/node.yaml, haproxy.cfg, rules.v4 and plan.json")
	return c
}

func labels(m map[string]string) string {
	if len(m) == 0 {
		return "-"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(m)) {
		parts = append(parts, k+"="+m[k])
	}
	return strings.Join(parts, ",")
}

type fleetExplainDoc struct {
	Schema   string            `json:"schema"`
	Fleet    string            `json:"fleet"`
	Node     string            `json:"node"`
	Path     string            `json:"path"`
	Labels   map[string]string `json:"labels,omitempty"`
	Own      []string          `json:"own"`
	NodeFile string            `json:"node_file"`
	Explain  explainDoc        `json:"explain"`
}

func fleetExplainCmd() *cobra.Command {
	var (
		ff  fleetFlags
		out outputFormat
	)
	c := &cobra.Command{
		Use:   "explain NODE -f fleet.yaml [-o text|json|yaml]",
		Short: "Show one node of a fleet: what it sets beyond the plan, its node file, its port map",
		Long: `explain shows one node of the fleet file: its place in the file and labels,
what it sets beyond the shared plan (overrides, its own services, plan
services disabled or left out), the node file it resolves to (what its agent
gets), and the port map 'portstripe explain' prints for that node file.`,
		Example: `  portstripe fleet explain ams-2 -f fleet.yaml`,
		Args:    cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			g, err := ff.compile()
			if err != nil {
				return err
			}
			n, ok := g.Node(args[0])
			if !ok {
				var names []string
				for _, n := range g.Nodes {
					names = append(names, n.Name)
				}
				return usageError{fmt.Errorf("fleet %s has no node %q (nodes: %s)", g.Fleet.Name, args[0], clipNames(names))}
			}
			p := n.Result.Plan
			doc := fleetExplainDoc{
				Schema: schema("fleet-explain"), Fleet: g.Fleet.Name, Node: n.Name, Path: n.Path(), Labels: n.Labels,
				Own: g.Fleet.Own(n.Index), NodeFile: string(n.File),
				Explain: explainDoc{Schema: schema("explain"), Node: docNode(p.Node), Rows: p.Explain()},
			}
			return out.write(cmd.OutOrStdout(), doc, func(w io.Writer) error {
				fmt.Fprintf(w, "node %s: %s of fleet %s (%s), labels %s\n", n.Name, n.Path(), g.Fleet.Name, g.Fleet.Source, labels(n.Labels))
				if len(doc.Own) == 0 {
					fmt.Fprintln(w, "sets nothing beyond the plan")
				} else {
					fmt.Fprintln(w, "sets beyond the plan:")
					for _, o := range doc.Own {
						fmt.Fprintf(w, "  %s\n", o)
					}
				}
				fmt.Fprintf(w, "\nnode file (sha256 %.12s; what its agent gets):\n", n.Result.Node.SHA256)
				for _, line := range strings.Split(strings.TrimRight(string(n.File), "\n"), "\n") {
					fmt.Fprintf(w, "  %s\n", line)
				}
				fmt.Fprintln(w)
				return writeExplain(w, p)
			})
		},
	}
	ff.registerFile(c)
	registerOutput(c, &out)
	return c
}

func clipNames(names []string) string {
	if len(names) > 10 {
		return strings.Join(names[:10], ", ") + fmt.Sprintf(" and %d more", len(names)-10)
	}
	return strings.Join(names, ", ")
}

type fleetDiffDoc struct {
	Schema  string           `json:"schema"`
	Fleet   string           `json:"fleet"`
	Against string           `json:"against"`
	Counts  map[string]int   `json:"counts"`
	Nodes   []fleet.NodeDiff `json:"nodes"`
}

func fleetDiffCmd() *cobra.Command {
	var (
		ff      fleetFlags
		out     outputFormat
		against string
	)
	c := &cobra.Command{
		Use:   "diff -f fleet.yaml (--against old.yaml | --store etcd://… --fleet NAME) [-o text|json|yaml]",
		Short: "Show what a fleet file changes on which nodes",
		Long: `diff compiles the fleet file and compares every node with the same node in
another fleet file (--against) or in the fleet's stable generation in the
store (--store, --fleet): added, removed, changed (with the node file's
lines, - old and + new, and whether haproxy.cfg or the rules change) or
unchanged. It writes nothing anywhere.`,
		Example: `  portstripe fleet diff -f fleet.yaml --against fleet.yaml.orig
  portstripe fleet diff -f fleet.yaml --store etcd://127.0.0.1:2379 --fleet eu`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g, err := ff.compile()
			if err != nil {
				return err
			}
			var old map[string]store.GenNode
			var what string
			switch {
			case against != "" && ff.store.URL != "":
				return usageError{errors.New("--against and --store: give one of them")}
			case against != "":
				og, err := fleet.Load(against)
				if err != nil {
					return fmt.Errorf("--against: %w", err)
				}
				old, what = og.Records(), against
			default:
				if ff.name == "" {
					ff.name = g.Fleet.Name
				}
				c, err := ff.dial(cmd.Context())
				if err != nil {
					return err
				}
				defer c.Close()
				n, recs, err := fleet.Stable(cmd.Context(), c, ff.name)
				if err != nil {
					return err
				}
				old, what = recs, fmt.Sprintf("stable generation %d of fleet %s", n, ff.name)
				if n == 0 {
					what = fmt.Sprintf("fleet %s (no stable generation yet)", ff.name)
				}
			}
			doc := fleetDiffDoc{Schema: schema("fleet-diff"), Fleet: g.Fleet.Name, Against: what, Counts: map[string]int{}, Nodes: fleet.Diff(old, g.Records())}
			for _, d := range doc.Nodes {
				doc.Counts[string(d.Change)]++
			}
			return out.write(cmd.OutOrStdout(), doc, func(w io.Writer) error {
				fmt.Fprintf(w, "fleet %s against %s: %d changed, %d added, %d removed, %d unchanged\n", g.Fleet.Name, what,
					doc.Counts[string(fleet.Changed)], doc.Counts[string(fleet.Added)], doc.Counts[string(fleet.Removed)], doc.Counts[string(fleet.Unchanged)])
				for _, d := range doc.Nodes {
					if d.Change == fleet.Unchanged {
						continue
					}
					if d.Change != fleet.Changed {
						fmt.Fprintf(w, "\n%s %s\n", d.Change, d.Node)
						continue
					}
					outputs := "haproxy.cfg or rules change"
					if !d.OutputsChanged {
						outputs = "outputs unchanged"
					}
					fmt.Fprintf(w, "\n%s %s (%s)\n%s", d.Change, d.Node, outputs, d.Diff)
				}
				return nil
			})
		},
	}
	ff.registerFile(c)
	ff.registerStore(c)
	registerOutput(c, &out)
	c.Flags().StringVar(&against, "against", "", "compare with this fleet file instead of the store's stable generation")
	return c
}

func fleetPublishCmd() *cobra.Command {
	var ff fleetFlags
	c := &cobra.Command{
		Use:   "publish -f fleet.yaml --store etcd://HOST:PORT [--fleet NAME]",
		Short: "Compile a fleet file and write it to etcd as the next generation",
		Long: `publish compiles the fleet file (refusing it, exit 2, if any node fails) and
writes it to the store as the fleet's next generation: each node's record
(its node file and the hashes of its outputs) under
/portstripe/NAME/gen/N/nodes/, then the generation's meta. A generation
never changes once written; publishing moves no node (fleet rollout does).
Publishing the same fleet file again writes nothing and says so.

--fleet defaults to the fleet file's name and, when given, must match it.`,
		Example: `  portstripe fleet publish -f fleet.yaml --store etcd://127.0.0.1:2379
  portstripe fleet publish -f fleet.yaml --store etcds://etcd1:2379,etcd2:2379 \
      --store-ca ca.pem --store-cert me.pem --store-key me.key`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			g, err := ff.compile()
			if err != nil {
				return err
			}
			if ff.name != "" && ff.name != g.Fleet.Name {
				return usageError{fmt.Errorf("--fleet %s, but the fleet file is fleet %s (its name:)", ff.name, g.Fleet.Name)}
			}
			ff.name = g.Fleet.Name
			c, err := ff.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			p, err := fleet.Publish(cmd.Context(), c, g, time.Now())
			if err != nil {
				return fmt.Errorf("publish: %w", err)
			}
			w := cmd.OutOrStdout()
			if p.Unchanged {
				fmt.Fprintf(w, "unchanged: generation %d of fleet %s already holds this fleet file (sha256 %.12s)\n", p.Generation, g.Fleet.Name, g.Fleet.SHA256)
				return nil
			}
			fmt.Fprintf(w, "published generation %d of fleet %s: %d nodes (fleet file sha256 %.12s); 'portstripe fleet rollout --fleet %s' moves them to it\n",
				p.Generation, g.Fleet.Name, len(g.Nodes), g.Fleet.SHA256, g.Fleet.Name)
			return nil
		},
	}
	ff.registerFile(c)
	ff.registerStore(c)
	return c
}

// shareList is --waves: shares of the fleet, as 5% or 0.05.
type shareList struct{ s *[]float64 }

func (l shareList) String() string {
	var parts []string
	for _, v := range *l.s {
		parts = append(parts, strconv.FormatFloat(v*100, 'g', -1, 64)+"%")
	}
	return strings.Join(parts, ",")
}
func (l shareList) Type() string { return "shares" }
func (l shareList) Set(v string) error {
	var out []float64
	for _, part := range strings.Split(v, ",") {
		f, err := parseShare(part)
		if err != nil {
			return err
		}
		out = append(out, f)
	}
	*l.s = out
	return nil
}

// share is --max-failed.
type share struct{ f *float64 }

func (s share) String() string { return strconv.FormatFloat(*s.f*100, 'g', -1, 64) + "%" }
func (s share) Type() string   { return "share" }
func (s share) Set(v string) (err error) {
	*s.f, err = parseShare(v)
	return err
}

func parseShare(v string) (float64, error) {
	pct, isPct := strings.CutSuffix(strings.TrimSpace(v), "%")
	f, err := strconv.ParseFloat(pct, 64)
	if err != nil {
		return 0, fmt.Errorf("%q is not a share (want 5%% or 0.05)", v)
	}
	if isPct {
		f /= 100
	}
	return f, nil
}

func fleetRolloutCmd() *cobra.Command {
	var (
		ff     fleetFlags
		s      = fleet.DefaultSettings
		gen    uint64
		resume bool
		abort  bool
		poll   time.Duration
	)
	s.Waves = slices.Clone(s.Waves)
	c := &cobra.Command{
		Use:   "rollout --store etcd://HOST:PORT --fleet NAME [--generation N] [--waves 1%,5%,25%,100%] [--soak 30s] [--resume | --abort]",
		Short: "Move a fleet's nodes to a published generation in waves, soaking each, rolling back on failure",
		Long: `rollout moves the fleet's nodes to a generation (default: the newest
published) wave by wave, writing each node's desired key (compare-and-swap):

  --waves     the share of the fleet moved by the end of each wave. The first
              wave is the canary: at least one node, and its nodes (like every
              wave's) are taken one per label group in turn (nodes with the same
              labels form a group), so a canary spans regions and providers.
  --soak      how long each node must stay healthy after it ACKed: HAProxy up,
              no restart, no drift, and its traffic (first packets + sessions per
              second) not below half its own rate before it moved. Before the
              canary moves, the controller watches every node for one soak to
              learn those rates.

A wave is promoted when every node in it passed. A NACK or an unhealthy node
in the canary, or more than --max-failed of a later wave, aborts: every moved
node goes back to the stable generation and the generation is marked bad
(never rolled out again; publish a fixed one). Failed nodes within
--max-failed go back to the stable generation alone.

No traffic is no data, not a pass: a node that carried nothing during its
soak makes the rollout pause (exit 1, phase paused); --resume once traffic
flows. --allow-idle passes idle nodes instead: for test and lab fleets
without clients, never for production.

After the last wave the generation is stable: nodes it no longer holds lose
their desired key, generations beyond the newest --keep are deleted and the
store's history is compacted to the revision the rollout started at.

One controller at a time leads a fleet (an etcd election); Ctrl-C pauses
the rollout, and --resume (here or on another machine) carries it on,
--abort rolls it back. Exit 0 promoted, 1 aborted or paused, 2 bad flags.`,
		// Ctrl-C pauses: the rollout record is written before the exit.
		Annotations: map[string]string{stopGraceKey: "15s"},
		Example: `  portstripe fleet rollout --store etcd://127.0.0.1:2379 --fleet eu
  portstripe fleet rollout --store etcd://127.0.0.1:2379 --fleet eu --waves 10%,50%,100% --soak 5m
  portstripe fleet rollout --store etcd://127.0.0.1:2379 --fleet lab --soak 0s --allow-idle
  portstripe fleet rollout --store etcd://127.0.0.1:2379 --fleet eu --abort`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if resume && abort {
				return usageError{errors.New("--resume and --abort: give one of them")}
			}
			if err := fleet.CheckSettings(s); err != nil && !resume && !abort {
				return usageError{err}
			}
			c, err := ff.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			w := cmd.OutOrStdout()
			ctl := &fleet.Controller{Client: c, Fleet: ff.name, Poll: poll, Log: func(format string, args ...any) {
				fmt.Fprintf(w, "%s %s\n", time.Now().UTC().Format(time.TimeOnly), fmt.Sprintf(format, args...))
			}}
			var ro *store.Rollout
			switch {
			case abort:
				ro, err = ctl.Abort(cmd.Context(), "aborted by fleet rollout --abort")
			case resume:
				ro, err = ctl.Resume(cmd.Context())
			default:
				ro, err = ctl.Start(cmd.Context(), gen, s)
			}
			if abort && errors.Is(err, fleet.ErrAborted) {
				fmt.Fprintf(w, "aborted: %s\n", strings.TrimPrefix(err.Error(), fleet.ErrAborted.Error()+": "))
				return nil
			}
			if err != nil {
				return err
			}
			fmt.Fprintf(w, "promoted: generation %d is the stable generation of fleet %s\n", ro.Target, ff.name)
			return nil
		},
	}
	ff.registerStore(c)
	f := c.Flags()
	f.Uint64Var(&gen, "generation", 0, "the generation to roll out (default: the newest published)")
	f.Var(shareList{&s.Waves}, "waves", "share of the fleet moved by the end of each wave, the first being the canary (at least one node); ends at 100%")
	f.DurationVar(&s.Soak, "soak", s.Soak, "how long each moved node must stay healthy after its ACK")
	f.Var(share{&s.MaxFailed}, "max-failed", "share of a wave after the canary that may fail without aborting (those nodes go back alone)")
	f.DurationVar(&s.AckTimeout, "ack-timeout", s.AckTimeout, "how long a moved node may take to ACK before it counts as failed")
	f.BoolVar(&s.AllowIdle, "allow-idle", false, "pass nodes that carried no traffic during the soak (test and lab fleets); without it, no traffic pauses the rollout")
	f.IntVar(&s.Keep, "keep", s.Keep, "generations to keep in the store after promotion (older ones are deleted)")
	f.DurationVar(&poll, "poll", time.Second, "how often to read the nodes' statuses during a soak")
	f.BoolVar(&resume, "resume", false, "carry on the fleet's paused or interrupted rollout (with the settings it started with)")
	f.BoolVar(&abort, "abort", false, "abort the fleet's rollout: every moved node back to the stable generation, the target marked bad")
	return c
}

type fleetStatusDoc struct {
	Schema string `json:"schema"`
	*fleet.FleetStatus
}

func fleetStatusCmd() *cobra.Command {
	var (
		ff  fleetFlags
		out outputFormat
	)
	c := &cobra.Command{
		Use:   "status --store etcd://HOST:PORT --fleet NAME [-o text|json|yaml]",
		Short: "Show where every node of a fleet stands, grouped, and the rollout",
		Long: `status reads every node's desired key and the status its agent writes, and
groups the nodes:

  NACKED    the agent refused the desired generation (the error is shown) and
            serves the one before
  MISSING   no agent reports (not running, or its lease ran out), or an agent
            reports for a node that has no desired key
  STALE     the agent's last status is older than ` + store.StaleAfter.String() + `, or it reports the store
            unreachable (it keeps serving what it applied last)
  DRIFTED   it runs the desired generation, but HAProxy is down or the live
            rules differ from it
  APPLYING  the agent has not answered the desired generation yet
  SYNCED    ACKed the desired generation, HAProxy up, no drift

and shows the rollout in progress or the last one. -o json prints one
document (schema portstripe.fleet-status/v1). Exit 0 whatever the nodes'
states: scripts read .counts.`,
		Example: `  portstripe fleet status --store etcd://127.0.0.1:2379 --fleet eu
  portstripe fleet status --store etcd://127.0.0.1:2379 --fleet eu -o json | jq '.counts'`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := ff.dial(cmd.Context())
			if err != nil {
				return err
			}
			defer c.Close()
			fs, err := fleet.ReadStatus(cmd.Context(), c, ff.name, time.Now())
			if err != nil {
				return err
			}
			return out.write(cmd.OutOrStdout(), fleetStatusDoc{Schema: schema("fleet-status"), FleetStatus: fs}, func(w io.Writer) error {
				return writeFleetStatus(w, fs)
			})
		},
	}
	ff.registerStore(c)
	registerOutput(c, &out)
	return c
}

func writeFleetStatus(w io.Writer, fs *fleet.FleetStatus) error {
	fmt.Fprintf(w, "fleet %s: %d nodes, stable generation %d\n", fs.Fleet, len(fs.Nodes), fs.Stable)
	if ro := fs.Rollout; ro != nil {
		fmt.Fprintf(w, "rollout of generation %d: %s, wave %d of %d", ro.Target, ro.Phase, min(ro.Current+1, len(ro.Waves)), len(ro.Waves))
		if ro.Reason != "" {
			fmt.Fprintf(w, " (%s)", ro.Reason)
		}
		fmt.Fprintln(w)
	}
	for _, st := range fleet.NodeStates {
		if fs.Counts[st] == 0 {
			continue
		}
		fmt.Fprintf(w, "\n%s (%d)\n", st, fs.Counts[st])
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		shown, limit := 0, 50
		if st == fleet.Synced {
			limit = 20 // the ones that need no look
		}
		for _, n := range fs.Nodes {
			if n.State != st {
				continue
			}
			if shown == limit {
				fmt.Fprintf(tw, "  … and %d more (-o json lists every node)\n", fs.Counts[st]-shown)
				break
			}
			shown++
			fmt.Fprintf(tw, "  %s\tdesired %d\tserves %d\t%s\t%s\n", n.Node, n.Desired, n.Applied, n.Version, n.Detail)
		}
		tw.Flush()
	}
	return nil
}

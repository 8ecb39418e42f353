package main

import (
	"errors"
	"fmt"
	"log/slog"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/fleet/agent"
	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/supervisor"
)

// storeFlags make run a fleet node's agent: the desired node file comes
// from the fleet's store instead of -c.
type storeFlags struct {
	opts        store.Options
	fleet, node string
}

func (f *storeFlags) register(c *cobra.Command) {
	store.AddFlags(c.Flags(), &f.opts)
	c.Flags().StringVar(&f.fleet, "fleet", "", "with --store: the fleet this node belongs to")
	c.Flags().StringVar(&f.node, "node", "", "with --store: this node's name in the fleet (its desired and status keys)")
}

func (f *storeFlags) enabled() bool { return f.opts.URL != "" }

// agent checks the flags and makes the agent, and what to serve at start:
// the state last applied in dir, or, on a node with none, the first
// desired node file from the store that compiles (waiting for it).
func (f *storeFlags) agent(cmd *cobra.Command, dir string, log *slog.Logger) (*agent.Agent, runStart, error) {
	switch {
	case cmd.Flags().Changed("config") || cmd.Flags().Changed("set"):
		return nil, runStart{}, usageError{errors.New("--store takes the node file from the fleet's store: -c and --set go without it")}
	case f.fleet == "" || f.node == "":
		return nil, runStart{}, usageError{errors.New("--store needs --fleet NAME and --node NAME: the fleet and this node's name in it")}
	}
	for flag, name := range map[string]string{"--fleet": f.fleet, "--node": f.node} {
		if err := store.CheckName(name); err != nil {
			return nil, runStart{}, usageError{fmt.Errorf("%s: %w", flag, err)}
		}
	}
	cfg, err := f.opts.Config()
	if err != nil {
		return nil, runStart{}, usageError{err}
	}
	if err := needRoot(cmd); err != nil {
		return nil, runStart{}, err
	}
	ag := &agent.Agent{Store: cfg, Fleet: f.fleet, Node: f.node, Log: log.With("fleet", f.fleet)}
	res, err := supervisor.LoadApplied(dir)
	if err == nil {
		log.Info("serving the state applied in --dir until the store says otherwise", "dir", dir, "node_sha256", res.Plan.Node.SHA256)
		return ag, runStart{src: ag, res: res}, nil
	}
	res, err = ag.First(cmd.Context())
	return ag, runStart{src: ag, res: res}, err
}

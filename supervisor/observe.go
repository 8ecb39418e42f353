package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/routing"
)

// Observed is the machine as it is, read fresh for every decision: the
// kernel's rules, the HAProxy that answers, and the files HAProxy is
// (re)started from. Apply, dry runs, status and run's reconcile loop all
// compare it with the desired state; none trusts what an earlier apply
// wrote down.
type Observed struct {
	// Firewall is each backend's rules, by backend name.
	Firewall map[string]firewall.State
	// Routes is the transparent backends' reply route as the kernel has it.
	Routes  routing.Observed
	HAProxy ProxyState
	// Files are the state directory's copies of the files the desired state
	// names (absent ones left out).
	Files map[string][]byte
}

// ProxyState is what a running HAProxy says of itself.
type ProxyState struct {
	// Alive: a master answers "show proc" on the master socket.
	Alive bool
	// Err says why the master or the worker could not be read.
	Err   error
	Procs haproxy.Procs
	// ConfigHash is the hash the current worker reports
	// (haproxy.ConfigHash); empty when it could not be read.
	ConfigHash string
	// Servers are the servers that worker runs, by backend (portstripe
	// emits one server per backend).
	Servers map[string]haproxy.Stat
}

// Observe reads the machine: every firewall backend's rules, the reply route, the master
// CLI, the runtime API, and the state directory's files.
func (a *Applier) Observe(ctx context.Context, names []string) (Observed, error) {
	o := Observed{Firewall: map[string]firewall.State{}}
	var err error
	for name, fw := range a.Firewalls {
		if o.Firewall[name], err = fw.Observe(ctx); err != nil {
			return o, err
		}
	}
	if a.Routes != nil {
		if o.Routes, err = a.Routes.Observe(plan.TransparentReplyRoute); err != nil {
			return o, err
		}
	}
	o.HAProxy = a.Proxy.Observe(ctx)
	o.Files = map[string][]byte{}
	for _, n := range names {
		b, err := artifact.ReadFile(filepath.Join(a.Dir, n))
		switch {
		case errors.Is(err, fs.ErrNotExist):
		case err != nil:
			return o, fmt.Errorf("read %s: %w", filepath.Join(a.Dir, n), err)
		default:
			o.Files[n] = b
		}
	}
	return o, nil
}

// observeProxy asks the master what runs, and its current worker (through
// the master) which configuration and servers it runs.
func observeProxy(ctx context.Context, m *haproxy.Master) ProxyState {
	var st ProxyState
	pctx, cancel := context.WithTimeout(ctx, observeTimeout)
	defer cancel()
	ps, err := m.ShowProc(pctx)
	if err != nil {
		st.Err = err
		return st
	}
	st.Alive, st.Procs = true, ps
	if len(ps.Workers) == 0 {
		st.Err = errors.New("the master has no current worker")
		return st
	}
	// The current worker, through the master: right after a reload the
	// old worker may still answer on the stats socket too.
	pid := ps.Workers[0].PID
	info, err := m.ShowInfoOf(pctx, pid)
	if err != nil {
		st.Err = fmt.Errorf("worker %d: %w", pid, err)
		return st
	}
	st.ConfigHash = haproxy.HashOf(info.Fields["description"])
	stats, err := m.ShowStatOf(pctx, pid)
	if err != nil {
		st.Err = fmt.Errorf("worker %d: %w", pid, err)
		return st
	}
	st.Servers = map[string]haproxy.Stat{}
	for _, s := range stats {
		if s.Type == haproxy.StatServer {
			st.Servers[s.Proxy] = s
		}
	}
	return st
}

// LoadApplied reads the desired state the last successful apply left in
// dir: what run serves when the node file is broken at start.
func LoadApplied(dir string) (*compiler.Result, error) {
	files := map[string][]byte{}
	read := func(n string) error {
		b, err := artifact.ReadFile(filepath.Join(dir, n))
		if err == nil {
			files[n] = b
		}
		return err
	}
	for _, n := range []string{compiler.PlanFile, compiler.HAProxyFile} {
		if err := read(n); err != nil {
			return nil, fmt.Errorf("no applied state in %s: %w", dir, err)
		}
	}
	// The firewall's files are the ones plan.json names; resultFrom says
	// which are missing.
	var p plan.Plan
	if err := json.Unmarshal(files[compiler.PlanFile], &p); err != nil {
		return nil, fmt.Errorf("applied plan in %s: %w", dir, err)
	}
	for _, n := range compiler.FirewallFiles(p.FirewallName()) {
		if err := read(n); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("no applied state in %s: %w", dir, err)
		}
	}
	res, err := resultFrom(files)
	if err != nil {
		return nil, fmt.Errorf("applied plan in %s: %w", dir, err)
	}
	return res, nil
}

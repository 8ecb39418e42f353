// Package supervisor takes a compiled node live and keeps it so: render →
// validate → write → apply rules → runtime change or reload → verify, keeping
// the last good state and returning to it when a step fails.
package supervisor

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/routing"
)

// Routes is what apply needs of the transparent backends' reply route;
// routing.Manager has it.
type Routes interface {
	Observe(rr plan.ReplyRoute) (routing.Observed, error)
	// Ensure adds what is missing; Remove takes every part away.
	Ensure(rr plan.ReplyRoute) error
	Remove(rr plan.ReplyRoute) error
}

// Proxy is what apply needs of HAProxy.
type Proxy interface {
	Check(ctx context.Context, cfgPath string) error
	Observe(ctx context.Context) ProxyState
	// Start starts a master on the configuration on disk, in a session of
	// its own that outlives portstripe; Stop stops the master that answers.
	Start(ctx context.Context) error
	Stop(ctx context.Context) error
	// Reload makes the master load the configuration on disk and returns
	// once a new worker serves it, or with an error if it did not start.
	Reload(ctx context.Context) error
	// SetServerAddr and SetServerState change a server's address, and put
	// it in or out of maintenance, through the runtime API.
	SetServerAddr(ctx context.Context, backend, server string, addr netip.AddrPort) error
	SetServerState(ctx context.Context, backend, server string, enabled bool) error
	// FrontendsUp fails unless every named frontend is open.
	FrontendsUp(ctx context.Context, names []string) error
}

// Applier makes this machine run a desired state, from what it observes.
type Applier struct {
	// Dir holds the applied haproxy.cfg, rules.v4 and plan.json; HAProxy
	// reads its configuration from there.
	Dir string
	// Firewalls are this machine's firewall backends, by name: the node's
	// own installs its rules; another one holding rules (the node file
	// switched backends) is cleaned once the new rules serve.
	Firewalls map[string]firewall.Backend
	// Routes manages the reply route; nil on a machine portstripe does not
	// route for (the unit tests' fakes).
	Routes Routes
	Proxy  Proxy
	Log    *slog.Logger

	mu sync.Mutex
	// canonical caches Canonical by the firewall files' hash, and checked the
	// haproxy.cfg hashes haproxy -c accepted: both cost a process or a
	// namespace, and the reconcile loop asks again every period.
	canonical map[[32]byte]firewall.State
	checked   map[[32]byte]bool
}

// Change says what an apply did or, dry, would do, and why.
type Change struct {
	// Firewall is the node's backend; Rules are its lines to add ("+
	// [table] chain: rule") and remove ("- …").
	Firewall string   `json:"firewall"`
	Rules    []string `json:"rules,omitempty"`
	// Clean are the other backends still holding rules, removed once the
	// node's own serve: the node file switched backends.
	Clean []string `json:"clean,omitempty"`
	// Jumps are the hooks whose jump to portstripe's chains is missing.
	Jumps []string `json:"jumps,omitempty"`
	// Routes are the parts of the transparent backends' reply route to add
	// ("+ ip rule …") or remove ("- ip route …").
	Routes []string `json:"routes,omitempty"`
	// Files are the state directory's files that differ from the desired
	// ones; Retired are the firewall files the desired state no longer has
	// (rules.v4 after a switch to nftables), kept as NAME.prev.
	Files    []string       `json:"files,omitempty"`
	Retired  []string       `json:"retired,omitempty"`
	Backends []string       `json:"backends,omitempty"` // added/removed/changed backends
	Servers  []ServerChange `json:"servers,omitempty"`  // done through the runtime API
	// Start: no HAProxy master answers, so one is started.
	Start       bool   `json:"start"`
	StartReason string `json:"start_reason,omitempty"`
	// Reload: the worker runs another configuration.
	Reload       bool   `json:"reload"`
	ReloadReason string `json:"reload_reason,omitempty"`
	Nothing      bool   `json:"nothing"` // the machine matches: nothing touched
}

// What names the parts of the machine that differ from the desired state,
// as portstripe_drift_repairs_total counts them.
func (c Change) What() []string {
	var out []string
	for _, p := range c.parts() {
		if p.on {
			out = append(out, p.name)
		}
	}
	return out
}

// whatNames are every name What can return.
func (c Change) whatNames() []string {
	var out []string
	for _, p := range c.parts() {
		out = append(out, p.name)
	}
	return out
}

func (c Change) parts() []struct {
	name string
	on   bool
} {
	return []struct {
		name string
		on   bool
	}{
		{"rules", len(c.Rules) > 0 || len(c.Clean) > 0}, {"jumps", len(c.Jumps) > 0}, {"routes", len(c.Routes) > 0}, {"files", len(c.Files) > 0 || len(c.Retired) > 0},
		{"haproxy_master", c.Start}, {"haproxy_config", c.Reload}, {"servers", len(c.Servers) > 0},
	}
}

// Teardown stops HAProxy and removes portstripe's rules: what --cleanup
// asks for, never done on a plain stop.
func (a *Applier) Teardown(ctx context.Context) error {
	var errs []error
	if a.Proxy.Observe(ctx).Alive {
		errs = append(errs, a.Proxy.Stop(ctx))
	}
	for _, name := range slices.Sorted(maps.Keys(a.Firewalls)) {
		errs = append(errs, a.Firewalls[name].Clean(ctx))
	}
	if a.Routes != nil {
		errs = append(errs, a.Routes.Remove(plan.TransparentReplyRoute))
	}
	return errors.Join(errs...)
}

// ServerChange is a change to one server the runtime API can make.
type ServerChange struct {
	Backend string `json:"backend"`
	Server  string `json:"server"`
	// Addr is the new address; zero when it did not change.
	Addr netip.AddrPort `json:"addr,omitzero"`
	// State is "enabled" or "disabled" when it changed, else empty.
	State string `json:"state,omitempty"`
}

// RollbackTimeout bounds a rollback, which runs to its end even when the
// apply's context was cancelled (SIGTERM mid-apply).
const RollbackTimeout = 15 * time.Second

// Plan observes the machine and says what Apply would change; it touches
// nothing.
func (a *Applier) Plan(ctx context.Context, res *compiler.Result) (Change, error) {
	c, _, err := a.plan(ctx, res)
	return c, err
}

// Preview is Plan presented for a reviewer (apply --dry-run), with the
// fingerprint of what it observed, so that it can be saved and applied
// later as it is.
func (a *Applier) Preview(ctx context.Context, res *compiler.Result) (*ApplyPlan, error) {
	c, obs, err := a.plan(ctx, res)
	if err != nil {
		return nil, err
	}
	return a.describe(ctx, res, c, obs, false), nil
}

// DriftError refuses a saved plan: the machine is no longer the one it was
// made against.
type DriftError struct{ What string }

func (e DriftError) Error() string {
	return "the machine changed since the plan was made: " + e.What + "; make a new plan"
}

// ApplyPlanned is Apply that also presents what it did. With made (a saved
// plan's fingerprint) it first checks that the machine is still the one the
// plan was made against, and touches nothing (DriftError) when it is not.
func (a *Applier) ApplyPlanned(ctx context.Context, res *compiler.Result, made *Fingerprint) (*ApplyPlan, error) {
	c, obs, err := a.apply(ctx, res, made)
	if err != nil {
		return nil, err
	}
	return a.describe(ctx, res, c, obs, true), nil
}

func (a *Applier) plan(ctx context.Context, res *compiler.Result) (Change, Observed, error) {
	var c Change
	names := slices.Sorted(maps.Keys(res.Files))
	unmade := res.Unmade()
	obs, err := a.Observe(ctx, append(slices.Clone(names), unmade...))
	if err != nil {
		return c, obs, err
	}
	fw, files, err := a.firewall(res)
	if err != nil {
		return c, obs, err
	}
	want, err := a.canonicalRules(ctx, fw, files)
	if err != nil {
		return c, obs, fmt.Errorf("validate the %s rules: %w", fw.Name(), err)
	}
	was := obs.Firewall[fw.Name()]
	c.Firewall, c.Rules, c.Jumps = fw.Name(), firewall.Diff(was, want), was.MissingOf(want)
	for _, name := range slices.Sorted(maps.Keys(obs.Firewall)) {
		if name != fw.Name() && obs.Firewall[name].Installed() {
			c.Clean = append(c.Clean, name)
		}
	}
	c.Routes = routeChanges(obs.Routes, res.Plan.ReplyRoute)
	for _, n := range names {
		if old, ok := obs.Files[n]; !ok || !bytes.Equal(old, res.Files[n]) {
			c.Files = append(c.Files, n)
		}
	}
	for _, n := range unmade {
		if _, ok := obs.Files[n]; ok {
			c.Retired = append(c.Retired, n)
		}
	}
	newCfg := res.Files[compiler.HAProxyFile]
	hp := obs.HAProxy
	c.Backends = diffBackends(hp.Servers, res.Plan)
	switch wantHash := haproxy.ReadConfigHash(newCfg); {
	case !hp.Alive:
		c.Start, c.StartReason = true, fmt.Sprintf("no haproxy master answers (%v)", hp.Err)
	case hp.ConfigHash != wantHash:
		c.Reload, c.ReloadReason = true, reloadReason(hp, wantHash, obs.Files[compiler.HAProxyFile], newCfg)
	default:
		c.Servers = serverChanges(hp.Servers, res.Plan)
	}
	c.Nothing = len(c.What()) == 0
	return c, obs, nil
}

// reloadReason says why the running worker needs the new configuration,
// naming the sections that differ when the state directory's haproxy.cfg is
// what the worker runs.
func reloadReason(hp ProxyState, want string, onDisk, newCfg []byte) string {
	switch {
	case hp.ConfigHash == "" && hp.Err != nil:
		return fmt.Sprintf("the worker's configuration cannot be read (%v)", hp.Err)
	case hp.ConfigHash == "":
		return "the worker runs a configuration portstripe did not write"
	case haproxy.ReadConfigHash(onDisk) == hp.ConfigHash:
		if s := diffSections(onDisk, newCfg); len(s) > 0 {
			return "haproxy.cfg changed beyond server addresses: " + sectionsReason(s)
		}
		return "haproxy.cfg changed beyond server addresses"
	}
	return fmt.Sprintf("the worker runs configuration %.12s, the node wants %.12s", hp.ConfigHash, want)
}

// Apply makes the machine run the compiled node, from what it observes:
// rules and jumps put back or replaced, a dead HAProxy started, a worker on
// another configuration reloaded, server changes made through the runtime
// API. On any failure the machine is put back as it was observed: the
// previous rules (or none), the previous files, the previous worker (or no
// HAProxy), and the error says which step failed.
func (a *Applier) Apply(ctx context.Context, res *compiler.Result) (Change, error) {
	c, _, err := a.apply(ctx, res, nil)
	return c, err
}

func (a *Applier) apply(ctx context.Context, res *compiler.Result, made *Fingerprint) (Change, Observed, error) {
	c, obs, err := a.plan(ctx, res)
	if err != nil {
		return c, obs, err
	}
	if made != nil {
		if d := made.Drift(fingerprint(obs)); d != "" {
			return c, obs, DriftError{d}
		}
	}
	c, err = a.act(ctx, res, c, obs)
	return c, obs, err
}

// act makes the changes plan decided on, from the observation they were
// decided on.
func (a *Applier) act(ctx context.Context, res *compiler.Result, c Change, obs Observed) (Change, error) {
	if c.Nothing {
		// Debug: run's reconcile loop finds this every period.
		a.Log.Debug("nothing to apply: rules, jumps, files and HAProxy already match the node", "sha256", res.Plan.Node.SHA256)
		return c, nil
	}
	if err := a.validate(ctx, res); err != nil {
		return c, err
	}
	written := map[string][]byte{}
	for _, n := range c.Files {
		written[n] = res.Files[n]
	}
	if err := artifact.WriteAll(a.Dir, written); err != nil {
		return c, fmt.Errorf("apply: %w", err)
	}
	if err := artifact.Retire(a.Dir, c.Retired...); err != nil {
		return c, errors.Join(fmt.Errorf("apply: %w", err), artifact.Restore(a.Dir, append(c.Files, c.Retired...)...))
	}
	rulesTouched, routesTouched, started, reloaded := false, false, false, false
	var fw firewall.Backend
	var cleaned []string
	rollback := func(cause error) error {
		// Not the apply's context: a SIGTERM that cut the apply short must
		// not cut its rollback short too.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), RollbackTimeout)
		defer cancel()
		errs := []error{cause}
		if err := artifact.Restore(a.Dir, append(c.Files, c.Retired...)...); err != nil {
			errs = append(errs, fmt.Errorf("roll back files: %w", err))
		}
		if rulesTouched {
			if err := fw.Restore(ctx, obs.Firewall[fw.Name()]); err != nil {
				errs = append(errs, fmt.Errorf("roll back rules: %w", err))
			}
		}
		for _, name := range cleaned {
			if err := a.Firewalls[name].Restore(ctx, obs.Firewall[name]); err != nil {
				errs = append(errs, fmt.Errorf("roll back the %s rules: %w", name, err))
			}
		}
		if routesTouched {
			if err := a.setRoutes(obs.Routes.Rule || obs.Routes.Route); err != nil {
				errs = append(errs, fmt.Errorf("roll back routes: %w", err))
			}
		}
		switch {
		case started:
			// Nothing served before: nothing serves after.
			if err := a.Proxy.Stop(ctx); err != nil {
				errs = append(errs, fmt.Errorf("stop the haproxy this apply started: %w", err))
			}
		case reloaded:
			// The new worker took over; the restored file brings the
			// previous configuration back.
			if err := a.Proxy.Reload(ctx); err != nil {
				errs = append(errs, fmt.Errorf("reload the previous haproxy.cfg: %w", err))
			}
		}
		// The caller reports the error (run's log line, apply's exit
		// message): logging it here too made two error lines per failure.
		a.Log.Info("rolled back: the machine is as it was before this apply", "rollback_errors", len(errs)-1)
		return errors.Join(errs...)
	}
	fw, files, err := a.firewall(res)
	if err != nil {
		return c, rollback(err)
	}
	if len(c.Rules) > 0 || len(c.Jumps) > 0 {
		rulesTouched = true
		if err := fw.Apply(ctx, files); err != nil {
			return c, rollback(err) // the rules layer names its step ("apply rules: …")
		}
		a.Log.Info("rules applied", "firewall", fw.Name(), "changed_lines", len(c.Rules), "jumps_added", c.Jumps)
	}
	if len(c.Routes) > 0 {
		routesTouched = true
		if err := a.setRoutes(res.Plan.ReplyRoute != nil); err != nil {
			return c, rollback(err)
		}
		a.Log.Info("reply route changed", "changes", c.Routes)
	}
	for _, s := range c.Servers {
		if err := a.changeServer(ctx, s); err != nil {
			c.Reload, c.ReloadReason = true, fmt.Sprintf("runtime API refused a change to server %s/%s: %v", s.Backend, s.Server, err)
			break
		}
	}
	switch {
	case c.Start:
		a.Log.Info("starting haproxy", "reason", c.StartReason)
		if err := a.Proxy.Start(ctx); err != nil {
			return c, rollback(err) // "start haproxy: …"
		}
		started = true
	case c.Reload:
		a.Log.Info("reloading HAProxy", "reason", c.ReloadReason)
		if err := a.Proxy.Reload(ctx); err != nil {
			return c, rollback(err) // "haproxy reload: …"
		}
		reloaded = true
	}
	if err := a.verify(ctx, res); err != nil {
		return c, rollback(err)
	}
	// Last: until here the old backend's rules served too, so switching
	// backends leaves no moment without a striped port.
	for _, name := range c.Clean {
		cleaned = append(cleaned, name)
		if err := a.Firewalls[name].Clean(ctx); err != nil {
			return c, rollback(fmt.Errorf("remove the %s rules: %w", name, err))
		}
		a.Log.Info("rules of the previous firewall backend removed", "firewall", name)
	}
	return c, nil
}

// firewall picks the node's backend and its files from the compiled node.
func (a *Applier) firewall(res *compiler.Result) (firewall.Backend, map[string][]byte, error) {
	name := res.Plan.FirewallName()
	fw, ok := a.Firewalls[name]
	if !ok {
		return nil, nil, fmt.Errorf("firewall %q: this machine has no such backend (it has %s)", name, strings.Join(slices.Sorted(maps.Keys(a.Firewalls)), ", "))
	}
	files := map[string][]byte{}
	for _, n := range fw.Files() {
		if b, ok := res.Files[n]; ok {
			files[n] = b
		}
	}
	return fw, files, nil
}

// verify checks that the worker runs the desired configuration and every
// frontend is open.
func (a *Applier) verify(ctx context.Context, res *compiler.Result) error {
	if err := a.Proxy.FrontendsUp(ctx, frontends(res.Plan)); err != nil {
		return fmt.Errorf("verify haproxy: %w", err)
	}
	want := haproxy.ReadConfigHash(res.Files[compiler.HAProxyFile])
	// The master counts a reload before its new worker answers for it:
	// wait, briefly, for the current worker to report the new hash.
	wait := time.NewTimer(verifyWait)
	defer wait.Stop()
	for {
		hp := a.Proxy.Observe(ctx)
		if hp.ConfigHash == want {
			return nil
		}
		select {
		case <-wait.C:
			return fmt.Errorf("verify haproxy: the worker runs configuration %.12q, want %.12s (%v)", hp.ConfigHash, want, hp.Err)
		case <-ctx.Done():
			return fmt.Errorf("verify haproxy: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// verifyWait bounds how long verify waits for the current worker to
// report the new configuration.
const verifyWait = 5 * time.Second

// setRoutes adds the reply route (all of it) or removes it.
func (a *Applier) setRoutes(on bool) error {
	if on {
		return a.Routes.Ensure(plan.TransparentReplyRoute)
	}
	return a.Routes.Remove(plan.TransparentReplyRoute)
}

// routeChanges says what of the reply route to add (the plan has one) or
// remove (it has none) so the kernel holds what the plan says.
func routeChanges(was routing.Observed, want *plan.ReplyRoute) []string {
	rr := plan.TransparentReplyRoute
	parts := []struct {
		there bool
		text  string
	}{
		{was.Rule, fmt.Sprintf("ip rule fwmark %#x lookup %d priority %d", rr.Mark, rr.Table, rr.Priority)},
		{was.Route, fmt.Sprintf("ip route local 0.0.0.0/0 dev lo table %d", rr.Table)},
	}
	var out []string
	for _, p := range parts {
		switch {
		case want != nil && !p.there:
			out = append(out, "+ "+p.text)
		case want == nil && p.there:
			out = append(out, "- "+p.text)
		}
	}
	return out
}

func (a *Applier) changeServer(ctx context.Context, s ServerChange) error {
	if s.Addr.IsValid() {
		if err := a.Proxy.SetServerAddr(ctx, s.Backend, s.Server, s.Addr); err != nil {
			return err
		}
		a.Log.Info("server address changed through the runtime API, no reload", "backend", s.Backend, "addr", s.Addr)
	}
	if s.State != "" {
		if err := a.Proxy.SetServerState(ctx, s.Backend, s.Server, s.State == "enabled"); err != nil {
			return err
		}
		a.Log.Info("server "+s.State+" through the runtime API, no reload", "backend", s.Backend)
	}
	return nil
}

func (a *Applier) validate(ctx context.Context, res *compiler.Result) error {
	cfg := res.Files[compiler.HAProxyFile]
	sum := sha256.Sum256(cfg)
	a.mu.Lock()
	done := a.checked[sum]
	a.mu.Unlock()
	if !done {
		tmp, err := os.MkdirTemp("", "portstripe-apply-")
		if err != nil {
			return fmt.Errorf("validate: %w", err)
		}
		defer os.RemoveAll(tmp)
		path := filepath.Join(tmp, compiler.HAProxyFile)
		if err := os.WriteFile(path, cfg, artifact.Mode); err != nil {
			return fmt.Errorf("validate: %w", err)
		}
		if err := a.Proxy.Check(ctx, path); err != nil {
			return fmt.Errorf("validate haproxy.cfg: %w", err)
		}
		a.mu.Lock()
		if a.checked == nil {
			a.checked = map[[32]byte]bool{}
		}
		a.checked[sum] = true
		a.mu.Unlock()
	}
	// Canonical loads the rules into a throwaway namespace: it checked them.
	fw, files, err := a.firewall(res)
	if err != nil {
		return err
	}
	if _, err := a.canonicalRules(ctx, fw, files); err != nil {
		return fmt.Errorf("validate the %s rules: %w", fw.Name(), err)
	}
	return nil
}

// canonicalRules is the backend's Canonical, remembered by the hash of
// its name and files.
func (a *Applier) canonicalRules(ctx context.Context, fw firewall.Backend, files map[string][]byte) (firewall.State, error) {
	h := sha256.New()
	h.Write([]byte(fw.Name()))
	for _, n := range slices.Sorted(maps.Keys(files)) {
		fmt.Fprintf(h, "\x00%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	var sum [32]byte
	h.Sum(sum[:0])
	a.mu.Lock()
	got, ok := a.canonical[sum]
	a.mu.Unlock()
	if ok {
		return got, nil
	}
	got, err := fw.Canonical(ctx, files)
	if err != nil {
		return firewall.State{}, err
	}
	a.mu.Lock()
	if a.canonical == nil {
		a.canonical = map[[32]byte]firewall.State{}
	}
	a.canonical[sum] = got
	a.mu.Unlock()
	return got, nil
}

func frontends(p *plan.Plan) []string {
	var names []string
	for _, l := range p.Lists {
		if l.Frontend != nil {
			names = append(names, l.Frontend.Name)
		}
	}
	return names
}

// serverChanges lists what the runtime API must change so that the
// worker's servers (observed) are the plan's: addresses and maintenance.
func serverChanges(running map[string]haproxy.Stat, p *plan.Plan) []ServerChange {
	var out []ServerChange
	for _, b := range p.Backends {
		st, ok := running[b.Service]
		if !ok {
			continue // same config hash, so the backend is there; a reload would say otherwise
		}
		ch := ServerChange{Backend: b.Service, Server: b.Service}
		if st.Addr != b.Addr.String() {
			ch.Addr = b.Addr
		}
		if inMaintenance(st) != b.Disabled {
			ch.State = map[bool]string{true: "disabled", false: "enabled"}[b.Disabled]
		}
		if ch.Addr.IsValid() || ch.State != "" {
			out = append(out, ch)
		}
	}
	return out
}

// disabledNote marks a server in maintenance in diffBackends' lines.
func disabledNote(disabled bool) string {
	if disabled {
		return " (disabled)"
	}
	return ""
}

// diffBackends says how the plan's backends differ from the ones the worker
// runs (all new when no worker answers).
func diffBackends(running map[string]haproxy.Stat, cur *plan.Plan) []string {
	was := maps.Clone(running)
	var out []string
	for _, b := range cur.Backends {
		o, ok := was[b.Service]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("+ %s %s%s", b.Service, b.Addr, disabledNote(b.Disabled)))
		case o.Addr != b.Addr.String() || inMaintenance(o) != b.Disabled:
			out = append(out, fmt.Sprintf("~ %s %s%s → %s%s", b.Service, o.Addr, disabledNote(inMaintenance(o)), b.Addr, disabledNote(b.Disabled)))
		}
		delete(was, b.Service)
	}
	for name, s := range was {
		out = append(out, fmt.Sprintf("- %s %s", name, s.Addr))
	}
	slices.Sort(out)
	return out
}

// inMaintenance reports whether a server is in maintenance ("MAINT", or
// "MAINT (via …)" and the like), whatever its health checks say.
func inMaintenance(s haproxy.Stat) bool { return strings.HasPrefix(s.Status, "MAINT") }

// Package supervisor takes a compiled node live and keeps it so: render →
// validate → write → apply rules → runtime change or reload → verify, keeping
// the last good state and returning to it when a step fails.
package supervisor

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/textdiff"
	"github.com/portstripe/portstripe/plan"
)

// Rules is what apply needs of the iptables side.
type Rules interface {
	Check(ctx context.Context, rules []byte) error
	Apply(ctx context.Context, rules []byte) error
	// Current returns the installed portstripe chains as iptables-save text,
	// empty when none are installed; Canonical returns rules as Current
	// would show them once applied, so the two compare byte for byte.
	Current(ctx context.Context) ([]byte, error)
	Canonical(ctx context.Context, rules []byte) ([]byte, error)
}

// Proxy is what apply needs of the running HAProxy.
type Proxy interface {
	Check(ctx context.Context, cfgPath string) error
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

// Applier applies compiled nodes to this machine.
type Applier struct {
	// Dir holds the applied haproxy.cfg, rules.v4 and plan.json; HAProxy
	// reads its configuration from there.
	Dir   string
	Rules Rules
	Proxy Proxy
	Log   *slog.Logger
}

// Change says what an apply did or, dry, would do.
type Change struct {
	Rules        []string       `json:"rules,omitempty"`         // "+ line" / "- line"
	Backends     []string       `json:"backends,omitempty"`      // added/removed/changed backends
	Servers      []ServerChange `json:"servers,omitempty"`       // done through the runtime API
	Reload       bool           `json:"reload"`                  // HAProxy reloaded (or would be)
	ReloadReason string         `json:"reload_reason,omitempty"` // why
	Nothing      bool           `json:"nothing"`                 // identical: nothing touched
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

// Plan compares a compiled node with what is applied and says what Apply
// would change; it touches nothing.
func (a *Applier) Plan(ctx context.Context, res *compiler.Result) (Change, error) {
	var c Change
	oldCfg, _ := os.ReadFile(filepath.Join(a.Dir, compiler.HAProxyFile))
	oldPlan := readPlan(filepath.Join(a.Dir, compiler.PlanFile))
	installed, err := a.Rules.Current(ctx)
	if err != nil {
		return c, fmt.Errorf("read installed rules: %w", err)
	}
	want, err := a.Rules.Canonical(ctx, res.Files[compiler.RulesFile])
	if err != nil {
		return c, fmt.Errorf("validate rules.v4: %w", err)
	}
	c.Rules = diffLines(ruleLines(installed), ruleLines(want))
	newCfg := res.Files[compiler.HAProxyFile]
	c.Backends = diffBackends(oldPlan, res.Plan)
	switch {
	case bytes.Equal(oldCfg, newCfg):
	case oldCfg == nil:
		c.Reload, c.ReloadReason = true, "no haproxy.cfg applied yet"
	default:
		if addrs, ok := serverOnly(oldCfg, oldPlan, res.Plan); ok {
			c.Servers = addrs
		} else {
			c.Reload, c.ReloadReason = true, "haproxy.cfg changed beyond server addresses: "+firstDiff(oldCfg, newCfg)
		}
	}
	c.Nothing = len(c.Rules) == 0 && !c.Reload && len(c.Servers) == 0 && bytes.Equal(oldCfg, newCfg) &&
		bytes.Equal(readFile(filepath.Join(a.Dir, compiler.PlanFile)), res.Files[compiler.PlanFile])
	return c, nil
}

// Apply makes the compiled node live. On any failure the previous files,
// rules and HAProxy worker stay (or are put back) and the error says which
// step failed.
func (a *Applier) Apply(ctx context.Context, res *compiler.Result) (Change, error) {
	c, err := a.Plan(ctx, res)
	if err != nil {
		return c, err
	}
	if c.Nothing {
		a.Log.Info("nothing to apply: files, rules and HAProxy already match the node file", "sha256", res.Plan.Node.SHA256)
		return c, nil
	}
	if err := a.validate(ctx, res); err != nil {
		return c, err
	}
	installed, err := a.Rules.Current(ctx)
	if err != nil {
		return c, fmt.Errorf("read installed rules: %w", err)
	}
	names := []string{compiler.HAProxyFile, compiler.RulesFile, compiler.PlanFile}
	if err := artifact.WriteAll(a.Dir, res.Files); err != nil {
		return c, fmt.Errorf("apply: %w", err)
	}
	rollback := func(cause error) error {
		errs := []error{cause}
		if err := artifact.Restore(a.Dir, names...); err != nil {
			errs = append(errs, fmt.Errorf("roll back files: %w", err))
		}
		if len(c.Rules) > 0 && len(installed) > 0 {
			if err := a.Rules.Apply(ctx, installed); err != nil {
				errs = append(errs, fmt.Errorf("roll back rules: %w", err))
			}
		}
		// The caller reports the error (run's log line, apply's exit
		// message): logging it here too made two error lines per failure.
		a.Log.Info("rolled back: previous files and rules restored, the previous HAProxy worker keeps serving", "rollback_errors", len(errs)-1)
		return errors.Join(errs...)
	}
	if len(c.Rules) > 0 {
		if err := a.Rules.Apply(ctx, res.Files[compiler.RulesFile]); err != nil {
			return c, rollback(err) // the rules layer names its step ("apply rules: …")
		}
		a.Log.Info("rules applied", "changed_lines", len(c.Rules))
	}
	for _, s := range c.Servers {
		if err := a.changeServer(ctx, s); err != nil {
			c.Reload, c.ReloadReason = true, fmt.Sprintf("runtime API refused a change to server %s/%s: %v", s.Backend, s.Server, err)
			break
		}
	}
	if c.Reload {
		a.Log.Info("reloading HAProxy", "reason", c.ReloadReason)
		if err := a.Proxy.Reload(ctx); err != nil {
			return c, rollback(err) // "haproxy reload: …" or "start haproxy: …"
		}
	}
	if err := a.Proxy.FrontendsUp(ctx, frontends(res.Plan)); err != nil {
		return c, rollback(fmt.Errorf("verify haproxy: %w", err))
	}
	return c, nil
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
	tmp, err := os.MkdirTemp("", "portstripe-apply-")
	if err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	defer os.RemoveAll(tmp)
	cfg := filepath.Join(tmp, compiler.HAProxyFile)
	if err := os.WriteFile(cfg, res.Files[compiler.HAProxyFile], artifact.Mode); err != nil {
		return fmt.Errorf("validate: %w", err)
	}
	if err := a.Proxy.Check(ctx, cfg); err != nil {
		return fmt.Errorf("validate haproxy.cfg: %w", err)
	}
	if err := a.Rules.Check(ctx, res.Files[compiler.RulesFile]); err != nil {
		return fmt.Errorf("validate rules.v4: %w", err)
	}
	return nil
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

// serverOnly reports whether the new configuration differs from the old one
// only in server addresses and states, and lists those changes. It renders
// the new plan with the old servers: if that gives the old file, servers
// are all that changed.
func serverOnly(oldCfg []byte, oldPlan, newPlan *plan.Plan) ([]ServerChange, bool) {
	if oldPlan == nil {
		return nil, false
	}
	old := map[string]plan.Backend{}
	for _, b := range oldPlan.Backends {
		old[b.Service] = b
	}
	// The header names the node file's hash, which any edit changes.
	probe := *newPlan
	probe.Node = oldPlan.Node
	probe.Backends = slices.Clone(newPlan.Backends)
	var changes []ServerChange
	for i, b := range probe.Backends {
		o, ok := old[b.Service]
		if !ok {
			return nil, false
		}
		if o == b {
			continue
		}
		ch := ServerChange{Backend: b.Service, Server: b.Service}
		if o.Addr != b.Addr {
			ch.Addr = b.Addr
		}
		if o.Disabled != b.Disabled {
			ch.State = map[bool]string{true: "disabled", false: "enabled"}[b.Disabled]
		}
		changes = append(changes, ch)
		probe.Backends[i] = o
	}
	return changes, len(changes) > 0 && bytes.Equal(haproxy.Render(&probe), oldCfg)
}

func state(b plan.Backend) string {
	if b.Disabled {
		return " (disabled)"
	}
	return ""
}

func readFile(path string) []byte {
	b, _ := os.ReadFile(path)
	return b
}

// ruleLines keeps the lines of an iptables-save or -restore text that say
// what the rules do: chain declarations and rules, without comments,
// counters or COMMIT.
func ruleLines(text []byte) []string {
	var out []string
	for _, l := range strings.Split(string(text), "\n") {
		l = strings.TrimSpace(l)
		switch {
		case strings.HasPrefix(l, "-A "):
			out = append(out, l)
		case strings.HasPrefix(l, ":"):
			if i := strings.IndexByte(l, ' '); i > 0 {
				l = l[:i]
			}
			out = append(out, l)
		}
	}
	slices.Sort(out)
	return out
}

func diffLines(old, cur []string) []string {
	var out []string
	for _, l := range old {
		if _, ok := slices.BinarySearch(cur, l); !ok {
			out = append(out, "- "+l)
		}
	}
	for _, l := range cur {
		if _, ok := slices.BinarySearch(old, l); !ok {
			out = append(out, "+ "+l)
		}
	}
	// Chains read best before the rules in them.
	chain := func(l string) bool { return strings.HasPrefix(l[2:], ":") }
	slices.SortStableFunc(out, func(a, b string) int {
		switch {
		case chain(a) == chain(b):
			return 0
		case chain(a):
			return -1
		}
		return 1
	})
	return out
}

func diffBackends(old, cur *plan.Plan) []string {
	was := map[string]plan.Backend{}
	if old != nil {
		for _, b := range old.Backends {
			was[b.Service] = b
		}
	}
	var out []string
	for _, b := range cur.Backends {
		o, ok := was[b.Service]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("+ %s %s%s", b.Service, b.Addr, state(b)))
		case o != b:
			out = append(out, fmt.Sprintf("~ %s %s%s → %s%s", b.Service, o.Addr, state(o), b.Addr, state(b)))
		}
		delete(was, b.Service)
	}
	for name, b := range was {
		out = append(out, fmt.Sprintf("- %s %s", name, b.Addr))
	}
	slices.Sort(out)
	return out
}

// firstDiff names the first line that differs, past the comments (the
// header's hash changes with every edit and says nothing about why).
func firstDiff(a, b []byte) string {
	if d := textdiff.Lines(uncommented(a), uncommented(b), 1); len(d) > 0 {
		return d[0]
	}
	return "only comments differ"
}

func uncommented(b []byte) string {
	var keep []string
	for _, l := range strings.Split(string(b), "\n") {
		if !strings.HasPrefix(strings.TrimSpace(l), "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

func readPlan(path string) *plan.Plan {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil
	}
	var p plan.Plan
	if json.Unmarshal(b, &p) != nil {
		return nil
	}
	return &p
}

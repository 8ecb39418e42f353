package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portstripe/portstripe/compiler"
)

// DefaultPeriod is how often run observes the machine and repairs drift.
const DefaultPeriod = 10 * time.Second

// Runner is `portstripe run`: a level-triggered controller. It keeps the
// machine running the desired state (the Source's last good compile: the
// node file's, or a fleet store's), reconciling on events (a new desired
// state, HAProxy exit) and every Period, and leaves HAProxy and the rules
// serving when it stops.
type Runner struct {
	Source  Source
	Applier *Applier
	HAProxy *HAProxy
	Metrics *Metrics
	Log     *slog.Logger
	// Desired is what to serve at start: the source's compile, or, when
	// the source's input is refused (InputErr), the last applied state.
	Desired  *compiler.Result
	InputErr error
	// Period is how often the machine is observed and drift repaired;
	// 0 means DefaultPeriod.
	Period time.Duration
	// MetricsAddr serves /metrics, /healthz and /readyz; empty serves nothing.
	MetricsAddr string
	// Cleanup tears the node down on stop: HAProxy stopped, rules removed.
	Cleanup bool
	// Notify sends a state to systemd (sd_notify); nil sends nothing.
	Notify func(state string)

	mu sync.Mutex
	// desired is what the machine must run, fromSource whether it is the
	// source's input as it is now (not a fallback); good is the last state
	// applied in full (nil before the first); inputErr says why the
	// source's input is not what runs; serving says why the machine does
	// not run desired (nil when the last pass made it so).
	desired, good *compiler.Result
	fromSource    bool
	inputErr      error
	serving       error
	ready         bool
	retryAt       time.Time // no liveness-triggered pass before this
	backoff       time.Duration
}

// Run works until ctx ends (SIGTERM, SIGINT), then stops, leaving the node
// serving unless Cleanup is set.
func (r *Runner) Run(ctx context.Context) error {
	if r.Period <= 0 {
		r.Period = DefaultPeriod
	}
	r.desired, r.inputErr, r.fromSource = r.Desired, r.InputErr, r.InputErr == nil
	if r.inputErr != nil {
		r.Log.Error(r.Source.Input()+" refused at start; serving the last applied state until it is fixed",
			"error", r.inputErr, "applied_sha256", r.desired.Plan.Node.SHA256)
	}
	if r.MetricsAddr != "" {
		stop, err := r.serve()
		if err != nil {
			return err
		}
		defer stop()
	}
	wctx, stopWatch := context.WithCancel(ctx)
	defer stopWatch()
	desires, err := r.Source.Watch(wctx)
	if err != nil {
		return err
	}
	if r.HAProxy.Alive(ctx) {
		r.Log.Info("attached to a running haproxy master", "master_socket", r.HAProxy.MasterSocket)
	}
	r.reconcile(ctx, "start")

	period := time.NewTicker(r.Period)
	defer period.Stop()
	// The master is polled between periods: an adopted one is not our
	// child, so its death sends no event.
	live := time.NewTicker(time.Second)
	defer live.Stop()
	// fired is the exit channel already handled: a master that could not
	// be started again leaves it closed, which must not spin the loop.
	var fired <-chan struct{}
	for {
		exited := r.HAProxy.Exited()
		if exited == fired {
			exited = nil
		}
		select {
		case <-ctx.Done():
			r.stop()
			return nil
		case d := <-desires:
			r.take(ctx, d)
		case <-exited:
			fired = exited
			r.reconcile(ctx, "haproxy master exited")
		case <-period.C:
			r.notify("WATCHDOG=1")
			r.reconcile(ctx, "periodic")
		case <-live.C:
			r.notify("WATCHDOG=1")
			if time.Now().After(r.retryAt) && !r.HAProxy.Alive(ctx) {
				r.reconcile(ctx, "haproxy master does not answer")
			}
		}
	}
}

// take makes a desired state from the source the one to run; a refused
// input leaves the last good state serving.
func (r *Runner) take(ctx context.Context, d Desire) {
	err := d.Err
	if err == nil {
		if h := d.Result.Plan.HAProxy; h.MasterSocket != r.HAProxy.MasterSocket || h.RuntimeSocket != r.HAProxy.RuntimeSocket {
			// The running master answers on the old sockets; moving them
			// is a restart of HAProxy, which run never does on its own.
			err = fmt.Errorf("haproxy.master_socket/runtime_socket changed (%s, %s → %s, %s): restart portstripe run to move them",
				r.HAProxy.MasterSocket, r.HAProxy.RuntimeSocket, h.MasterSocket, h.RuntimeSocket)
		}
	}
	if err != nil {
		r.Metrics.Applies.WithLabelValues("failed").Inc()
		r.setInputErr(err)
		r.Log.Error(r.Source.Input()+" refused; the last applied state keeps serving", "reason", d.Reason, "error", err)
		r.mu.Lock()
		good := r.good
		r.mu.Unlock()
		r.Source.Passed(Pass{Desired: d.Result, Serving: good, Err: err})
		return
	}
	r.mu.Lock()
	r.desired, r.fromSource = d.Result, true
	r.mu.Unlock()
	r.reconcile(ctx, d.Reason)
}

// reconcile observes the machine and makes it run the desired state.
func (r *Runner) reconcile(ctx context.Context, reason string) {
	r.mu.Lock()
	desired, good := r.desired, r.good
	r.mu.Unlock()
	log := r.Log.With("reason", reason)
	// Bounded below systemd's watchdog, which the loop feeds between passes.
	actx, cancel := context.WithTimeout(ctx, 40*time.Second)
	defer cancel()
	c, err := r.applyLocked(actx, desired)
	if err != nil {
		r.Metrics.Applies.WithLabelValues("failed").Inc()
		r.failed()
		r.mu.Lock()
		if r.fromSource {
			r.inputErr = err
		}
		fallback := good != nil && desired != good
		if fallback {
			// An input that compiles but does not apply (haproxy -c,
			// the kernel refusing a rule) is retried on its next change
			// or SIGHUP; until then the last good state is kept right.
			r.desired, r.fromSource = good, false
		} else {
			r.serving = err
		}
		r.mu.Unlock()
		r.updateHealthMetrics()
		if fallback {
			log.Error("apply failed; the last applied state keeps serving", "error", err)
		} else {
			log.Error("apply failed; the machine is as it was before it", "error", err)
		}
		r.Source.Passed(Pass{Desired: desired, Serving: good, Err: err})
		return
	}
	r.backoff = 0
	restarted := c.Start && r.ready
	if restarted {
		r.Metrics.Restarts.Inc()
	}
	result := "ok"
	if c.Nothing {
		result = "unchanged"
	}
	r.Metrics.Applies.WithLabelValues(result).Inc()
	r.Metrics.LastSuccess.SetToCurrentTime()
	r.Metrics.SetApplied(desired.Plan)
	r.Metrics.NodeInfo.Reset()
	r.Metrics.NodeInfo.WithLabelValues(desired.Plan.Node.Name, desired.Plan.Node.SHA256, desired.Plan.Node.SettingsSHA256).Set(1)
	var drift []string
	switch {
	case desired == good && !c.Nothing:
		// Nothing was asked to change, yet the machine differed.
		drift = c.What()
		for _, w := range drift {
			r.Metrics.DriftRepairs.WithLabelValues(w).Inc()
		}
		log.Warn("drift repaired", "what", drift, "rule_changes", len(c.Rules), "jumps", c.Jumps,
			"haproxy_started", c.Start, "reload", c.Reload, "runtime_changes", len(c.Servers), "files", c.Files)
	case desired != good || reason != "periodic":
		log.Info("node applied", "result", result, "node", desired.Plan.Node.Name, "sha256", desired.Plan.Node.SHA256,
			"rule_changes", len(c.Rules), "haproxy_started", c.Start, "reload", c.Reload, "runtime_changes", len(c.Servers))
	}
	r.mu.Lock()
	r.good, r.serving = desired, nil
	if r.fromSource && r.desired == desired {
		r.inputErr = nil
	}
	ready := r.ready
	r.ready = true
	r.mu.Unlock()
	r.updateHealthMetrics()
	if !ready {
		r.notify("READY=1")
	}
	r.Source.Passed(Pass{Desired: desired, Serving: desired, Drift: drift, Restarted: restarted})
}

func (r *Runner) applyLocked(ctx context.Context, desired *compiler.Result) (Change, error) {
	unlock, err := Lock(ctx, r.Applier.Dir)
	if err != nil {
		return Change{}, err
	}
	defer unlock()
	return r.Applier.Apply(ctx, desired)
}

// failed backs the liveness-triggered passes off, so a master that cannot
// start is not retried every second.
func (r *Runner) failed() {
	r.backoff = min(max(2*r.backoff, time.Second), r.Period)
	r.retryAt = time.Now().Add(r.backoff)
}

func (r *Runner) stop() {
	r.notify("STOPPING=1")
	if !r.Cleanup {
		r.Log.Info("stopping; HAProxy and the rules keep serving (the next run adopts them; --cleanup tears down)")
		return
	}
	r.Log.Info("stopping and tearing down (--cleanup)")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := r.Applier.Teardown(ctx); err != nil {
		r.Log.Error("cleanup", "error", err)
		return
	}
	r.Log.Info("haproxy stopped, portstripe's rules removed")
}

func (r *Runner) notify(state string) {
	if r.Notify != nil {
		r.Notify(state)
	}
}

func (r *Runner) setInputErr(err error) {
	r.mu.Lock()
	r.inputErr = err
	r.mu.Unlock()
	r.updateHealthMetrics()
}

func (r *Runner) health() (serving, inputErr error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.serving, r.inputErr
}

func (r *Runner) updateHealthMetrics() {
	serving, inputErr := r.health()
	applied, lastErr := 0.0, 0.0
	if serving == nil && inputErr == nil {
		applied = 1
	} else {
		lastErr = 1
	}
	r.Metrics.ConfigApplied.Set(applied)
	r.Metrics.LastApplyError.Set(lastErr)
}

// serve starts /metrics, /healthz and /readyz. /healthz (liveness) is 200
// while the node serves what was last applied, whatever the source's input
// says now; /readyz is 200 only when the input as it is now is applied and
// the source is ready (a store agent: connected).
func (r *Runner) serve() (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.Metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, req *http.Request) {
		serving, inputErr := r.health()
		if serving == nil && !r.HAProxy.Alive(req.Context()) {
			serving = errors.New("haproxy master does not answer")
		}
		if serving != nil {
			http.Error(w, "unhealthy: "+serving.Error(), http.StatusServiceUnavailable)
			return
		}
		if inputErr != nil {
			fmt.Fprintf(w, "ok: serving the last applied state; the %s is not applied: %v\n", r.Source.Input(), inputErr)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, req *http.Request) {
		serving, inputErr := r.health()
		if err := errors.Join(serving, inputErr, r.Source.Ready()); err != nil {
			http.Error(w, "not ready: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: r.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := net.Listen("tcp", r.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics: %w", err)
	}
	go srv.Serve(ln)
	r.Log.Info("serving /metrics, /healthz and /readyz", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

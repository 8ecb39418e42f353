package supervisor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/node"
)

// Runner is `portstripe run`: it applies the node file, watches it, and
// keeps HAProxy alive.
type Runner struct {
	Node    node.Options
	Applier *Applier
	HAProxy *HAProxy
	Metrics *Metrics
	Log     *slog.Logger
	// Debounce groups the burst of events an editor's save makes.
	Debounce time.Duration
	// MetricsAddr serves /metrics and /healthz; empty serves nothing.
	MetricsAddr string
	// Cleanup removes portstripe's chains on stop.
	Cleanup func(context.Context) error

	mu      sync.Mutex
	healthy error // why the node is not healthy; nil when it is
}

// Run works until ctx ends (SIGTERM, SIGINT), then stops cleanly.
func (r *Runner) Run(ctx context.Context) error {
	if r.Debounce == 0 {
		r.Debounce = 200 * time.Millisecond
	}
	if r.MetricsAddr != "" {
		stop, err := r.serve()
		if err != nil {
			return err
		}
		defer stop()
	}
	watcher, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch node file: %w", err)
	}
	defer watcher.Close()
	target := ""
	if r.Node.Path != "" {
		// Watch the directory: editors replace the file by renaming a
		// temporary one over it, which ends a watch on the file itself.
		target, _ = filepath.Abs(r.Node.Path)
		if err := watcher.Add(filepath.Dir(target)); err != nil {
			return fmt.Errorf("watch %s: %w", filepath.Dir(target), err)
		}
	}
	if r.HAProxy.Alive(ctx) {
		r.Log.Info("attached to a running haproxy master", "master_socket", r.HAProxy.MasterSocket)
	}
	r.apply(ctx, "start")

	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	var debounce <-chan time.Time
	health := time.NewTicker(500 * time.Millisecond)
	defer health.Stop()
	for {
		select {
		case <-ctx.Done():
			r.stop()
			return nil
		case ev := <-watcher.Events:
			if p, _ := filepath.Abs(ev.Name); p == target {
				debounce = time.After(r.Debounce)
			}
		case err := <-watcher.Errors:
			r.Log.Warn("node file watch", "error", err)
		case <-debounce:
			debounce = nil
			r.apply(ctx, "node file changed")
		case <-hup:
			r.apply(ctx, "SIGHUP")
		case <-r.HAProxy.Exited():
			r.restart(ctx, "haproxy master exited")
		case <-health.C:
			if !r.HAProxy.Alive(ctx) {
				r.restart(ctx, "haproxy master does not answer")
			}
		}
	}
}

// apply compiles and applies the node file; failures are logged and
// counted, and the previous state keeps serving.
func (r *Runner) apply(ctx context.Context, reason string) {
	log := r.Log.With("reason", reason)
	fail := func(err error) {
		r.Metrics.Applies.WithLabelValues("failed").Inc()
		r.setHealth(err)
		log.Error("apply failed; the previous rules and HAProxy worker keep serving", "error", err)
	}
	res, err := compiler.Compile(r.Node)
	if err != nil {
		fail(err)
		return
	}
	actx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	unlock, err := Lock(actx, r.Applier.Dir)
	if err != nil {
		fail(err)
		return
	}
	defer unlock()
	c, err := r.Applier.Apply(actx, res)
	if err != nil {
		fail(err)
		return
	}
	result := "ok"
	if c.Nothing {
		result = "unchanged"
	}
	r.Metrics.Applies.WithLabelValues(result).Inc()
	r.Metrics.LastSuccess.SetToCurrentTime()
	r.Metrics.NodeInfo.Reset()
	r.Metrics.NodeInfo.WithLabelValues(res.Plan.Node.Name, res.Plan.Node.SHA256).Set(1)
	r.setHealth(nil)
	log.Info("node applied", "result", result, "node", res.Plan.Node.Name, "sha256", res.Plan.Node.SHA256,
		"rule_changes", len(c.Rules), "reload", c.Reload, "runtime_changes", len(c.Servers))
}

// restart brings a dead HAProxy master back on the applied configuration.
func (r *Runner) restart(ctx context.Context, why string) {
	if r.HAProxy.Alive(ctx) {
		return
	}
	r.Log.Error("restarting haproxy", "why", why)
	r.Metrics.Restarts.Inc()
	if err := r.HAProxy.Start(ctx); err != nil {
		r.setHealth(err)
		r.Log.Error("haproxy restart failed; retrying", "error", err)
		return
	}
	r.setHealth(nil)
}

func (r *Runner) stop() {
	r.Log.Info("stopping")
	// Stops only a master this process started; an attached one stays.
	r.HAProxy.Stop(5 * time.Second)
	if r.Cleanup != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := r.Cleanup(ctx); err != nil {
			r.Log.Error("cleanup", "error", err)
		} else {
			r.Log.Info("portstripe's iptables chains removed")
		}
	}
}

func (r *Runner) setHealth(err error) {
	r.mu.Lock()
	r.healthy = err
	r.mu.Unlock()
}

// serve starts /metrics and /healthz; /healthz is 200 while the last apply
// worked and the HAProxy master answers.
func (r *Runner) serve() (stop func(), err error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(r.Metrics.Registry, promhttp.HandlerOpts{}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, req *http.Request) {
		r.mu.Lock()
		err := r.healthy
		r.mu.Unlock()
		if err == nil && !r.HAProxy.Alive(req.Context()) {
			err = errors.New("haproxy master does not answer")
		}
		if err != nil {
			http.Error(w, "unhealthy: "+err.Error(), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Addr: r.MetricsAddr, Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	ln, err := listen(r.MetricsAddr)
	if err != nil {
		return nil, fmt.Errorf("serve metrics: %w", err)
	}
	go srv.Serve(ln)
	r.Log.Info("serving /metrics and /healthz", "addr", ln.Addr().String())
	return func() { srv.Close() }, nil
}

// listen binds the metrics address; "127.0.0.1:0" picks a free port.
func listen(addr string) (net.Listener, error) {
	return net.Listen("tcp", addr)
}

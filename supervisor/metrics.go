package supervisor

import (
	"context"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/version"
	"github.com/portstripe/portstripe/plan"
)

// Metrics are what `portstripe run` serves on /metrics.
type Metrics struct {
	Registry    *prometheus.Registry
	Applies     *prometheus.CounterVec // by result: ok, unchanged, failed
	LastSuccess prometheus.Gauge
	NodeInfo    *prometheus.GaugeVec
	Restarts    prometheus.Counter
	// DriftRepairs counts, by what differed, the passes that found the
	// machine unlike the last applied state and put it back.
	DriftRepairs *prometheus.CounterVec
	// ConfigApplied is 1 when the node file as it is now is what runs;
	// LastApplyError is 1 when the last try to apply it failed.
	ConfigApplied  prometheus.Gauge
	LastApplyError prometheus.Gauge

	// applied is the plan the machine runs, which names the UDP rules'
	// lists and services for portstripe_first_packets_total.
	applied atomic.Pointer[plan.Plan]
}

// SetApplied records the plan the machine now runs.
func (m *Metrics) SetApplied(p *plan.Plan) { m.applied.Store(p) }

// Live is what the scrape-time collector reads: HAProxy and rule counters.
type Live interface {
	Procs(ctx context.Context) (haproxy.Procs, error)
	Stats(ctx context.Context) ([]haproxy.Stat, error)
	// Counters are the firewall's UDP decision counters, named by p.
	Counters(ctx context.Context, p *plan.Plan) ([]firewall.Counter, error)
}

// NewMetrics registers portstripe's metrics and, with live, the ones read
// at scrape time.
func NewMetrics(live Live) *Metrics {
	m := &Metrics{
		Registry: prometheus.NewRegistry(),
		Applies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portstripe_applies_total", Help: "Applies of the node file, by result (ok, unchanged, failed).",
		}, []string{"result"}),
		LastSuccess: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portstripe_last_success_timestamp_seconds", Help: "When the node file was last applied (or found applied) successfully.",
		}),
		NodeInfo: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "portstripe_node_info", Help: "The applied node: 1 for its name, the node file's SHA-256 and the SHA-256 of the effective settings (with env and --set overrides).",
		}, []string{"node", "sha256", "settings_sha256"}),
		Restarts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "portstripe_haproxy_restarts_total", Help: "HAProxy masters restarted after dying.",
		}),
		DriftRepairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "portstripe_drift_repairs_total", Help: "Reconcile passes that found the machine unlike the applied state and repaired it, by what differed (rules, jumps, routes, files, haproxy_master, haproxy_config, servers).",
		}, []string{"what"}),
		ConfigApplied: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portstripe_config_applied", Help: "1 when the node file as it is now is applied and served.",
		}),
		LastApplyError: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "portstripe_last_apply_error", Help: "1 when the last try to apply the node file failed (the log and /readyz say why).",
		}),
	}
	for _, r := range []string{"ok", "unchanged", "failed"} {
		m.Applies.WithLabelValues(r)
	}
	for _, w := range (Change{}).whatNames() {
		m.DriftRepairs.WithLabelValues(w)
	}
	build := version.Get()
	buildInfo := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "portstripe_build_info", Help: "1, with the version and revision portstripe --version names and the Go version that built it.",
		ConstLabels: prometheus.Labels{"version": build.Version, "revision": build.Revision, "goversion": build.GoVersion},
	})
	buildInfo.Set(1)
	m.Registry.MustRegister(m.Applies, m.LastSuccess, m.NodeInfo, m.Restarts, m.DriftRepairs, m.ConfigApplied, m.LastApplyError, buildInfo)
	if live != nil {
		m.Registry.MustRegister(liveCollector{live, m})
	}
	return m
}

var (
	descWorkers  = prometheus.NewDesc("portstripe_haproxy_workers", "HAProxy worker processes (current and old ones still serving).", []string{"state"}, nil)
	descReloads  = prometheus.NewDesc("portstripe_haproxy_reloads", "Reloads the HAProxy master has done.", nil, nil)
	descUp       = prometheus.NewDesc("portstripe_haproxy_up", "1 when the HAProxy master answers.", nil, nil)
	descSessions = prometheus.NewDesc("portstripe_backend_sessions", "Current sessions per backend, over every live worker (old ones after a reload included).", []string{"backend"}, nil)
	descFrontend = prometheus.NewDesc("portstripe_frontend_sessions", "Current sessions per frontend, over every live worker.", []string{"frontend"}, nil)
	descRejects  = prometheus.NewDesc("portstripe_frontend_rejects", "Connections a frontend rejected (no signature matched and the default is reject), over the live workers' lifetimes.", []string{"frontend"}, nil)
	descBytes    = prometheus.NewDesc("portstripe_backend_bytes", "Bytes through each backend, by direction (in: from clients), over the live workers' lifetimes.", []string{"backend", "direction"}, nil)
	descUpServer = prometheus.NewDesc("portstripe_backend_up", "1 when the backend's server passes its health check (or is not checked) and is not in maintenance.", []string{"backend"}, nil)
	descPackets  = prometheus.NewDesc("portstripe_first_packets_total", "UDP first packets each rule sent to its service (from the iptables counters), by decision list, service and the signature checked (default: what none matched).", []string{"list", "service", "rule"}, nil)
)

type liveCollector struct {
	live Live
	m    *Metrics
}

func (liveCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descWorkers, descReloads, descUp, descSessions, descFrontend, descRejects, descBytes, descUpServer, descPackets} {
		ch <- d
	}
}

func (c liveCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	up := 0.0
	if ps, err := c.live.Procs(ctx); err == nil {
		up = 1
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(len(ps.Workers)), "current")
		ch <- prometheus.MustNewConstMetric(descWorkers, prometheus.GaugeValue, float64(len(ps.OldWorkers)), "old")
		ch <- prometheus.MustNewConstMetric(descReloads, prometheus.GaugeValue, float64(ps.Master.Reloads))
	}
	ch <- prometheus.MustNewConstMetric(descUp, prometheus.GaugeValue, up)
	if stats, err := c.live.Stats(ctx); err == nil {
		for _, s := range stats {
			switch s.Type {
			case haproxy.StatBackend:
				ch <- prometheus.MustNewConstMetric(descSessions, prometheus.GaugeValue, float64(s.Scur), s.Proxy)
				ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.Bin), s.Proxy, "in")
				ch <- prometheus.MustNewConstMetric(descBytes, prometheus.GaugeValue, float64(s.Bout), s.Proxy, "out")
			case haproxy.StatFrontend:
				ch <- prometheus.MustNewConstMetric(descFrontend, prometheus.GaugeValue, float64(s.Scur), s.Proxy)
				ch <- prometheus.MustNewConstMetric(descRejects, prometheus.GaugeValue, float64(s.Dreq), s.Proxy)
			case haproxy.StatServer:
				ch <- prometheus.MustNewConstMetric(descUpServer, prometheus.GaugeValue, serverUp(s), s.Proxy)
			}
		}
	}
	if p := c.m.applied.Load(); p != nil {
		if counters, err := c.live.Counters(ctx, p); err == nil {
			// Summed: each address family has a rule of its own.
			sums := map[[3]string]uint64{}
			for _, k := range counters {
				if k.List != "" {
					sums[[3]string{k.List, k.Service, k.Rule}] += k.Packets
				}
			}
			for k, n := range sums {
				ch <- prometheus.MustNewConstMetric(descPackets, prometheus.CounterValue, float64(n), k[0], k[1], k[2])
			}
		}
	}
}

// serverUp is 1 for a server HAProxy sends connections to: "UP" (also
// "UP 1/3" while a check is failing) or "no check".
func serverUp(s haproxy.Stat) float64 {
	if strings.HasPrefix(s.Status, "UP") || s.Status == "no check" {
		return 1
	}
	return 0
}

package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"github.com/prometheus/procfs"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/supervisor"
)

// reconcileResult is the reconcile-cost section: two `portstripe run` of
// the seed node measured side by side, one reconciling every second, the
// baseline only polling HAProxy's master every second.
type reconcileResult struct {
	Period, BasePeriod string // --period of the measured run, of the baseline
	Rules, SeedRules   int    // rules of the node run here, of fixtures/seed-node.yaml
	Windows            []reconcileWindow
}

// reconcileWindow is one sampling window, the same wall-clock interval for
// both runs. CPU is utime+stime of `portstripe run` plus cutime+cstime (its
// reaped iptables-save children); HAProxy is the CPU of the master and
// workers it started.
type reconcileWindow struct {
	Wall                 time.Duration
	Passes, BasePasses   int // portstripe_applies_total{result="unchanged"} rises
	CPU, BaseCPU         time.Duration
	HAProxy, BaseHAProxy time.Duration
	PassCPU, PassHAProxy time.Duration // (CPU − BaseCPU) / Passes, likewise for HAProxy
}

// seedServices are fixtures/seed-node.yaml's services, with the node
// file's other settings coming from testbed.NodeFile.
var seedServices = []string{
	"  - {name: openvpn_rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443, tcp: \"127.0.0.1:1194\"}\n",
	"  - {name: openvpn_ecc, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060, tcp: \"127.0.0.1:5060\"}\n",
	"  - {name: openvpn_ed25519, kind: openvpn, tls: {mode: tls-crypt}, udp: 5061, tcp: \"127.0.0.1:5061\", dedicated: [\"5061\"]}\n",
	"  - {name: openvpn_ed448, kind: openvpn, tls: {mode: tls-crypt}, udp: 5062, tcp: \"127.0.0.1:5062\", dedicated: [\"5062\"]}\n",
}

// liveRun is one `portstripe run` in a node namespace of its own.
type liveRun struct {
	node    testbed.Netns
	proc    *testbed.Proc
	metrics string // host:port of /metrics, in the node namespace
	// close stops the run (SIGTERM: --cleanup stops HAProxy and removes
	// the rules), then deletes the namespaces and whatever is left in them.
	close func()
}

// reconcile measures what a reconcile pass of the seed node costs: the CPU
// of a run with --period 1s minus that of a run with --period 1h (which
// only polls the master every second), over the same windows, per pass
// counted on /metrics.
func (r *run) reconcile() error {
	if err := r.buildCLI(); err != nil {
		return err
	}
	res := reconcileResult{Period: "1s", BasePeriod: "1h"}
	seed, err := compiler.Compile(node.Options{})
	if err != nil {
		return err
	}
	res.SeedRules = countRules(seed.Files[compiler.RulesFile])
	var runs [2]*liveRun
	for i, period := range []string{res.Period, res.BasePeriod} {
		lr, rules, err := r.startRun(fmt.Sprintf("reconcile-%d", i), period)
		if err != nil {
			return err
		}
		defer lr.close()
		runs[i], res.Rules = lr, rules
	}
	// Let start-up's garbage be collected and its last timers fire.
	time.Sleep(2 * time.Second)
	windows, wall := r.n(5, 3), r.d(24*time.Second, 3*time.Second)
	r.log.Info("measuring reconcile cost", "windows", windows, "window", wall)
	before, err := counters(runs)
	if err != nil {
		return err
	}
	for range windows {
		w, err := window(runs, wall)
		if err != nil {
			return err
		}
		if w.Passes == 0 || w.BasePasses != 0 {
			return fmt.Errorf("%d passes at --period %s and %d at --period %s in %s: the periods did not work as set", w.Passes, res.Period, w.BasePasses, res.BasePeriod, w.Wall.Round(time.Millisecond))
		}
		res.Windows = append(res.Windows, w)
		r.log.Info("reconcile window", "passes", w.Passes, "cpu", w.CPU, "baseline_cpu", w.BaseCPU, "per_pass", w.PassCPU, "haproxy_per_pass", w.PassHAProxy)
	}
	after, err := counters(runs)
	if err != nil {
		return err
	}
	// Every pass measured must have found the machine as desired: a pass
	// that repaired or failed is another cost than the one asked about.
	if before != after {
		return fmt.Errorf("the machine changed during the measurement (applies ok/failed, drift repairs before %v, after %v): a reconcile pass of an untouched node must find nothing to do", before, after)
	}
	r.rep.reconcile = &res
	s := res.summary()
	r.log.Info("reconcile cost", "per_pass", s.Median.Pass, "pooled_per_pass", s.Pooled.Pass, "baseline_percent", s.Pooled.BasePercent,
		"default_period_percent", s.Median.Percent(), "with_haproxy_worst_percent", s.Worst())
	return nil
}

// startRun starts `portstripe run --period period --cleanup` on the seed
// node in a node namespace of its own (a Pair: the node file's address is
// the node side's) and waits for its first apply. It returns the run and
// the node's rule count. The namespaces go with lr.close, or RunAll on a
// signal or panic, and with them the HAProxy the run started (in a session
// of its own, but in the namespace).
func (r *run) startRun(name, period string) (*liveRun, int, error) {
	pair, err := testbed.NewPair(nsPrefix)
	if err != nil {
		return nil, 0, err
	}
	lr := &liveRun{node: pair.Node}
	lr.close = func() {
		if lr.proc != nil {
			lr.proc.Stop()
		}
		pair.Close()
	}
	fail := func(err error) (*liveRun, int, error) { lr.close(); return nil, 0, err }
	dir := filepath.Join(r.tmp, name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fail(err)
	}
	data := []byte(testbed.NodeFile{Name: "seed", Striped: "1-29999", ListenPort: 20000, InspectDelay: "5s", MaxConn: 256, Dir: dir, Services: seedServices}.YAML())
	file := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(file, data, 0o600); err != nil {
		return fail(err)
	}
	c, err := compileNode(data, file)
	if err != nil {
		return fail(err)
	}
	if lr.proc, err = testbed.Start("portstripe run "+name, pair.Node.Command(r.cli, "run", "-c", file, "--dir", filepath.Join(dir, "state"),
		"--metrics", "127.0.0.1:0", "--period", period, "--cleanup"), filepath.Join(dir, "run.log")); err != nil {
		return fail(err)
	}
	if err := lr.proc.WaitLog(`msg="node applied"`, 30*time.Second); err != nil {
		return fail(err)
	}
	m := regexp.MustCompile(`msg="serving /metrics[^"]*" addr=(\S+)`).FindStringSubmatch(lr.proc.LogText())
	if m == nil {
		return fail(fmt.Errorf("%s did not log its metrics address:\n%s", lr.proc.Name, testbed.Tail(lr.proc.LogText(), 20)))
	}
	lr.metrics = m[1]
	return lr, countRules(c.Files[compiler.RulesFile]), nil
}

// window samples both runs over the same interval: /metrics first, then
// CPU, and at the end CPU first, so that the scrapes (which ask HAProxy
// too) fall outside the CPU measured.
func window(runs [2]*liveRun, wall time.Duration) (reconcileWindow, error) {
	type sample struct {
		passes   float64
		cpu, hap time.Duration
	}
	var w reconcileWindow
	var s0, s1 [2]sample
	scrape := func(s *[2]sample) (err error) {
		for i, lr := range runs {
			if s[i].passes, err = lr.passes(); err != nil {
				return err
			}
		}
		return nil
	}
	cpu := func(s *[2]sample) (err error) {
		for i, lr := range runs {
			if s[i].cpu, s[i].hap, err = processCPU(lr.proc.Cmd.Process.Pid); err != nil {
				return err
			}
		}
		return nil
	}
	if err := scrape(&s0); err != nil {
		return w, err
	}
	t0 := time.Now()
	if err := cpu(&s0); err != nil {
		return w, err
	}
	time.Sleep(wall)
	if err := cpu(&s1); err != nil {
		return w, err
	}
	w.Wall = time.Since(t0)
	if err := scrape(&s1); err != nil {
		return w, err
	}
	w.Passes, w.BasePasses = int(s1[0].passes-s0[0].passes), int(s1[1].passes-s0[1].passes)
	w.CPU, w.BaseCPU = s1[0].cpu-s0[0].cpu, s1[1].cpu-s0[1].cpu
	w.HAProxy, w.BaseHAProxy = s1[0].hap-s0[0].hap, s1[1].hap-s0[1].hap
	if w.Passes > 0 {
		w.PassCPU = (w.CPU - w.BaseCPU) / time.Duration(w.Passes)
		w.PassHAProxy = (w.HAProxy - w.BaseHAProxy) / time.Duration(w.Passes)
	}
	return w, nil
}

// counters are the samples that must not move while passes are measured:
// applies that changed something, failed ones, and drift repairs, per run.
func counters(runs [2]*liveRun) ([2][3]float64, error) {
	var out [2][3]float64
	for i, lr := range runs {
		fams, err := lr.scrape()
		if err != nil {
			return out, err
		}
		out[i][0] = sum(fams, "portstripe_applies_total", "ok")
		out[i][1] = sum(fams, "portstripe_applies_total", "failed")
		out[i][2] = sum(fams, "portstripe_drift_repairs_total", "")
	}
	return out, nil
}

// sum adds up the counter name's samples whose result label is result, or
// all of them for "".
func sum(fams map[string]*dto.MetricFamily, name, result string) float64 {
	total := 0.0
	for _, m := range fams[name].GetMetric() {
		if result == "" || slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool { return l.GetName() == "result" && l.GetValue() == result }) {
			total += m.GetCounter().GetValue()
		}
	}
	return total
}

// scrape reads /metrics: the connection is made inside the node namespace,
// where the run listens on its loopback.
func (lr *liveRun) scrape() (map[string]*dto.MetricFamily, error) {
	var conn net.Conn
	err := lr.node.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", lr.metrics, 2*time.Second)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("/metrics of %s: %w", lr.proc.Name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := fmt.Fprintf(conn, "GET /metrics HTTP/1.0\r\nHost: %s\r\n\r\n", lr.metrics); err != nil {
		return nil, fmt.Errorf("/metrics of %s: %w", lr.proc.Name, err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return nil, fmt.Errorf("/metrics of %s: %w", lr.proc.Name, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("/metrics of %s: %s", lr.proc.Name, resp.Status)
	}
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("/metrics of %s: %w", lr.proc.Name, err)
	}
	return fams, nil
}

// passes is the run's count of reconcile passes that found nothing to do.
func (lr *liveRun) passes() (float64, error) {
	fams, err := lr.scrape()
	if err != nil {
		return 0, err
	}
	if fams["portstripe_applies_total"] == nil {
		return 0, fmt.Errorf("no portstripe_applies_total on the /metrics of %s", lr.proc.Name)
	}
	return sum(fams, "portstripe_applies_total", "unchanged"), nil
}

// clockTick is USER_HZ, the unit of /proc/<pid>/stat's CPU times: 100 on
// every Linux architecture Go supports.
const clockTick = 10 * time.Millisecond

// processCPU returns the CPU time of process pid with its reaped children
// (iptables-save and the like), and that of the HAProxy processes below it
// (master and workers, reaped workers included), from /proc/<pid>/stat.
func processCPU(pid int) (self, haproxy time.Duration, err error) {
	cpu := func(s procfs.ProcStat) time.Duration {
		return time.Duration(s.UTime+s.STime+uint(s.CUTime+s.CSTime)) * clockTick
	}
	procs, err := procfs.AllProcs()
	if err != nil {
		return 0, 0, err
	}
	stats := map[int]procfs.ProcStat{}
	for _, p := range procs {
		if s, err := p.Stat(); err == nil {
			stats[p.PID] = s
		}
	}
	s, ok := stats[pid]
	if !ok {
		return 0, 0, fmt.Errorf("process %d is gone", pid)
	}
	below := func(p int) bool {
		for range 8 {
			if p = stats[p].PPID; p == pid {
				return true
			}
		}
		return false
	}
	for p, s := range stats {
		// Only haproxy: a child still running (iptables-save) is counted
		// once reaped, in the parent's cutime.
		if s.Comm == "haproxy" && below(p) {
			haproxy += cpu(s)
		}
	}
	return cpu(s), haproxy, nil
}

// reconcileEstimate is what a reconcile pass costs, and the baseline.
type reconcileEstimate struct {
	Pass, HAProxy time.Duration // CPU per pass: the run's (with iptables-save), HAProxy's answering
	BasePercent   float64       // the baseline run's CPU, % of one core
}

// Percent is the run's share of one core at the default period: a pass
// every period plus the liveness polls.
func (e reconcileEstimate) Percent() float64 {
	return 100*float64(e.Pass)/float64(supervisor.DefaultPeriod) + e.BasePercent
}

// HAProxyPercent is what answering a pass every default period costs
// HAProxy, in % of one core.
func (e reconcileEstimate) HAProxyPercent() float64 {
	return 100 * float64(e.HAProxy) / float64(supervisor.DefaultPeriod)
}

// reconcileSummary is the section's figures: medians over the windows, the
// same pooled over all of them (steadier: 10 ms ticks over more passes),
// and the spread of the windows.
type reconcileSummary struct {
	Median, Pooled         reconcileEstimate
	MinPass, MaxPass       time.Duration
	MinHAProxy, MaxHAProxy time.Duration
	Passes                 int
}

// Worst is the larger of the two estimates' shares of one core, HAProxy's
// included: the figure the target is judged on.
func (s reconcileSummary) Worst() float64 {
	return max(s.Median.Percent()+s.Median.HAProxyPercent(), s.Pooled.Percent()+s.Pooled.HAProxyPercent())
}

func (res *reconcileResult) summary() reconcileSummary {
	var s reconcileSummary
	if len(res.Windows) == 0 {
		return s
	}
	var pass, hap []time.Duration
	var base []float64
	var cpu, baseCPU, h, baseH, wall time.Duration
	for _, w := range res.Windows {
		pass, hap, base = append(pass, w.PassCPU), append(hap, w.PassHAProxy), append(base, 100*float64(w.BaseCPU)/float64(w.Wall))
		cpu, baseCPU, h, baseH, wall = cpu+w.CPU, baseCPU+w.BaseCPU, h+w.HAProxy, baseH+w.BaseHAProxy, wall+w.Wall
		s.Passes += w.Passes
	}
	s.Median = reconcileEstimate{Pass: median(pass), HAProxy: median(hap), BasePercent: medianFloat(base)}
	s.Pooled = reconcileEstimate{Pass: (cpu - baseCPU) / time.Duration(s.Passes), HAProxy: (h - baseH) / time.Duration(s.Passes),
		BasePercent: 100 * float64(baseCPU) / float64(wall)}
	s.MinPass, s.MaxPass = slices.Min(pass), slices.Max(pass)
	s.MinHAProxy, s.MaxHAProxy = slices.Min(hap), slices.Max(hap)
	return s
}

func medianFloat(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	return s[len(s)/2]
}

package main

import (
	"fmt"
	"math/rand/v2"
	"sort"
	"time"
)

// pairedResult is one paired run: one client alternating between the paths
// connection by connection (see runPaired).
type pairedResult struct {
	Pinned   bool
	Names    []string  // Names[0] is direct
	Lat      [][]int64 // per path, its successful set-ups, sorted
	Added    [][]int64 // per path, its set-up minus direct's in the same pair, sorted (Added[0] empty)
	P99Added []p99Add  // per path: p99 minus direct's p99 over the pairs both answered (P99Added[0] zero)
	Pairs    int       // pairs attempted
	Failed   int
	Errors   map[string]int
	Elapsed  time.Duration
	Count    int           // the run's limits: pairs
	Limit    time.Duration // and time
}

// p99Add is a path's added p99 over direct and its 95% bootstrap interval
// (pairs resampled with replacement).
type p99Add struct {
	Add, Lo, Hi time.Duration
}

// measurePaired starts HAProxy as emitted through start, then runs one
// client that alternates between paths. Pinned: HAProxy on proxyCPU, the
// client and the backend on loadCPU.
func (r *run) measurePaired(paths []PairPath, start func(cpus string) (func(), error), pinned bool) (pairedResult, error) {
	pr := pairedResult{Pinned: pinned}
	proxyCPUs, loadCPUs := "", ""
	if pinned {
		proxyCPUs, loadCPUs = proxyCPU, loadCPU
	}
	if err := r.pinBackend(loadCPUs); err != nil {
		return pr, err
	}
	r.clientCPUs = loadCPUs
	defer func() {
		r.clientCPUs = ""
		r.pinBackend("")
	}()
	stop, err := start(proxyCPUs)
	if err != nil {
		return pr, err
	}
	defer stop()
	for _, p := range paths {
		if err := r.warmUp(p.Probes); err != nil {
			return pr, fmt.Errorf("%s: %w", p.Name, err)
		}
	}
	r.log.Info("measuring paired", "paths", len(paths), "pinned", pinned)
	pr.Count, pr.Limit = r.n(20000, 2000), r.d(40*time.Second, 5*time.Second)
	res, err := r.client(ClientSpec{Mode: "paired", Paths: paths, Count: pr.Count, Duration: pr.Limit, Timeout: 3 * time.Second}, nil)
	if err != nil {
		return pr, err
	}
	if len(res.Paired) != len(paths) {
		return pr, fmt.Errorf("client reported %d paths of %d", len(res.Paired), len(paths))
	}
	pr.Failed, pr.Errors, pr.Elapsed = res.Failures, res.Errors, res.Elapsed
	pr.Pairs = len(res.Paired[0])
	direct := res.Paired[0]
	for j, p := range paths {
		pr.Names = append(pr.Names, p.Name)
		var ok, add, a, d []int64
		for i, v := range res.Paired[j] {
			if v < 0 {
				continue
			}
			ok = append(ok, v)
			if j > 0 && i < len(direct) && direct[i] >= 0 {
				add = append(add, v-direct[i])
				a, d = append(a, v), append(d, direct[i])
			}
		}
		pr.Lat = append(pr.Lat, sorted(ok))
		pr.Added = append(pr.Added, sorted(add))
		var pa p99Add
		if j > 0 {
			pa = bootstrapP99Add(a, d, r.n(400, 100))
		}
		pr.P99Added = append(pr.P99Added, pa)
	}
	return pr, nil
}

// bootstrapP99Add is p99(a) − p99(d) over pairs (a[i], d[i]), and its
// 95% interval from n resamples of the pairs with replacement (fixed seed:
// the interval is the same for the same data).
func bootstrapP99Add(a, d []int64, n int) p99Add {
	if len(a) == 0 {
		return p99Add{}
	}
	add := func(a, d []int64) time.Duration { return pct(sorted(a), 0.99) - pct(sorted(d), 0.99) }
	out := p99Add{Add: add(a, d)}
	rng := rand.New(rand.NewPCG(7, 7))
	est := make([]int64, n)
	ra, rd := make([]int64, len(a)), make([]int64, len(a))
	for k := range n {
		for i := range a {
			x := rng.IntN(len(a))
			ra[i], rd[i] = a[x], d[x]
		}
		est[k] = int64(add(ra, rd))
	}
	est = sorted(est)
	out.Lo, out.Hi = pct(est, 0.025), pct(est, 0.975)
	return out
}

// pairedRun is the unpinned (or pinned) paired run, nil if none.
func (rep *report) pairedRun(pinned bool) *pairedResult {
	for i := range rep.paired {
		if rep.paired[i].Pinned == pinned {
			return &rep.paired[i]
		}
	}
	return nil
}

// index of the path name in a paired run, -1 if absent.
func (p *pairedResult) index(name string) int {
	for i, n := range p.Names {
		if n == name {
			return i
		}
	}
	return -1
}

// writePaired is the paired table of section 1.
func (rep *report) writePaired(w writer) {
	if len(rep.paired) == 0 {
		return
	}
	w("### Paired: the paths alternated connection by connection\n\n")
	w("The one-client numbers above come from separate runs per path, and on this %s-core machine the tail of each run is mostly scheduling stalls, which come and go from one run to the next: a p99 measured minutes apart from another's differs by the machine's mood as much as by the path. ", rep.machine.Cores)
	w("Here one client alternates between the paths connection by connection: pair *i* makes one connection through each path (direct, DNAT only, portstripe as emitted: DNAT + HAProxy), with the same first packet, back to back, the path that goes first rotating from pair to pair. ")
	w("So the paths see the same noise, in the same proportion, and the difference between them is the paths'. Added per pair = that path's set-up minus direct's set-up in the same pair. Each run stops at %d pairs or %s, whichever comes first. ", rep.paired[0].Count, rep.paired[0].Limit)
	w("The added p99 is p99 (path) − p99 (direct) over the pairs where both answered, with a 95%% bootstrap interval (pairs resampled). **The target's line uses this measurement** (the unpinned run: all processes on all cores, as a node runs).\n\n")
	w("| run | path | p50 | p90 | p99 | p99.9 | set-ups over 1 ms | added per pair: p50 | p90 | p99 | added p99 (p99 − direct's p99) [95%% interval] |\n|---|---|---|---|---|---|---|---|---|---|---|\n")
	for _, p := range rep.paired {
		run := "all cores"
		if p.Pinned {
			run = fmt.Sprintf("pinned (proxy on CPU %s, client and backend on CPU %s)", proxyCPU, loadCPU)
		}
		for j, name := range p.Names {
			l := p.Lat[j]
			w("| %s | %s | %s | %s | %s | %s | %.2f%% |", run, name, ms(pct(l, 0.5)), ms(pct(l, 0.9)), ms(pct(l, 0.99)), ms(pct(l, 0.999)), 100*over(l, time.Millisecond))
			if j == 0 {
				w(" – | – | – | – |\n")
				continue
			}
			a, pa := p.Added[j], p.P99Added[j]
			w(" %s | %s | %s | %s [%s, %s] |\n", sms(pct(a, 0.5)), sms(pct(a, 0.9)), sms(pct(a, 0.99)), sms(pa.Add), sms(pa.Lo), sms(pa.Hi))
		}
	}
	w("\n")
	for _, p := range rep.paired {
		failed := fmt.Sprintf("%d failed", p.Failed)
		if len(p.Errors) > 0 {
			failed += fmt.Sprintf(" %v", p.Errors)
		}
		run := "All cores"
		if p.Pinned {
			run = "Pinned"
		}
		w("%s: %d pairs (%d connections, %s) in %s. ", run, p.Pairs, p.Pairs*len(p.Names), failed, p.Elapsed.Round(100*time.Millisecond))
	}
	w("\n\nThe per-pair p99 is a different quantity from the added p99: a stall that hits either connection of a pair shows in the difference (on the direct side as a negative one), so its tail carries the noise of two connections; the difference of the p99s compares the two distributions, which is what \"added p99\" asks. ")
	w("Set-ups over 1 ms: the tail is not a spread around the median but a separate mass of stalls of 1-5 ms, on every path, direct included (this 2-core VM's scheduling; how often each path is caught by one is in that column). Where that mass is near 1%% of a path's set-ups, its p99 sits on the edge between the fast set-ups and the stalls, and a few stalls more or less move it by milliseconds: that is why the interval is wide and why separate runs disagree.\n\n")
}

// over is the share of sorted latencies above d.
func over(sorted []int64, d time.Duration) float64 {
	if len(sorted) == 0 {
		return 0
	}
	i := sort.Search(len(sorted), func(i int) bool { return sorted[i] > int64(d) })
	return float64(len(sorted)-i) / float64(len(sorted))
}

// sms is ms with a sign.
func sms(d time.Duration) string {
	if d < 0 {
		return "−" + ms(-d)
	}
	if d == 0 {
		return "0 ms"
	}
	return "+" + ms(d)
}

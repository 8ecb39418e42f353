package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/portstripe/portstripe/fleet"
	"github.com/portstripe/portstripe/internal/nodegen"
	"github.com/portstripe/portstripe/node"
)

// fleetPoint is `fleet compile` of one generated fleet file.
type fleetPoint struct {
	Nodes     int
	FileBytes int
	// CLI is the wall time of `portstripe fleet compile -f FILE -o json`
	// (process start, read, parse, every node resolved and compiled, the
	// document printed), median of the runs; Parse and Compile split the
	// same work in this process (node.ParseFleet, then fleet.Compile).
	CLI, Parse, Compile time.Duration
	// CPU is the CLI process's user + system time, median of the runs: the
	// work itself, whatever else shares the cores.
	CPU  time.Duration
	Runs int
	// Load is the 1-minute load average when the runs ended.
	Load string
}

// fleetSizes are the fleets compiled: about Mullvad's and NordVPN's.
var fleetSizes = []int{1000, 5000}

// fleetCompile measures fleet compile of generated fleets (nodegen.Fleet).
func (r *run) fleetCompile() error {
	if err := r.buildCLI(); err != nil {
		return err
	}
	runs := r.n(5, 2)
	for _, n := range fleetSizes {
		data := nodegen.Fleet(n)
		file := filepath.Join(r.tmp, fmt.Sprintf("fleet-%d.yaml", n))
		if err := os.WriteFile(file, data, 0o644); err != nil {
			return err
		}
		p := fleetPoint{Nodes: n, FileBytes: len(data), Runs: runs}
		var cli, cpu, parse, comp []time.Duration
		for range runs {
			start := time.Now()
			cmd := exec.Command(r.cli, "fleet", "compile", "-f", file, "-o", "json")
			out, err := cmd.CombinedOutput()
			if err != nil {
				return fmt.Errorf("fleet compile of %d nodes: %v: %.300s", n, err, out)
			}
			cli = append(cli, time.Since(start))
			cpu = append(cpu, cmd.ProcessState.UserTime()+cmd.ProcessState.SystemTime())
			start = time.Now()
			fl, err := node.ParseFleet(data, file)
			if err != nil {
				return err
			}
			parse = append(parse, time.Since(start))
			start = time.Now()
			if _, err := fleet.Compile(fl); err != nil {
				return err
			}
			comp = append(comp, time.Since(start))
		}
		p.CLI, p.CPU, p.Parse, p.Compile = median(cli), median(cpu), median(parse), median(comp)
		if b, err := os.ReadFile("/proc/loadavg"); err == nil {
			p.Load = strings.Fields(string(b))[0]
		}
		r.log.Info("fleet compile", "nodes", n, "cli", p.CLI, "cpu", p.CPU, "parse", p.Parse, "compile", p.Compile, "load", p.Load)
		r.rep.fleet = append(r.rep.fleet, p)
	}
	return nil
}

func (rep *report) writeFleet(w writer) {
	if len(rep.fleet) == 0 {
		return
	}
	w("## 8. Fleet compile\n\n")
	w("`portstripe fleet compile -f FILE -o json` of generated fleet files (`internal/nodegen.Fleet`: the example fleet's plan of three OpenVPN instances, nodes across 10 regions and 3 providers, every 10th with an override, every 7th with its own SSH service, every 13th without one plan service). ")
	w("Every node is resolved into its node file, parsed and validated as `node.Parse` does, planned and rendered (haproxy.cfg, rules.v4, plan.json) by `compiler.FromNode`, %d nodes at a time (GOMAXPROCS on this machine), then the hashes an agent reports are taken. ", runtime.GOMAXPROCS(0))
	w("CLI = the process's wall time and its CPU time (user + system), medians of %d runs; parse and compile split the same work, measured in the benchmark's own process. ", rep.fleet[0].Runs)
	w("The cores are shared with whatever else runs (the load average is shown): CPU time / cores is the wall time on an idle machine.\n\n")
	w("| nodes | fleet file | CLI wall time | CLI CPU time | parse the fleet file | resolve + compile every node | CPU per node | load average |\n|---|---|---|---|---|---|---|---|\n")
	for _, p := range rep.fleet {
		w("| %d | %.1f MB | **%s** | %s | %s | %s | %.2f ms | %s |\n", p.Nodes, float64(p.FileBytes)/1e6, ms(p.CLI), ms(p.CPU), ms(p.Parse), ms(p.Compile), float64(p.CPU)/1e6/float64(p.Nodes), p.Load)
	}
	w("\n")
}

// fleetTarget is issue 16's goal for fleet compile.
func (rep *report) fleetTarget() (fleetPoint, bool) {
	for _, p := range rep.fleet {
		if p.Nodes == 5000 {
			return p, true
		}
	}
	return fleetPoint{}, false
}

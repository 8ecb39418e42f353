package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/testbed"
)

// reloadResult is the reload-under-load section.
type reloadResult struct {
	Reloads, ApplyFailed int
	Wanted               int
	ApplyTimes           []time.Duration // each `portstripe apply`, sorted
	Attempts, Failures   int
	Errors               map[string]int
	MasterReloads        int
	Elapsed              time.Duration
}

// moduleRoot finds the directory of go.mod from the working directory up.
func moduleRoot() (string, error) {
	dir, err := os.Getwd()
	if err != nil {
		return "", err
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "go.mod")); err == nil {
			return dir, nil
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			return "", fmt.Errorf("run the benchmark from the portstripe module (no go.mod above the working directory)")
		}
		dir = parent
	}
}

// buildCLI builds the portstripe CLI once per run.
func (r *run) buildCLI() error {
	if r.cli != "" {
		return nil
	}
	root, err := moduleRoot()
	if err != nil {
		return err
	}
	cli := filepath.Join(r.tmp, "portstripe")
	cmd := exec.Command("go", "build", "-o", cli, "./cmd/portstripe")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/portstripe: %v\n%s", err, out)
	}
	r.cli = cli
	return nil
}

// reloads alternates `portstripe apply` between two node files that differ
// in the frontend's inspect-delay (so each apply reloads HAProxy) while a
// client loop connects through the DNAT rules and HAProxy.
func (r *run) reloads(ctx context.Context) error {
	if err := r.buildCLI(); err != nil {
		return err
	}
	dir := filepath.Join(r.tmp, "reload")
	state := filepath.Join(dir, "state")
	if err := os.MkdirAll(state, 0o700); err != nil {
		return err
	}
	files := [2]string{filepath.Join(dir, "a.yaml"), filepath.Join(dir, "b.yaml")}
	for i, delay := range []string{"5s", "4s"} {
		if err := os.WriteFile(files[i], benchNode(dir, delay), 0o600); err != nil {
			return err
		}
	}
	// HAProxy is started here, on the configuration apply would write, so
	// that it is this run's child; apply attaches to it through the master
	// socket and reloads it.
	a, err := compileNode(benchNode(dir, "5s"), files[0])
	if err != nil {
		return err
	}
	h, err := r.startHAProxy(ctx, "reload", string(a.Files[compiler.HAProxyFile]), state, filepath.Join(dir, "master.sock"), "")
	if err != nil {
		return err
	}
	defer h.proc.Stop()
	apply := func(file string) (string, time.Duration, error) {
		actx, cancel := context.WithTimeout(ctx, 60*time.Second)
		defer cancel()
		cmd := exec.CommandContext(actx, "ip", "netns", "exec", string(r.pair.Node), r.cli, "apply", "-c", file, "--dir", state)
		cmd.WaitDelay = 5 * time.Second
		t0 := time.Now()
		out, err := cmd.CombinedOutput()
		return string(out), time.Since(t0), err
	}
	if out, _, err := apply(files[0]); err != nil {
		return fmt.Errorf("first apply: %v\n%s", err, out)
	}
	defer func() {
		if m, err := r.rules(); err == nil {
			m.Clean(ctx)
		}
	}()
	at := func(port string) string { return net.JoinHostPort(testbed.NodeAddr.String(), port) }
	probes := r.pk.tcpProbes(at("443"), at("1194"), at("22"), at("8443"))
	var res reloadResult
	type clientOut struct {
		res ClientResult
		err error
	}
	done := make(chan clientOut, 1)
	stdin := make(chan io.WriteCloser, 1)
	go func() {
		defer testbed.Guard()
		cr, err := r.client(ClientSpec{Mode: "conn", Probes: probes, Workers: 4, UntilEOF: true, Duration: 8 * time.Minute, Timeout: 5 * time.Second},
			func(w io.WriteCloser) { stdin <- w })
		done <- clientOut{cr, err}
	}()
	in := <-stdin
	time.Sleep(300 * time.Millisecond)
	n := r.n(100, 10)
	start := time.Now()
	r.log.Info("reloading under load", "reloads", n)
	for i := range n {
		out, d, err := apply(files[(i+1)%2])
		if err != nil || !strings.Contains(out, `msg="haproxy reloaded"`) {
			res.ApplyFailed++
			r.log.Warn("apply did not reload", "error", err, "output", testbed.Tail(out, 5))
			continue
		}
		res.Reloads++
		res.ApplyTimes = append(res.ApplyTimes, d)
	}
	res.Elapsed = time.Since(start)
	time.Sleep(500 * time.Millisecond)
	in.Close()
	co := <-done
	if co.err != nil {
		return co.err
	}
	res.Attempts, res.Failures, res.Errors = co.res.Attempts, co.res.Failures, co.res.Errors
	sort.Slice(res.ApplyTimes, func(i, j int) bool { return res.ApplyTimes[i] < res.ApplyTimes[j] })
	if ps, err := h.h.Procs(ctx); err == nil {
		res.MasterReloads = ps.Master.Reloads
	}
	res.Wanted = n
	r.rep.reload = &res
	r.log.Info("reloads done", "reloads", res.Reloads, "attempts", res.Attempts, "failures", res.Failures, "master_reloads", res.MasterReloads)
	return nil
}

package main

// Tests that apply for real. They need root and run only inside a network
// namespace they create and delete (testenv.Self re-executes the test binary
// there), so every iptables command, socket and HAProxy process of the test
// lives in that namespace. The only address used is testenv.NodeAddr.

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/supervisor"
)

// nodeState is what a refused apply must leave alone.
type nodeState struct {
	rules   string // iptables-save, without timestamps and counters
	master  int
	workers []int
	reloads int
	config  string
}

var counters = regexp.MustCompile(`\[\d+:\d+\]`)

func readNodeState(t *testing.T, dir, stateDir string) nodeState {
	t.Helper()
	var keep []string
	for _, l := range strings.Split(testenv.Run(t, "iptables-save"), "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, counters.ReplaceAllString(l, "[]"))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps, err := haproxy.NewMaster(filepath.Join(dir, "master.sock"), nil).ShowProc(ctx)
	if err != nil {
		t.Fatalf("haproxy master: %v", err)
	}
	cfg, err := os.ReadFile(filepath.Join(stateDir, "haproxy.cfg"))
	if err != nil {
		t.Fatal(err)
	}
	return nodeState{strings.Join(keep, "\n"), ps.Master.PID, haproxy.PIDs(ps.Workers), ps.Master.Reloads, string(cfg)}
}

// TestBadInputLeavesNodeAlone applies the seed node for real (rules and a
// running HAProxy), then applies every row of the bad-input matrix: each is
// refused with exit 2 and leaves iptables-save, the HAProxy master and
// workers, and the applied haproxy.cfg exactly as they were.
func TestBadInputLeavesNodeAlone(t *testing.T) {
	dir, good, ok := testenv.SelfNode(t, seedNode)
	if !ok {
		return
	}
	state := filepath.Join(dir, "state")
	if code, out, errOut := portstripe(t, "apply", "-c", good, "--dir", state); code != 0 {
		t.Fatalf("apply the seed node: exit %d\n%s%s", code, out, errOut)
	}
	before := readNodeState(t, dir, state)
	if !strings.Contains(before.rules, "-j PORTSTRIPE") || len(before.workers) == 0 {
		t.Fatalf("the seed node is not live: %+v", before)
	}
	checkModes(t, dir, state)
	for _, b := range badInputs {
		path := b.write(t, t.TempDir())
		if b.fromSeed() {
			data, _ := os.ReadFile(path)
			os.WriteFile(path, []byte(testenv.LiveNode(string(data), dir)), 0o600)
		}
		b.setEnv(t)
		code, _, errOut := portstripe(t, b.args("apply", "-c", path, "--dir", state)...)
		if code != exitInput {
			t.Errorf("%s: exit %d, want %d (%s)", b.name, code, exitInput, errOut)
		}
		if after := readNodeState(t, dir, state); fmt.Sprint(after) != fmt.Sprint(before) {
			t.Fatalf("%s changed the node:\nbefore %+v\nafter  %+v", b.name, before, after)
		}
	}
	t.Logf("%d bad node files refused; rules, HAProxy master %d, workers %v and haproxy.cfg unchanged", len(badInputs), before.master, before.workers)
}

// TestApplyFaultsLeaveNodeAlone: with the seed node live, an apply of a
// changed node fails with exit 1 and a clear message, and leaves the node
// alone, when haproxy is not installed or another apply holds the lock; an
// apply that waits for the lock goes through once it is released.
func TestApplyFaultsLeaveNodeAlone(t *testing.T) {
	dir, good, ok := testenv.SelfNode(t, seedNode)
	if !ok {
		return
	}
	state := filepath.Join(dir, "state")
	changed := filepath.Join(dir, "changed.yaml")
	live := testenv.LiveNode(seedNode, dir)
	os.WriteFile(changed, []byte(strings.Replace(live, "inspect_delay: 5s", "inspect_delay: 4s", 1)), 0o600)
	if code, out, errOut := portstripe(t, "apply", "-c", good, "--dir", state); code != 0 {
		t.Fatalf("apply the seed node: exit %d\n%s%s", code, out, errOut)
	}
	before := readNodeState(t, dir, state)

	// PATH with every tool apply runs but haproxy.
	bin := t.TempDir()
	for _, tool := range []string{"ip", "iptables", "iptables-restore", "iptables-save"} {
		p, err := exec.LookPath(tool)
		if err != nil {
			t.Fatal(err)
		}
		os.Symlink(p, filepath.Join(bin, tool))
	}
	t.Run("haproxy not installed", func(t *testing.T) {
		t.Setenv("PATH", bin)
		code, _, errOut := portstripe(t, "apply", "-c", changed, "--dir", state)
		if code != exitFailure || !strings.Contains(errOut, "haproxy binary not found") {
			t.Errorf("exit %d, %q; want 1 and haproxy binary not found", code, errOut)
		}
		t.Log(errOut)
	})
	t.Run("haproxy refuses the reload", func(t *testing.T) {
		// haproxy -c passes, but the running master cannot bind the new
		// frontends: the apply that started it has long exited, so the
		// reason must come from the master's log file.
		busy, err := net.Listen("tcp", testenv.NodeAddr+":21000")
		if err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		taken := filepath.Join(dir, "taken.yaml")
		os.WriteFile(taken, []byte(strings.Replace(live, "listen_port: 20000", "listen_port: 21000", 1)), 0o600)
		code, _, errOut := portstripe(t, "apply", "-c", taken, "--dir", state)
		if code != exitFailure || !strings.Contains(errOut, "haproxy said: [ALERT]") || !strings.Contains(errOut, "21000") {
			t.Errorf("exit %d, %q; want 1 and HAProxy's ALERT about port 21000", code, errOut)
		}
		t.Log(errOut)
		after := readNodeState(t, dir, state)
		after.reloads = before.reloads // the failed reload is counted
		if fmt.Sprint(after) != fmt.Sprint(before) {
			t.Errorf("a refused reload changed the node:\nbefore %+v\nafter  %+v", before, after)
		}
		before.reloads = readNodeState(t, dir, state).reloads
	})
	unlock, err := supervisor.Lock(context.Background(), state)
	if err != nil {
		t.Fatal(err)
	}
	t.Run("lock held", func(t *testing.T) {
		code, _, errOut := portstripe(t, "apply", "-c", changed, "--dir", state, "--lock-timeout", "300ms")
		if want := fmt.Sprintf("another portstripe (pid %d) is applying to %s", os.Getpid(), state); code != exitFailure || !strings.Contains(errOut, want) {
			t.Errorf("exit %d, %q; want 1 and %q", code, errOut, want)
		}
		t.Log(errOut)
	})
	if after := readNodeState(t, dir, state); fmt.Sprint(after) != fmt.Sprint(before) {
		t.Fatalf("a failed apply changed the node:\nbefore %+v\nafter  %+v", before, after)
	}
	time.AfterFunc(300*time.Millisecond, unlock)
	start := time.Now()
	if code, _, errOut := portstripe(t, "apply", "-c", changed, "--dir", state); code != 0 || time.Since(start) < 300*time.Millisecond {
		t.Fatalf("apply waiting for the lock: exit %d after %v: %s", code, time.Since(start), errOut)
	}
	if after := readNodeState(t, dir, state); after.reloads != before.reloads+1 || after.master != before.master {
		t.Errorf("after waiting for the lock: %+v, want one reload of master %d", after, before.master)
	}
}

// checkModes: the sockets HAProxy made, the files apply wrote and the log
// of the master it started are root's alone (0600).
func checkModes(t *testing.T, dir, state string) {
	t.Helper()
	paths := []string{filepath.Join(dir, "master.sock"), filepath.Join(dir, "api.sock"), filepath.Join(state, supervisor.LockFile)}
	for _, f := range []string{"haproxy.cfg", "rules.v4", "plan.json", supervisor.LogFile} {
		paths = append(paths, filepath.Join(state, f))
	}
	for _, p := range paths {
		st, err := os.Stat(p)
		if err != nil {
			t.Error(err)
			continue
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("%s has mode %v, want 0600", p, st.Mode().Perm())
		}
	}
}

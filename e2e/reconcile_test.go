//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// The reconcile tests break the node the way real machines break it (a
// reboot, another firewall tool, a failed first install, a restart of
// portstripe itself, a typo at start) and check what a user would: whether
// a client through a striped port still reaches its backend, and what the
// kernel and HAProxy hold afterwards.

// reconcilePeriod is the --period of the runs here: short, so two periods
// fit well inside a test, and the same loop as the 10 s default.
const reconcilePeriod = 2 * time.Second

// echoNode is the small node of these tests: an ssh-kind echo service on
// striped TCP 1000-2000.
func echoNode(dir string) string {
	return liveNode{listenPort: liveListenPort, inspectDelay: "5s", services: []string{svcEcho}}.yaml(dir)
}

// reboot does to the node namespace what a reboot does to a node: every
// HAProxy process gone (kill -9, no goodbye), the nat table empty; the
// state directory stays.
func reboot(t *testing.T, node testbed.Netns, masterSock string) {
	t.Helper()
	if ps, err := liveShowProc(masterSock); err == nil {
		// The master leads its own session: its process group holds the
		// workers too.
		syscall.Kill(-ps.Master.PID, syscall.SIGKILL)
		liveWaitFor(liveDeadline, 20*time.Millisecond, func() error {
			if syscall.Kill(ps.Master.PID, 0) == nil {
				return fmt.Errorf("master %d still alive", ps.Master.PID)
			}
			return nil
		})
	}
	if _, err := node.Run("nft", "flush", "ruleset"); err != nil {
		t.Fatal(err)
	}
	if rules := liveRules(t, node, false); rules != "" {
		t.Fatalf("after the reboot, rules left:\n%s", rules)
	}
}

// echoWorks waits (generously) until a client through striped tcp port
// reaches the echo backend, and returns how long that took.
func echoWorks(t *testing.T, client testbed.Netns, port int, what string) time.Duration {
	t.Helper()
	took, err := liveWaitFor(liveDeadline, 50*time.Millisecond, func() error {
		return liveEchoOnce(client, port, "SSH-2.0-"+strings.ReplaceAll(what, " ", "-")+"\r\n")
	})
	if err != nil {
		t.Fatalf("%s: no echo through striped tcp %d within %s: %v", what, port, liveDeadline, err)
	}
	return took
}

// echoBed is what most reconcile tests start from: a client and a node
// namespace, the echo backend on the node, echoNode written to node.yaml.
type echoBed struct {
	dir, nodePath, stateDir, masterSock string
	client, node                        testbed.Netns
}

func newEchoBed(t *testing.T) *echoBed {
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	b := &echoBed{dir: dir, nodePath: filepath.Join(dir, "node.yaml"), stateDir: filepath.Join(dir, "state"),
		masterSock: filepath.Join(dir, "master.sock"), client: pair.Client, node: pair.Node}
	liveStartEcho(t, b.node, liveEchoAddr)
	liveWriteLikeEditor(t, b.nodePath, echoNode(dir))
	return b
}

func natRules(t *testing.T, node testbed.Netns) string {
	t.Helper()
	out, err := node.Run("iptables", "-t", "nat", "-S")
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestReconcileReboot: after a reboot (state dir kept, HAProxy killed, nat
// flushed), apply exits 0 and traffic flows again; so does a fresh run.
func TestReconcileReboot(t *testing.T) {
	b := newEchoBed(t)
	dir, client, node, stateDir, nodePath, masterSock := b.dir, b.client, b.node, b.stateDir, b.nodePath, b.masterSock
	apply := func(extra ...string) (string, error) {
		return livePortstripe(node, append([]string{"apply", "-c", nodePath, "--dir", stateDir}, extra...)...)
	}
	if out, err := apply(); err != nil {
		t.Fatalf("first apply: %v\n%s", err, out)
	}
	echoWorks(t, client, 1001, "first apply")

	t.Run("apply", func(t *testing.T) {
		reboot(t, node, masterSock)
		if err := liveEchoOnce(client, 1001, "SSH-2.0-rebooted\r\n"); err == nil {
			t.Fatal("after the reboot the echo still works: the reboot did not happen")
		}
		out, err := apply("--dry-run", "--detailed-exitcode")
		if testbed.ExitCode(err) != 2 || !strings.Contains(out, "HAProxy: start (") || !strings.Contains(out, "+ iptables -t nat -I PREROUTING") {
			t.Errorf("dry run after the reboot: exit %d, want 2 (--detailed-exitcode) with a start and the jumps:\n%s", testbed.ExitCode(err), out)
		}
		out, err = apply()
		if err != nil {
			t.Fatalf("apply after the reboot: %v\n%s", err, out)
		}
		t.Logf("apply after the reboot:\n%s", strings.TrimSpace(out))
		if strings.Contains(out, "No changes") {
			t.Error("apply after the reboot says no changes")
		}
		echoWorks(t, client, 1002, "apply after reboot")
		if out, err := apply("--dry-run", "--detailed-exitcode"); err != nil || !strings.Contains(out, "No changes: the machine matches the node file.") {
			t.Errorf("dry run after the repair: exit %d, want 0 and no changes:\n%s", testbed.ExitCode(err), out)
		}
		if out, err := livePortstripe(node, "status", "--dir", stateDir); err != nil {
			t.Errorf("status after the repair: %v\n%s", err, out)
		}
	})

	t.Run("run", func(t *testing.T) {
		reboot(t, node, masterSock)
		out, err := livePortstripe(node, "status", "--dir", stateDir)
		if err == nil || !strings.Contains(out, "drift:") {
			t.Errorf("status after the reboot: %v, want non-zero naming the drift:\n%s", err, out)
		}
		t.Logf("status after the reboot:\n%s", strings.TrimSpace(out))
		start := time.Now()
		r := startRun(t, node, dir, nodePath, "run-reboot.log", "--period", reconcilePeriod.String())
		echoWorks(t, client, 1003, "run after reboot")
		total := time.Since(start)
		t.Logf("run after the reboot: traffic through tcp 1003 %d ms after run started (target 10 s)", total.Milliseconds())
		if total > 10*time.Second {
			t.Errorf("run took %s to serve after a reboot, want within 10 s", total.Round(time.Millisecond))
		}
		r.proc.Stop()
	})
}

// TestReconcileDrift: with run active, a deleted jump, a flushed
// portstripe chain and a whole `nft flush ruleset` are repaired within two
// reconcile periods, and portstripe_drift_repairs_total counts them.
func TestReconcileDrift(t *testing.T) {
	b := newEchoBed(t)
	dir, client, node, nodePath := b.dir, b.client, b.node, b.nodePath
	r := startRun(t, node, dir, nodePath, "run.log", "--period", reconcilePeriod.String(), "--cleanup")
	echoWorks(t, client, 1001, "before drift")
	drifts := []struct {
		name, what string
		do         []string
	}{
		{"deleted-jump", "jumps", []string{"iptables", "-t", "nat", "-D", "PREROUTING", "-m", "comment", "--comment", "portstripe", "-j", "PORTSTRIPE"}},
		{"flushed-chain", "rules", []string{"iptables", "-t", "nat", "-F", "PORTSTRIPE-TCP"}},
		{"nft-flush-ruleset", "jumps", []string{"nft", "flush", "ruleset"}},
	}
	for i, d := range drifts {
		t.Run(d.name, func(t *testing.T) {
			driftRepaired(t, r, client, node, 1100+i, d.what, d.do, func() string { return liveRules(t, node, false) })
		})
	}
}

// driftRepaired breaks the node by running do in it, checks that striped
// tcp port no longer reaches the echo, then that run repairs it within two
// reconcile periods, counts it once in portstripe_drift_repairs_total{what},
// logs it, and that rules (what the kernel holds) reads as before.
func driftRepaired(t *testing.T, r *liveRun, client, node testbed.Netns, port int, what string, do []string, rules func() string) {
	t.Helper()
	name := strings.Join(do, " ")
	sample := `portstripe_drift_repairs_total{what="` + what + `"}`
	before, ok := liveMetric(r.scrape(), sample)
	if !ok {
		t.Fatalf("no %s on /metrics", sample)
	}
	was := rules()
	if out, err := node.Run(do[0], do[1:]...); err != nil {
		t.Fatalf("%s: %v\n%s", name, err, out)
	}
	if err := liveEchoOnce(client, port, "SSH-2.0-drifted\r\n"); err == nil {
		t.Fatalf("%s: the echo still works: the drift did not break the node", name)
	}
	took := echoWorks(t, client, port, name)
	limit := 2*reconcilePeriod + time.Second // one pass's own time on a loaded machine
	t.Logf("%s: repaired, traffic through tcp %d again after %d ms (period %s)", name, port, took.Milliseconds(), reconcilePeriod)
	if took > limit {
		t.Errorf("%s: repaired after %s, want within two periods (%s)", name, took.Round(time.Millisecond), limit)
	}
	var after float64
	liveWaitFor(liveDeadline, 50*time.Millisecond, func() error {
		if after, _ = liveMetric(r.scrape(), sample); after <= before {
			return fmt.Errorf("still %v", after)
		}
		return nil
	})
	if after != before+1 {
		t.Errorf("%s = %v after the repair, want %v", sample, after, before+1)
	}
	if got := rules(); got != was {
		t.Errorf("%s: rules after the repair differ:\nbefore:\n%s\nafter:\n%s", name, was, got)
	}
	if !strings.Contains(r.proc.LogText(), `msg="drift repaired"`) {
		t.Errorf("%s: run did not log the repair", name)
	}
}

// TestReconcileFailedFirstApply: a first apply that fails (HAProxy cannot
// bind its frontend) leaves `iptables -t nat -S` exactly as before, and a
// listener that owned a striped port before still gets its clients.
func TestReconcileFailedFirstApply(t *testing.T) {
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	client, node := pair.Client, pair.Node
	// A service of the node's own on striped tcp 1500, before portstripe.
	own := net.JoinHostPort(nodeAddr, "1500")
	liveStartEcho(t, node, own)
	// Another program holds the frontend's port: haproxy -c passes, the
	// master cannot bind.
	var busy net.Listener
	if err := node.Do(func() error {
		var err error
		busy, err = net.Listen("tcp", net.JoinHostPort(nodeAddr, strconv.Itoa(liveListenPort)))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	if err := liveEchoOnce(client, 1500, "hello before\n"); err != nil {
		t.Fatalf("the node's own service on 1500 before portstripe: %v", err)
	}
	before := natRules(t, node)
	stateDir, nodePath := filepath.Join(dir, "state"), filepath.Join(dir, "node.yaml")
	liveWriteLikeEditor(t, nodePath, echoNode(dir))
	out, err := livePortstripe(node, "apply", "-c", nodePath, "--dir", stateDir)
	if testbed.ExitCode(err) != 1 {
		t.Fatalf("apply with the frontend port taken: exit %d (%v), want 1:\n%s", testbed.ExitCode(err), err, out)
	}
	t.Logf("failed first apply:\n%s", strings.TrimSpace(out))
	if !strings.Contains(out, "rolled back") {
		t.Errorf("apply did not say it rolled back")
	}
	if after := natRules(t, node); after != before {
		t.Errorf("iptables -t nat -S after the failed first apply:\n%s\nwant as before:\n%s", after, before)
	}
	if err := liveEchoOnce(client, 1500, "hello after\n"); err != nil {
		t.Errorf("the node's own service on 1500 after the failed apply: %v", err)
	}
	if _, err := liveShowProc(filepath.Join(dir, "master.sock")); err == nil {
		t.Error("an HAProxy master answers after the failed first apply")
	}
	for _, f := range []string{"haproxy.cfg", "rules.v4", "plan.json"} {
		if _, err := os.Stat(filepath.Join(stateDir, f)); err == nil {
			t.Errorf("%s left in the state directory", f)
		}
	}
}

// TestReconcileRestartKeepsSessions: an open TCP connection through HAProxy
// survives SIGTERM and a restart of run; between the two, clients are
// served; the second run adopts the master without a reload.
func TestReconcileRestartKeepsSessions(t *testing.T) {
	b := newEchoBed(t)
	dir, client, node, nodePath, masterSock := b.dir, b.client, b.node, b.nodePath, b.masterSock
	r := startRun(t, node, dir, nodePath, "run1.log")
	ps := liveMustShowProc(t, masterSock)

	conn, err := liveDial(client, net.JoinHostPort(nodeAddr, "1200"), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	rd := bufio.NewReader(conn)
	say := func(msg string) error {
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, msg+"\n"); err != nil {
			return err
		}
		got, err := rd.ReadString('\n')
		if err != nil || got != msg+"\n" {
			return fmt.Errorf("echo %q, %v; sent %q", got, err, msg)
		}
		return nil
	}
	if err := say("SSH-2.0-long-lived"); err != nil {
		t.Fatal(err)
	}

	if err := r.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-r.proc.Done():
	case <-time.After(liveDeadline):
		t.Fatal("run did not stop on SIGTERM")
	}
	if !strings.Contains(r.proc.LogText(), "HAProxy and the rules keep serving") {
		t.Errorf("run did not say it leaves the node serving:\n%s", testbed.Tail(r.proc.LogText(), 5))
	}
	if err := say("while portstripe is down"); err != nil {
		t.Errorf("the open connection after run stopped: %v", err)
	}
	if err := liveEchoOnce(client, 1201, "SSH-2.0-new-client-while-down\r\n"); err != nil {
		t.Errorf("a new client while run is stopped: %v", err)
	}

	r2 := startRun(t, node, dir, nodePath, "run2.log")
	log := r2.proc.LogText()
	if !strings.Contains(log, "attached to a running haproxy master") || !strings.Contains(log, "result=unchanged") {
		t.Errorf("the second run did not adopt the master unchanged:\n%s", testbed.Tail(log, 8))
	}
	if err := say("after the restart"); err != nil {
		t.Errorf("the open connection after run restarted: %v", err)
	}
	after := liveMustShowProc(t, masterSock)
	if after.Master.PID != ps.Master.PID || after.Master.Reloads != ps.Master.Reloads {
		t.Errorf("master %d (%d reloads) → %d (%d reloads): the restart of run touched HAProxy",
			ps.Master.PID, ps.Master.Reloads, after.Master.PID, after.Master.Reloads)
	}
	t.Logf("one connection through striped tcp 1200 carried echoes before, during and after a restart of run; master %d, %d reloads",
		after.Master.PID, after.Master.Reloads)
	r2.proc.Stop()
}

// TestReconcileBrokenAtStart: with a broken node file, a run started after
// a reboot brings the last applied state back and serves it (healthy, not
// ready), then applies the file once it is fixed.
func TestReconcileBrokenAtStart(t *testing.T) {
	b := newEchoBed(t)
	dir, client, node, stateDir, nodePath, masterSock := b.dir, b.client, b.node, b.stateDir, b.nodePath, b.masterSock
	good := echoNode(dir)
	if out, err := livePortstripe(node, "apply", "-c", nodePath, "--dir", stateDir); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	reboot(t, node, masterSock)
	liveWriteLikeEditor(t, nodePath, strings.Replace(good, "inspect_delay: 5s", "inspect_delay: five", 1))

	r := startRun(t, node, dir, nodePath, "run.log", "--period", reconcilePeriod.String(), "--cleanup")
	if !strings.Contains(r.proc.LogText(), "serving the last applied state") {
		t.Errorf("run did not say it serves the last applied state:\n%s", testbed.Tail(r.proc.LogText(), 5))
	}
	echoWorks(t, client, 1300, "broken file at start")
	code, body, _ := liveHTTPGet(node, "http://"+r.metrics+"/healthz")
	if code != http.StatusOK {
		t.Errorf("/healthz while serving the last good state: %d %s", code, body)
	}
	code, body, _ = liveHTTPGet(node, "http://"+r.metrics+"/readyz")
	if code != http.StatusServiceUnavailable || !strings.Contains(body, "haproxy.inspect_delay") {
		t.Errorf("/readyz with a broken node file: %d %s; want 503 naming the field", code, body)
	}
	if v, _ := liveMetric(r.scrape(), "portstripe_config_applied"); v != 0 {
		t.Errorf("portstripe_config_applied = %v with a broken node file, want 0", v)
	}

	liveWriteLikeEditor(t, nodePath, strings.Replace(good, "inspect_delay: 5s", "inspect_delay: 4s", 1))
	if _, err := liveWaitFor(liveDeadline, 50*time.Millisecond, func() error {
		if code, body, _ := liveHTTPGet(node, "http://"+r.metrics+"/readyz"); code != http.StatusOK {
			return fmt.Errorf("/readyz %d %s", code, body)
		}
		return nil
	}); err != nil {
		t.Errorf("after the fix: %v", err)
	}
	if v, _ := liveMetric(r.scrape(), "portstripe_config_applied"); v != 1 {
		t.Errorf("portstripe_config_applied = %v after the fix, want 1", v)
	}
	echoWorks(t, client, 1301, "after the fix")

	// With no applied state at all, a broken file stops run (exit 2).
	empty := filepath.Join(dir, "empty-state")
	out, err := livePortstripe(node, "run", "-c", nodePath+".broken", "--dir", empty, "--metrics", "")
	if testbed.ExitCode(err) != 2 {
		t.Errorf("run with a missing node file and no state: exit %d, want 2:\n%s", testbed.ExitCode(err), out)
	}
}

// TestReconcileRefusesLoop: a TCP backend at the node's own address on a
// striped port would send HAProxy's connection back into its own frontend
// (the OUTPUT jump DNATs it); apply refuses it with exit 2 and applies
// nothing.
func TestReconcileRefusesLoop(t *testing.T) {
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	node := pair.Node
	before := natRules(t, node)
	nodePath := filepath.Join(dir, "node.yaml")
	loop := strings.Replace(echoNode(dir), "tcp: "+liveEchoAddr, "tcp: "+net.JoinHostPort(nodeAddr, "1500"), 1)
	liveWriteLikeEditor(t, nodePath, loop)
	out, err := livePortstripe(node, "apply", "-c", nodePath, "--dir", filepath.Join(dir, "state"))
	if testbed.ExitCode(err) != 2 || !strings.Contains(out, "services[0].tcp") {
		t.Fatalf("apply with a backend on the node's own striped port: exit %d, want 2 naming services[0].tcp:\n%s", testbed.ExitCode(err), out)
	}
	t.Logf("refused: %s", strings.TrimSpace(out))
	if after := natRules(t, node); after != before {
		t.Errorf("nat table changed:\n%s", after)
	}
	if _, err := os.Stat(filepath.Join(dir, "state", "haproxy.cfg")); err == nil {
		t.Error("haproxy.cfg written for a refused node")
	}
}

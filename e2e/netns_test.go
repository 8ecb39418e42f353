//go:build e2e

package e2e

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"golang.org/x/sys/unix"
)

// The test network: a client host and a node host joined by one veth pair.
const (
	clientAddr = "198.51.100.1"
	nodeAddr   = "198.51.100.2"
	nsPrefix   = "pse2e-"
)

// netns is a network namespace the suite created, by name (/run/netns/NAME).
type netns string

// newNamespaces creates the client and node namespaces, joined by a veth pair
// with loopback up on both sides, and deletes them (and every process left
// in them) when the test ends or is interrupted.
func newNamespaces(t *testing.T) (client, node netns) {
	t.Helper()
	pid := os.Getpid()
	client = netns(fmt.Sprintf("%sc-%d", nsPrefix, pid))
	node = netns(fmt.Sprintf("%sn-%d", nsPrefix, pid))
	vc, vn := fmt.Sprintf("psc%d", pid), fmt.Sprintf("psn%d", pid)
	for _, ns := range []netns{client, node} {
		ns := ns
		mustRun(t, "ip", "netns", "add", string(ns))
		t.Cleanup(atExit(ns.delete))
	}
	steps := [][]string{
		{"ip", "link", "add", vc, "type", "veth", "peer", "name", vn},
		{"ip", "link", "set", vc, "netns", string(client)},
		{"ip", "link", "set", vn, "netns", string(node)},
		{"ip", "-n", string(client), "addr", "add", clientAddr + "/24", "dev", vc},
		{"ip", "-n", string(node), "addr", "add", nodeAddr + "/24", "dev", vn},
		{"ip", "-n", string(client), "link", "set", vc, "up"},
		{"ip", "-n", string(node), "link", "set", vn, "up"},
		{"ip", "-n", string(client), "link", "set", "lo", "up"},
		{"ip", "-n", string(node), "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		mustRun(t, s[0], s[1:]...)
	}
	return client, node
}

// veth names the namespace's end of the veth pair.
func (ns netns) veth() string {
	pid := strings.TrimPrefix(string(ns), nsPrefix)
	return "ps" + strings.Replace(pid, "-", "", 1)
}

// delete kills what still runs inside the namespace (only the suite's own
// processes live there) and removes it; the veth pair and the iptables rules
// go with it.
func (ns netns) delete() {
	killNamespacePids(string(ns))
	if out, err := exec.Command("ip", "netns", "delete", string(ns)).CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "e2e: ip netns delete %s: %v: %s", ns, err, out)
	}
}

func killNamespacePids(name string) {
	out, err := exec.Command("ip", "netns", "pids", name).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// removeStaleNamespaces deletes the namespaces of earlier runs of this suite
// whose test process is gone (killed by a timeout before its cleanups ran).
func removeStaleNamespaces() {
	names, _ := filepath.Glob("/run/netns/" + nsPrefix + "*")
	for _, path := range names {
		name := filepath.Base(path)
		i := strings.LastIndexByte(name, '-')
		pid, err := strconv.Atoi(name[i+1:])
		if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		fmt.Fprintf(os.Stderr, "e2e: removing namespace %s left by an earlier run\n", name)
		netns(name).delete()
	}
}

// command returns cmd to run inside the namespace.
func (ns netns) command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(ns), name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// run runs a command inside the namespace and returns its combined output.
func (ns netns) run(name string, args ...string) (string, error) {
	out, err := ns.command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %v: %s", ns, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// do runs fn on an OS thread switched into the namespace: sockets fn opens
// belong to the namespace for their whole life, wherever they are used later.
func (ns netns) do(fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open("/run/netns/" + string(ns))
		if err != nil {
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := setns(target.Fd()); err != nil {
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		err = fn()
		if setns(orig.Fd()) == nil {
			// Back home: the thread may serve other goroutines again.
			// Otherwise it stays locked and exits with this goroutine.
			runtime.UnlockOSThread()
		}
		errc <- err
	}()
	return <-errc
}

func setns(fd uintptr) error { return unix.Setns(int(fd), unix.CLONE_NEWNET) }

// mustRun runs a command on the host, failing the test with its output.
func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out)
}

// Package testenv gives tests throwaway surroundings, so that faults and
// real iptables rules, HAProxy processes and sockets never touch the host's:
// network namespaces and processes from internal/testbed, tied to the
// test's end (t.Cleanup), re-running a test inside a namespace, small file
// systems to fill or make read-only, and sockets that hang.
package testenv

import (
	"bytes"
	"crypto/sha256"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/portstripe/portstripe/internal/testbed"
)

// Env tells a test binary re-executed by Self which namespace it runs in.
const Env = "PORTSTRIPE_TEST_NETNS"

// Require skips the test unless it runs as root with ip and the tools named.
func Require(t testing.TB, tools ...string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates network namespaces")
	}
	for _, tool := range append([]string{"ip"}, tools...) {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("needs %s: %v", tool, err)
		}
	}
}

// Netns creates a network namespace pstest-<role><n>-<pid> with lo up,
// deleted with every process in it when the test ends.
func Netns(t testing.TB, role string) testbed.Netns {
	t.Helper()
	ns, del, err := testbed.NewNetns("pstest-" + role)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := del(); err != nil {
			t.Error(err)
		}
	})
	return ns
}

// Pair creates a client and a node namespace joined by a veth pair
// (testbed.NewPair), deleted with every process in them when the test ends.
func Pair(t testing.TB, prefix string) *testbed.Pair {
	t.Helper()
	p, err := testbed.NewPair(prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := p.Close(); err != nil {
			t.Error(err)
		}
	})
	return p
}

// Start starts a long-running process (testbed.Start), stopped when the
// test ends.
func Start(t testing.TB, name string, cmd *exec.Cmd, logPath string) *testbed.Proc {
	t.Helper()
	p, err := testbed.Start(name, cmd, logPath)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	return p
}

// Run runs a command and returns its output, failing the test on error.
func Run(t testing.TB, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// Self runs the calling test in a fresh network namespace and reports
// whether the caller is already inside it. The outer call re-executes the
// test binary under `ip netns exec` (so every command and socket of the
// whole process is in the namespace), reports its output and returns false;
// the inner call returns true and does the work. The test's name must be
// a plain identifier (no subtests).
func Self(t *testing.T, tools ...string) bool {
	t.Helper()
	if os.Getenv(Env) != "" {
		return true
	}
	Require(t, tools...)
	ns := Netns(t, "self")
	args := []string{"netns", "exec", string(ns), os.Args[0], "-test.run", "^" + t.Name() + "$", "-test.v", "-test.count=1"}
	if f := flag.Lookup("update"); f != nil && f.Value.String() == "true" {
		args = append(args, "-update") // golden files written inside, too
	}
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), Env+"="+string(ns))
	out, err := cmd.CombinedOutput()
	t.Logf("in network namespace %s:\n%s", ns, out)
	if err != nil {
		t.Fatalf("test in network namespace: %v", err)
	}
	if !bytes.Contains(out, []byte("--- PASS: "+t.Name())) {
		t.Fatal("the test did not run in the namespace")
	}
	return false
}

// Tmpfs mounts a tmpfs of the given size ("16k") on a new temporary
// directory, unmounted when the test ends; it needs root.
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	Require(t, "mount", "umount")
	dir := t.TempDir()
	Run(t, "mount", "-t", "tmpfs", "-o", "size="+size+",mode=0755", "portstripe-test", dir)
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// HungSocket listens on a unix socket in a temporary directory, accepts
// every connection and never answers: a stuck HAProxy master or worker.
func HungSocket(t testing.TB) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "hung.sock")
	FakeSocket(t, path, nil)
	return path
}

// FakeSocket listens on a unix socket at path until the test ends. answer
// gets every connection after its command has been read, and the
// connection is closed when it returns; a nil answer holds every
// connection open without a word (a hung HAProxy).
func FakeSocket(t testing.TB, path string, answer func(net.Conn)) {
	t.Helper()
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			if answer == nil {
				mu.Lock()
				conns = append(conns, c)
				mu.Unlock()
				continue
			}
			go func() {
				defer c.Close()
				c.Read(make([]byte, 512))
				answer(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
}

// NodeAddr is the node address tests give a namespace's lo.
const NodeAddr = "198.51.100.1"

// LiveNode makes a node file (the seed node, or an edit of it) run in a test
// namespace: NodeAddr instead of the seed's address, dir as HAProxy's run
// directory with the sockets in it (master.sock, api.sock), and a maxconn
// the test's descriptor limit allows.
func LiveNode(yaml, dir string) string {
	yaml = strings.ReplaceAll(yaml, "195.154.33.73", NodeAddr)
	return strings.Replace(yaml, "  inspect_delay: 5s\n", fmt.Sprintf(
		"  inspect_delay: 5s\n  maxconn: 256\n  run_dir: %s\n  master_socket: %s\n  runtime_socket: %s\n",
		dir, filepath.Join(dir, "master.sock"), filepath.Join(dir, "api.sock")), 1)
}

// SelfNode is Self for tests that run a node: inside the namespace it puts
// NodeAddr on lo and writes LiveNode(yaml) to node.yaml in a new temporary
// directory, whose path (and the node file's) it returns.
func SelfNode(t *testing.T, yaml string) (dir, nodeFile string, inside bool) {
	t.Helper()
	if !Self(t, "iptables-restore", "iptables-save", "haproxy") {
		return "", "", false
	}
	Run(t, "ip", "addr", "add", NodeAddr+"/32", "dev", "lo")
	dir = t.TempDir()
	nodeFile = filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(nodeFile, []byte(LiveNode(yaml, dir)), 0o600); err != nil {
		t.Fatal(err)
	}
	return dir, nodeFile, true
}

// Snapshot lists dir's files, but those matching an ignore pattern, with
// their mode and a digest of their content: equal snapshots, unchanged
// files. A missing dir gives "".
func Snapshot(t testing.TB, dir string, ignore ...string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if os.IsNotExist(err) {
		return ""
	}
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		if slices.ContainsFunc(ignore, func(p string) bool { ok, _ := filepath.Match(p, e.Name()); return ok }) {
			continue
		}
		info, err := e.Info()
		if err != nil {
			t.Fatal(err)
		}
		data, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		fmt.Fprintf(&b, "%s %v %x\n", e.Name(), info.Mode(), sha256.Sum256(data))
	}
	return b.String()
}

// SyncBuffer is a log sink a test reads while the code under test writes
// it from its own goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

package testbed

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestAtExitRunsOnceNewestFirst(t *testing.T) {
	var order []int
	first := AtExit(func() { order = append(order, 1) })
	AtExit(func() { order = append(order, 2) })
	AtExit(func() { order = append(order, 3) })
	first()
	RunAll()
	RunAll()
	first()
	if !slices.Equal(order, []int{1, 3, 2}) {
		t.Fatalf("order %v, want [1 3 2]", order)
	}
}

func TestGuardRunsCleanupsOnPanic(t *testing.T) {
	ran := false
	AtExit(func() { ran = true })
	func() {
		defer func() { recover() }()
		defer Guard()
		panic("boom")
	}()
	if !ran {
		t.Fatal("Guard did not run the registered cleanup")
	}
}

// TestPair needs root: it builds a pair, pings across it, runs a process
// in the node namespace and checks that Close removes everything.
func TestPair(t *testing.T) {
	needNetns(t)
	p, err := NewPair("pstbtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	var ln net.Listener
	if err := p.Node.Do(func() (err error) {
		ln, err = net.Listen("tcp4", NodeAddr.String()+":0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := p.Client.Do(func() error {
		c, err := net.DialTimeout("tcp4", ln.Addr().String(), 2*time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatalf("client → node across the veth: %v", err)
	}
	if out, err := p.Client.Run("sysctl", "-n", "net.ipv4.ip_local_reserved_ports"); err != nil || strings.TrimSpace(out) != ClientFixedPorts {
		t.Errorf("client namespace reserves %q (%v), want %s", strings.TrimSpace(out), err, ClientFixedPorts)
	}
	proc, err := Start("sleeper", p.Node.Command("sleep", "60"), filepath.Join(t.TempDir(), "sleep.log"))
	if err != nil {
		t.Fatal(err)
	}
	if proc.Exited() {
		t.Fatal("sleep exited at once")
	}
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	select {
	case <-proc.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the process in the node namespace outlived Close")
	}
	for _, ns := range []Netns{p.Client, p.Node} {
		if _, err := os.Stat("/run/netns/" + string(ns)); !os.IsNotExist(err) {
			t.Errorf("namespace %s still exists", ns)
		}
	}
}

// TestNamesDistinct needs root: two pairs and a namespace of one process
// get names (and veth names) of their own, all found by RemoveStale's
// pattern but kept while this process lives.
func TestNamesDistinct(t *testing.T) {
	needNetns(t)
	a, err := NewPair("pstbtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	b, err := NewPair("pstbtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	ns, del, err := NewNetns("pstbtest-")
	if err != nil {
		t.Fatal(err)
	}
	defer del()
	seen := map[string]bool{}
	for _, name := range []string{string(a.Client), string(a.Node), string(b.Client), string(b.Node), string(ns), a.ClientVeth, a.NodeVeth, b.ClientVeth, b.NodeVeth} {
		if seen[name] {
			t.Errorf("%s used twice", name)
		}
		seen[name] = true
		if len(name) > 15 && strings.HasPrefix(name, "v") {
			t.Errorf("veth name %s is longer than 15 bytes", name)
		}
	}
	if removed := RemoveStale("pstbtest-"); len(removed) > 0 {
		t.Errorf("RemoveStale removed namespaces of a live process: %v", removed)
	}
}

func needNetns(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
}

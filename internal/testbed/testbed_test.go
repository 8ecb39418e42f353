package testbed

import (
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
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
	if os.Geteuid() != 0 {
		t.Skip("needs root (network namespaces)")
	}
	if _, err := exec.LookPath("ip"); err != nil {
		t.Skip("needs iproute2")
	}
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
	proc, err := Start("sleeper", p.Node.Command("sleep", "60"), filepath.Join(t.TempDir(), "sleep.log"))
	if err != nil {
		t.Fatal(err)
	}
	if proc.Exited() {
		t.Fatal("sleep exited at once")
	}
	p.Close()
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

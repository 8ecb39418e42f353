package testbed

import (
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"

	"github.com/portstripe/portstripe/iptables"
)

// Netns is a network namespace made with `ip netns add` (/run/netns/NAME).
type Netns string

// The addresses of a Pair: documentation addresses (RFC 5737), only ever
// used inside namespaces this package created.
var (
	ClientAddr = netip.MustParseAddr("198.51.100.1")
	NodeAddr   = netip.MustParseAddr("198.51.100.2")
	// ClientAddr6 and NodeAddr6 (RFC 3849) are added by AddIPv6.
	ClientAddr6 = netip.MustParseAddr("2001:db8:5053::1")
	NodeAddr6   = netip.MustParseAddr("2001:db8:5053::2")
)

// ClientFixedPorts are local ports the kernel never hands out on its own in
// a Pair's client namespace (net.ipv4.ip_local_reserved_ports), so a client
// bound to one of them on purpose (OpenVPN's --lport, to find its flow in a
// capture) cannot collide with another test connection's ephemeral port.
const ClientFixedPorts = "41000-42999"

// Pair is a client host and a node host joined by one veth pair, loopback
// up on both sides.
type Pair struct {
	Client, Node         Netns
	ClientVeth, NodeVeth string       // each side's end of the veth pair
	Close                func() error // deletes both namespaces and what runs in them
}

// seq tells apart the namespaces (and veth pairs) of one process.
var seq atomic.Int64

// names returns a distinct name <prefix><role><n>-<pid> per role (the pid
// lets RemoveStale find those of a dead run) and the n they share.
func names(prefix string, roles ...string) ([]Netns, int64) {
	n, pid := seq.Add(1), os.Getpid()
	var ns []Netns
	for _, role := range roles {
		ns = append(ns, Netns(fmt.Sprintf("%s%s%d-%d", prefix, role, n, pid)))
	}
	return ns, n
}

// NewPair creates two namespaces named <prefix>c<n>-<pid> and
// <prefix>n<n>-<pid>, joined by a veth pair: ClientAddr/24 on the client
// side, NodeAddr/24 on the node side. They are deleted by Close, by RunAll,
// on a signal handled by HandleSignals, or on a panic caught by Guard.
func NewPair(prefix string) (*Pair, error) {
	ns, n := names(prefix, "c", "n")
	// Interface names are at most 15 bytes.
	p := &Pair{Client: ns[0], Node: ns[1],
		ClientVeth: fmt.Sprintf("vc%d-%d", n, os.Getpid()), NodeVeth: fmt.Sprintf("vn%d-%d", n, os.Getpid())}
	var closers []func() error
	p.Close = func() error {
		var errs []error
		for i := len(closers) - 1; i >= 0; i-- {
			errs = append(errs, closers[i]())
		}
		return errors.Join(errs...)
	}
	for _, ns := range ns {
		if err := ns.create(); err != nil {
			p.Close()
			return nil, err
		}
		closers = append(closers, ns.deleter())
	}
	vc, vn := p.ClientVeth, p.NodeVeth
	steps := [][]string{
		{"link", "add", vc, "type", "veth", "peer", "name", vn},
		{"link", "set", vc, "netns", string(p.Client)},
		{"link", "set", vn, "netns", string(p.Node)},
		{"-n", string(p.Client), "addr", "add", ClientAddr.String() + "/24", "dev", vc},
		{"-n", string(p.Node), "addr", "add", NodeAddr.String() + "/24", "dev", vn},
		{"-n", string(p.Client), "link", "set", vc, "up"},
		{"-n", string(p.Node), "link", "set", vn, "up"},
		{"-n", string(p.Client), "link", "set", "lo", "up"},
		{"-n", string(p.Node), "link", "set", "lo", "up"},
	}
	for _, s := range steps {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			p.Close()
			return nil, fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	if err := p.Client.Sysctl("net.ipv4.ip_local_reserved_ports", ClientFixedPorts); err != nil {
		p.Close()
		return nil, err
	}
	return p, nil
}

// AddIPv6 makes the pair dual-stack: ClientAddr6/64 and NodeAddr6/64 on
// the veth ends, without duplicate address detection (nodad), so they are
// usable at once.
func (p *Pair) AddIPv6() error {
	for _, s := range [][]string{
		{"-n", string(p.Client), "addr", "add", ClientAddr6.String() + "/64", "dev", p.ClientVeth, "nodad"},
		{"-n", string(p.Node), "addr", "add", NodeAddr6.String() + "/64", "dev", p.NodeVeth, "nodad"},
	} {
		if out, err := exec.Command("ip", s...).CombinedOutput(); err != nil {
			return fmt.Errorf("ip %s: %v: %s", strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// NewNetns creates one namespace <prefix><n>-<pid> with loopback up,
// deleted by the returned function (or as NewPair's are).
func NewNetns(prefix string) (Netns, func() error, error) {
	n, _ := names(prefix, "")
	ns := n[0]
	if err := ns.create(); err != nil {
		return "", nil, err
	}
	del := ns.deleter()
	if _, err := ns.Run("ip", "link", "set", "lo", "up"); err != nil {
		del()
		return "", nil, err
	}
	return ns, del, nil
}

func (ns Netns) create() error {
	if out, err := exec.Command("ip", "netns", "add", string(ns)).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns add %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// deleter registers Delete with the reaper and returns the function that
// runs it now (at most once either way) and returns its error; the error
// is also written to stderr, for when the reaper runs it.
func (ns Netns) deleter() func() error {
	var err error
	run := AtExit(func() {
		if err = ns.Delete(); err != nil {
			fmt.Fprintln(os.Stderr, "testbed:", err)
		}
	})
	return func() error { run(); return err }
}

// Delete kills every process left in the namespace (only ours live there)
// and removes it; its veth ends, sockets and iptables rules go with it.
func (ns Netns) Delete() error {
	ns.KillAll()
	if out, err := exec.Command("ip", "netns", "delete", string(ns)).CombinedOutput(); err != nil {
		return fmt.Errorf("ip netns delete %s: %v: %s", ns, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// KillAll sends SIGKILL to every process in the namespace (HAProxy
// daemons and the like) but this one, which is listed when its main thread
// was parked there by Do or iptables.InNetns: Go never ends the main
// thread, it keeps it, namespace and all.
func (ns Netns) KillAll() {
	out, err := exec.Command("ip", "netns", "pids", string(ns)).Output()
	if err != nil {
		return
	}
	for _, f := range strings.Fields(string(out)) {
		if pid, err := strconv.Atoi(f); err == nil && pid > 1 && pid != os.Getpid() {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

// RemoveStale deletes namespaces named <prefix>…-<pid> whose process is
// gone: left by a run killed before its cleanups could run.
func RemoveStale(prefix string) []string {
	var removed []string
	names, _ := filepath.Glob("/run/netns/" + prefix + "*")
	for _, path := range names {
		name := filepath.Base(path)
		i := strings.LastIndexByte(name, '-')
		pid, err := strconv.Atoi(name[i+1:])
		if err != nil || syscall.Kill(pid, 0) != syscall.ESRCH {
			continue
		}
		if err := Netns(name).Delete(); err != nil {
			fmt.Fprintln(os.Stderr, "testbed:", err)
		}
		removed = append(removed, name)
	}
	return removed
}

// Command returns name args to run inside the namespace, in a process
// group of its own.
func (ns Netns) Command(name string, args ...string) *exec.Cmd {
	cmd := exec.Command("ip", append([]string{"netns", "exec", string(ns), name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	return cmd
}

// Run runs a command inside the namespace and returns its combined output.
func (ns Netns) Run(name string, args ...string) (string, error) {
	out, err := ns.Command(name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("in %s: %s %s: %w: %s", ns, name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// ExitCode is the exit status a Run error carries: 0 for nil, -1 when the
// command did not run or exit normally.
func ExitCode(err error) int {
	if err == nil {
		return 0
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode()
	}
	return -1
}

// Sysctl sets a per-namespace sysctl (key as in `sysctl -w`, dotted).
func (ns Netns) Sysctl(key, value string) error {
	_, err := ns.Run("sysctl", "-q", "-w", key+"="+value)
	return err
}

// Do runs fn on an OS thread inside the namespace: sockets fn opens and
// processes it starts belong to the namespace. The thread is dropped
// afterwards, never handed back to other goroutines (iptables.InNetns).
func (ns Netns) Do(fn func() error) error { return iptables.InNetns(string(ns), fn) }

//go:build e2e

package e2e

import (
	"context"
	"fmt"
	"io"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// TestWorkersUnprivileged: a node applied with the default haproxy.user and
// haproxy.group runs its HAProxy master as root and its workers as the
// haproxy account, chrooted to the run directory's empty subdirectory; a
// client is routed, the stats socket answers root, and a reload (the
// master, still root, takes the listeners over from the unprivileged
// worker through expose-fd listeners) keeps an open connection and starts
// an unprivileged worker again. A node naming an account the machine lacks
// is refused by apply's check, naming the key, before anything is applied;
// a regular file planted at the stats socket's path stops the apply and is
// left as it was.
func TestWorkersUnprivileged(t *testing.T) {
	testenv.Require(t, "haproxy", "iptables-restore", "ps")
	account, err := user.Lookup("haproxy")
	if err != nil {
		t.Fatalf("Debian's haproxy package creates the haproxy user: %v", err)
	}
	ns := testenv.Netns(t, "priv")
	if _, err := ns.Run("ip", "addr", "add", testbed.NodeAddr.String()+"/32", "dev", "lo"); err != nil {
		t.Fatal(err)
	}
	dir, err := os.MkdirTemp("", "portstripe-priv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testbed.AtExit(func() { os.RemoveAll(dir) }))
	state := filepath.Join(dir, "state")
	const echo = "127.0.0.1:7000"
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", echo); return err }); err != nil {
		t.Fatal(err)
	}
	wait := testbed.Serve(ln, func(c net.Conn) { defer c.Close(); io.Copy(c, c) })
	defer wait()
	defer ln.Close()
	nodeFile := func(delay string) string {
		path := filepath.Join(dir, "node.yaml")
		yaml := testbed.NodeFile{Name: "priv", Striped: "1000-2000", ListenPort: 20000, InspectDelay: delay, MaxConn: 200, Dir: dir,
			Services: []string{"  - {name: echo, kind: ssh, tcp: \"" + echo + "\", check: connect}\n"}}.YAML()
		if err := os.WriteFile(path, []byte(yaml), 0o600); err != nil {
			t.Fatal(err)
		}
		return path
	}

	// An account the machine lacks: refused by the check, nothing applied.
	out, err := ns.Run(cliPath, "apply", "-c", nodeFile("2s"), "--dir", state, "--set", "haproxy.user=ps-no-such-user")
	if err == nil || !strings.Contains(out, `haproxy.user: no user "ps-no-such-user" on this machine`) {
		t.Fatalf("apply with a missing user: %v\n%s", err, out)
	}
	if _, err := os.Stat(filepath.Join(state, "haproxy.cfg")); !os.IsNotExist(err) {
		t.Errorf("the refused apply wrote haproxy.cfg: %v", err)
	}

	// A regular file where the stats socket goes: HAProxy would replace
	// it with its socket, so apply stops (exit 1) and leaves it alone.
	planted := filepath.Join(dir, "runtime.sock")
	if err := os.WriteFile(planted, []byte("not a socket\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err = ns.Run(cliPath, "apply", "-c", nodeFile("2s"), "--dir", state)
	if code := testbed.ExitCode(err); code != 1 || !strings.Contains(out, "haproxy socket "+planted+" exists and is not a socket (a regular file); portstripe never removes or replaces it") {
		t.Fatalf("apply over a planted file: exit %d (%v)\n%s", code, err, out)
	}
	if b, err := os.ReadFile(planted); err != nil || string(b) != "not a socket\n" {
		t.Fatalf("the planted file changed: %q, %v", b, err)
	}
	os.Remove(planted)

	if out, err := ns.Run(cliPath, "apply", "-c", nodeFile("2s"), "--dir", state); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	master := haproxy.NewMaster(filepath.Join(dir, "master.sock"), nil)
	ps := showProc(t, master)
	checkUsers(t, ps, account, filepath.Join(dir, "empty"))

	// Routed through DNAT and the unprivileged worker; the connection
	// stays open across the reload below.
	var conn net.Conn
	if err := ns.Do(func() (err error) {
		conn, err = net.DialTimeout("tcp", net.JoinHostPort(testbed.NodeAddr.String(), "1500"), 5*time.Second)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	roundTrip(t, conn, "SSH-2.0-before-reload\r\n")

	stats, err := haproxy.NewRuntime(filepath.Join(dir, "runtime.sock"), nil).ShowStat(context.Background())
	if err != nil {
		t.Fatalf("stats socket as root: %v", err)
	}
	if len(stats) == 0 {
		t.Error("show stat: no rows")
	}

	if out, err := ns.Run(cliPath, "apply", "-c", nodeFile("3s"), "--dir", state); err != nil || !strings.Contains(out, "HAProxy: reload (") {
		t.Fatalf("apply with a new inspect_delay: %v\n%s", err, out)
	}
	after := showProc(t, master)
	if after.Master.PID != ps.Master.PID || after.Master.Reloads != ps.Master.Reloads+1 || after.Master.FailedReloads != 0 {
		t.Fatalf("reload: before %+v, after %+v", ps.Master, after.Master)
	}
	checkUsers(t, after, account, filepath.Join(dir, "empty"))
	roundTrip(t, conn, "SSH-2.0-after-reload\r\n") // served by the old worker
}

func showProc(t *testing.T, m *haproxy.Master) haproxy.Procs {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	ps, err := m.ShowProc(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(ps.Workers) == 0 {
		t.Fatalf("no workers: %+v", ps)
	}
	return ps
}

// checkUsers: ps shows the master as root and every current worker as the
// haproxy account, and each worker's root directory is chroot.
func checkUsers(t *testing.T, ps haproxy.Procs, account *user.User, chroot string) {
	t.Helper()
	psUser := func(pid int) string {
		return strings.TrimSpace(testenv.Run(t, "ps", "-o", "user=", "-p", strconv.Itoa(pid)))
	}
	if u := psUser(ps.Master.PID); u != "root" {
		t.Errorf("master %d runs as %q, want root", ps.Master.PID, u)
	}
	for _, w := range ps.Workers {
		if u := psUser(w.PID); u != account.Username {
			t.Errorf("worker %d runs as %q, want %s", w.PID, u, account.Username)
		}
		status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", w.PID))
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(status), "\n") {
			// Real, effective, saved and file-system ids: none may be root.
			if f := strings.Fields(l); len(f) == 5 && (f[0] == "Uid:" || f[0] == "Gid:") {
				for _, id := range f[1:] {
					if id == "0" {
						t.Errorf("worker %d: %s", w.PID, l)
					}
				}
			}
		}
		if root, err := os.Readlink(fmt.Sprintf("/proc/%d/root", w.PID)); err != nil || root != chroot {
			t.Errorf("worker %d: root directory %q (%v), want %s", w.PID, root, err, chroot)
		}
		t.Logf("worker %d: user %s, root %s", w.PID, account.Username, chroot)
	}
}

func roundTrip(t *testing.T, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo through HAProxy: %q, %v; want %q", buf, err, msg)
	}
}

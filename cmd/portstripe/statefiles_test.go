package main

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/portstripe/portstripe/internal/testenv"
)

// TestStatusPlantedPlan: a plan.json in the state directory that is a link
// (to /dev/zero, which once ate memory until the kernel killed status, or
// to a secret) or a named pipe is refused at once, and nothing of its
// target is printed.
func TestStatusPlantedPlan(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(secret, []byte(`{"node":{"Name":"root:secret"}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	for name, plant := range map[string]func(path string) error{
		"link to /dev/zero": func(p string) error { return os.Symlink("/dev/zero", p) },
		"link to a secret":  func(p string) error { return os.Symlink(secret, p) },
		"named pipe":        func(p string) error { return syscall.Mkfifo(p, 0o600) },
	} {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			if err := plant(filepath.Join(dir, "plan.json")); err != nil {
				t.Fatal(err)
			}
			code, out, errOut := portstripe(t, "status", "--dir", dir)
			if code != exitFailure {
				t.Errorf("exit %d, want %d (%s)", code, exitFailure, errOut)
			}
			if want := "problem: applied plan in " + dir + " unreadable: " + dir + "/plan.json is "; !strings.Contains(out, want) || strings.Contains(out, "root:secret") {
				t.Errorf("output %q, want …%s… and nothing of the target", out, want)
			}
		})
	}
}

// TestStatusGarbageAnswers: HAProxy sockets answering a short or garbage
// line (a "# " header alone once panicked status) are problems in the
// output and exit 1, not a crash.
func TestStatusGarbageAnswers(t *testing.T) {
	for _, ans := range []string{"# \n", "#", "\x00garbage\n", "Unknown command.\n"} {
		run, state := appliedWithSockets(t)
		for _, s := range []string{"m.sock", "api.sock"} {
			testenv.FakeSocket(t, filepath.Join(run, s), func(c net.Conn) { c.Write([]byte(ans)) })
		}
		code, out, errOut := portstripe(t, "status", "--dir", state)
		if code != exitFailure || strings.Contains(errOut, "internal error") ||
			!strings.Contains(out, "problem: haproxy master: show proc") || !strings.Contains(out, "problem: haproxy runtime API: show stat") {
			t.Errorf("answer %q: exit %d\nstdout %s\nstderr %s", ans, code, out, errOut)
		}
	}
}

// appliedWithSockets makes a state directory as if the seed node had been
// applied with its HAProxy sockets at run/m.sock and run/api.sock, for a
// test to serve fake sockets there.
func appliedWithSockets(t *testing.T) (run, state string) {
	t.Helper()
	dir := t.TempDir()
	run, state = filepath.Join(dir, "run"), filepath.Join(dir, "state")
	if err := os.Mkdir(run, 0o700); err != nil {
		t.Fatal(err)
	}
	if code, _, errOut := portstripe(t, "compile", "-o", state, "--set", "haproxy.run_dir="+run,
		"--set", "haproxy.master_socket="+run+"/m.sock", "--set", "haproxy.runtime_socket="+run+"/api.sock"); code != 0 {
		t.Fatalf("compile: %s", errOut)
	}
	return run, state
}

package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
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

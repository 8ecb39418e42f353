package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/haproxy"
)

// TestHAProxyAccounts: compiled haproxy.cfg drops the workers to haproxy
// and chroots them by default; root workers only when the node file (or
// an override) says so, and HAProxy accepts both.
func TestHAProxyAccounts(t *testing.T) {
	for _, tt := range []struct {
		set  []string
		want string
	}{
		{nil, "    user haproxy\n    group haproxy\n    chroot /run/portstripe/empty\n"},
		{[]string{"--set", "haproxy.user=root", "--set", "haproxy.group=root"}, "    user root\n    group root\n    chroot /run/portstripe/empty\n"},
		{[]string{"--set", "haproxy.run_dir=/run/ps2", "--set", "haproxy.master_socket=/run/ps2/m.sock", "--set", "haproxy.runtime_socket=/run/ps2/s/api.sock"},
			"    chroot /run/ps2/empty\n    stats socket /run/ps2/s/api.sock mode 600"},
	} {
		dir := t.TempDir()
		code, _, errOut := portstripe(t, append([]string{"compile", "-o", dir}, tt.set...)...)
		if code != 0 {
			t.Fatalf("compile %v: %s", tt.set, errOut)
		}
		cfg, err := os.ReadFile(filepath.Join(dir, "haproxy.cfg"))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(cfg), tt.want) {
			t.Errorf("compile %v: haproxy.cfg lacks %q:\n%s", tt.set, tt.want, cfg)
		}
		if _, err := exec.LookPath("haproxy"); err == nil {
			if err := haproxy.Check(context.Background(), filepath.Join(dir, "haproxy.cfg")); err != nil {
				t.Errorf("compile %v: %v", tt.set, err)
			}
		}
	}
}

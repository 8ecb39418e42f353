package haproxy

import (
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPrepareRunDir: the run directory is made private, the chroot empty,
// and nothing that is not a socket at a socket path is ever touched.
func TestPrepareRunDir(t *testing.T) {
	t.Run("missing: created 0700, chroot 0755", func(t *testing.T) {
		dir := filepath.Join(t.TempDir(), "run", "portstripe")
		if err := PrepareRunDir(dir, filepath.Join(dir, "m.sock"), filepath.Join(dir, "sub", "api.sock")); err != nil {
			t.Fatal(err)
		}
		for path, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, "empty"): 0o755, filepath.Join(dir, "sub"): 0o700} {
			st, err := os.Lstat(path)
			if err != nil || !st.IsDir() || st.Mode().Perm() != want {
				t.Errorf("%s: %v, %v; want a directory of mode %o", path, st.Mode(), err, want)
			}
		}
		// Twice is the same as once.
		if err := PrepareRunDir(dir, filepath.Join(dir, "m.sock")); err != nil {
			t.Fatal(err)
		}
	})
	t.Run("stale socket is fine", func(t *testing.T) {
		dir := t.TempDir()
		sock := filepath.Join(dir, "m.sock")
		ln, err := net.Listen("unix", sock)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		if err := PrepareRunDir(dir, sock); err != nil {
			t.Fatal(err)
		}
	})

	refused := []struct {
		name  string
		setup func(t *testing.T, dir string) (runDir string, sockets []string)
		want  string
	}{
		{"regular file at the socket path", func(t *testing.T, dir string) (string, []string) {
			path := filepath.Join(dir, "m.sock")
			writeFile(t, path, "secret")
			return dir, []string{path}
		}, "exists and is not a socket (a regular file); portstripe never removes or replaces it"},
		{"symlink at the socket path", func(t *testing.T, dir string) (string, []string) {
			path := filepath.Join(dir, "m.sock")
			target := filepath.Join(t.TempDir(), "shadow")
			writeFile(t, target, "secret")
			symlink(t, target, path)
			return dir, []string{path}
		}, "exists and is not a socket (a symbolic link)"},
		{"run dir writable by others", func(t *testing.T, dir string) (string, []string) {
			chmod(t, dir, 0o777)
			return dir, nil
		}, "is writable by group or others (mode 777)"},
		{"run dir is a symlink", func(t *testing.T, dir string) (string, []string) {
			link := filepath.Join(t.TempDir(), "run")
			symlink(t, dir, link)
			return link, nil
		}, "is a symbolic link, not a directory of portstripe's own"},
		{"run dir is a file", func(t *testing.T, dir string) (string, []string) {
			path := filepath.Join(dir, "run")
			writeFile(t, path, "x")
			return path, nil
		}, "is a regular file, not a directory of portstripe's own"},
		{"chroot not empty", func(t *testing.T, dir string) (string, []string) {
			os.Mkdir(filepath.Join(dir, "empty"), 0o755)
			writeFile(t, filepath.Join(dir, "empty", "planted"), "x")
			return dir, nil
		}, "is the workers' chroot and must stay empty (holds planted)"},
		{"socket outside", func(t *testing.T, dir string) (string, []string) {
			return dir, []string{"/etc/shadow"}
		}, "haproxy socket /etc/shadow is outside the run directory"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			runDir, sockets := tt.setup(t, dir)
			before := snapshot(t, dir)
			err := PrepareRunDir(runDir, sockets...)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want …%s…", err, tt.want)
			}
			if after := snapshot(t, dir); after != before {
				t.Errorf("refused, but changed the directory:\n%s\n→\n%s", before, after)
			}
		})
	}
	t.Run("run dir of another user", func(t *testing.T) {
		if os.Geteuid() != 0 {
			t.Skip("needs root to give a directory away")
		}
		dir := t.TempDir()
		if err := os.Chown(dir, 65534, 65534); err != nil {
			t.Fatal(err)
		}
		err := PrepareRunDir(dir)
		if err == nil || !strings.Contains(err.Error(), "is owned by uid 65534, not by uid 0") {
			t.Fatalf("got %v", err)
		}
	})
}

func writeFile(t *testing.T, path, s string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(s), 0o600); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
}

func chmod(t *testing.T, path string, m os.FileMode) {
	t.Helper()
	if err := os.Chmod(path, m); err != nil {
		t.Fatal(err)
	}
}

// snapshot lists what is under dir, with modes and contents.
func snapshot(t *testing.T, dir string) string {
	t.Helper()
	var b strings.Builder
	filepath.Walk(dir, func(path string, info os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		data := ""
		if info.Mode().IsRegular() {
			d, _ := os.ReadFile(path)
			data = string(d)
		}
		b.WriteString(path + " " + info.Mode().String() + " " + data + "\n")
		return nil
	})
	return b.String()
}

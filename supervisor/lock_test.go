package supervisor

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestLockRefusesPlantedFiles: the lock never follows a link planted at its
// name (it used to truncate the target), never hangs on a named pipe there,
// and refuses a state directory others can write.
func TestLockRefusesPlantedFiles(t *testing.T) {
	target := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(target, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name  string
		plant func(t *testing.T, dir string)
		want  string
	}{
		{"symlink", func(t *testing.T, dir string) {
			if err := os.Symlink(target, filepath.Join(dir, LockFile)); err != nil {
				t.Fatal(err)
			}
		}, "is a symbolic link, not a regular file"},
		{"hard link", func(t *testing.T, dir string) {
			if err := os.Link(target, filepath.Join(dir, LockFile)); err != nil {
				t.Fatal(err)
			}
		}, "has other names (hard links)"},
		{"named pipe", func(t *testing.T, dir string) {
			if err := syscall.Mkfifo(filepath.Join(dir, LockFile), 0o600); err != nil {
				t.Fatal(err)
			}
		}, "is a named pipe (FIFO), not a regular file"},
		{"state dir writable by others", func(t *testing.T, dir string) {
			if err := os.Chmod(dir, 0o777); err != nil {
				t.Fatal(err)
			}
		}, "state directory: " + "DIR is writable by group or others (mode 777)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "state")
			if err := os.Mkdir(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			tt.plant(t, dir)
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			unlock, err := Lock(ctx, dir)
			if err == nil {
				unlock()
			}
			want := strings.ReplaceAll(tt.want, "DIR", dir)
			if err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("Lock: %v, want …%s…", err, want)
			}
			if b, err := os.ReadFile(target); err != nil || string(b) != "root:secret\n" {
				t.Errorf("the link's target changed: %q, %v", b, err)
			}
		})
	}
}

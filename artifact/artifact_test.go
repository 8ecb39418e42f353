package artifact

import (
	"bytes"
	"errors"
	"os"
	"strings"
	"syscall"
	"testing"

	"github.com/portstripe/portstripe/internal/testenv"
)

// files makes the three artefacts, each size bytes of c.
func files(size int, c byte) map[string][]byte {
	return map[string][]byte{
		"haproxy.cfg": bytes.Repeat([]byte{c}, size),
		"rules.v4":    bytes.Repeat([]byte{c}, size),
		"plan.json":   bytes.Repeat([]byte{c}, size),
	}
}

func TestWriteAllModes(t *testing.T) {
	dir := t.TempDir()
	for _, c := range []byte{'a', 'b'} {
		if err := WriteAll(dir, files(10, c)); err != nil {
			t.Fatal(err)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 6 {
		t.Errorf("want 3 files and 3 .prev, got:\n%s", testenv.Snapshot(t, dir))
	}
	for _, e := range entries {
		if info, _ := e.Info(); info.Mode().Perm() != Mode {
			t.Errorf("%s has mode %v, want %v", e.Name(), info.Mode().Perm(), os.FileMode(Mode))
		}
	}
}

// TestWriteAllFaults: on a full or read-only file system WriteAll fails
// naming the file and the cause, and leaves the previous files, and no
// temporary ones.
func TestWriteAllFaults(t *testing.T) {
	tests := []struct {
		name    string
		breakFS func(t *testing.T, dir string)
		cause   error
	}{
		// A 16 KiB tmpfs holds four pages: the three files written first,
		// and one temporary file of the next version.
		{"full", func(*testing.T, string) {}, syscall.ENOSPC},
		{"read-only", func(t *testing.T, dir string) { testenv.Run(t, "mount", "-o", "remount,ro", dir) }, syscall.EROFS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := testenv.Tmpfs(t, "16k")
			if err := WriteAll(dir, files(100, 'a')); err != nil {
				t.Fatal(err)
			}
			tt.breakFS(t, dir)
			before := testenv.Snapshot(t, dir)
			err := WriteAll(dir, files(1000, 'b'))
			if !errors.Is(err, tt.cause) || !strings.Contains(err.Error(), dir) {
				t.Fatalf("WriteAll: %v, want %v naming %s", err, tt.cause, dir)
			}
			t.Logf("%s: %v", tt.name, err)
			if after := testenv.Snapshot(t, dir); after != before {
				t.Errorf("files changed:\nbefore\n%safter\n%s", before, after)
			}
		})
	}
}

package artifact

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// secret is a file outside the directory that a planted link points at.
func secret(t *testing.T) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "shadow")
	if err := os.WriteFile(path, []byte("root:secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func unchanged(t *testing.T, path string) {
	t.Helper()
	if b, err := os.ReadFile(path); err != nil || string(b) != "root:secret\n" {
		t.Errorf("%s changed: %q, %v", path, b, err)
	}
}

// TestWriteAllPlantedLinks: a symbolic link planted at a file's name or at
// its .prev name is never written through, kept or restored from.
func TestWriteAllPlantedLinks(t *testing.T) {
	t.Run("at the name", func(t *testing.T) {
		dir, target := t.TempDir(), secret(t)
		if err := os.Symlink(target, filepath.Join(dir, "haproxy.cfg")); err != nil {
			t.Fatal(err)
		}
		err := WriteAll(dir, map[string][]byte{"haproxy.cfg": []byte("new\n")})
		if err == nil || !strings.Contains(err.Error(), "is a symbolic link, not a regular file") {
			t.Fatalf("WriteAll: %v, want a refusal naming the link", err)
		}
		unchanged(t, target)
		if err := Restore(dir, "haproxy.cfg"); err != nil {
			t.Fatal(err)
		}
		unchanged(t, target)
	})
	t.Run("at the .prev name", func(t *testing.T) {
		dir, target := t.TempDir(), secret(t)
		if err := WriteAll(dir, map[string][]byte{"rules.v4": []byte("one\n")}); err != nil {
			t.Fatal(err)
		}
		prev := filepath.Join(dir, "rules.v4.prev")
		if err := os.Symlink(target, prev); err != nil {
			t.Fatal(err)
		}
		// Restoring from a planted .prev refuses, and copies nothing.
		if err := Restore(dir, "rules.v4"); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
			t.Errorf("Restore: %v, want a refusal", err)
		}
		if b, _ := os.ReadFile(filepath.Join(dir, "rules.v4")); string(b) != "one\n" {
			t.Errorf("rules.v4 is %q", b)
		}
		// The next write replaces the link with the real previous version.
		if err := WriteAll(dir, map[string][]byte{"rules.v4": []byte("two\n")}); err != nil {
			t.Fatal(err)
		}
		if st, err := os.Lstat(prev); err != nil || !st.Mode().IsRegular() {
			t.Errorf(".prev: %v, %v; want the previous version", st.Mode(), err)
		}
		unchanged(t, target)
	})
}

// TestReadFile: only regular files are read, through no link, without
// hanging on a named pipe, and not without bound.
func TestReadFile(t *testing.T) {
	dir := t.TempDir()
	ok := filepath.Join(dir, "plan.json")
	os.WriteFile(ok, []byte("{}"), 0o600)
	if b, err := ReadFile(ok); err != nil || string(b) != "{}" {
		t.Errorf("regular file: %q, %v", b, err)
	}
	if _, err := ReadFile(filepath.Join(dir, "missing")); !os.IsNotExist(err) {
		t.Errorf("missing file: %v, want not-exist", err)
	}
	link := filepath.Join(dir, "haproxy.cfg.prev")
	os.Symlink(secret(t), link)
	fifo := filepath.Join(dir, "haproxy.cfg")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	big := filepath.Join(dir, "rules.v4")
	f, _ := os.Create(big)
	f.Truncate(MaxFileSize + 1)
	f.Close()
	for path, want := range map[string]string{
		link:             "is a symbolic link, not a regular file",
		fifo:             "is a named pipe (FIFO), not a regular file",
		"/dev/zero":      "is a device, not a regular file",
		big:              "larger than",
		filepath.Dir(ok): "is a directory, not a regular file",
	} {
		if b, err := ReadFile(path); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("ReadFile(%s) = %d bytes, %v; want …%s…", path, len(b), err, want)
		}
	}
}

// TestOpenOwn: a log file is opened for appending only when it is a
// regular file of one name; a planted link or hard link is refused and its
// target left alone.
func TestOpenOwn(t *testing.T) {
	dir, target := t.TempDir(), secret(t)
	link := filepath.Join(dir, "haproxy.log")
	os.Symlink(target, link)
	if f, err := OpenOwn(link, os.O_TRUNC); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		f.Close()
		t.Errorf("symlink: %v", err)
	}
	hard := filepath.Join(dir, "other.log")
	if err := os.Link(target, hard); err != nil {
		t.Fatal(err)
	}
	if f, err := OpenOwn(hard, os.O_APPEND); err == nil || !strings.Contains(err.Error(), "hard links") {
		f.Close()
		t.Errorf("hard link: %v", err)
	}
	unchanged(t, target)
	f, err := OpenOwn(filepath.Join(dir, "new.log"), os.O_APPEND)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
}

// TestOwnedDir: a state or run directory must be the effective user's and
// writable by no one else.
func TestOwnedDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "state")
	if err := OwnedDir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if st, _ := os.Stat(dir); st.Mode().Perm() != 0o700 {
		t.Errorf("created with mode %o, want 700", st.Mode().Perm())
	}
	os.Chmod(dir, 0o775)
	if err := OwnedDir(dir, 0o700); err == nil || !strings.Contains(err.Error(), "is writable by group or others (mode 775)") {
		t.Errorf("group-writable: %v", err)
	}
	if os.Geteuid() == 0 {
		os.Chmod(dir, 0o700)
		os.Chown(dir, 65534, 65534)
		if err := OwnedDir(dir, 0o700); err == nil || !strings.Contains(err.Error(), "is owned by uid 65534, not by uid 0") {
			t.Errorf("foreign owner: %v", err)
		}
	}
}

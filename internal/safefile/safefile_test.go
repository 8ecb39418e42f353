package safefile

import (
	"errors"
	"net"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestRead: only a regular file is read, and at most the cap; everything
// else is refused at once with an error naming the path and what it is.
func TestRead(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "sock")
	l, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	zero := filepath.Join(dir, "zero")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:        fifo + " is a named pipe (FIFO), not a regular file",
		sock:        sock + " is a socket, not a regular file",
		"/dev/zero": "/dev/zero is a device, not a regular file",
		zero:        zero + " is a device, not a regular file",
		dir:         dir + " is a directory, not a regular file",
	} {
		done := make(chan error, 1)
		go func() { _, err := Read(path, 10); done <- err }()
		select {
		case err := <-done:
			if err == nil || err.Error() != want {
				t.Errorf("%s: %v, want %s", path, err, want)
			}
		case <-time.After(10 * time.Second): // a hang, not a timing check
			t.Fatalf("%s: Read hangs", path)
		}
	}
	f := filepath.Join(dir, "f")
	if err := os.WriteFile(f, []byte("0123456789"), 0o600); err != nil {
		t.Fatal(err)
	}
	if b, err := Read(f, 10); err != nil || string(b) != "0123456789" {
		t.Errorf("at the cap: %q, %v", b, err)
	}
	if _, err := Read(f, 9); !errors.Is(err, ErrTooLarge) || err.Error() != f+" is larger than 9 bytes: file too large" {
		t.Errorf("over the cap: %v", err)
	}
}

// TestReadNoFollow: with NoFollow a symbolic link at the name is refused,
// whatever it points at; without, its target is read.
func TestReadNoFollow(t *testing.T) {
	dir := t.TempDir()
	target := filepath.Join(dir, "target")
	if err := os.WriteFile(target, []byte("secret"), 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(dir, "link")
	if err := os.Symlink(target, link); err != nil {
		t.Fatal(err)
	}
	if b, err := ReadWith(link, 10, NoFollow); err == nil || err.Error() != link+" is a symbolic link, not a regular file" {
		t.Errorf("NoFollow: %q, %v", b, err)
	}
	if b, err := Read(link, 10); err != nil || string(b) != "secret" {
		t.Errorf("following: %q, %v", b, err)
	}
}

// Package safefile reads files an operator names (a node file, a captured
// packet) without trusting what the name points at: only a regular file is
// read, and never more than a cap, so a FIFO, a device such as /dev/zero or
// a directory is refused at once instead of hanging or eating memory. With
// NoFollow it also refuses a symbolic link at the name, for the files a
// program keeps in a directory of its own (portstripe's state files).
package safefile

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"syscall"
)

// ErrTooLarge is returned (wrapped) for a file longer than the cap.
var ErrTooLarge = errors.New("file too large")

// NoFollow, given to Open or ReadWith, refuses a symbolic link at the
// path's last component instead of reading its target.
const NoFollow = syscall.O_NOFOLLOW

// Read returns the content of the regular file at path, at most limit bytes;
// a longer file is an error wrapping ErrTooLarge. Every error names path.
func Read(path string, limit int64) ([]byte, error) { return ReadWith(path, limit, 0) }

// ReadWith is Read with open flags added (NoFollow).
func ReadWith(path string, limit int64, flags int) ([]byte, error) {
	f, err := Open(path, flags)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err // *fs.PathError, naming path
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s is larger than %d bytes: %w", path, limit, ErrTooLarge)
	}
	return data, nil
}

// Open opens the regular file at path for reading, with flags added
// (NoFollow); anything else at path is an error naming what it is.
func Open(path string, flags int) (*os.File, error) {
	// O_NONBLOCK: opening a FIFO for reading would otherwise wait for a
	// writer. It changes nothing for the regular files that get read.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK|syscall.O_NOCTTY|syscall.O_CLOEXEC|flags, 0)
	if err != nil {
		// A Unix socket cannot be opened at all (ENXIO), a link with
		// NoFollow neither (ELOOP); say what it is.
		return nil, Refusal(path, flags, err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = NotRegular(path, fi.Mode())
	}
	if err != nil {
		f.Close()
		return nil, err // *fs.PathError, naming path
	}
	return f, nil
}

// Refusal explains a failed open of path with flags: what is there, when
// it is not a regular file, or else err itself.
func Refusal(path string, flags int, err error) error {
	stat := os.Stat
	if flags&NoFollow != 0 {
		stat = os.Lstat
	}
	if fi, serr := stat(path); serr == nil && !fi.Mode().IsRegular() {
		return NotRegular(path, fi.Mode())
	}
	return err
}

// NotRegular says that path is something other than a regular file.
func NotRegular(path string, m fs.FileMode) error {
	return fmt.Errorf("%s is %s, not a regular file", path, Kind(m))
}

// Kind names a file's type for an error: "a directory", "a named pipe
// (FIFO)", …
func Kind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe (FIFO)"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeDevice != 0:
		return "a device"
	}
	return "a special file"
}

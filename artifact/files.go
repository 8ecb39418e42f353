package artifact

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"

	"github.com/portstripe/portstripe/internal/safefile"
)

// MaxFileSize bounds what ReadFile reads: the biggest state file (plan.json
// of 20,000 services) is a few megabytes.
const MaxFileSize = 64 << 20

// ReadFile reads a file portstripe keeps in its state or output directory:
// only a regular file, never through a symbolic link (a link planted there
// would otherwise have another file's content printed in a diff or
// restored as haproxy.cfg), without blocking on a named pipe, and at most
// MaxFileSize bytes. A missing file is fs.ErrNotExist, as with os.ReadFile.
func ReadFile(path string) ([]byte, error) {
	data, err := safefile.ReadWith(path, MaxFileSize, safefile.NoFollow)
	if errors.Is(err, safefile.ErrTooLarge) {
		return nil, fmt.Errorf("%s: larger than %d bytes; not a file portstripe wrote", path, MaxFileSize)
	}
	return data, err
}

// Open opens a file of portstripe's for reading as ReadFile does: a
// regular file, not through a link, without blocking on a named pipe.
func Open(path string) (*os.File, error) { return safefile.Open(path, safefile.NoFollow) }

// OpenOwn opens (creating it if missing) a file of portstripe's own in a
// directory it owns, for writing, with flags added (os.O_APPEND, …): never
// through a symbolic link, and only a regular file with one name, so that
// a link planted at the name cannot make portstripe write or truncate
// another file.
func OpenOwn(path string, flags int) (*os.File, error) {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|flags|safefile.NoFollow|syscall.O_NONBLOCK|syscall.O_CLOEXEC, Mode)
	if err != nil {
		// ELOOP for a link; ENXIO for a named pipe without a reader.
		return nil, safefile.Refusal(path, safefile.NoFollow, err)
	}
	st, err := f.Stat()
	if err == nil && !st.Mode().IsRegular() {
		err = safefile.NotRegular(path, st.Mode())
	}
	if err == nil && st.Sys().(*syscall.Stat_t).Nlink > 1 {
		err = fmt.Errorf("%s has other names (hard links); portstripe writes only files of its own", path)
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// OwnedDir makes dir with mode when it is missing; an existing one must be
// a directory (not a symbolic link) owned by the effective user (root on
// a node) that no one else can write: whoever can write there could plant
// the rules and configuration portstripe loads as root.
func OwnedDir(dir string, mode fs.FileMode) error {
	st, err := os.Lstat(dir)
	if errors.Is(err, fs.ErrNotExist) {
		if err := os.MkdirAll(filepath.Dir(dir), 0o755); err != nil {
			return err
		}
		if err := os.Mkdir(dir, mode); err != nil && !errors.Is(err, fs.ErrExist) {
			return err
		}
		// Mkdir's mode is cut by the umask; the mode asked for is meant.
		if err := os.Chmod(dir, mode); err != nil {
			return err
		}
		st, err = os.Lstat(dir)
	}
	if err != nil {
		return err
	}
	if !st.IsDir() {
		return fmt.Errorf("%s is %s, not a directory of portstripe's own", dir, safefile.Kind(st.Mode()))
	}
	if uid := st.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
		return fmt.Errorf("%s is owned by uid %d, not by uid %d (root on a node); portstripe keeps its files only in a directory of its own", dir, uid, os.Geteuid())
	}
	if st.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s is writable by group or others (mode %o), so anyone could plant what portstripe loads as root: chmod go-w %s", dir, st.Mode().Perm(), dir)
	}
	return nil
}

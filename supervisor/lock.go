package supervisor

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/portstripe/portstripe/artifact"
)

// LockFile is the file in the state directory that serialises applies, so
// two at once never interleave their writes, restores and reloads.
const LockFile = ".portstripe.lock"

// Lock takes the apply lock of dir, waiting until ctx ends; the error then
// names the process holding it. dir is created 0700 if missing, and
// refused when it is not the effective user's (root's) or others can
// write it: what is in it is loaded as root. The lock file is opened
// without following a link and only when it is a regular file of its own,
// so a planted link cannot make it truncate another file.
func Lock(ctx context.Context, dir string) (unlock func(), err error) {
	if err := artifact.OwnedDir(dir, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	path := filepath.Join(dir, LockFile)
	f, err := artifact.OpenOwn(path, 0)
	if err != nil {
		return nil, fmt.Errorf("lock: %w", err)
	}
	for {
		err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB)
		if err == nil {
			break
		}
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			f.Close()
			return nil, fmt.Errorf("lock %s: %w", path, err)
		}
		select {
		case <-ctx.Done():
			holder, _ := artifact.ReadFile(path)
			f.Close()
			return nil, fmt.Errorf("another portstripe (pid %s) is applying to %s; gave up waiting: %w", strings.TrimSpace(string(holder)), dir, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return func() {
		f.Truncate(0)
		syscall.Flock(int(f.Fd()), syscall.LOCK_UN)
		f.Close()
	}, nil
}

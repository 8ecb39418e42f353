// Package artifact writes compiled files so that a reader never sees half of
// one: each goes to a temporary file in the same directory, is synced, and
// is renamed over the old one, which is kept as NAME.prev for rollback.
package artifact

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"

	"github.com/portstripe/portstripe/internal/safefile"
)

// Mode is the permission of written files: they describe a node's routing
// and sockets, which is root's business.
const Mode = 0o600

// WriteAll writes every file into dir, all or nothing: if one fails, the
// ones already renamed are put back.
func WriteAll(dir string, files map[string][]byte) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("write files: %w", err)
	}
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	tmps := map[string]string{}
	defer func() {
		for _, t := range tmps {
			os.Remove(t)
		}
	}()
	for _, n := range names {
		t, err := writeTemp(dir, n, files[n])
		if err != nil {
			return fmt.Errorf("write %s: %w", filepath.Join(dir, n), err)
		}
		tmps[n] = t
	}
	var done []string
	for _, n := range names {
		if err := replace(dir, n, tmps[n]); err != nil {
			err = fmt.Errorf("write %s: %w", filepath.Join(dir, n), err)
			return errors.Join(err, Restore(dir, done...))
		}
		delete(tmps, n)
		done = append(done, n)
	}
	return nil
}

func writeTemp(dir, name string, data []byte) (string, error) {
	f, err := os.CreateTemp(dir, "."+name+".tmp-*")
	if err != nil {
		return "", err
	}
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(Mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(f.Name())
		return "", err
	}
	return f.Name(), nil
}

// replace keeps the current file as NAME.prev (a hard link, so the current
// name never disappears) and renames tmp over it. Anything but a regular
// file at NAME is refused: a symbolic link kept as NAME.prev would have
// its target restored later. (The temporary name is made with O_EXCL, so
// nothing planted there is followed either.)
func replace(dir, name, tmp string) error {
	cur, prev := filepath.Join(dir, name), filepath.Join(dir, name+".prev")
	st, err := os.Lstat(cur)
	if err == nil && !st.Mode().IsRegular() {
		return safefile.NotRegular(cur, st.Mode())
	}
	if err == nil {
		os.Remove(prev)
		if err := os.Link(cur, prev); err != nil {
			return fmt.Errorf("keep previous version: %w", err)
		}
	} else {
		// No previous version: a stale .prev would restore the wrong file.
		os.Remove(prev)
	}
	return os.Rename(tmp, cur)
}

// Restore puts NAME.prev back for each name (removing NAME when there was
// no previous version).
func Restore(dir string, names ...string) error {
	var errs []error
	for _, n := range names {
		cur, prev := filepath.Join(dir, n), filepath.Join(dir, n+".prev")
		if _, err := os.Lstat(prev); err != nil {
			if err := os.Remove(cur); err != nil && !os.IsNotExist(err) {
				errs = append(errs, err)
			}
			continue
		}
		t, err := ReadFile(prev)
		if err == nil {
			var tmp string
			if tmp, err = writeTemp(dir, n, t); err == nil {
				err = os.Rename(tmp, cur)
			}
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("restore %s: %w", cur, err))
		}
	}
	return errors.Join(errs...)
}

// Retire moves files that are no longer part of the state to NAME.prev, so
// that Restore puts them back; a missing one is skipped.
func Retire(dir string, names ...string) error {
	var errs []error
	for _, n := range names {
		cur, prev := filepath.Join(dir, n), filepath.Join(dir, n+".prev")
		st, err := os.Lstat(cur)
		switch {
		case os.IsNotExist(err):
			continue
		case err != nil:
			errs = append(errs, err)
			continue
		case !st.Mode().IsRegular():
			errs = append(errs, safefile.NotRegular(cur, st.Mode()))
			continue
		}
		os.Remove(prev)
		if err := os.Rename(cur, prev); err != nil {
			errs = append(errs, fmt.Errorf("retire %s: %w", cur, err))
		}
	}
	return errors.Join(errs...)
}

// WriteFile writes one file at path atomically (a temporary file in the
// same directory, synced, renamed over it), with Mode; no NAME.prev is
// kept. For a file that stands alone, such as a saved apply plan.
func WriteFile(path string, data []byte) error {
	t, err := writeTemp(filepath.Dir(path), filepath.Base(path), data)
	if err == nil {
		if err = os.Rename(t, path); err != nil {
			os.Remove(t)
		}
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

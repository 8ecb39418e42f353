// Package sysexec runs the firewall tools (iptables-restore, nft, ip) for
// the backends, in this process's network namespace or in another one, behind
// a Runner that tests swap for a recorder.
package sysexec

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"golang.org/x/sys/unix"
)

// Command is one program run: what iptables-restore, nft and ip are asked
// to do.
type Command struct {
	Name  string
	Args  []string
	Stdin []byte
}

func (c Command) String() string {
	words := []string{c.Name}
	for _, a := range c.Args {
		if strings.ContainsAny(a, " \t") {
			a = `"` + strings.ReplaceAll(a, `"`, `\"`) + `"`
		}
		words = append(words, a)
	}
	return strings.Join(words, " ")
}

// In returns the command run in the named network namespace (made by `ip
// netns add`); none leaves it unchanged.
func (c Command) In(netns string) Command {
	if netns == "" {
		return c
	}
	return Command{Name: "ip", Args: append([]string{"netns", "exec", netns, c.Name}, c.Args...), Stdin: c.Stdin}
}

// Runner runs commands. OS runs them for real; tests swap in a recorder.
type Runner interface {
	Run(ctx context.Context, c Command) (stdout []byte, err error)
}

// OS runs commands on this machine.
type OS struct{}

// Run runs c; a failure carries the command and its stderr.
func (OS) Run(ctx context.Context, c Command) ([]byte, error) {
	cmd := exec.CommandContext(ctx, c.Name, c.Args...)
	if c.Stdin != nil {
		cmd.Stdin = bytes.NewReader(c.Stdin)
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.Bytes(), &ExecError{Command: c, Stderr: strings.TrimSpace(stderr.String()), Err: err}
	}
	return stdout.Bytes(), nil
}

// ExecError is a command that failed.
type ExecError struct {
	Command Command
	Stderr  string
	Err     error
}

func (e *ExecError) Error() string {
	msg := fmt.Sprintf("%s: %v", e.Command, e.Err)
	if e.Stderr != "" {
		msg += ": " + e.Stderr
	}
	return msg
}

func (e *ExecError) Unwrap() error { return e.Err }

// InNetns runs f on an OS thread that has entered the named network
// namespace (as made by `ip netns add`). Sockets f opens and processes it
// starts belong to that namespace. The thread is handed back to the Go
// scheduler only once it is back in this process's namespace, so no other
// goroutine ends up in the namespace, and the main thread is never left there.
func InNetns(netns string, f func() error) error {
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		// The thread goes back to this process's namespace before it is
		// unlocked; if it cannot, it stays locked and exits with the
		// goroutine (or, being the main thread, is parked by the runtime).
		restored := false
		defer func() {
			if restored {
				runtime.UnlockOSThread()
			}
		}()
		done <- func() error {
			self, err := unix.Open("/proc/thread-self/ns/net", unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				return fmt.Errorf("open own network namespace: %w", err)
			}
			defer unix.Close(self)
			fd, err := unix.Open(filepath.Join("/run/netns", netns), unix.O_RDONLY|unix.O_CLOEXEC, 0)
			if err != nil {
				restored = true
				return fmt.Errorf("open network namespace %s: %w", netns, err)
			}
			defer unix.Close(fd)
			if err := unix.Setns(fd, unix.CLONE_NEWNET); err != nil {
				restored = true
				return fmt.Errorf("enter network namespace %s: %w", netns, err)
			}
			err = f()
			restored = unix.Setns(self, unix.CLONE_NEWNET) == nil
			return err
		}()
	}()
	return <-done
}

// Throwaway runs f in a network namespace of its own (`ip netns add
// portstripe-check-<pid>-<random>`), deleted afterwards even when ctx is
// cancelled: where a backend loads rules to check them. It needs root.
func Throwaway(ctx context.Context, r Runner, f func(netns string) error) (err error) {
	var suffix [4]byte
	if _, err := rand.Read(suffix[:]); err != nil {
		return err
	}
	ns := fmt.Sprintf("portstripe-check-%d-%s", os.Getpid(), hex.EncodeToString(suffix[:]))
	if _, err := r.Run(ctx, Command{Name: "ip", Args: []string{"netns", "add", ns}}); err != nil {
		return err
	}
	defer func() {
		// Not ctx: the namespace goes even when the check was cancelled.
		if _, derr := r.Run(context.Background(), Command{Name: "ip", Args: []string{"netns", "delete", ns}}); derr != nil && err == nil {
			err = derr
		}
	}()
	return f(ns)
}

// IsRoot reports whether this process may create network namespaces.
func IsRoot() bool { return os.Geteuid() == 0 }

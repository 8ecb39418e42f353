package haproxy

import (
	"context"
	"errors"
	"fmt"
	"os/exec"
	"regexp"
	"strings"
)

// ErrNotInstalled is returned (wrapped) when the haproxy binary is missing.
var ErrNotInstalled = errors.New("haproxy binary not found")

// Runner runs a program; the real one is os/exec, tests record the calls.
type Runner interface {
	LookPath(file string) (string, error)
	// CombinedOutput runs name with args and returns stdout and stderr
	// together; err is non-nil when it could not run or exited non-zero.
	CombinedOutput(ctx context.Context, name string, args ...string) ([]byte, error)
}

// ExecRunner is the Runner that runs real programs.
type ExecRunner struct{}

func (ExecRunner) LookPath(file string) (string, error) { return exec.LookPath(file) }

func (ExecRunner) CombinedOutput(ctx context.Context, name string, args ...string) ([]byte, error) {
	return exec.CommandContext(ctx, name, args...).CombinedOutput()
}

// Checker validates configuration files with `haproxy -c`.
type Checker struct {
	// Binary is the haproxy program; empty means "haproxy" from PATH.
	Binary string
	// ZeroWarning adds -dW, so a warning fails the check too. Tests use it
	// to keep the generated config warning-free.
	ZeroWarning bool
	Runner      Runner // nil means ExecRunner
}

// Check runs `haproxy -c -f cfgPath` with the default Checker.
func Check(ctx context.Context, cfgPath string) error {
	return Checker{}.Check(ctx, cfgPath)
}

// CheckError is a configuration HAProxy refused, with its messages.
type CheckError struct {
	Path string
	// Lines are HAProxy's ALERT and WARNING messages, without the process
	// id, continuation lines joined to their message.
	Lines []string
	Err   error // the exit status
}

func (e *CheckError) Error() string {
	msg := "no message"
	if len(e.Lines) > 0 {
		msg = strings.Join(e.Lines, "; ")
	}
	return fmt.Sprintf("haproxy check %s: %v: %s", e.Path, e.Err, msg)
}

func (e *CheckError) Unwrap() error { return e.Err }

// Check runs `haproxy -c -f cfgPath` (with -dW when ZeroWarning is set).
func (c Checker) Check(ctx context.Context, cfgPath string) error {
	r := c.Runner
	if r == nil {
		r = ExecRunner{}
	}
	bin := c.Binary
	if bin == "" {
		bin = "haproxy"
	}
	path, err := r.LookPath(bin)
	if err != nil {
		return fmt.Errorf("haproxy check: %w: %q is not installed or not in PATH (Debian: apt-get install haproxy): %v", ErrNotInstalled, bin, err)
	}
	args := []string{"-c", "-f", cfgPath}
	if c.ZeroWarning {
		args = append([]string{"-dW"}, args...)
	}
	out, err := r.CombinedOutput(ctx, path, args...)
	if ctxErr := ctx.Err(); ctxErr != nil {
		return fmt.Errorf("haproxy check %s: %w", cfgPath, ctxErr)
	}
	if err != nil {
		var exitErr *exec.ExitError
		if !errors.As(err, &exitErr) && len(out) == 0 {
			return fmt.Errorf("haproxy check %s: running %s: %w", cfgPath, path, err)
		}
		ce := &CheckError{Path: cfgPath, Lines: messages(out), Err: err}
		if m := accountRE.FindSubmatch(out); m != nil {
			return fmt.Errorf("haproxy.%s: no %s %q on this machine for HAProxy's workers to run as: install Debian's haproxy package (it creates user and group haproxy), create it (adduser --system --group %s), or name another in the node file: %w", m[1], m[1], m[2], m[2], ce)
		}
		return ce
	}
	return nil
}

// accountRE matches HAProxy's complaint about the global user or group,
// "cannot find user id for 'haproxy' (0:Success)": the machine lacks the
// account the node file names.
var accountRE = regexp.MustCompile(`cannot find (user|group) id for '([^']*)'`)

// msgRE matches "[ALERT]    (8889) : config : text": level, then text.
var msgRE = regexp.MustCompile(`^\[(ALERT|WARNING)\]\s*(?:\(\d+\)\s*)?:\s*(.*)$`)

// messages keeps HAProxy's alerts and warnings; NOTICE lines (version,
// executable path) say nothing about the config.
func messages(out []byte) []string {
	var lines []string
	keep := false
	for _, l := range strings.Split(string(out), "\n") {
		if m := msgRE.FindStringSubmatch(l); m != nil {
			lines = append(lines, m[1]+": "+strings.TrimSpace(m[2]))
			keep = true
			continue
		}
		t := strings.TrimSpace(l)
		if keep && strings.HasPrefix(t, "|") {
			lines[len(lines)-1] += " " + strings.TrimSpace(strings.TrimPrefix(t, "|"))
			continue
		}
		keep = false
	}
	return lines
}

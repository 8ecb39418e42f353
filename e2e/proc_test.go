//go:build e2e

package e2e

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// proc is a long-running program (server, HAProxy) started by the suite in its
// own process group, with its output in a log file.
type proc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

// startProc starts cmd with stdout and stderr in logPath and stops its whole
// process group when the test ends or is interrupted.
func startProc(t *testing.T, name string, cmd *exec.Cmd, logPath string) *proc {
	t.Helper()
	f, err := os.Create(logPath)
	if err != nil {
		t.Fatalf("%s: log file: %v", name, err)
	}
	cmd.Stdout, cmd.Stderr = f, f
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		f.Close()
		t.Fatalf("start %s: %v", name, err)
	}
	p := &proc{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	t.Cleanup(atExit(p.stop))
	return p
}

// stop ends the process group: SIGTERM, then SIGKILL after two seconds.
func (p *proc) stop() {
	pgid := p.cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// exited reports whether the process has ended.
func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// logText returns what the process has logged so far.
func (p *proc) logText() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// waitLog waits until the log holds want, failing if the process exits first
// or the timeout passes.
func (p *proc) waitLog(want string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if strings.Contains(p.logText(), want) {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited (%v) before logging %q:\n%s", p.name, p.err, want, tail(p.logText(), 20))
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s did not log %q within %s:\n%s", p.name, want, timeout, tail(p.logText(), 20))
}

// watchLines runs cmd (a client), copying its output to logPath, until a line
// contains want (true), the process exits or the timeout passes (false). The
// process group is killed before it returns; the lines are returned.
func watchLines(cmd *exec.Cmd, logPath, want string, timeout time.Duration) (bool, string, error) {
	f, err := os.Create(logPath)
	if err != nil {
		return false, "", err
	}
	defer f.Close()
	pr, pw := io.Pipe()
	cmd.Stdout, cmd.Stderr = pw, pw
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		return false, "", fmt.Errorf("start %s: %w", cmd.Path, err)
	}
	stopOnExit := atExit(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	var (
		mu    sync.Mutex
		lines strings.Builder
		found = make(chan struct{})
		once  sync.Once
	)
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			mu.Lock()
			lines.WriteString(line + "\n")
			mu.Unlock()
			fmt.Fprintln(f, line)
			if strings.Contains(line, want) {
				once.Do(func() { close(found) })
			}
		}
		io.Copy(io.Discard, pr)
	}()
	exited := make(chan struct{})
	go func() { cmd.Wait(); pw.Close(); close(exited) }()

	ok := false
	select {
	case <-found:
		ok = true
	case <-exited:
	case <-time.After(timeout):
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-exited:
	case <-time.After(2 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-exited
	}
	stopOnExit()
	<-scanned
	select {
	case <-found:
		ok = true
	default:
	}
	mu.Lock()
	defer mu.Unlock()
	return ok, lines.String(), nil
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

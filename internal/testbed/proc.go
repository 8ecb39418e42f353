package testbed

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proc is a long-running program (server, HAProxy, sslh) in its own process
// group, with its output in a log file.
type Proc struct {
	Name string
	Cmd  *exec.Cmd
	Log  string
	done chan struct{}
	err  error
	stop func()
}

// Start starts cmd (from Netns.Command, or any *exec.Cmd) with stdout and
// stderr (unless set) written to logPath, which it empties first. Stop,
// RunAll, a handled signal or a panic caught by Guard end its whole process
// group.
func Start(name string, cmd *exec.Cmd, logPath string) (*Proc, error) {
	f, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("%s: log file: %w", name, err)
	}
	if cmd.Stdout == nil {
		cmd.Stdout = f
	}
	if cmd.Stderr == nil {
		cmd.Stderr = f
	}
	if cmd.SysProcAttr == nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{}
	}
	cmd.SysProcAttr.Setpgid = true
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &Proc{Name: name, Cmd: cmd, Log: logPath, done: make(chan struct{})}
	go func() {
		p.err = cmd.Wait()
		f.Close()
		close(p.done)
	}()
	p.stop = AtExit(p.kill)
	p.waitInNetns()
	return p, nil
}

// waitInNetns returns once a process started with `ip netns exec NS` is in
// NS (or has exited): until then `ip netns pids` does not list it, and a
// Delete in that moment would leave it running in the deleted namespace.
func (p *Proc) waitInNetns() {
	a := p.Cmd.Args
	if len(a) < 4 || filepath.Base(a[0]) != "ip" || a[1] != "netns" || a[2] != "exec" {
		return
	}
	var want syscall.Stat_t
	if syscall.Stat(filepath.Join("/run/netns", a[3]), &want) != nil {
		return
	}
	path := fmt.Sprintf("/proc/%d/ns/net", p.Cmd.Process.Pid)
	for deadline := time.Now().Add(2 * time.Second); time.Now().Before(deadline); {
		var got syscall.Stat_t
		if syscall.Stat(path, &got) != nil || (got.Dev == want.Dev && got.Ino == want.Ino) {
			return
		}
		select {
		case <-p.done:
			return
		case <-time.After(time.Millisecond):
		}
	}
}

// Stop ends the process group: SIGTERM, SIGKILL after two seconds.
func (p *Proc) Stop() { p.stop() }

func (p *Proc) kill() {
	pgid := p.Cmd.Process.Pid
	syscall.Kill(-pgid, syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(2 * time.Second):
		syscall.Kill(-pgid, syscall.SIGKILL)
		<-p.done
	}
}

// Done is closed when the process has exited; Err is then its Wait error.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Err is the process's exit error, once Done is closed.
func (p *Proc) Err() error { return p.err }

// Exited reports whether the process has ended.
func (p *Proc) Exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// LogText returns what the process has logged so far.
func (p *Proc) LogText() string {
	b, _ := os.ReadFile(p.Log)
	return string(b)
}

// WaitFor polls ready every 20 ms until it returns nil, failing when the
// process exits first or the timeout passes (with the log's last lines).
func (p *Proc) WaitFor(timeout time.Duration, ready func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.Exited() {
			return fmt.Errorf("%s exited (%v) before it was ready: %v\n%s", p.Name, p.err, err, Tail(p.LogText(), 20))
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not ready within %s: %v\n%s", p.Name, timeout, err, Tail(p.LogText(), 20))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitLog waits until the log holds want, failing when the process exits
// first or the timeout passes.
func (p *Proc) WaitLog(want string, timeout time.Duration) error {
	return p.WaitFor(timeout, func() error {
		if strings.Contains(p.LogText(), want) {
			return nil
		}
		return fmt.Errorf("no %q in its log", want)
	})
}

// WatchLines runs cmd (a client) in a process group of its own, copying its
// output to logPath, until a line contains want (true), the process exits
// or the timeout passes (false). The process group is ended before it
// returns (also by RunAll meanwhile); the lines are returned.
func WatchLines(cmd *exec.Cmd, logPath, want string, timeout time.Duration) (bool, string, error) {
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
	stopOnExit := AtExit(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
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

// Tail returns the last n lines of s.
func Tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}

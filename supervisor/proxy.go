package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/haproxy"
)

// LogFile is the file in the state directory that a master started by a
// one-shot apply writes its output to.
const LogFile = "haproxy.log"

// HAProxy is the HAProxy master portstripe drives: started here in
// master-worker mode (`haproxy -W -S <master socket> -f <cfg>`), or, when
// one already answers on the master socket, attached to. A master always
// runs in a session of its own, so it outlives the portstripe that started
// it: stopping or restarting `portstripe run`, or a one-shot apply exiting,
// drops no client's session.
type HAProxy struct {
	Bin    string // haproxy binary; "haproxy" when empty
	Config string // haproxy.cfg path
	// RunDir holds the sockets and the workers' chroot (haproxy.run_dir).
	RunDir        string
	MasterSocket  string
	RuntimeSocket string
	// LogFile receives the master's output. An apply reads the ALERT lines
	// a failed reload appended to it, so the error says why even though the
	// master outlived the portstripe that started it.
	LogFile string
	Log     *slog.Logger
	// VerifyTimeout bounds FrontendsUp; 0 means 5s.
	VerifyTimeout time.Duration

	mu      sync.Mutex
	exited  chan struct{} // closed when a master this process started exits
	master  *haproxy.Master
	runtime *haproxy.Runtime
}

// observeTimeout bounds one look at HAProxy: a master that takes longer to
// answer "show proc" counts as not answering.
const observeTimeout = 2 * time.Second

func (h *HAProxy) clients() (*haproxy.Master, *haproxy.Runtime) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.master == nil {
		h.master = haproxy.NewMaster(h.MasterSocket, nil)
		h.runtime = haproxy.NewRuntime(h.RuntimeSocket, nil)
	}
	return h.master, h.runtime
}

// Alive reports whether a master answers on the master socket.
func (h *HAProxy) Alive(ctx context.Context) bool { return h.probe(ctx) == nil }

// Observe reads what runs: the master's processes, and the configuration
// hash and servers of its current worker.
func (h *HAProxy) Observe(ctx context.Context) ProxyState {
	m, _ := h.clients()
	return observeProxy(ctx, m)
}

// probe asks the master for "show proc", waiting at most a second.
func (h *HAProxy) probe(ctx context.Context) error {
	m, _ := h.clients()
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err := m.ShowProc(ctx)
	return err
}

// Procs returns the master's "show proc".
func (h *HAProxy) Procs(ctx context.Context) (haproxy.Procs, error) {
	m, _ := h.clients()
	return m.ShowProc(ctx)
}

// Stats returns "show stat" summed over every live worker, old ones that
// still carry sessions after a reload included (each worker counts only
// its own; the stats socket reaches only the newest). An old worker that
// exits while asked is left out.
func (h *HAProxy) Stats(ctx context.Context) ([]haproxy.Stat, error) {
	m, r := h.clients()
	ps, err := m.ShowProc(ctx)
	if err != nil {
		// No master: what the stats socket says, if anything.
		return r.ShowStat(ctx)
	}
	var all [][]haproxy.Stat
	for _, w := range append(slices.Clone(ps.Workers), ps.OldWorkers...) {
		if rows, err := m.ShowStatOf(ctx, w.PID); err == nil {
			all = append(all, rows)
		}
	}
	if len(all) == 0 {
		return r.ShowStat(ctx)
	}
	return haproxy.SumStats(all[0], all[1:]...), nil
}

// Start starts a master on the current configuration and waits until its
// socket answers.
func (h *HAProxy) Start(ctx context.Context) error {
	bin := h.Bin
	if bin == "" {
		bin = "haproxy"
	}
	path, err := exec.LookPath(bin)
	if err != nil {
		return fmt.Errorf("start haproxy: %w (install Debian's haproxy package)", err)
	}
	// A socket that accepts but does not answer may be a hung master still
	// holding the listeners: a second one would serve beside it.
	if err := h.probe(ctx); errors.Is(err, context.DeadlineExceeded) {
		return fmt.Errorf("start haproxy: master socket %s accepts connections but does not answer; not starting a second master beside a hung one (stop it, or remove the socket): %w", h.MasterSocket, err)
	}
	if err := haproxy.PrepareRunDir(h.RunDir, h.MasterSocket, h.RuntimeSocket); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	// A master killed with -9 leaves its socket file behind; HAProxy
	// refuses to bind over it. PrepareRunDir made sure it is a socket, in
	// a directory no one but root can write.
	os.Remove(h.MasterSocket)
	out, err := h.newLogFile()
	if err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	defer out.Close()
	cmd := exec.Command(path, "-W", "-S", h.MasterSocket+",mode,600", "-f", h.Config)
	// Its own session: no signal meant for portstripe (a terminal's ^C, a
	// unit's KillMode=process stop) reaches it.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start haproxy: %w", err)
	}
	exited := make(chan struct{})
	go func() {
		cmd.Wait()
		close(exited)
	}()
	h.mu.Lock()
	h.exited = exited
	h.mu.Unlock()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if h.Alive(ctx) {
			h.Log.Info("haproxy master started", "pid", cmd.Process.Pid, "master_socket", h.MasterSocket)
			return nil
		}
		select {
		case <-exited:
			err := fmt.Errorf("start haproxy: %s exited (%v) before its master socket answered", path, cmd.ProcessState)
			return withAlerts(err, h.alertsFor(0))
		case <-ctx.Done():
			return fmt.Errorf("start haproxy: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("start haproxy: master socket %s did not answer within 10s", h.MasterSocket)
}

// Exited is closed when a master started by this process exits; nil when
// none was (an adopted master's death is seen by polling).
func (h *HAProxy) Exited() <-chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.exited
}

// stopGrace is how long Stop lets a soft-stopping master finish its
// connections before it is terminated.
const stopGrace = 5 * time.Second

// Stop stops the master answering on the socket, and its workers: SIGUSR1
// is HAProxy's soft stop (listeners close, connections finish), SIGTERM to
// its session after stopGrace. It is for tearing down (--cleanup) and for a
// rollback to "nothing served", never for a restart of portstripe.
func (h *HAProxy) Stop(ctx context.Context) error {
	ps, err := h.Procs(ctx)
	if err != nil {
		return fmt.Errorf("stop haproxy: %w", err)
	}
	pid := ps.Master.PID
	if err := syscall.Kill(pid, syscall.SIGUSR1); err != nil {
		return fmt.Errorf("stop haproxy: master %d: %w", pid, err)
	}
	deadline := time.Now().Add(stopGrace)
	for syscall.Kill(pid, 0) == nil {
		if time.Now().After(deadline) {
			// The master leads its session and process group.
			syscall.Kill(-pid, syscall.SIGTERM)
			deadline = time.Now().Add(stopGrace)
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("stop haproxy: %w", ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
	h.Log.Info("haproxy stopped", "master_pid", pid)
	return nil
}

// Check validates a configuration file with `haproxy -c`.
func (h *HAProxy) Check(ctx context.Context, cfgPath string) error {
	return haproxy.Check(ctx, cfgPath)
}

// Reload makes the master load the configuration on disk.
func (h *HAProxy) Reload(ctx context.Context) error {
	// The new worker binds the stats socket afresh, over what is there.
	if err := haproxy.PrepareRunDir(h.RunDir, h.MasterSocket, h.RuntimeSocket); err != nil {
		return fmt.Errorf("haproxy reload: %w", err)
	}
	m, _ := h.clients()
	logged := h.logSize()
	ps, err := m.Reload(ctx)
	if err != nil {
		// The master CLI says only that the reload failed; why is in the
		// ALERT lines the master printed on its output.
		time.Sleep(100 * time.Millisecond)
		return withAlerts(err, h.alertsFor(logged))
	}
	h.Log.Info("haproxy reloaded", "master_pid", ps.Master.PID, "reloads", ps.Master.Reloads, "workers", haproxy.PIDs(ps.Workers))
	return nil
}

// SetServerState puts a server in or out of maintenance without a reload.
func (h *HAProxy) SetServerState(ctx context.Context, backend, server string, enabled bool) error {
	_, r := h.clients()
	if enabled {
		return r.EnableServer(ctx, backend, server)
	}
	return r.DisableServer(ctx, backend, server)
}

// SetServerAddr changes a server's address without a reload.
func (h *HAProxy) SetServerAddr(ctx context.Context, backend, server string, addr netip.AddrPort) error {
	_, r := h.clients()
	return r.SetServerAddr(ctx, backend, server, addr)
}

// FrontendsUp checks through the runtime API that every named frontend is
// open, retrying briefly while a new worker takes over the stats socket.
// VerifyTimeout bounds the whole wait, so a stats socket that accepts and
// never answers fails the apply instead of holding it.
func (h *HAProxy) FrontendsUp(ctx context.Context, names []string) error {
	_, r := h.clients()
	limit := h.VerifyTimeout
	if limit <= 0 {
		limit = 5 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, limit)
	defer cancel()
	var last error
	for range 40 {
		stats, err := r.ShowStat(ctx)
		if err == nil {
			open := map[string]bool{}
			for _, s := range stats {
				if s.Type == haproxy.StatFrontend && s.Status == "OPEN" {
					open[s.Proxy] = true
				}
			}
			var missing []string
			for _, n := range names {
				if !open[n] {
					missing = append(missing, n)
				}
			}
			if len(missing) == 0 {
				return nil
			}
			slices.Sort(missing)
			err = fmt.Errorf("frontends not open: %v", missing)
		}
		last = err
		select {
		case <-ctx.Done():
			return errors.Join(last, ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
	return last
}

const keptAlerts = 8

// alertsFor returns the ALERT lines the master wrote to LogFile since it
// was logged bytes long.
func (h *HAProxy) alertsFor(logged int64) []string {
	if h.LogFile == "" {
		return nil
	}
	f, err := artifact.Open(h.LogFile)
	if err != nil {
		return nil
	}
	defer f.Close()
	// Only the tail is read: what one failed reload printed is short.
	const tail = 64 << 10
	size := h.logSize()
	if size-logged > tail {
		logged = size - tail
	}
	data, err := io.ReadAll(io.NewSectionReader(f, logged, size-logged))
	if err != nil {
		return nil
	}
	var why []string
	for _, line := range strings.Split(string(data), "\n") {
		if line = strings.TrimSpace(line); strings.HasPrefix(line, "[ALERT]") {
			why = append(why, line)
		}
	}
	return why[max(0, len(why)-keptAlerts):]
}

// logSize is LogFile's length now (0 when there is none).
func (h *HAProxy) logSize() int64 {
	if h.LogFile == "" {
		return 0
	}
	st, err := os.Lstat(h.LogFile)
	if err != nil {
		return 0
	}
	return st.Size()
}

// newLogFile opens an empty LogFile for a new master; the previous
// master's output is kept as LogFile.prev.
func (h *HAProxy) newLogFile() (*os.File, error) {
	if h.LogFile == "" {
		return nil, errors.New("a master needs a log file")
	}
	if err := os.Rename(h.LogFile, h.LogFile+".prev"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	// Not through a link planted at the name: O_TRUNC would empty its target.
	return artifact.OpenOwn(h.LogFile, os.O_APPEND|os.O_TRUNC)
}

func withAlerts(err error, why []string) error {
	if len(why) == 0 {
		return err
	}
	return fmt.Errorf("%w: haproxy said: %s", err, strings.Join(why, " | "))
}

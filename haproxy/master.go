package haproxy

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Master talks to the master CLI (`haproxy -W -S <path>`).
type Master struct {
	sock socket
	// PollInterval is how often Reload retries while the master re-executes
	// itself and refuses connections.
	PollInterval time.Duration
	// ReloadTimeout bounds Reload when the context has no deadline.
	ReloadTimeout time.Duration
}

// NewMaster returns a client for the master socket at path; a nil dialer
// means UnixDialer.
func NewMaster(path string, d Dialer) *Master {
	return &Master{
		sock:          socket{path: path, dialer: d},
		PollInterval:  50 * time.Millisecond,
		ReloadTimeout: 30 * time.Second,
	}
}

// Procs is the answer to "show proc".
type Procs struct {
	Master     Proc   `json:"master"`
	Workers    []Proc `json:"workers"`
	OldWorkers []Proc `json:"old_workers"` // still serving connections from before a reload
	Programs   []Proc `json:"programs"`
}

// Proc is one line of "show proc".
type Proc struct {
	PID  int    `json:"pid"`
	Type string `json:"type"` // master, worker, or a program's name
	// Reloads is, for the master, how many reloads it has done; for a
	// worker, how many reloads it has survived.
	Reloads int `json:"reloads"`
	// FailedReloads (master only) counts the reloads that failed since the
	// last one that worked: 0 means the running config is the newest.
	FailedReloads int           `json:"failed_reloads"`
	Uptime        time.Duration `json:"-"` // in JSON: uptime_seconds
	Version       string        `json:"version"`
}

// MarshalJSON writes a list with no process as [], never null.
func (p Procs) MarshalJSON() ([]byte, error) {
	type fields Procs // without this method
	f := fields(p)
	for _, l := range []*[]Proc{&f.Workers, &f.OldWorkers, &f.Programs} {
		if *l == nil {
			*l = []Proc{}
		}
	}
	return json.Marshal(f)
}

// procJSON is a Proc in JSON: the uptime in whole seconds, as "show proc"
// counts it.
type procJSON struct {
	procFields
	UptimeSeconds int64 `json:"uptime_seconds"`
}

type procFields Proc // Proc without its methods, so procJSON does not recurse

// MarshalJSON writes the uptime as uptime_seconds.
func (p Proc) MarshalJSON() ([]byte, error) {
	return json.Marshal(procJSON{procFields(p), int64(p.Uptime / time.Second)})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (p *Proc) UnmarshalJSON(b []byte) error {
	var j procJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*p = Proc(j.procFields)
	p.Uptime = time.Duration(j.UptimeSeconds) * time.Second
	return nil
}

// PIDs lists the processes' ids.
func PIDs(ps []Proc) []int {
	out := make([]int, len(ps))
	for i, p := range ps {
		out[i] = p.PID
	}
	return out
}

// procRE matches a line such as
// "8735            master          3 [failed: 1]   0d00h00m13s     2.6.12-1+deb12u4".
var procRE = regexp.MustCompile(`^(\d+)\s+(\S+)\s+(\d+)(?:\s+\[failed:\s*(\d+)\])?\s+(\S+)\s+(\S+)\s*$`)

// ParseProcs reads the answer to "show proc".
func ParseProcs(answer string) (Procs, error) {
	var ps Procs
	var dst *[]Proc
	master := false
	for i, line := range strings.Split(answer, "\n") {
		t := strings.TrimSpace(line)
		switch {
		case t == "":
			continue
		case strings.HasPrefix(t, "#<PID>"):
			continue
		case t == "# workers":
			dst = &ps.Workers
			continue
		case t == "# old workers":
			dst = &ps.OldWorkers
			continue
		case t == "# programs":
			dst = &ps.Programs
			continue
		case strings.HasPrefix(t, "#"):
			continue
		}
		m := procRE.FindStringSubmatch(t)
		if m == nil {
			return Procs{}, fmt.Errorf("show proc: line %d: unexpected %q", i+1, excerpt(t))
		}
		p := Proc{Type: m[2], Version: m[6]}
		var err error
		// A number too long for an int is garbage, not a pid of 0.
		if p.PID, err = strconv.Atoi(m[1]); err != nil || p.PID <= 0 {
			return Procs{}, fmt.Errorf("show proc: line %d: pid %q", i+1, excerpt(m[1]))
		}
		if p.Reloads, err = strconv.Atoi(m[3]); err != nil {
			return Procs{}, fmt.Errorf("show proc: line %d: reloads %q", i+1, excerpt(m[3]))
		}
		if m[4] != "" {
			if p.FailedReloads, err = strconv.Atoi(m[4]); err != nil {
				return Procs{}, fmt.Errorf("show proc: line %d: failed reloads %q", i+1, excerpt(m[4]))
			}
		}
		up, err := parseUptime(m[5])
		if err != nil {
			return Procs{}, fmt.Errorf("show proc: line %d: %w", i+1, err)
		}
		p.Uptime = up
		switch {
		case dst == nil && p.Type == "master":
			ps.Master, master = p, true
		case dst != nil:
			*dst = append(*dst, p)
		default:
			return Procs{}, fmt.Errorf("show proc: line %d: %q before any section", i+1, excerpt(t))
		}
	}
	if !master {
		return Procs{}, fmt.Errorf("show proc: no master line in %q", excerpt(answer))
	}
	return ps, nil
}

// parseUptime reads "0d00h02m07s".
func parseUptime(s string) (time.Duration, error) {
	var d, h, m, sec int
	if _, err := fmt.Sscanf(s, "%dd%dh%dm%ds", &d, &h, &m, &sec); err != nil {
		return 0, fmt.Errorf("uptime %q is not like 0d00h02m07s", excerpt(s))
	}
	return time.Duration(d)*24*time.Hour + time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(sec)*time.Second, nil
}

// ShowProc runs "show proc".
func (m *Master) ShowProc(ctx context.Context) (Procs, error) {
	ans, err := m.sock.command(ctx, "show proc")
	if err != nil {
		return Procs{}, err
	}
	return ParseProcs(ans)
}

// ShowInfoOf asks one process of the master's, by pid, for "show info"
// ("@!<pid> show info"): how an old worker that no longer holds the stats
// socket is read.
func (m *Master) ShowInfoOf(ctx context.Context, pid int) (Info, error) {
	ans, err := m.sock.command(ctx, fmt.Sprintf("@!%d show info", pid))
	if err != nil {
		return Info{}, err
	}
	return ParseInfo(ans)
}

// ShowStatOf asks one process of the master's, by pid, for "show stat":
// an old worker's sessions, which the stats socket (the newest worker's)
// does not show.
func (m *Master) ShowStatOf(ctx context.Context, pid int) ([]Stat, error) {
	ans, err := m.sock.command(ctx, fmt.Sprintf("@!%d show stat", pid))
	if err != nil {
		return nil, err
	}
	return ParseStat(ans)
}

// ReloadError is a reload the master tried and refused: the previous
// workers keep serving the previous config.
type ReloadError struct {
	Procs Procs
}

func (e *ReloadError) Error() string {
	return fmt.Sprintf("haproxy reload: the master refused the new configuration (reload %d, [failed: %d]); workers %v keep serving the previous one",
		e.Procs.Master.Reloads, e.Procs.Master.FailedReloads, PIDs(e.Procs.Workers))
}

// Reload asks the master to reload and waits until it has: the master
// answers "reload" with nothing and closes, then refuses connections while
// it re-executes itself (about 40 ms on 2.6.12). Reload polls "show proc"
// until the master's reload count has risen, and returns a *ReloadError
// when the master reports the reload failed.
func (m *Master) Reload(ctx context.Context) (Procs, error) {
	if _, ok := ctx.Deadline(); !ok && m.ReloadTimeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, m.ReloadTimeout)
		defer cancel()
	}
	before, err := m.ShowProc(ctx)
	if err != nil {
		return Procs{}, fmt.Errorf("haproxy reload: %w", err)
	}
	if _, err := m.sock.command(ctx, "reload"); err != nil {
		return Procs{}, fmt.Errorf("haproxy reload: %w", err)
	}
	interval := m.PollInterval
	if interval <= 0 {
		interval = 50 * time.Millisecond
	}
	var last error
	for {
		select {
		case <-ctx.Done():
			if last == nil {
				last = errors.New("reload count did not rise")
			}
			return Procs{}, fmt.Errorf("haproxy reload: master %s did not come back: %w (last: %v)", m.sock.path, ctx.Err(), last)
		case <-time.After(interval):
		}
		// One attempt must not use up the whole wait.
		actx, cancel := context.WithTimeout(ctx, time.Second)
		ps, err := m.ShowProc(actx)
		cancel()
		if err != nil {
			last = err // refused while re-executing: try again
			continue
		}
		if ps.Master.PID != before.Master.PID {
			return ps, fmt.Errorf("haproxy reload: master pid changed from %d to %d: HAProxy was restarted, not reloaded", before.Master.PID, ps.Master.PID)
		}
		if ps.Master.Reloads <= before.Master.Reloads {
			last = fmt.Errorf("reload count still %d", ps.Master.Reloads)
			continue
		}
		if ps.Master.FailedReloads > 0 {
			return ps, &ReloadError{Procs: ps}
		}
		return ps, nil
	}
}

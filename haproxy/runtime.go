package haproxy

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Runtime talks to the runtime API on the stats socket: server changes that
// need no reload, and state for status and verification.
type Runtime struct {
	sock socket
}

// NewRuntime returns a client for the stats socket at path; a nil dialer
// means UnixDialer.
func NewRuntime(path string, d Dialer) *Runtime {
	return &Runtime{sock: socket{path: path, dialer: d}}
}

// StatType is the kind of object a "show stat" row describes.
type StatType int

const (
	StatFrontend StatType = 0
	StatBackend  StatType = 1
	StatServer   StatType = 2
	StatListener StatType = 3
)

func (t StatType) String() string {
	switch t {
	case StatFrontend:
		return "frontend"
	case StatBackend:
		return "backend"
	case StatServer:
		return "server"
	case StatListener:
		return "listener"
	}
	return "type " + strconv.Itoa(int(t))
}

// MarshalText names the type ("frontend"), as JSON shows it.
func (t StatType) MarshalText() ([]byte, error) { return []byte(t.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (t *StatType) UnmarshalText(b []byte) error {
	for _, s := range []StatType{StatFrontend, StatBackend, StatServer, StatListener} {
		if s.String() == string(b) {
			*t = s
			return nil
		}
	}
	return fmt.Errorf("stat type %q: want frontend, backend, server or listener", b)
}

// Stat is one row of "show stat".
type Stat struct {
	Proxy string   `json:"proxy"` // pxname
	Name  string   `json:"name"`  // svname: FRONTEND, BACKEND or the server's name
	Type  StatType `json:"type"`
	// Status is OPEN for a frontend; UP, DOWN, MAINT, "no check", ... for
	// servers and backends.
	Status string `json:"status"`
	Scur   int    `json:"current_sessions"`  // scur
	Smax   int    `json:"max_sessions"`      // smax: most sessions at once
	Stot   int    `json:"total_sessions"`    // stot: sessions in all
	Bin    int    `json:"bytes_in"`          // bin: bytes from clients
	Bout   int    `json:"bytes_out"`         // bout: bytes to clients
	Dreq   int    `json:"denied_requests"`   // dreq: for a frontend, connections a tcp-request content reject refused
	Addr   string `json:"address,omitempty"` // a server's address, ip:port
}

// Add sums the counters of the same proxy row as another worker reports
// it: sessions now and in all, bytes, denials. Smax, a maximum per
// worker, is the larger of the two; status and address stay.
func (s Stat) Add(o Stat) Stat {
	s.Scur += o.Scur
	s.Stot += o.Stot
	s.Bin += o.Bin
	s.Bout += o.Bout
	s.Dreq += o.Dreq
	s.Smax = max(s.Smax, o.Smax)
	return s
}

// SumStats adds up the "show stat" of several workers row by row, in the
// first one's order: what every live worker, old ones included, carries.
func SumStats(first []Stat, others ...[]Stat) []Stat {
	out := slices.Clone(first)
	at := map[[3]string]int{}
	key := func(s Stat) [3]string { return [3]string{s.Proxy, s.Name, s.Type.String()} }
	for i, s := range out {
		at[key(s)] = i
	}
	for _, rows := range others {
		for _, s := range rows {
			if i, ok := at[key(s)]; ok {
				out[i] = out[i].Add(s)
			} else {
				at[key(s)] = len(out)
				out = append(out, s)
			}
		}
	}
	return out
}

// ParseStat reads the CSV answer to "show stat".
func ParseStat(answer string) ([]Stat, error) {
	if !strings.HasPrefix(answer, "# ") {
		return nil, fmt.Errorf("show stat: %w: %s", ErrCommand, excerpt(answer))
	}
	r := csv.NewReader(strings.NewReader(answer[2:]))
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil {
		return nil, fmt.Errorf("show stat: %w", err)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("show stat: %w: no header line in %q", ErrCommand, excerpt(answer))
	}
	col := map[string]int{}
	for i, name := range rows[0] {
		col[name] = i
	}
	for _, need := range []string{"pxname", "svname", "type", "status", "scur", "smax", "stot", "bin", "bout", "dreq", "addr"} {
		if _, ok := col[need]; !ok {
			return nil, fmt.Errorf("show stat: no %q column", need)
		}
	}
	var out []Stat
	for n, row := range rows[1:] {
		get := func(name string) string {
			if i := col[name]; i < len(row) {
				return row[i]
			}
			return ""
		}
		num := func(name string) (int, error) {
			v := get(name)
			if v == "" {
				return 0, nil
			}
			x, err := strconv.Atoi(v)
			if err != nil {
				return 0, fmt.Errorf("show stat: row %d, %s: %q is not a number", n+1, name, excerpt(v))
			}
			return x, nil
		}
		s := Stat{Proxy: get("pxname"), Name: get("svname"), Status: get("status"), Addr: get("addr")}
		t, err := num("type")
		if err != nil {
			return nil, err
		}
		s.Type = StatType(t)
		for _, f := range []struct {
			col string
			dst *int
		}{{"scur", &s.Scur}, {"smax", &s.Smax}, {"stot", &s.Stot}, {"bin", &s.Bin}, {"bout", &s.Bout}, {"dreq", &s.Dreq}} {
			if *f.dst, err = num(f.col); err != nil {
				return nil, err
			}
		}
		out = append(out, s)
	}
	return out, nil
}

// ShowStat runs "show stat".
func (r *Runtime) ShowStat(ctx context.Context) ([]Stat, error) {
	ans, err := r.sock.command(ctx, "show stat")
	if err != nil {
		return nil, err
	}
	return ParseStat(ans)
}

// Info is the answer to "show info": every "Key: value" line, with the
// fields portstripe reads typed.
type Info struct {
	Version   string
	PID       int
	UptimeSec int
	CurrConns int
	Stopping  bool
	Fields    map[string]string
}

// ParseInfo reads the answer to "show info".
func ParseInfo(answer string) (Info, error) {
	in := Info{Fields: map[string]string{}}
	for _, line := range strings.Split(answer, "\n") {
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		in.Fields[strings.TrimSpace(k)] = strings.TrimSpace(v)
	}
	if _, ok := in.Fields["Pid"]; !ok {
		return Info{}, fmt.Errorf("show info: %w: %s", ErrCommand, excerpt(answer))
	}
	in.Version = in.Fields["Version"]
	for _, f := range []struct {
		key string
		dst *int
	}{{"Pid", &in.PID}, {"Uptime_sec", &in.UptimeSec}, {"CurrConns", &in.CurrConns}} {
		v, err := strconv.Atoi(in.Fields[f.key])
		if err != nil {
			return Info{}, fmt.Errorf("show info: %s: %q is not a number", f.key, excerpt(in.Fields[f.key]))
		}
		*f.dst = v
	}
	in.Stopping = in.Fields["Stopping"] == "1"
	return in, nil
}

// ShowInfo runs "show info" (of the worker that answers the socket).
func (r *Runtime) ShowInfo(ctx context.Context) (Info, error) {
	ans, err := r.sock.command(ctx, "show info")
	if err != nil {
		return Info{}, err
	}
	return ParseInfo(ans)
}

// SetServerAddr points a server at a new address without a reload:
// "set server <backend>/<server> addr <ip> port <port>".
func (r *Runtime) SetServerAddr(ctx context.Context, backend, server string, addr netip.AddrPort) error {
	cmd := fmt.Sprintf("set server %s/%s addr %s port %d", backend, server, addr.Addr(), addr.Port())
	return r.run(ctx, cmd, []string{backend, server}, func(ans string) bool {
		// "IP changed from '…' to '…', port changed from '…' to '…' by
		// 'stats socket command'", or "no need to change the addr, …".
		return strings.HasPrefix(ans, "IP changed from ") || strings.HasPrefix(ans, "no need to change the addr")
	})
}

// EnableServer takes a server out of maintenance: "enable server b/s".
func (r *Runtime) EnableServer(ctx context.Context, backend, server string) error {
	return r.run(ctx, "enable server "+backend+"/"+server, []string{backend, server}, emptyOK)
}

// DisableServer puts a server into maintenance (new sessions go elsewhere,
// established ones stay): "disable server b/s".
func (r *Runtime) DisableServer(ctx context.Context, backend, server string) error {
	return r.run(ctx, "disable server "+backend+"/"+server, []string{backend, server}, emptyOK)
}

// emptyOK: these commands answer nothing when they worked and a sentence
// ("No such server.") when not.
func emptyOK(ans string) bool { return ans == "" }

func (r *Runtime) run(ctx context.Context, cmd string, names []string, ok func(string) bool) error {
	if err := checkNames(names...); err != nil {
		return fmt.Errorf("haproxy runtime %q: %w", cmd, err)
	}
	ans, err := r.sock.command(ctx, cmd)
	if err != nil {
		return err
	}
	ans = strings.TrimSpace(ans)
	if !ok(ans) {
		return fmt.Errorf("haproxy runtime %q: %w: %s", cmd, ErrCommand, excerpt(ans))
	}
	return nil
}

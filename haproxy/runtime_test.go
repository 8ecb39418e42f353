package haproxy

import (
	"context"
	"errors"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"testing"
)

func TestParseStat(t *testing.T) {
	got, err := ParseStat(recorded(t, "show-stat-sessions.txt"))
	if err != nil {
		t.Fatal(err)
	}
	want := []Stat{
		{Proxy: "fe_striped", Name: "FRONTEND", Type: StatFrontend, Status: "OPEN", Scur: 2, Smax: 2, Stot: 2},
		{Proxy: "b1", Name: "b1", Type: StatServer, Status: "MAINT", Addr: "127.0.0.1:24103"},
		{Proxy: "b1", Name: "BACKEND", Type: StatBackend, Status: "DOWN"},
		{Proxy: "b2", Name: "b2", Type: StatServer, Status: "no check", Scur: 2, Smax: 2, Stot: 2, Addr: "127.0.0.1:24102"},
		{Proxy: "b2", Name: "BACKEND", Type: StatBackend, Status: "UP", Scur: 2, Smax: 2, Stot: 2},
	}
	// Cumulated counters depend on the run; compare what the recording
	// pins down and check the rest for sense.
	for i := range got {
		if got[i].Stot < got[i].Scur || got[i].Smax < got[i].Scur {
			t.Errorf("row %d: stot %d, smax %d below scur %d", i, got[i].Stot, got[i].Smax, got[i].Scur)
		}
		got[i].Smax, got[i].Stot = want[i].Smax, want[i].Stot
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
}

func TestParseStatRefuses(t *testing.T) {
	for _, ans := range []string{"", "Permission denied\n\n", "# pxname,svname\nfe,FRONTEND\n"} {
		if _, err := ParseStat(ans); err == nil {
			t.Errorf("ParseStat(%q) = nil error", ans)
		}
	}
}

func TestParseInfo(t *testing.T) {
	in, err := ParseInfo(recorded(t, "show-info.txt"))
	if err != nil {
		t.Fatal(err)
	}
	if in.Version != "2.6.12-1+deb12u4" || in.PID != 9082 || in.UptimeSec != 10 || in.CurrConns != 2 || in.Stopping {
		t.Errorf("got %+v", in)
	}
	if in.Fields["Maxconn"] != "200" || in.Fields["Build info"] != "2.6.12-1+deb12u4" {
		t.Errorf("fields %v", in.Fields)
	}
}

func TestRuntimeCommands(t *testing.T) {
	addr := netip.MustParseAddrPort("127.0.0.2:24103")
	tests := []struct {
		name    string
		call    func(ctx context.Context, r *Runtime) error
		cmd     string // "" when nothing may be sent
		answer  string // a testdata/real file
		wantErr string
	}{
		{"set addr", func(ctx context.Context, r *Runtime) error { return r.SetServerAddr(ctx, "b1", "b1", addr) },
			"set server b1/b1 addr 127.0.0.2 port 24103", "set_server_b1_b1_addr_127.0.0.2_port_24103.txt", ""},
		{"set addr, unchanged", func(ctx context.Context, r *Runtime) error { return r.SetServerAddr(ctx, "b1", "b1", addr) },
			"set server b1/b1 addr 127.0.0.2 port 24103", "set_server_b1_b1_addr_127.0.0.2_port_24103-again.txt", ""},
		{"set addr, same IP, new port", func(ctx context.Context, r *Runtime) error { return r.SetServerAddr(ctx, "b1", "b1", addr) },
			"set server b1/b1 addr 127.0.0.2 port 24103", "set_server_same_ip_new_port.txt", ""},
		{"set addr, bad address", func(ctx context.Context, r *Runtime) error { return r.SetServerAddr(ctx, "b1", "b1", addr) },
			"set server b1/b1 addr 127.0.0.2 port 24103", "set_server_b1_b1_addr_notanip_port_1.txt", "Invalid addr"},
		{"set addr, no such server", func(ctx context.Context, r *Runtime) error { return r.SetServerAddr(ctx, "b1", "nope", addr) },
			"set server b1/nope addr 127.0.0.2 port 24103", "set_server_b1_nope_addr_127.0.0.1_port_1.txt", "No such server."},
		{"set addr, no such backend", func(ctx context.Context, r *Runtime) error { return r.SetServerAddr(ctx, "nope", "b1", addr) },
			"set server nope/b1 addr 127.0.0.2 port 24103", "set_server_nope_b1_addr_127.0.0.1_port_1.txt", "No such backend."},
		{"set addr, name injects a command", func(ctx context.Context, r *Runtime) error {
			return r.SetServerAddr(ctx, "b1;shutdown sessions", "b1", addr)
		}, "", "", "not a HAProxy name"},
		{"disable", func(ctx context.Context, r *Runtime) error { return r.DisableServer(ctx, "b1", "b1") },
			"disable server b1/b1", "disable_server_b1_b1.txt", ""},
		{"disable, no such backend", func(ctx context.Context, r *Runtime) error { return r.DisableServer(ctx, "nope", "x") },
			"disable server nope/x", "disable_server_nope_x.txt", "No such backend."},
		{"enable", func(ctx context.Context, r *Runtime) error { return r.EnableServer(ctx, "b1", "b1") },
			"enable server b1/b1", "enable_server_b1_b1.txt", ""},
		{"enable, no such server", func(ctx context.Context, r *Runtime) error { return r.EnableServer(ctx, "b1", "nope") },
			"enable server b1/nope", "enable_server_b1_nope.txt", "No such server."},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSocket{t: t}
			if tt.cmd != "" {
				f.steps = []step{{cmd: tt.cmd, answer: recorded(t, tt.answer)}}
			}
			err := tt.call(context.Background(), NewRuntime("/run/x.sock", f))
			f.done()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if tt.cmd != "" && !errors.Is(err, ErrCommand) {
				t.Errorf("%v does not wrap ErrCommand", err)
			}
		})
	}
}

func TestShowStatAndInfo(t *testing.T) {
	f := &fakeSocket{t: t, steps: []step{
		{cmd: "show stat", answer: recorded(t, "show-stat.txt")},
		{cmd: "show info", answer: recorded(t, "show-info.txt")},
	}}
	r := NewRuntime("/run/x.sock", f)
	st, err := r.ShowStat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st) != 5 || st[0].Proxy != "fe_striped" || st[1].Addr != "127.0.0.1:24101" {
		t.Errorf("stats %+v", st)
	}
	if _, err := r.ShowInfo(context.Background()); err != nil {
		t.Fatal(err)
	}
	f.done()
	if !reflect.DeepEqual(f.paths, []string{"/run/x.sock", "/run/x.sock"}) {
		t.Errorf("dialed %q", f.paths)
	}
}

// TestSumStats: each worker counts only its own sessions; the sum over the
// live workers keeps the first's rows in order, adds counters, keeps the
// larger maximum, and appends what only an old worker still has.
func TestSumStats(t *testing.T) {
	cur := []Stat{{Proxy: "fe", Name: "FRONTEND", Type: StatFrontend, Status: "OPEN", Scur: 1, Smax: 5, Stot: 10, Bin: 100, Dreq: 2},
		{Proxy: "ssh", Name: "BACKEND", Type: StatBackend, Status: "UP", Scur: 1, Stot: 3}}
	old := []Stat{{Proxy: "fe", Name: "FRONTEND", Type: StatFrontend, Status: "OPEN", Scur: 2, Smax: 9, Stot: 40, Bin: 50, Dreq: 1},
		{Proxy: "gone", Name: "BACKEND", Type: StatBackend, Status: "UP", Scur: 4}}
	got := SumStats(cur, old)
	want := []Stat{{Proxy: "fe", Name: "FRONTEND", Type: StatFrontend, Status: "OPEN", Scur: 3, Smax: 9, Stot: 50, Bin: 150, Dreq: 3},
		{Proxy: "ssh", Name: "BACKEND", Type: StatBackend, Status: "UP", Scur: 1, Stot: 3},
		{Proxy: "gone", Name: "BACKEND", Type: StatBackend, Status: "UP", Scur: 4}}
	if !slices.Equal(got, want) {
		t.Errorf("SumStats =\n%+v\nwant\n%+v", got, want)
	}
}

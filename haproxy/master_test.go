package haproxy

import (
	"context"
	"errors"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestParseProcs(t *testing.T) {
	tests := []struct {
		file string
		want Procs
	}{
		{"show-proc-start.txt", Procs{
			Master:  Proc{PID: 8735, Type: "master", Uptime: 6 * time.Second, Version: "2.6.12-1+deb12u4"},
			Workers: []Proc{{PID: 8738, Type: "worker", Uptime: 6 * time.Second, Version: "2.6.12-1+deb12u4"}},
		}},
		{"show-proc-old-workers.txt", Procs{
			Master:     Proc{PID: 8735, Type: "master", Reloads: 2, Uptime: 12 * time.Second, Version: "2.6.12-1+deb12u4"},
			Workers:    []Proc{{PID: 8855, Type: "worker", Uptime: time.Second, Version: "2.6.12-1+deb12u4"}},
			OldWorkers: []Proc{{PID: 8823, Type: "worker", Reloads: 1, Uptime: 6 * time.Second, Version: "2.6.12-1+deb12u4"}},
		}},
		{"show-proc-failed.txt", Procs{
			Master:     Proc{PID: 8735, Type: "master", Reloads: 3, FailedReloads: 1, Uptime: 13 * time.Second, Version: "2.6.12-1+deb12u4"},
			Workers:    []Proc{{PID: 8855, Type: "worker", Reloads: 1, Uptime: 2 * time.Second, Version: "2.6.12-1+deb12u4"}},
			OldWorkers: []Proc{{PID: 8823, Type: "worker", Reloads: 2, Uptime: 7 * time.Second, Version: "2.6.12-1+deb12u4"}},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			got, err := ParseProcs(recorded(t, tt.file))
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseProcsDocExample(t *testing.T) {
	// management.txt's example, with programs and a long uptime.
	ans := `#<PID>          <type>          <reloads>       <uptime>        <version>
1162            master          5 [failed: 0]   0d00h02m07s     2.5-dev13
# workers
1271            worker          1               0d00h00m00s     2.5-dev13
# old workers
1233            worker          3               1d02h00m43s     2.0-dev3-6019f6-289
# programs
1244            foo             0               0d00h00m00s     -
`
	got, err := ParseProcs(ans)
	if err != nil {
		t.Fatal(err)
	}
	if got.Master.Reloads != 5 || got.Master.Uptime != 2*time.Minute+7*time.Second {
		t.Errorf("master %+v", got.Master)
	}
	if got.OldWorkers[0].Uptime != 26*time.Hour+43*time.Second {
		t.Errorf("old worker %+v", got.OldWorkers[0])
	}
	if len(got.Programs) != 1 || got.Programs[0].Type != "foo" || got.Programs[0].Version != "-" {
		t.Errorf("programs %+v", got.Programs)
	}
}

func TestParseProcsRefuses(t *testing.T) {
	for _, ans := range []string{
		"",
		"Unknown command.\n",
		"#<PID> ...\n# workers\n8738 worker 0 0d00h00m01s 2.6\n",
	} {
		if _, err := ParseProcs(ans); err == nil {
			t.Errorf("ParseProcs(%q) = nil error", ans)
		}
	}
}

func TestReload(t *testing.T) {
	refused := syscall.ECONNREFUSED
	tests := []struct {
		name    string
		steps   []step
		wantErr string
		reload  bool // wantErr is a *ReloadError
		want    int  // master reload count returned
	}{
		{
			name: "socket refuses while the master re-executes, then the count rises",
			steps: []step{
				{cmd: "show proc", answer: recordedFile("show-proc-start.txt")},
				{cmd: "reload", answer: ""},
				{dialErr: refused}, {dialErr: refused}, {dialErr: refused},
				{cmd: "show proc", answer: recordedFile("show-proc-reloaded.txt")},
			},
			want: 1,
		},
		{
			name: "count not risen yet",
			steps: []step{
				{cmd: "show proc", answer: recordedFile("show-proc-start.txt")},
				{cmd: "reload"},
				{cmd: "show proc", answer: recordedFile("show-proc-start.txt")},
				{cmd: "show proc", answer: recordedFile("show-proc-reloaded.txt")},
			},
			want: 1,
		},
		{
			name: "broken config: the old worker keeps serving",
			steps: []step{
				{cmd: "show proc", answer: recordedFile("show-proc-old-workers.txt")},
				{cmd: "reload"},
				{dialErr: refused},
				{cmd: "show proc", answer: recordedFile("show-proc-failed.txt")},
			},
			wantErr: "refused the new configuration (reload 3, [failed: 1]); workers [8855] keep serving",
			reload:  true,
			want:    3,
		},
		{
			name:    "master not running",
			steps:   []step{{dialErr: refused}},
			wantErr: "connection refused",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := &fakeSocket{t: t, steps: loadSteps(t, tt.steps)}
			m := NewMaster("/run/m.sock", f)
			m.PollInterval = time.Millisecond
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			ps, err := m.Reload(ctx)
			f.done()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
				}
				var re *ReloadError
				if errors.As(err, &re) != tt.reload {
					t.Fatalf("%T: *ReloadError %v, want %v", err, !tt.reload, tt.reload)
				}
			}
			if ps.Master.Reloads != tt.want {
				t.Errorf("reload count %d, want %d", ps.Master.Reloads, tt.want)
			}
		})
	}
}

func TestReloadGivesUp(t *testing.T) {
	steps := []step{
		{cmd: "show proc", answer: recordedFile("show-proc-start.txt")},
		{cmd: "reload"},
	}
	for range 1000 {
		steps = append(steps, step{dialErr: syscall.ECONNREFUSED})
	}
	f := &fakeSocket{t: t, steps: loadSteps(t, steps)}
	m := NewMaster("/run/m.sock", f)
	m.PollInterval = time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	_, err := m.Reload(ctx)
	if err == nil || !strings.Contains(err.Error(), "did not come back") || !strings.Contains(err.Error(), "connection refused") {
		t.Fatalf("got %v", err)
	}
}

// recordedFile marks an answer to be read from testdata/real by loadSteps.
func recordedFile(name string) string { return "file:" + name }

func loadSteps(t *testing.T, steps []step) []step {
	t.Helper()
	out := make([]step, len(steps))
	for i, s := range steps {
		if name, ok := strings.CutPrefix(s.answer, "file:"); ok {
			s.answer = recorded(t, name)
		}
		out[i] = s
	}
	return out
}

package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/fixtures"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
)

// TestApplyStorageFaults: a full or read-only state directory fails the
// apply before rules or HAProxy are touched, and leaves the files as they
// were. (*.prev is left out of the comparisons here and below: a rolled-back
// apply may leave one holding what the current file holds again.)
func TestApplyStorageFaults(t *testing.T) {
	tests := []struct {
		name    string
		breakFS func(t *testing.T, dir string)
		cause   error
	}{
		{"full", func(t *testing.T, dir string) {
			// Fill what the first apply left free.
			f, err := os.Create(filepath.Join(dir, "filler"))
			if err != nil {
				t.Fatal(err)
			}
			defer f.Close()
			for err == nil {
				_, err = f.Write(make([]byte, 4096))
			}
		}, syscall.ENOSPC},
		{"read-only", func(t *testing.T, dir string) { testenv.Run(t, "mount", "-o", "remount,ro", dir) }, syscall.EROFS},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			a, rules, proxy := newApplier(t)
			a.Dir = testenv.Tmpfs(t, "64k")
			proxy.dir = a.Dir
			if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
				t.Fatal(err)
			}
			tt.breakFS(t, a.Dir)
			before, applied := testenv.Snapshot(t, a.Dir, "*.prev"), rules.applied
			_, err := a.Apply(context.Background(), compile(t, testNode+"  - {name: web, kind: tls, tcp: 127.0.0.1:8443}\n"))
			if !errors.Is(err, tt.cause) || !strings.HasPrefix(err.Error(), "apply: write "+a.Dir) {
				t.Fatalf("apply: %v, want %v naming the file", err, tt.cause)
			}
			t.Logf("%s: %v", tt.name, err)
			if rules.applied != applied || proxy.reloads != 0 || proxy.starts != 1 {
				t.Errorf("rules applied %d times, %d reloads, %d starts; want %d, 0, 1", rules.applied, proxy.reloads, proxy.starts, applied)
			}
			if after := testenv.Snapshot(t, a.Dir, "*.prev"); after != before {
				t.Error("the state directory changed")
			}
		})
	}
}

// uncheckedRules is the real iptables backend whose check passed: the
// rules fail only when loaded, as when a match module is missing on the
// node.
type uncheckedRules struct{ *iptables.Backend }

func (uncheckedRules) Canonical(_ context.Context, files map[string][]byte) (firewall.State, error) {
	return iptables.ParseFiles(files), nil
}

// TestApplyRestoreFails: iptables-restore refuses a rule mid-file; the
// error names the line and the rule, the kernel keeps the previous rules
// (one restore is one transaction) and the files are rolled back.
func TestApplyRestoreFails(t *testing.T) {
	if !testenv.Self(t, "iptables-restore", "iptables-save") {
		return
	}
	m, err := iptables.NewBackend(iptables.Options{})
	if err != nil {
		t.Fatal(err)
	}
	a, _, proxy := newApplier(t)
	a.Firewalls = map[string]firewall.Backend{node.IPTables: uncheckedRules{m}}
	ctx := context.Background()
	if _, err := a.Apply(ctx, compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	savedRules, savedFiles := testenv.Run(t, "iptables-save", "-t", "nat"), testenv.Snapshot(t, a.Dir, "*.prev")

	res := compile(t, strings.Replace(testNode, "udp: 443", "udp: 1443", 1))
	lines := strings.Split(string(res.Files[compiler.RulesFile]), "\n")
	at := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "-A PORTSTRIPE-UDP ") }) + 1
	broken := "-A PORTSTRIPE-UDP -p udp -m nosuchmatch --nosuch 1 -j RETURN"
	lines = append(lines[:at], append([]string{broken}, lines[at:]...)...)
	res.Files[compiler.RulesFile] = []byte(strings.Join(lines, "\n"))

	_, err = a.Apply(ctx, res)
	if err == nil || !strings.Contains(err.Error(), fmt.Sprintf("line %d failed", at+1)) || !strings.Contains(err.Error(), broken) {
		t.Fatalf("apply: %v\nwant the error to name line %d: %s", err, at+1, broken)
	}
	t.Logf("apply: %v", err)
	if got := testenv.Run(t, "iptables-save", "-t", "nat"); stripComments(got) != stripComments(savedRules) {
		t.Errorf("installed rules changed:\n%s", got)
	}
	if testenv.Snapshot(t, a.Dir, "*.prev") != savedFiles || proxy.reloads != 0 || proxy.starts != 1 {
		t.Errorf("files not rolled back, or HAProxy reloaded (%d reloads, %d starts)", proxy.reloads, proxy.starts)
	}
}

func stripComments(save string) string {
	var keep []string
	for _, l := range strings.Split(save, "\n") {
		if !strings.HasPrefix(l, "#") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// TestHAProxyMissing: without the haproxy binary an apply fails at the
// check, naming what is missing and how to install it, and writes nothing;
// starting a master fails the same way.
func TestHAProxyMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	dir := t.TempDir()
	h := &HAProxy{Config: filepath.Join(dir, compiler.HAProxyFile), RunDir: dir, MasterSocket: filepath.Join(dir, "master.sock"),
		RuntimeSocket: filepath.Join(dir, "api.sock"), Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	a, rules, _ := newApplier(t)
	a.Proxy = h
	_, err := a.Apply(context.Background(), compile(t, testNode))
	if !errors.Is(err, haproxy.ErrNotInstalled) || !strings.Contains(err.Error(), "apt-get install haproxy") {
		t.Errorf("apply: %v, want haproxy.ErrNotInstalled with the package to install", err)
	}
	t.Logf("apply: %v", err)
	if entries, _ := os.ReadDir(a.Dir); len(entries) != 0 || rules.applied != 0 {
		t.Errorf("apply wrote %d files, applied rules %d times; want nothing", len(entries), rules.applied)
	}
	err = h.Start(context.Background())
	if err == nil || !strings.Contains(err.Error(), "haproxy package") {
		t.Errorf("start: %v, want a message naming the haproxy package", err)
	}
	t.Logf("start: %v", err)
}

// TestHungMaster: a master socket that accepts and never answers is not a
// running master (Observe), yet starting one fails within seconds with a
// clear error instead of starting a second master beside the hung one.
func TestHungMaster(t *testing.T) {
	sock := testenv.HungSocket(t)
	dir := t.TempDir()
	h := &HAProxy{Config: filepath.Join(dir, compiler.HAProxyFile), MasterSocket: sock, LogFile: filepath.Join(dir, LogFile),
		RuntimeSocket: testenv.HungSocket(t), VerifyTimeout: 300 * time.Millisecond, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	start := time.Now()
	if st := h.Observe(context.Background()); st.Alive || !errors.Is(st.Err, context.DeadlineExceeded) {
		t.Errorf("observe: %+v, want not alive, timed out", st)
	}
	err := h.Start(context.Background())
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "not starting a second master") {
		t.Errorf("start: %v, want a refusal to start a second master", err)
	}
	t.Logf("start: %v", err)
	if _, statErr := os.Stat(sock); statErr != nil {
		t.Errorf("the hung master's socket was removed: %v", statErr)
	}
	err = h.FrontendsUp(context.Background(), []string{"fe_striped"})
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), h.RuntimeSocket) {
		t.Errorf("frontends: %v, want a deadline error naming the stats socket", err)
	}
	if took := time.Since(start); took > 5*time.Second {
		t.Errorf("took %v", took)
	}
}

// TestLock: a second apply waits for the first, or gives up when its
// context ends, naming the process holding the lock.
func TestLock(t *testing.T) {
	dir := t.TempDir()
	unlock, err := Lock(context.Background(), dir)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	_, err = Lock(ctx, dir)
	cancel()
	want := fmt.Sprintf("another portstripe (pid %d) is applying to %s; gave up waiting", os.Getpid(), dir)
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), want) {
		t.Fatalf("second lock: %v, want %q", err, want)
	}
	t.Logf("second lock: %v", err)
	got := make(chan error)
	go func() {
		u, err := Lock(context.Background(), dir)
		if err == nil {
			u()
		}
		got <- err
	}()
	select {
	case err := <-got:
		t.Fatalf("second lock did not wait: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	unlock()
	if err := <-got; err != nil {
		t.Fatalf("second lock after the first was released: %v", err)
	}
}

// syncBuffer is a log sink the test reads while the runner writes.
type syncBuffer struct{ testenv.SyncBuffer }

// waitFor waits until the log has count lines containing every one of
// words, returning the last.
func (s *syncBuffer) waitFor(t *testing.T, count int, words ...string) string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		var hits []string
		text := s.String()
		for _, l := range strings.Split(text, "\n") {
			all := true
			for _, w := range words {
				all = all && strings.Contains(l, w)
			}
			if all {
				hits = append(hits, l)
			}
		}
		if len(hits) >= count {
			return hits[count-1]
		}
		if time.Now().After(deadline) {
			t.Fatalf("no log line %d with %q; log:\n%s", count, words, text)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRunSurvivesNodeFileFaults runs `portstripe run` for real (iptables and
// HAProxy in a namespace): deleting the node file, then truncating it, is
// logged as a refused node file while the same HAProxy master keeps serving
// (healthy, not ready); writing a fixed file applies it.
func TestRunSurvivesNodeFileFaults(t *testing.T) {
	dir, path, ok := testenv.SelfNode(t, string(fixtures.SeedNode))
	if !ok {
		return
	}
	good := testenv.LiveNode(string(fixtures.SeedNode), dir)
	var logs syncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	rules, err := iptables.NewBackend(iptables.Options{})
	if err != nil {
		t.Fatal(err)
	}
	state := filepath.Join(dir, "state")
	h := &HAProxy{Config: filepath.Join(state, compiler.HAProxyFile), RunDir: dir, MasterSocket: filepath.Join(dir, "master.sock"),
		RuntimeSocket: filepath.Join(dir, "api.sock"), LogFile: filepath.Join(state, LogFile), Log: log}
	desired, err := compiler.Compile(node.Options{Path: path})
	if err != nil {
		t.Fatal(err)
	}
	r := &Runner{
		Source:  &FileSource{Node: node.Options{Path: path}, Debounce: 50 * time.Millisecond, Log: log},
		Applier: &Applier{Dir: state, Firewalls: map[string]firewall.Backend{node.IPTables: rules}, Proxy: h, Log: log},
		HAProxy: h,
		Metrics: NewMetrics(nil),
		Log:     log,
		Desired: desired,
		Cleanup: true, // the master outlives a plain stop
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- r.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("run: %v", err)
		}
	}()
	logs.waitFor(t, 1, "node applied", "result=ok")
	ps, err := h.Procs(ctx)
	if err != nil {
		t.Fatal(err)
	}
	master := ps.Master.PID

	faults := []struct {
		name, want string
		do         func() error
	}{
		{"deleted", "no such file or directory", func() error { return os.Remove(path) }},
		{"truncated", "is empty", func() error { return os.WriteFile(path, nil, 0o600) }},
		{"half written", "services[0]", func() error {
			return os.WriteFile(path, []byte(good[:strings.Index(good, "    kind: openvpn")]), 0o600)
		}},
	}
	for i, f := range faults {
		if err := f.do(); err != nil {
			t.Fatal(err)
		}
		line := logs.waitFor(t, i+1, "node file refused", "node file changed")
		if !strings.Contains(line, f.want) {
			t.Errorf("%s: log %q does not say %q", f.name, line, f.want)
		}
		t.Logf("%s: %s", f.name, line)
		if ps, err := h.Procs(ctx); err != nil || ps.Master.PID != master || len(ps.Workers) == 0 {
			t.Fatalf("%s: haproxy %+v, %v; want master %d still serving", f.name, ps, err, master)
		}
		if serving, fileErr := r.health(); serving != nil || fileErr == nil {
			t.Errorf("%s: serving %v, node file error %v; want serving (healthy) but not ready", f.name, serving, fileErr)
		}
	}
	if err := os.WriteFile(path, []byte(strings.Replace(good, "inspect_delay: 5s", "inspect_delay: 4s", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	logs.waitFor(t, 2, "node applied", "result=ok")
	if ps, err := h.Procs(ctx); err != nil || ps.Master.PID != master || ps.Master.Reloads < 1 {
		t.Errorf("after the fix: haproxy %+v, %v; want master %d reloaded", ps, err, master)
	}
}

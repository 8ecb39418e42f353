package version

import (
	"context"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"
)

func TestGetFromLdflags(t *testing.T) {
	for _, v := range []*string{&version, &revision, &commitTime, &modified} {
		old := *v
		t.Cleanup(func() { *v = old })
	}
	if got := Get(); got.Version != "(devel)" || got.Revision != "" || got.GoVersion != runtime.Version() {
		t.Errorf("a test binary: got %+v, want version (devel), no revision, %s", got, runtime.Version())
	}
	version, revision, commitTime, modified = "0.1.0-1", "0123456789abcdef0123456789abcdef01234567", "2026-12-01T20:08:53Z", "true"
	got := Get()
	want := Info{Version: "0.1.0-1", Revision: revision, CommitTime: commitTime, Modified: true, GoVersion: runtime.Version()}
	if got != want {
		t.Errorf("with -X values: got %+v, want %+v", got, want)
	}
	if s := got.String(); s != "0.1.0-1 (rev 0123456789ab, modified)" {
		t.Errorf("String() = %q", s)
	}
	got.Modified = false
	if s := got.String(); s != "0.1.0-1 (rev 0123456789ab)" {
		t.Errorf("String() unmodified = %q", s)
	}
	if s := (Info{Version: "(devel)"}).String(); s != "(devel)" {
		t.Errorf("String() without a revision = %q", s)
	}
}

// fakeTools puts scripts named after the probed programs on PATH.
func fakeTools(t *testing.T, scripts map[string]string) {
	dir := t.TempDir()
	for name, body := range scripts {
		if err := os.WriteFile(filepath.Join(dir, name), []byte("#!/bin/sh\n"+body+"\n"), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir)
}

func TestTools(t *testing.T) {
	// The first lines Debian 12's haproxy 2.6, iptables 1.8.9 print.
	fakeTools(t, map[string]string{
		"haproxy":  `[ "$1" = -v ] && printf 'HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/\nStatus: long-term supported branch\n'`,
		"iptables": `[ "$1" = -V ] && echo 'iptables v1.8.9 (nf_tables)'`,
	})
	dir := os.Getenv("PATH")
	got := Tools(context.Background(), 5*time.Second)
	want := []Tool{
		{Name: "haproxy", Found: true, Path: filepath.Join(dir, "haproxy"), Version: "2.6.12-1+deb12u4", Line: "HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/"},
		{Name: "iptables", Found: true, Path: filepath.Join(dir, "iptables"), Version: "1.8.9", Line: "iptables v1.8.9 (nf_tables)"},
		{Name: "nft"},
	}
	if len(got) != len(want) {
		t.Fatalf("got %d tools, want %d: %+v", len(got), len(want), got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("tool %d:\n got %+v\nwant %+v", i, got[i], want[i])
		}
	}
}

func TestToolsThatFail(t *testing.T) {
	fakeTools(t, map[string]string{
		"haproxy":  `exec /bin/sleep 60`,
		"iptables": `echo 'iptables: unknown option'; exit 2`,
		"nft":      `echo 'nftables v1.0.6 (Lester Gooch #5)'`,
	})
	got := Tools(context.Background(), 300*time.Millisecond)
	for i, want := range []struct{ version, err string }{
		{"", "no answer to haproxy -v within 300ms"},
		{"", "iptables -V: exit status 2"},
		{"1.0.6", ""},
	} {
		if got[i].Version != want.version || got[i].Error != want.err || !got[i].Found {
			t.Errorf("%s: got version %q, error %q; want %q, %q", got[i].Name, got[i].Version, got[i].Error, want.version, want.err)
		}
	}
}

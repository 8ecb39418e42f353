package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// fakeExecutable makes install-unit see bin as the running binary (the test
// binary itself lives in a go-build directory, which it refuses).
func fakeExecutable(t *testing.T, bin string) {
	t.Helper()
	old := executable
	executable = func() (string, error) { return bin, nil }
	t.Cleanup(func() { executable = old })
}

// realBinary is an executable file at dir/bin/portstripe, reached through
// the symlink it returns.
func realBinary(t *testing.T, dir string) (real, link string) {
	t.Helper()
	real = filepath.Join(dir, "bin", "portstripe")
	if err := os.MkdirAll(filepath.Dir(real), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(real, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	link = filepath.Join(dir, "portstripe-link")
	if err := os.Symlink(real, link); err != nil {
		t.Fatal(err)
	}
	return real, link
}

// TestInstallUnitPrint: the unit runs the real binary (symlinks resolved)
// on the node file -c names, made absolute, and carries the lifecycle a
// live node needs.
func TestInstallUnitPrint(t *testing.T) {
	dir := t.TempDir()
	real, link := realBinary(t, dir)
	fakeExecutable(t, link)
	t.Chdir(dir)
	code, unit, errOut := portstripe(t, "install-unit", "-c", "etc/node.yaml", "--dir", "/srv/portstripe", "--print")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	want := "ExecStart=" + real + " run -c " + filepath.Join(dir, "etc/node.yaml") + " --dir /srv/portstripe --metrics 127.0.0.1:9642\n"
	for _, line := range []string{want, "Documentation=file:" + filepath.Join(dir, "etc/node.yaml"),
		"Type=notify\n", "NotifyAccess=main\n", "KillMode=process\n", "RestartPreventExitStatus=2\n",
		"ExecReload=/bin/kill -HUP $MAINPID\n", "Restart=on-failure\n", "ReadWritePaths=/srv/portstripe\n",
		"RuntimeDirectoryPreserve=yes\n", "ProtectSystem=strict\n", "NoNewPrivileges=yes\n"} {
		if !strings.Contains(unit, line) {
			t.Errorf("unit lacks %q:\n%s", line, unit)
		}
	}
	if strings.Contains(unit, "StateDirectory=portstripe") {
		t.Errorf("unit with --dir /srv/portstripe still creates /var/lib/portstripe")
	}
	if m := regexp.MustCompile(`WatchdogSec=(\d+)`).FindStringSubmatch(unit); m == nil {
		t.Error("no WatchdogSec")
	} else if s, _ := strconv.Atoi(m[1]); s < 3*10 {
		t.Errorf("WatchdogSec=%d leaves too little room over the 10 s reconcile period", s)
	}

	_, unit, _ = portstripe(t, "install-unit", "--print")
	for _, line := range []string{"run -c " + defaultNodeFile + " --dir /var/lib/portstripe ", "StateDirectory=portstripe\n"} {
		if !strings.Contains(unit, line) {
			t.Errorf("default unit lacks %q", line)
		}
	}
}

// TestInstallUnitWrites: without --print the unit is written where --path
// says, and the output names the node file (and that it is still missing).
func TestInstallUnitWrites(t *testing.T) {
	dir := t.TempDir()
	real, _ := realBinary(t, dir)
	fakeExecutable(t, real)
	path, nodeFile, state := filepath.Join(dir, "portstripe.service"), filepath.Join(dir, "node.yaml"), filepath.Join(dir, "state")
	code, out, errOut := portstripe(t, "install-unit", "-c", nodeFile, "--dir", state, "--path", path)
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	unit, err := os.ReadFile(path)
	if err != nil || !strings.Contains(string(unit), "run -c "+nodeFile+" --dir "+state) {
		t.Fatalf("unit not written with the paths given (%v):\n%s", err, unit)
	}
	for _, want := range []string{"node file " + nodeFile, nodeFile + " does not exist yet", "systemctl daemon-reload"} {
		if !strings.Contains(out, want) {
			t.Errorf("output does not say %q:\n%s", want, out)
		}
	}
	if st, err := os.Stat(state); err != nil || st.Mode().Perm() != 0o700 {
		t.Errorf("state dir for ReadWritePaths= not made 0700: %v %v", st, err)
	}
}

// TestInstallUnitRefusesGoRun: a binary 'go run' built would vanish with
// its cache; install-unit says how to build a real one, exit 2.
func TestInstallUnitRefusesGoRun(t *testing.T) {
	cache := t.TempDir()
	t.Setenv("GOCACHE", cache)
	bin := filepath.Join(cache, "3f", "3f9a-d", "portstripe")
	if err := os.MkdirAll(filepath.Dir(bin), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, nil, 0o755); err != nil {
		t.Fatal(err)
	}
	fakeExecutable(t, bin)
	code, out, errOut := portstripe(t, "install-unit", "--print")
	if code != 2 || out != "" || !strings.Contains(errOut, "go build -o /usr/local/bin/portstripe ./cmd/portstripe") {
		t.Errorf("install-unit from the build cache: exit %d, stdout %q, stderr %q; want exit 2 and how to build", code, out, errOut)
	}

	dirs := buildDirs{caches: []string{"/root/.cache/go-build", "/srv/gocache"}, temps: []string{"/tmp", "/var/tmp/gotmp"}}
	for bin, want := range map[string]bool{
		"/root/.cache/go-build/ab/abcdef-d/portstripe":  true, // go run, Go 1.24+
		"/srv/gocache/ab/abcdef-d/portstripe":           true, // GOCACHE
		"/tmp/go-build1234/b001/exe/portstripe":         true, // go run's work dir
		"/var/tmp/gotmp/go-build99/b001/exe/portstripe": true, // GOTMPDIR
		"/usr/local/bin/portstripe":                     false,
		"/tmp/portstripe":                               false,
		"/root/go/bin/portstripe":                       false, // go install
	} {
		if got := goBuildOutput(bin, dirs); got != want {
			t.Errorf("goBuildOutput(%s) = %v, want %v", bin, got, want)
		}
	}
}

// TestUnitSecurity: systemd accepts the unit, and its sandbox keeps
// systemd-analyze's exposure score at "OK" or better (9.6 UNSAFE unsandboxed).
func TestUnitSecurity(t *testing.T) {
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("systemd-analyze is not installed (scripts/test.sh installs it)")
		}
		t.Skip("systemd-analyze not installed")
	}
	dir := t.TempDir()
	real, _ := realBinary(t, dir)
	fakeExecutable(t, real)
	path := filepath.Join(dir, "portstripe.service")
	if code, _, errOut := portstripe(t, "install-unit", "--path", path); code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
	out, err := exec.Command("systemd-analyze", "security", "--offline=yes", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for portstripe.service: ([0-9.]+) (\w+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("systemd-analyze security: %v\n%s", err, out)
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: %.1f %s", score, m[2])
	if score > 4.0 {
		t.Errorf("exposure %.1f %s, want 4.0 or less (OK):\n%s", score, m[2], out)
	}
}

// TestInstallUnitBinary: --binary names the path the unit runs, which need
// not exist where the unit is made (the .deb's /usr/bin/portstripe); a
// relative or build-cache path is refused.
func TestInstallUnitBinary(t *testing.T) {
	code, unit, errOut := portstripe(t, "install-unit", "--print", "--binary", "/usr/bin/portstripe", "-c", "/etc/portstripe/node.yaml")
	if want := "ExecStart=/usr/bin/portstripe run -c /etc/portstripe/node.yaml --dir /var/lib/portstripe --metrics 127.0.0.1:9642\n"; code != 0 || !strings.Contains(unit, want) {
		t.Errorf("install-unit --binary /usr/bin/portstripe: exit %d (%s), unit lacks %q:\n%s", code, errOut, want, unit)
	}
	cache := t.TempDir()
	t.Setenv("GOCACHE", cache)
	for _, bin := range []string{"bin/portstripe", filepath.Join(cache, "ab", "abcdef-d", "portstripe")} {
		if code, out, errOut := portstripe(t, "install-unit", "--print", "--binary", bin); code != 2 || out != "" || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("install-unit --binary %s: exit %d, stdout %q, stderr %q; want exit 2 and one line", bin, code, out, errOut)
		}
	}
}

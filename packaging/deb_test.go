//go:build deb

package packaging

import (
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// The package under test, built once by TestMain with packaging/deb.sh
// (what make deb runs) and unpacked with dpkg -x into root.
var (
	deb     string // the .deb
	root    string // its files, unpacked
	control string // its control files (dpkg-deb -e)
	version string // the Debian version make deb gives it
)

func TestMain(m *testing.M) {
	os.Exit(func() int {
		tmp, err := os.MkdirTemp("", "portstripe-deb-")
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		defer os.RemoveAll(tmp)
		if err := build(tmp); err != nil {
			fmt.Fprintln(os.Stderr, "packaging:", err)
			return 1
		}
		return m.Run()
	}())
}

func build(tmp string) error {
	cmd := exec.Command("packaging/deb.sh")
	cmd.Dir = ".."
	cmd.Env = append(os.Environ(), "DIST="+filepath.Join(tmp, "dist"))
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		return fmt.Errorf("packaging/deb.sh: %w", err)
	}
	deb = strings.TrimSpace(string(out))
	root, control = filepath.Join(tmp, "root"), filepath.Join(tmp, "control")
	for _, args := range [][]string{{"-x", deb, root}, {"-e", deb, control}} {
		if out, err := exec.Command("dpkg-deb", args...).CombinedOutput(); err != nil {
			return fmt.Errorf("dpkg-deb %s: %v: %s", args[0], err, out)
		}
	}
	v, err := exec.Command("dpkg-deb", "--field", deb, "Version").Output()
	version = strings.TrimSpace(string(v))
	return err
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// TestDebName: make deb names the package after its version, as the
// checkout's tag or commit gives it (packaging/version.sh).
func TestDebName(t *testing.T) {
	want := strings.TrimSpace(run(t, "sh", "-c", "cd .. && packaging/version.sh")) + "-1"
	if version != want {
		t.Errorf("package version %q, want %q", version, want)
	}
	if got, want := filepath.Base(deb), "portstripe_"+version+"_amd64.deb"; got != want {
		t.Errorf("package file %s, want %s", got, want)
	}
	for field, want := range map[string]string{
		"Package": "portstripe", "Architecture": "amd64", "Section": "net",
		"Depends": "haproxy (>= 2.6), iptables, nftables, iproute2", "Recommends": "",
	} {
		if got := strings.TrimSpace(run(t, "dpkg-deb", "--field", deb, field)); got != want {
			t.Errorf("control %s: %q, want %q", field, got, want)
		}
	}
}

// TestDebFiles: the package holds exactly the binary, the unit, the node
// file (the one conffile), its pristine copy, the man pages, the three
// completions, the Debian docs and the lintian overrides.
func TestDebFiles(t *testing.T) {
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(l) // mode owner size date time path
		if path := strings.TrimPrefix(f[5], "."); !strings.HasSuffix(path, "/") {
			got = append(got, f[0]+" "+path)
		}
	}
	want := []string{
		"-rw-r--r-- /etc/portstripe/node.yaml",
		"-rw-r--r-- /lib/systemd/system/portstripe.service",
		"-rwxr-xr-x /usr/bin/portstripe",
		"-rw-r--r-- /usr/share/bash-completion/completions/portstripe",
		"-rw-r--r-- /usr/share/doc/portstripe/changelog.Debian.gz",
		"-rw-r--r-- /usr/share/doc/portstripe/copyright",
		"-rw-r--r-- /usr/share/fish/vendor_completions.d/portstripe.fish",
		"-rw-r--r-- /usr/share/lintian/overrides/portstripe",
		"-rw-r--r-- /usr/share/portstripe/node.yaml",
		"-rw-r--r-- /usr/share/zsh/vendor-completions/_portstripe",
	}
	// One gzipped man page per command: what the packaged binary's gen-man
	// writes.
	man := t.TempDir()
	run(t, filepath.Join(root, "usr/bin/portstripe"), "gen-man", man)
	pages, _ := filepath.Glob(filepath.Join(man, "*.1"))
	for _, p := range pages {
		want = append(want, "-rw-r--r-- /usr/share/man/man1/"+filepath.Base(p)+".gz")
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("package files:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	for _, page := range []string{"portstripe.1", "portstripe-run.1", "portstripe-version.1", "portstripe-install-unit.1"} {
		if !slices.Contains(want, "-rw-r--r-- /usr/share/man/man1/"+page+".gz") {
			t.Errorf("no man page %s", page)
		}
		if b := gunzip(t, filepath.Join(root, "usr/share/man/man1", page+".gz")); !strings.Contains(b, `.TH "PORTSTRIPE" "1"`) {
			t.Errorf("%s is not a man page:\n%.300s", page, b)
		}
	}
	if conffiles := run(t, "cat", filepath.Join(control, "conffiles")); conffiles != "/etc/portstripe/node.yaml\n" {
		t.Errorf("conffiles %q, want only /etc/portstripe/node.yaml", conffiles)
	}
	for f, want := range map[string]string{
		"usr/share/bash-completion/completions/portstripe":    "__start_portstripe",
		"usr/share/zsh/vendor-completions/_portstripe":        "#compdef portstripe",
		"usr/share/fish/vendor_completions.d/portstripe.fish": "complete -c portstripe",
		"usr/share/doc/portstripe/copyright":                  "Upstream-Name: portstripe",
		"usr/share/lintian/overrides/portstripe":              "statically-linked-binary",
		"usr/share/doc/portstripe/changelog.Debian.gz (gzip)": "portstripe (" + version + ") unstable",
	} {
		var b string
		if name, ok := strings.CutSuffix(f, " (gzip)"); ok {
			b = gunzip(t, filepath.Join(root, name))
		} else {
			b = run(t, "cat", filepath.Join(root, f))
		}
		if !strings.Contains(b, want) {
			t.Errorf("%s lacks %q", f, want)
		}
	}
}

func gunzip(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	z, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	b, err := io.ReadAll(z)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return string(b)
}

// TestDebRunsFromRoot: the unpacked binary says the package's version and
// commit, and compiles the node file the package installs, stamping that
// version into both headers.
func TestDebRunsFromRoot(t *testing.T) {
	rev := strings.TrimSpace(run(t, "git", "rev-parse", "--short=12", "HEAD"))
	want := version + " (rev " + rev + ")"
	if dirty := run(t, "git", "status", "--porcelain", "--untracked-files=no"); dirty != "" {
		want = version + " (rev " + rev + ", modified)"
	}
	bin := filepath.Join(root, "usr/bin/portstripe")
	if got := run(t, bin, "--version"); got != "portstripe "+want+"\n" {
		t.Errorf("%s --version: %q, want %q", bin, got, "portstripe "+want+"\n")
	}
	out := t.TempDir()
	cmd := exec.Command(bin, "compile", "-c", filepath.Join(root, "etc/portstripe/node.yaml"), "-o", out)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("compile of the packaged node file: %v\n%s", err, b)
	}
	for _, f := range []string{"haproxy.cfg", "portstripe.nft"} {
		if b := run(t, "cat", filepath.Join(out, f)); !strings.Contains(b, "\n# portstripe: "+want+"\n") {
			t.Errorf("%s's header does not name %q:\n%.300s", f, want, b)
		}
	}
}

// TestDebUnit: the packaged unit is what install-unit makes for
// /usr/bin/portstripe and /etc/portstripe/node.yaml, and systemd accepts it.
func TestDebUnit(t *testing.T) {
	unit := run(t, "cat", filepath.Join(root, "lib/systemd/system/portstripe.service"))
	bin := filepath.Join(root, "usr/bin/portstripe")
	if want := run(t, bin, "install-unit", "--print", "--binary", "/usr/bin/portstripe", "-c", "/etc/portstripe/node.yaml"); unit != want {
		t.Errorf("the packaged unit is not install-unit's:\n%s", unit)
	}
	if !strings.Contains(unit, "\nExecStart=/usr/bin/portstripe run -c /etc/portstripe/node.yaml --dir /var/lib/portstripe --metrics 127.0.0.1:9642\n") ||
		!strings.Contains(unit, "\nStateDirectory=portstripe\n") || !strings.Contains(unit, "\nKillMode=process\n") {
		t.Errorf("packaged unit:\n%s", unit)
	}
	// systemd-analyze verify wants ExecStart's binary to exist, and this
	// host has no /usr/bin/portstripe: the copy verified runs the unpacked
	// one, every other line as packaged.
	if strings.Count(unit, "/usr/bin/portstripe") != 1 {
		t.Fatalf("the unit names /usr/bin/portstripe other than in ExecStart:\n%s", unit)
	}
	path := filepath.Join(t.TempDir(), "portstripe.service")
	if err := os.WriteFile(path, []byte(strings.Replace(unit, "/usr/bin/portstripe", bin, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("systemd-analyze", "verify", path).CombinedOutput(); err != nil || len(out) > 0 {
		t.Errorf("systemd-analyze verify: %v\n%s", err, out)
	}
}

// TestDebLintian: lintian finds nothing, pedantic and informational tags
// included, beyond the overrides the package explains.
func TestDebLintian(t *testing.T) {
	out, err := exec.Command("lintian", "--pedantic", "--info", "--fail-on", "error,warning,info,pedantic", deb).CombinedOutput()
	report := strings.TrimSpace(strings.ReplaceAll(string(out), "running with root privileges is not recommended!", ""))
	if err != nil || report != "" {
		t.Errorf("lintian: %v\n%s", err, report)
	}
}

// scriptRun is one run of a packaged maintainer script against a throwaway
// DPKG_ROOT, with deb-systemd-helper, deb-systemd-invoke and systemctl
// replaced by fakes that record their arguments.
type scriptRun struct {
	root string // DPKG_ROOT: the node file, its pristine copy, the state dir
	out  string // what the script printed
	log  string // what the fakes were asked, one call a line
}

// newRoot is a DPKG_ROOT on a systemd machine holding the packaged node
// file (edited when node is not empty) and a state directory.
func newRoot(t *testing.T, node string) string {
	t.Helper()
	r := t.TempDir()
	example := run(t, "cat", filepath.Join(root, "usr/share/portstripe/node.yaml"))
	if node == "" {
		node = example
	}
	for path, data := range map[string]string{
		"usr/share/portstripe/node.yaml": example,
		"etc/portstripe/node.yaml":       node,
		"var/lib/portstripe/haproxy.cfg": "# applied\n",
	} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(r, path)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(r, path), []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.MkdirAll(filepath.Join(r, "run/systemd/system"), 0o755); err != nil {
		t.Fatal(err)
	}
	return r
}

// script runs the packaged maintainer script name with args in dpkgRoot;
// systemctl is-active answers active when active is set.
func script(t *testing.T, dpkgRoot string, active bool, name string, args ...string) scriptRun {
	t.Helper()
	fakes := t.TempDir()
	log := filepath.Join(fakes, "calls")
	for _, f := range []string{"deb-systemd-helper", "deb-systemd-invoke", "systemctl"} {
		body := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >>%s\n", f, log)
		if f == "systemctl" && !active {
			body += "case \"$*\" in *is-active*) exit 3;; esac\n"
		}
		if f == "deb-systemd-helper" {
			// A first install: the unit was never disabled.
			body += "exit 0\n"
		}
		if err := os.WriteFile(filepath.Join(fakes, f), []byte(body), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(filepath.Join(control, name), args...)
	cmd.Env = append(os.Environ(), "DPKG_ROOT="+dpkgRoot, "PATH="+fakes+":"+os.Getenv("PATH"))
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	calls, _ := os.ReadFile(log)
	return scriptRun{root: dpkgRoot, out: string(out), log: string(calls)}
}

// TestDebInstallScripts: postinst enables the unit once the node file is
// the operator's, never starts or restarts portstripe, and on an upgrade
// says how to restart the running one.
func TestDebInstallScripts(t *testing.T) {
	noStart := func(t *testing.T, r scriptRun) {
		t.Helper()
		for _, verb := range []string{" start", " restart", " try-restart", " reload", "deb-systemd-invoke"} {
			if strings.Contains(r.log, verb) {
				t.Errorf("postinst ran %q:\n%s", verb, r.log)
			}
		}
	}
	t.Run("first install, example node", func(t *testing.T) {
		r := script(t, newRoot(t, ""), false, "postinst", "configure", "")
		noStart(t, r)
		if strings.Contains(r.log, "helper enable") || !strings.Contains(r.out, "is still the example node") || !strings.Contains(r.out, "systemctl enable --now portstripe") {
			t.Errorf("with the example node file: enabled, or did not say what to do:\n%s\n%s", r.log, r.out)
		}
	})
	t.Run("first install, the operator's node", func(t *testing.T) {
		r := script(t, newRoot(t, "name: mine\n"), false, "postinst", "configure", "")
		noStart(t, r)
		if !strings.Contains(r.log, "deb-systemd-helper enable portstripe.service\n") || strings.Contains(r.out, "restart") {
			t.Errorf("with the operator's node file: not enabled, or talks of a restart:\n%s\n%s", r.log, r.out)
		}
	})
	t.Run("upgrade of a running node", func(t *testing.T) {
		r := script(t, newRoot(t, "name: mine\n"), true, "postinst", "configure", "0.0.0~git20261130000000.0123456789ab-1")
		noStart(t, r)
		if !strings.Contains(r.out, "systemctl restart portstripe") || !strings.Contains(r.log, "systemctl --system daemon-reload") {
			t.Errorf("upgrade: does not say how to restart, or no daemon-reload:\n%s\n%s", r.log, r.out)
		}
	})
}

// TestDebRemoveScripts: removing stops portstripe (HAProxy keeps serving,
// and the script says how to tear it down); an upgrade stops nothing; a
// purge removes the state directory unless an HAProxy runs from it.
func TestDebRemoveScripts(t *testing.T) {
	r := script(t, newRoot(t, ""), true, "prerm", "remove")
	if r.log != "deb-systemd-invoke stop portstripe.service\n" || !strings.Contains(r.out, "HAProxy and portstripe's rules keep serving") ||
		!strings.Contains(r.out, "nft delete table inet portstripe") ||
		!strings.Contains(r.out, "iptables -t nat -D PREROUTING -m comment --comment portstripe -j PORTSTRIPE") {
		t.Errorf("prerm remove:\n%s\n%s", r.log, r.out)
	}
	if r := script(t, newRoot(t, ""), true, "prerm", "upgrade", "9.9.9-1"); r.log != "" || r.out != "" {
		t.Errorf("prerm upgrade did something:\n%s\n%s", r.log, r.out)
	}

	purged := script(t, newRoot(t, ""), false, "postrm", "purge")
	if _, err := os.Stat(filepath.Join(purged.root, "var/lib/portstripe")); !os.IsNotExist(err) {
		t.Errorf("purge kept /var/lib/portstripe (%v)", err)
	}
	if !strings.Contains(purged.log, "deb-systemd-helper purge portstripe.service") {
		t.Errorf("purge did not forget the unit's state:\n%s", purged.log)
	}

	// An HAProxy master started from the state dir's haproxy.cfg: a process
	// whose command line names it, as haproxy -W -S … -f <dir>/haproxy.cfg's does.
	busy := newRoot(t, "")
	cfg := filepath.Join(busy, "var/lib/portstripe/haproxy.cfg")
	haproxy := exec.Command("tail", "-f", cfg)
	if err := haproxy.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { haproxy.Process.Kill(); haproxy.Wait() })
	kept := script(t, busy, false, "postrm", "purge")
	if _, err := os.Stat(cfg); err != nil || !strings.Contains(kept.out, "an HAProxy still runs from its haproxy.cfg") {
		t.Errorf("purge with HAProxy running from the state dir: %v\n%s", err, kept.out)
	}
}

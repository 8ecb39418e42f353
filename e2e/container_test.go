//go:build e2e

package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// TestContainer checks the container's contract without a Docker engine:
// the image's ENTRYPOINT (Dockerfile) with docker-compose.yml's command runs
// in a node network namespace (network_mode: host) with exactly the
// capabilities the compose file grants, only the binaries of the packages
// the image installs on PATH, and the compose volumes mounted at their
// paths in a mount namespace of its own. It must apply the node: rules in
// the namespace, HAProxy answering, a client through a striped port
// reaching its backend, and a node file replaced in the mounted directory
// (as editors save) applied with a reload that leaves no old worker behind.
func TestContainer(t *testing.T) {
	testenv.Require(t, "unshare", "setpriv", "nsenter", "capsh", "dpkg-query")
	img := readImage(t, "../Dockerfile")
	svc := readComposeService(t, "../docker-compose.yml", "portstripe")
	if svc.NetworkMode != "host" {
		t.Fatalf("compose: portstripe has network_mode %q; the rules DNAT to listeners on the node itself, so it needs host", svc.NetworkMode)
	}
	if !slices.Equal(svc.CapDrop, []string{"ALL"}) {
		t.Fatalf("compose: cap_drop is %v, not [ALL]: the container would hold Docker's default capabilities besides cap_add", svc.CapDrop)
	}
	var caps, want []string // setpriv's +net_admin, capsh's cap_net_admin
	for _, c := range svc.CapAdd {
		caps = append(caps, "+"+strings.ToLower(c))
		want = append(want, "cap_"+strings.ToLower(c))
	}
	slices.Sort(want)
	argv := append(slices.Clone(img.entrypoint), svc.Command...)
	if argv[0] != "/usr/local/bin/portstripe" {
		t.Fatalf("the image's entrypoint is %v; this test runs the portstripe it builds in place of /usr/local/bin/portstripe", img.entrypoint)
	}
	argv[0] = cliPath
	t.Logf("container: %s (caps %s; packages %s)", strings.Join(argv, " "), strings.Join(svc.CapAdd, ","), strings.Join(img.packages, " "))

	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	client, node := pair.Client, pair.Node
	liveStartEcho(t, node, liveEchoAddr)
	config := filepath.Join(dir, "config")
	if err := os.Mkdir(config, 0o755); err != nil {
		t.Fatal(err)
	}
	nodeFile := argValue(t, svc.Command, "-c")
	version := func(inspectDelay string) string {
		return testbed.NodeFile{Name: "container", Striped: "1000-2000", ListenPort: liveListenPort, InspectDelay: inspectDelay,
			MaxConn: 1000, Dir: "/run/portstripe", Services: []string{svcEcho}}.YAML()
	}
	mounts := containerMounts(t, dir, svc.Volumes, map[string]string{"./config": config})
	liveWriteLikeEditor(t, filepath.Join(config, filepath.Base(nodeFile)), version("5s"))

	// Inside: sh sets up the volumes in the new mount namespace, setpriv
	// drops to the compose capabilities, env leaves only the image's PATH.
	script := strings.Join(append(mounts, `exec "$@"`), " && ")
	cmd := node.Command("unshare", append([]string{"--mount", "--propagation", "private", "--", "sh", "-ec", script, "sh",
		"setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-all," + strings.Join(caps, ","), "--",
		"env", "-i", "PATH=" + imagePath(t, dir, img.packages), "HOME=/root"}, argv...)...)
	run := testenv.Start(t, "container", cmd, filepath.Join(dir, "container.log"))
	pid := run.Cmd.Process.Pid // ip, unshare, sh, setpriv and env each exec the next

	if _, err := liveWaitFor(30*time.Second, 100*time.Millisecond, func() error {
		if run.Exited() {
			return fmt.Errorf("exited: %v", run.Err())
		}
		return liveEchoOnce(client, 1500, "SSH-2.0-container\r\n")
	}); err != nil {
		t.Fatalf("no client reached the backend through tcp 1500: %v\n%s", err, testbed.Tail(run.LogText(), 30))
	}
	t.Logf("a client through tcp 1500 reached the echo backend")

	for _, set := range []string{"CapBnd", "CapEff"} {
		if got := procCaps(t, pid, set); !slices.Equal(got, want) {
			t.Errorf("portstripe ran with %s %v, want the compose file's %v", set, got, want)
		}
	}
	rules, err := node.Run("iptables", "-t", "nat", "-S")
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{`(?m)^-A PREROUTING .*-j PORTSTRIPE$`, `(?m)^-A PORTSTRIPE-TCP -p tcp -m tcp --dport 1000:2000 .*-j DNAT`} {
		if !regexp.MustCompile(want).MatchString(rules) {
			t.Errorf("the node's nat table has no line like %s:\n%s", want, rules)
		}
	}
	// `docker exec … portstripe status`: the same namespaces, the same paths.
	type status struct {
		HAProxy  *haproxy.Procs `json:"haproxy"`
		Problems []string       `json:"problems"`
	}
	readStatus := func() (status, error) {
		out, err := exec.Command("nsenter", "--target", fmt.Sprint(pid), "--mount", "--net", "--",
			cliPath, "status", "--dir", argValue(t, svc.Command, "--dir"), "--json").Output()
		var st status
		if jerr := json.Unmarshal(out, &st); jerr != nil {
			return st, fmt.Errorf("status --json: %v, %v: %s", err, jerr, out)
		}
		if err != nil {
			return st, fmt.Errorf("status: %v: problems %v", err, st.Problems)
		}
		return st, nil
	}
	st, err := readStatus()
	if err != nil || st.HAProxy == nil || len(st.HAProxy.Workers) == 0 {
		t.Fatalf("HAProxy does not answer on its master socket in the container: %v %+v", err, st)
	}

	// An editor's save (a new file renamed over node.yaml) in the mounted
	// directory: run sees it, applies it with a reload, and the old worker
	// goes (the master must be able to signal it).
	liveWriteLikeEditor(t, filepath.Join(config, filepath.Base(nodeFile)), version("4s"))
	if _, err := liveWaitFor(liveDeadline, 100*time.Millisecond, func() error {
		st, err := readStatus()
		switch {
		case err != nil:
			return err
		case st.HAProxy.Master.Reloads < 1 || st.HAProxy.Master.FailedReloads != 0:
			return fmt.Errorf("master: %d reloads, last failed %d", st.HAProxy.Master.Reloads, st.HAProxy.Master.FailedReloads)
		case len(st.HAProxy.OldWorkers) > 0:
			return fmt.Errorf("old workers still running: %+v", st.HAProxy.OldWorkers)
		}
		return nil
	}); err != nil {
		t.Fatalf("the edited node file was not applied cleanly: %v\n%s", err, testbed.Tail(run.LogText(), 30))
	}
	if err := liveEchoOnce(client, 1999, "SSH-2.0-after-reload\r\n"); err != nil {
		t.Errorf("after the reload: %v", err)
	}
	if strings.Contains(run.LogText(), "level=ERROR") {
		t.Errorf("the container logged errors:\n%s", run.LogText())
	}
}

// image is what the test reads from the Dockerfile's final stage.
type image struct {
	entrypoint []string
	packages   []string // apt-get install'ed
}

func readImage(t *testing.T, path string) image {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var img image
	// Instructions, continuation lines joined; a FROM starts a new stage.
	text := strings.ReplaceAll(string(data), "\\\n", " ")
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		instr, rest, _ := strings.Cut(strings.TrimSpace(sc.Text()), " ")
		switch strings.ToUpper(instr) {
		case "FROM":
			img = image{}
		case "ENTRYPOINT":
			if err := json.Unmarshal([]byte(rest), &img.entrypoint); err != nil {
				t.Fatalf("%s: ENTRYPOINT %s: want the exec (JSON) form: %v", path, rest, err)
			}
		case "RUN":
			for _, m := range regexp.MustCompile(`apt-get install ([^&;|]+)`).FindAllStringSubmatch(rest, -1) {
				for _, w := range strings.Fields(m[1]) {
					if !strings.HasPrefix(w, "-") {
						img.packages = append(img.packages, w)
					}
				}
			}
		}
	}
	if len(img.entrypoint) == 0 || len(img.packages) == 0 {
		t.Fatalf("%s: no ENTRYPOINT or no apt-get install in the final stage: %+v", path, img)
	}
	return img
}

type composeService struct {
	Command     []string `yaml:"command"`
	NetworkMode string   `yaml:"network_mode"`
	CapAdd      []string `yaml:"cap_add"`
	CapDrop     []string `yaml:"cap_drop"`
	Volumes     []string `yaml:"volumes"`
}

func readComposeService(t *testing.T, path, name string) composeService {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]composeService `yaml:"services"`
	}
	if err := yaml.Unmarshal(data, &f); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	svc, ok := f.Services[name]
	if !ok || len(svc.Command) == 0 {
		t.Fatalf("%s: no service %s with a command", path, name)
	}
	return svc
}

// argValue is the value following flag in args.
func argValue(t *testing.T, args []string, flag string) string {
	t.Helper()
	if i := slices.Index(args, flag); i >= 0 && i+1 < len(args) {
		return args[i+1]
	}
	t.Fatalf("the compose command %v has no %s", args, flag)
	return ""
}

// containerMounts are the shell commands that mount the compose volumes in
// a private mount namespace: a host directory (binds maps the compose
// file's relative source to the test's) bound at its target, read-only with
// :ro; a named volume as an empty directory of Docker's mode. A target's
// parent gets an overlay first, so its mount point can be made without
// touching the host's file system.
func containerMounts(t *testing.T, dir string, volumes []string, binds map[string]string) []string {
	t.Helper()
	var cmds []string
	overlaid := map[string]bool{}
	for i, v := range volumes {
		parts := strings.Split(v, ":")
		if len(parts) < 2 {
			t.Fatalf("compose volume %q: want SOURCE:TARGET[:MODE]", v)
		}
		src, target := parts[0], parts[1]
		if parent := filepath.Dir(target); !overlaid[parent] {
			overlaid[parent] = true
			o := filepath.Join(dir, "overlay", fmt.Sprint(len(overlaid)))
			for _, d := range []string{"upper", "work"} {
				if err := os.MkdirAll(filepath.Join(o, d), 0o755); err != nil {
					t.Fatal(err)
				}
			}
			cmds = append(cmds, fmt.Sprintf("mount -t overlay overlay -o lowerdir=%s,upperdir=%s/upper,workdir=%s/work %s", parent, o, o, parent))
		}
		cmds = append(cmds, "mkdir -p "+target)
		switch {
		case strings.HasPrefix(src, "./"):
			host, ok := binds[src]
			if !ok {
				t.Fatalf("compose volume %q: no test directory stands for %s", v, src)
			}
			cmds = append(cmds, fmt.Sprintf("mount --bind %s %s", host, target))
			if len(parts) > 2 && parts[2] == "ro" {
				cmds = append(cmds, "mount -o remount,bind,ro "+target)
			}
		default:
			vol := filepath.Join(dir, "volumes", fmt.Sprint(i))
			if err := os.MkdirAll(vol, 0o755); err != nil {
				t.Fatal(err)
			}
			cmds = append(cmds, fmt.Sprintf("mount --bind %s %s", vol, target))
		}
	}
	return cmds
}

// imagePath makes a directory holding the programs the image has: those of
// the packages it installs and of Debian's required set (what debian:12-slim
// holds), found as installed here, alternatives included, and returns it.
func imagePath(t *testing.T, dir string, packages []string) string {
	t.Helper()
	out, err := exec.Command("dpkg-query", "-W", "-f", "${db:Status-Abbrev}\t${Package}\t${Essential}\t${Priority}\n").Output()
	if err != nil {
		t.Fatal(err)
	}
	pkgs := slices.Clone(packages)
	installed := map[string]bool{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Split(line, "\t")
		if len(f) == 4 && strings.TrimSpace(f[0]) == "ii" {
			installed[f[1]] = true
			if f[2] == "yes" || f[3] == "required" {
				pkgs = append(pkgs, f[1])
			}
		}
	}
	for _, p := range packages {
		if !installed[p] {
			t.Fatalf("the image installs %s, which is not installed here: apt-get install %s", p, p)
		}
	}
	list, err := exec.Command("dpkg", append([]string{"-L"}, pkgs...)...).Output()
	if err != nil {
		t.Fatalf("dpkg -L: %v", err)
	}
	owned := map[string]bool{}
	for _, f := range strings.Split(string(list), "\n") {
		if real, err := filepath.EvalSymlinks(f); err == nil {
			owned[real] = true
		}
	}
	bin := filepath.Join(dir, "image-bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, d := range []string{"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			real, err := filepath.EvalSymlinks(filepath.Join(d, e.Name()))
			if err != nil || !owned[real] {
				continue
			}
			if st, err := os.Stat(real); err != nil || st.IsDir() || st.Mode()&0o111 == 0 {
				continue
			}
			os.Symlink(real, filepath.Join(bin, e.Name())) // the first of /usr/sbin, /sbin… wins, as on PATH
		}
	}
	return bin
}

// procCaps is a capability set of a process, as capsh names it
// (cap_net_admin, …), sorted.
func procCaps(t *testing.T, pid int, set string) []string {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^` + set + `:\s+([0-9a-f]+)$`).FindSubmatch(status)
	if m == nil {
		t.Fatalf("no %s in /proc/%d/status", set, pid)
	}
	_, names, _ := strings.Cut(strings.TrimSpace(testenv.Run(t, "capsh", "--decode="+string(m[1]))), "=")
	caps := strings.Split(names, ",")
	slices.Sort(caps)
	return caps
}

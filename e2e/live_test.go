//go:build e2e

package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// The live tests drive `portstripe run`, `apply`, `status` and `clean` (the
// real CLI, inside the node namespace) against the real HAProxy and
// iptables, and time what the issue asks to happen "within 2 s". The times
// are logged; the pass criteria are generous deadlines.

const (
	liveListenPort = 20000
	liveSSHPort    = 1022  // a striped TCP port the SSH client uses
	liveVPNPort    = 1194  // a striped TCP port the OpenVPN client uses
	liveVPNLport   = 41001 // in testbed.ClientFixedPorts
	liveEchoAddr   = "127.0.0.1:7000"
	liveTarget     = 2 * time.Second // the target, reported only
	liveDeadline   = 15 * time.Second
)

// liveNode is one version of a small node file: tcp and udp striped on
// 1000-2000, the sockets and everything else in dir.
type liveNode struct {
	listenPort   int
	inspectDelay string
	services     []string // YAML list items, from the svc* helpers
	firewall     string   // the node's backend; "" for the default
}

func (n liveNode) yaml(dir string) string {
	return testbed.NodeFile{Name: "live", Striped: "1000-2000", ListenPort: n.listenPort, InspectDelay: n.inspectDelay,
		MaxConn: 1000, Dir: dir, Firewall: n.firewall, Services: n.services}.YAML()
}

const (
	svcECC = `  - name: openvpn_ecc
    kind: openvpn
    tls: {mode: tls-crypt}
    udp: 5060
    tcp: 127.0.0.1:5060
`
	svcSSH = `  - name: ssh
    kind: ssh
    tcp: ` + sshBackend + `
`
	// svcEcho is an ssh-kind service whose backend echoes: a client that
	// starts with "SSH-" gets its bytes back. It sends no banner of its
	// own, so it is checked by a plain connect.
	svcEcho = `  - name: echo
    kind: ssh
    tcp: ` + liveEchoAddr + `
    check: connect
`
	svcExtra = `  - name: extra
    kind: tls
    tcp: 127.0.0.1:8443
`
)

// liveWriteLikeEditor replaces path the way editors save: a temporary file in
// the same directory, renamed over the old one.
func liveWriteLikeEditor(t *testing.T, path, content string) {
	t.Helper()
	tmp := filepath.Join(filepath.Dir(path), "."+filepath.Base(path)+".swp")
	if err := os.WriteFile(tmp, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, path); err != nil {
		t.Fatal(err)
	}
}

func liveSHA256(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// livePortstripe runs the CLI inside the node namespace.
func livePortstripe(node testbed.Netns, args ...string) (string, error) {
	return node.Run(cliPath, args...)
}

// liveShowProc asks the master CLI (a Unix socket: reachable from any network
// namespace) for "show proc".
func liveShowProc(sock string) (haproxy.Procs, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	return haproxy.NewMaster(sock, nil).ShowProc(ctx)
}

func liveMustShowProc(t *testing.T, sock string) haproxy.Procs {
	t.Helper()
	ps, err := liveShowProc(sock)
	if err != nil {
		t.Fatalf("show proc on %s: %v", sock, err)
	}
	return ps
}

// liveRules returns portstripe's chains and rules in the node's nat table
// (iptables-save, with -c the counters too), plus the jumps to them.
func liveRules(t *testing.T, node testbed.Netns, counters bool) string {
	t.Helper()
	args := []string{"-t", "nat"}
	if counters {
		args = append(args, "-c")
	}
	out, err := node.Run("iptables-save", args...)
	if err != nil {
		t.Fatal(err)
	}
	var keep []string
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, "PORTSTRIPE") {
			keep = append(keep, l)
		}
	}
	return strings.Join(keep, "\n")
}

// liveDial opens a TCP connection from inside ns.
func liveDial(ns testbed.Netns, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := ns.Do(func() error {
		var err error
		c, err = net.DialTimeout("tcp", addr, timeout)
		return err
	})
	return c, err
}

// liveSSHBanner connects from the client namespace to a striped port, speaks
// first as an SSH client does, and returns the server's banner.
func liveSSHBanner(client testbed.Netns, port int) (string, error) {
	return liveSSHBannerAt(client, nodeAddr, port)
}

// liveSSHBannerAt is liveSSHBanner to the node address addr.
func liveSSHBannerAt(client testbed.Netns, addr string, port int) (string, error) {
	c, err := liveDial(client, net.JoinHostPort(addr, strconv.Itoa(port)), time.Second)
	if err != nil {
		return "", err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(2 * time.Second))
	if _, err := io.WriteString(c, "SSH-2.0-portstripe-e2e\r\n"); err != nil {
		return "", err
	}
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return "", fmt.Errorf("no banner: %w (read %q)", err, line)
	}
	if !strings.HasPrefix(line, "SSH-2.0-OpenSSH") {
		return "", fmt.Errorf("unexpected banner %q", line)
	}
	return strings.TrimSpace(line), nil
}

// liveWaitFor calls ok every interval until it succeeds or timeout passes, and
// returns how long that took and the last error.
func liveWaitFor(timeout, interval time.Duration, ok func() error) (time.Duration, error) {
	start := time.Now()
	for {
		err := ok()
		if err == nil {
			return time.Since(start), nil
		}
		if time.Since(start) > timeout {
			return time.Since(start), err
		}
		time.Sleep(interval)
	}
}

// liveHTTPGet fetches url from inside ns.
func liveHTTPGet(ns testbed.Netns, url string) (int, string, error) {
	tr := &http.Transport{
		DisableKeepAlives: true,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			return liveDial(ns, addr, 2*time.Second)
		},
	}
	defer tr.CloseIdleConnections()
	cl := &http.Client{Transport: tr, Timeout: 5 * time.Second}
	resp, err := cl.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// liveMetric returns the value of the sample whose name and labels are given
// exactly as exposed (`portstripe_applies_total{result="failed"}`).
func liveMetric(body, sample string) (float64, bool) {
	for _, l := range strings.Split(body, "\n") {
		if v, ok := strings.CutPrefix(l, sample+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// liveRun is a `portstripe run` started by the test in the node namespace.
type liveRun struct {
	t        *testing.T
	node     testbed.Netns
	proc     *testbed.Proc
	metrics  string // host:port of /metrics
	stateDir string
}

// startRun starts `portstripe run` (with extra flags) with /metrics on a
// free loopback port, logging to dir/<log>, and waits for its first pass.
func startRun(t *testing.T, node testbed.Netns, dir, nodePath, log string, extra ...string) *liveRun {
	t.Helper()
	r := &liveRun{t: t, node: node, stateDir: filepath.Join(dir, "state")}
	args := append([]string{"run", "-c", nodePath, "--dir", r.stateDir, "--metrics", "127.0.0.1:0"}, extra...)
	r.proc = testenv.Start(t, "portstripe run", node.Command(cliPath, args...), filepath.Join(dir, log))
	if err := r.proc.WaitLog("msg=\"node applied\"", 30*time.Second); err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`msg="serving /metrics, /healthz and /readyz" addr=(\S+)`).FindStringSubmatch(r.proc.LogText())
	if m == nil {
		t.Fatalf("run did not log its metrics address:\n%s", r.proc.LogText())
	}
	r.metrics = m[1]
	return r
}

func (r *liveRun) scrape() string {
	r.t.Helper()
	code, body, err := liveHTTPGet(r.node, "http://"+r.metrics+"/metrics")
	if err != nil || code != http.StatusOK {
		r.t.Fatalf("GET /metrics: %d %v", code, err)
	}
	return body
}

func (r *liveRun) applies(result string) float64 {
	r.t.Helper()
	v, ok := liveMetric(r.scrape(), `portstripe_applies_total{result="`+result+`"}`)
	if !ok {
		r.t.Fatalf("no portstripe_applies_total{result=%q} on /metrics", result)
	}
	return v
}

// waitApplies waits until portstripe_applies_total{result} reaches want.
func (r *liveRun) waitApplies(result string, want float64) {
	r.t.Helper()
	var got float64
	if _, err := liveWaitFor(liveDeadline, 50*time.Millisecond, func() error {
		if got = r.applies(result); got >= want {
			return nil
		}
		return fmt.Errorf("still %v", got)
	}); err != nil {
		r.t.Fatalf("portstripe_applies_total{result=%q} did not reach %v (%v):\n%s", result, want, err, testbed.Tail(r.proc.LogText(), 20))
	}
	if got != want {
		r.t.Errorf("portstripe_applies_total{result=%q} = %v, want %v", result, got, want)
	}
}

// errorLines are portstripe's own level=ERROR lines (HAProxy's [ALERT]
// lines, relayed with source=haproxy, are HAProxy's words, not ours).
func (r *liveRun) errorLines() []string {
	var out []string
	for _, l := range strings.Split(r.proc.LogText(), "\n") {
		if strings.Contains(l, "level=ERROR") && !strings.Contains(l, "source=haproxy") {
			out = append(out, l)
		}
	}
	return out
}

// haproxyAlerts are HAProxy's own [ALERT] lines, relayed by run.
func (r *liveRun) haproxyAlerts() []string {
	var out []string
	for _, l := range strings.Split(r.proc.LogText(), "\n") {
		if strings.Contains(l, "[ALERT]") && strings.Contains(l, "source=haproxy") {
			out = append(out, l)
		}
	}
	return out
}

// startLiveVPN starts an OpenVPN ECC instance: a TCP server on 127.0.0.1:5060 in
// the node namespace that pings every 2 s, so an established tunnel keeps
// carrying bytes.
func startLiveVPN(t *testing.T, node testbed.Netns, dir string) *instance {
	t.Helper()
	p, err := newPKI(filepath.Join(dir, "pki-ecc"), "ecc")
	if err != nil {
		t.Fatal(err)
	}
	in := &instance{service: "openvpn_ecc", alg: "ecc", mode: "tls-crypt", udpPort: 5060,
		tcpAddr: netip.MustParseAddrPort("127.0.0.1:5060"), pki: p}
	in.tcp = testenv.Start(t, "openvpn_ecc/tcp", node.Command("openvpn", append(in.serverArgs("tcp"), "--keepalive", "2", "30")...),
		filepath.Join(dir, "openvpn_ecc-tcp.log"))
	if err := in.tcp.WaitLog("Initialization Sequence Completed", 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return in
}

var bytesReceivedRE = regexp.MustCompile(`bytes_received:(\d+)`)

// liveVPNSocket returns the client's TCP connection to the striped port as ss
// shows it (state, addresses, bytes received), or an error when it is not
// established.
func liveVPNSocket(client testbed.Netns) (established bool, received int64, line string, err error) {
	out, err := client.Run("ss", "-Htin", "state", "established", "( sport = :"+strconv.Itoa(liveVPNLport)+" )")
	if err != nil {
		return false, 0, "", err
	}
	line = strings.Join(strings.Fields(out), " ")
	if !strings.Contains(line, fmt.Sprintf("%s:%d", nodeAddr, liveVPNPort)) {
		return false, 0, line, nil
	}
	if m := bytesReceivedRE.FindStringSubmatch(line); m != nil {
		received, _ = strconv.ParseInt(m[1], 10, 64)
	}
	return true, received, line, nil
}

// TestLiveRun drives `portstripe run`: an edit adding an SSH service, a
// tunnel that survives it, broken edits, a killed master, a clean stop.
func TestLiveRun(t *testing.T) {
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	client, node := pair.Client, pair.Node
	vpn := startLiveVPN(t, node, dir)
	startSSHD(t, node, dir)
	nodePath := filepath.Join(dir, "node.yaml")
	v1 := liveNode{listenPort: liveListenPort, inspectDelay: "5s", services: []string{svcECC}}
	liveWriteLikeEditor(t, nodePath, v1.yaml(dir))
	masterSock := filepath.Join(dir, "master.sock")

	r := startRun(t, node, dir, nodePath, "run.log", "--cleanup")
	t.Logf("portstripe run serves /metrics on %s (in the node namespace)", r.metrics)
	r.waitApplies("ok", 1)

	t.Run("status-json", func(t *testing.T) {
		out, err := livePortstripe(node, "status", "--dir", r.stateDir, "-o", "json")
		if err != nil {
			t.Fatal(err)
		}
		var st struct {
			Node struct {
				SHA256 string `json:"sha256"`
				Source string `json:"source"`
			} `json:"node"`
			HAProxy *struct {
				Workers []json.RawMessage
			} `json:"haproxy"`
			Problems []string `json:"problems"`
		}
		if err := json.Unmarshal([]byte(out), &st); err != nil {
			t.Fatalf("status --json: %v in %s", err, out)
		}
		if want := liveSHA256(v1.yaml(dir)); st.Node.SHA256 != want {
			t.Errorf("status --json: sha256 %q, want the node file's %q", st.Node.SHA256, want)
		}
		if st.HAProxy == nil || len(st.HAProxy.Workers) != 1 || len(st.Problems) > 0 {
			t.Errorf("status --json: haproxy %+v, problems %v", st.HAProxy, st.Problems)
		}
		info := regexp.MustCompile(`(?m)^portstripe_node_info\{node="live",settings_sha256="[0-9a-f]{64}",sha256="` + liveSHA256(v1.yaml(dir)) + `"\} 1$`)
		if !info.MatchString(r.scrape()) {
			t.Errorf("/metrics: no portstripe_node_info with the node file's and the settings' hashes")
		}
	})

	// An OpenVPN TCP tunnel through a striped port, up before the edit.
	vpnClient := testenv.Start(t, "openvpn client", client.Command("openvpn",
		vpn.clientArgs("tcp", liveVPNPort, liveVPNLport, "live-vpn")...), filepath.Join(dir, "openvpn-client.log"))
	if err := vpnClient.WaitLog("Initialization Sequence Completed", 25*time.Second); err != nil {
		t.Fatal(err)
	}
	up, rx0, line, err := liveVPNSocket(client)
	if err != nil || !up {
		t.Fatalf("the tunnel's TCP connection is not established: %v %q", err, line)
	}
	t.Logf("tunnel up: %s", line)
	if b, err := liveSSHBanner(client, liveSSHPort); err == nil {
		t.Fatalf("before the edit, tcp %d already reaches an SSH server (%s)", liveSSHPort, b)
	}
	workersBefore := haproxy.PIDs(liveMustShowProc(t, masterSock).Workers)

	v2 := v1
	v2.services = []string{svcECC, svcSSH}
	t.Run("add-ssh-by-editing", func(t *testing.T) {
		liveWriteLikeEditor(t, nodePath, v2.yaml(dir))
		var banner string
		took, err := liveWaitFor(liveDeadline, 20*time.Millisecond, func() error {
			var err error
			banner, err = liveSSHBanner(client, liveSSHPort)
			return err
		})
		if err != nil {
			t.Fatalf("SSH not reachable on striped tcp %d %s after the edit: %v\n%s", liveSSHPort, took.Round(time.Millisecond), err, testbed.Tail(r.proc.LogText(), 20))
		}
		t.Logf("SSH reachable through striped tcp %d %d ms after the node file was renamed into place (target %s): %s",
			liveSSHPort, took.Milliseconds(), liveTarget, banner)
		r.waitApplies("ok", 2)
		ps := liveMustShowProc(t, masterSock)
		t.Logf("after the edit: master reloads %d, workers %v, old workers %v (before: %v)",
			ps.Master.Reloads, haproxy.PIDs(ps.Workers), haproxy.PIDs(ps.OldWorkers), workersBefore)
		if ps.Master.Reloads != 1 {
			t.Errorf("master reloads = %d, want 1 after one edit", ps.Master.Reloads)
		}
	})

	t.Run("tunnel-survives-edit", func(t *testing.T) {
		// The server pings every 2 s: bytes keep arriving on the same
		// connection if the old worker still carries it.
		var line string
		var rx int64
		_, err := liveWaitFor(8*time.Second, 200*time.Millisecond, func() error {
			var up bool
			var err error
			up, rx, line, err = liveVPNSocket(client)
			switch {
			case err != nil:
				return err
			case !up:
				return fmt.Errorf("not established: %q", line)
			case rx <= rx0:
				return fmt.Errorf("no bytes received since the edit (%d)", rx)
			}
			return nil
		})
		if err != nil {
			t.Errorf("tunnel after the edit: %v", err)
		}
		t.Logf("tunnel after the edit: bytes received %d → %d on the same connection: %s", rx0, rx, line)
		if vpnClient.Exited() {
			t.Errorf("openvpn client exited: %v\n%s", vpnClient.Err(), testbed.Tail(vpnClient.LogText(), 10))
		}
		log := vpnClient.LogText()
		if n := strings.Count(log, "Initialization Sequence Completed"); n != 1 {
			t.Errorf("openvpn client completed %d times, want 1 (it reconnected):\n%s", n, testbed.Tail(log, 15))
		}
		for _, bad := range []string{"Connection reset", "restarting", "SIGUSR1"} {
			if strings.Contains(log, bad) {
				t.Errorf("openvpn client logged %q:\n%s", bad, testbed.Tail(log, 15))
			}
		}
		ps := liveMustShowProc(t, masterSock)
		t.Logf("old workers %v (the worker before the edit: %v), current workers %v",
			haproxy.PIDs(ps.OldWorkers), workersBefore, haproxy.PIDs(ps.Workers))
		// The tunnel is the old worker's session: status counts it.
		out, err := livePortstripe(node, "status", "--dir", r.stateDir, "-o", "json")
		var st struct {
			OldWorkerSessions *int `json:"old_worker_sessions"`
		}
		if jerr := json.Unmarshal([]byte(out), &st); jerr != nil || st.OldWorkerSessions == nil || *st.OldWorkerSessions < 1 {
			t.Errorf("status -o json: old_worker_sessions %v (%v, %v), want the tunnel counted:\n%s", st.OldWorkerSessions, err, jerr, out)
		} else {
			t.Logf("status: old workers still carry %d session(s)", *st.OldWorkerSessions)
		}
		// ... and so do the metrics, summed over every live worker.
		if v, ok := liveMetric(r.scrape(), `portstripe_backend_sessions{backend="openvpn_ecc"}`); !ok || v < 1 {
			t.Errorf("portstripe_backend_sessions{backend=\"openvpn_ecc\"} = %v (present %v) with the tunnel on an old worker, want it counted", v, ok)
		}
	})

	t.Run("broken-edits", func(t *testing.T) {
		type broken struct {
			name, content, wantErr string
			fix                    liveNode
			fixResult              string
		}
		// A listener on the node address that HAProxy cannot bind over:
		// haproxy -c passes, the reload fails.
		const busyPort = 21000
		var busy net.Listener
		if err := node.Do(func() error {
			var err error
			busy, err = net.Listen("tcp", net.JoinHostPort(nodeAddr, strconv.Itoa(busyPort)))
			return err
		}); err != nil {
			t.Fatal(err)
		}
		defer busy.Close()
		taken := v2
		taken.listenPort = busyPort
		moved := v2
		moved.listenPort = liveListenPort + 10
		cases := []broken{
			{
				name:    "invalid-value",
				content: strings.Replace(v2.yaml(dir), "inspect_delay: 5s", "inspect_delay: 5 parsecs", 1),
				wantErr: "haproxy.inspect_delay", fix: v2, fixResult: "unchanged",
			},
			{
				name:    "haproxy-refuses",
				content: taken.yaml(dir), wantErr: "reload", fix: moved, fixResult: "ok",
			},
		}
		for _, c := range cases {
			t.Run(c.name, func(t *testing.T) {
				rules := liveRules(t, node, false)
				ps := liveMustShowProc(t, masterSock)
				failed, fixed := r.applies("failed"), r.applies(c.fixResult)
				errs, alerts := len(r.errorLines()), len(r.haproxyAlerts())
				liveWriteLikeEditor(t, nodePath, c.content)
				r.waitApplies("failed", failed+1)
				time.Sleep(300 * time.Millisecond) // anything else it would log
				newErrs := r.errorLines()[errs:]
				t.Logf("%s: logged:\n%s", c.name, strings.Join(newErrs, "\n"))
				if alerts := r.haproxyAlerts()[alerts:]; len(alerts) > 0 {
					t.Logf("%s: HAProxy said (relayed with source=haproxy):\n%s", c.name, strings.Join(alerts, "\n"))
				}
				if len(newErrs) != 1 {
					t.Errorf("%s: %d error lines, want exactly 1", c.name, len(newErrs))
				} else if !strings.Contains(newErrs[0], c.wantErr) {
					t.Errorf("%s: the error line does not mention %q", c.name, c.wantErr)
				}
				if got := liveRules(t, node, false); got != rules {
					t.Errorf("%s: rules changed:\nbefore:\n%s\nafter:\n%s", c.name, rules, got)
				}
				after := liveMustShowProc(t, masterSock)
				if fmt.Sprint(haproxy.PIDs(after.Workers)) != fmt.Sprint(haproxy.PIDs(ps.Workers)) {
					t.Errorf("%s: workers %v, want the previous %v still serving", c.name, haproxy.PIDs(after.Workers), haproxy.PIDs(ps.Workers))
				}
				t.Logf("%s: master reloads %d [failed: %d], workers %v (before %v)", c.name,
					after.Master.Reloads, after.Master.FailedReloads, haproxy.PIDs(after.Workers), haproxy.PIDs(ps.Workers))
				if b, err := liveSSHBanner(client, liveSSHPort); err != nil {
					t.Errorf("%s: the previous config no longer serves SSH: %v", c.name, err)
				} else {
					t.Logf("%s: previous config still serves: %s", c.name, b)
				}
				code, body, _ := liveHTTPGet(node, "http://"+r.metrics+"/healthz")
				t.Logf("%s: /healthz while broken: %d %s", c.name, code, strings.TrimSpace(body))

				// Fixing the file recovers, with the same run.
				liveWriteLikeEditor(t, nodePath, c.fix.yaml(dir))
				r.waitApplies(c.fixResult, fixed+1)
				if _, err := liveWaitFor(5*time.Second, 50*time.Millisecond, func() error { _, err := liveSSHBanner(client, liveSSHPort); return err }); err != nil {
					t.Errorf("%s: SSH after the fix: %v", c.name, err)
				}
				if code, body, _ := liveHTTPGet(node, "http://"+r.metrics+"/healthz"); code != http.StatusOK {
					t.Errorf("%s: /healthz after the fix: %d %s", c.name, code, body)
				}
				if r.proc.Exited() {
					t.Fatalf("portstripe run exited: %v", r.proc.Err())
				}
				fixedPs := liveMustShowProc(t, masterSock)
				t.Logf("%s: fixed (%s): master reloads %d [failed: %d], workers %v", c.name, c.fixResult,
					fixedPs.Master.Reloads, fixedPs.Master.FailedReloads, haproxy.PIDs(fixedPs.Workers))
				if fixedPs.Master.PID != ps.Master.PID {
					t.Errorf("%s: master pid %d → %d: restarted, not recovered", c.name, ps.Master.PID, fixedPs.Master.PID)
				}
			})
		}
	})

	t.Run("kill-9-master", func(t *testing.T) {
		vpnClient.Stop() // its tunnel goes down with the workers
		ps := liveMustShowProc(t, masterSock)
		restarts, _ := liveMetric(r.scrape(), "portstripe_haproxy_restarts_total")
		start := time.Now()
		if err := syscall.Kill(ps.Master.PID, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		var back haproxy.Procs
		masterTook, err := liveWaitFor(liveDeadline, 20*time.Millisecond, func() error {
			var err error
			if back, err = liveShowProc(masterSock); err != nil {
				return err
			}
			if back.Master.PID == ps.Master.PID || len(back.Workers) == 0 {
				return fmt.Errorf("master %d, workers %v", back.Master.PID, haproxy.PIDs(back.Workers))
			}
			return nil
		})
		if err != nil {
			t.Fatalf("no new master within %s: %v\n%s", liveDeadline, err, testbed.Tail(r.proc.LogText(), 20))
		}
		_, err = liveWaitFor(liveDeadline, 20*time.Millisecond, func() error { _, err := liveSSHBanner(client, liveSSHPort); return err })
		trafficTook := time.Since(start)
		if err != nil {
			t.Fatalf("no traffic through tcp %d after the restart: %v", liveSSHPort, err)
		}
		t.Logf("kill -9 of master %d: new master %d (workers %v) answers after %d ms, SSH through tcp %d again after %d ms (target %s)",
			ps.Master.PID, back.Master.PID, haproxy.PIDs(back.Workers), masterTook.Milliseconds(), liveSSHPort, trafficTook.Milliseconds(), liveTarget)
		// Traffic flows once the new master serves; run counts the restart
		// when its pass has verified it, a moment later.
		var v float64
		if _, err := liveWaitFor(liveDeadline, 20*time.Millisecond, func() error {
			if v, _ = liveMetric(r.scrape(), "portstripe_haproxy_restarts_total"); v < restarts+1 {
				return fmt.Errorf("still %v", v)
			}
			return nil
		}); err != nil || v != restarts+1 {
			t.Errorf("portstripe_haproxy_restarts_total = %v, want %v", v, restarts+1)
		}
	})

	t.Run("stop-cleans-up", func(t *testing.T) {
		if err := r.proc.Cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		select {
		case <-r.proc.Done():
		case <-time.After(liveDeadline):
			t.Fatalf("portstripe run did not stop on SIGTERM:\n%s", testbed.Tail(r.proc.LogText(), 10))
		}
		if rules := liveRules(t, node, false); rules != "" {
			t.Errorf("after run --cleanup stopped, rules left:\n%s", rules)
		}
		if _, err := liveShowProc(masterSock); err == nil {
			t.Errorf("HAProxy master still answers after run stopped")
		}
	})
}

// liveStartEcho serves an echo backend at addr in ns until the test ends.
func liveStartEcho(t *testing.T, ns testbed.Netns, addr string) {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() error {
		var err error
		ln, err = net.Listen("tcp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	wait := testbed.Serve(ln, func(c net.Conn) {
		defer c.Close()
		c.SetDeadline(time.Now().Add(time.Minute))
		io.Copy(c, c)
	})
	t.Cleanup(func() { ln.Close(); wait() })
}

// liveEchoOnce opens a connection through a striped port, sends an
// SSH-looking line and checks it comes back.
func liveEchoOnce(client testbed.Netns, port int, msg string) error {
	c, err := liveDial(client, net.JoinHostPort(nodeAddr, strconv.Itoa(port)), 3*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, msg); err != nil {
		return fmt.Errorf("write: %w", err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("read echo: %w (got %q)", err, buf)
	}
	if string(buf) != msg {
		return fmt.Errorf("echo %q, sent %q", buf, msg)
	}
	return nil
}

// TestLiveApply drives `portstripe apply`: twice with one file, a dry run,
// 50 reloads under client load, then `portstripe clean`.
func TestLiveApply(t *testing.T) {
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	client, node := pair.Client, pair.Node
	liveStartEcho(t, node, liveEchoAddr)
	stateDir := filepath.Join(dir, "state")
	nodePath := filepath.Join(dir, "node.yaml")
	masterSock := filepath.Join(dir, "master.sock")
	a := liveNode{listenPort: liveListenPort, inspectDelay: "5s", services: []string{svcEcho}}
	b := liveNode{listenPort: liveListenPort, inspectDelay: "4s", services: []string{svcEcho, svcExtra}}
	liveWriteLikeEditor(t, nodePath, a.yaml(dir))
	apply := func(extra ...string) (string, error) {
		return livePortstripe(node, append([]string{"apply", "-c", nodePath, "--dir", stateDir}, extra...)...)
	}
	out, err := apply()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("first apply:\n%s", strings.TrimSpace(out))
	for i := range 3 {
		if err := liveEchoOnce(client, 1000+i, fmt.Sprintf("SSH-2.0-warmup-%d\r\n", i)); err != nil {
			t.Fatalf("echo through tcp %d after the first apply: %v", 1000+i, err)
		}
	}

	t.Run("apply-twice", func(t *testing.T) {
		rules := liveRules(t, node, true)
		ps := liveMustShowProc(t, masterSock)
		counters, _ := node.Run("iptables", "-t", "nat", "-L", "PORTSTRIPE-TCP", "-v", "-x", "-n")
		out, err := apply()
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("second apply with the same file:\n%s", strings.TrimSpace(out))
		if !strings.Contains(out, "No changes: the machine matches the node file.") {
			t.Errorf("second apply does not say no changes")
		}
		after := liveMustShowProc(t, masterSock)
		if after.Master.Reloads != ps.Master.Reloads || fmt.Sprint(haproxy.PIDs(after.Workers)) != fmt.Sprint(haproxy.PIDs(ps.Workers)) {
			t.Errorf("HAProxy touched: reloads %d → %d, workers %v → %v", ps.Master.Reloads, after.Master.Reloads,
				haproxy.PIDs(ps.Workers), haproxy.PIDs(after.Workers))
		}
		if got := liveRules(t, node, true); got != rules {
			t.Errorf("rules or counters changed:\nbefore:\n%s\nafter:\n%s", rules, got)
		}
		counters2, _ := node.Run("iptables", "-t", "nat", "-L", "PORTSTRIPE-TCP", "-v", "-x", "-n")
		if counters != counters2 {
			t.Errorf("counters changed:\n%s\n%s", counters, counters2)
		}
		t.Logf("rules and counters unchanged; master reloads %d, workers %v\n%s", after.Master.Reloads, haproxy.PIDs(after.Workers), strings.TrimSpace(counters2))
	})

	t.Run("dry-run", func(t *testing.T) {
		rules := liveRules(t, node, true)
		ps := liveMustShowProc(t, masterSock)
		cfg := liveReadFile(t, filepath.Join(stateDir, "haproxy.cfg"))
		liveWriteLikeEditor(t, nodePath, b.yaml(dir))
		out, err := apply("--dry-run")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("apply --dry-run after adding a service:\n%s", strings.TrimSpace(out))
		for _, want := range []string{"+ server extra 127.0.0.1:8443", "+ backend extra", "HAProxy: reload ("} {
			if !strings.Contains(out, want) {
				t.Errorf("dry run does not say %q", want)
			}
		}
		after := liveMustShowProc(t, masterSock)
		if after.Master.Reloads != ps.Master.Reloads || fmt.Sprint(haproxy.PIDs(after.Workers)) != fmt.Sprint(haproxy.PIDs(ps.Workers)) {
			t.Errorf("dry run touched HAProxy")
		}
		if got := liveRules(t, node, true); got != rules {
			t.Errorf("dry run touched the rules")
		}
		if got := liveReadFile(t, filepath.Join(stateDir, "haproxy.cfg")); got != cfg {
			t.Errorf("dry run rewrote haproxy.cfg")
		}
		st, err := livePortstripe(node, "status", "--dir", stateDir, "--json")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(st, `"sha256": "`+liveSHA256(a.yaml(dir))+`"`) {
			t.Errorf("status --json after the dry run does not name the applied file's hash %s:\n%s", liveSHA256(a.yaml(dir)), st)
		}
	})

	t.Run("50-reloads-under-load", func(t *testing.T) {
		const reloads, clients, maxPerClient = 50, 8, 20000
		// Each client has its own striped port, and may reuse TIME_WAIT
		// ports: tens of thousands of short connections in a few seconds.
		if _, err := client.Run("sysctl", "-qw", "net.ipv4.tcp_tw_reuse=1"); err != nil {
			t.Fatal(err)
		}
		before := liveMustShowProc(t, masterSock)
		var (
			attempts, failures atomic.Int64
			mu                 sync.Mutex
			firstErrs          []string
			stop               = make(chan struct{})
			wg                 sync.WaitGroup
		)
		for i := range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				port := 1100 + i
				for n := 0; n < maxPerClient; n++ {
					select {
					case <-stop:
						return
					default:
					}
					attempts.Add(1)
					if err := liveEchoOnce(client, port, fmt.Sprintf("SSH-2.0-client%d-%d\r\n", i, n)); err != nil {
						failures.Add(1)
						mu.Lock()
						if len(firstErrs) < 5 {
							firstErrs = append(firstErrs, fmt.Sprintf("tcp %d #%d: %v", port, n, err))
						}
						mu.Unlock()
					}
				}
			}()
		}
		start := time.Now()
		var applyErr error
		for i := range reloads {
			v := b
			if i%2 == 1 {
				v = a
			}
			liveWriteLikeEditor(t, nodePath, v.yaml(dir))
			out, err := apply()
			if err == nil && !strings.Contains(out, "HAProxy: reload (") {
				err = fmt.Errorf("apply %d did not reload:\n%s", i+1, out)
			}
			if err != nil {
				applyErr = fmt.Errorf("apply %d: %w", i+1, err)
				break
			}
		}
		took := time.Since(start)
		time.Sleep(200 * time.Millisecond) // connections across the last reload
		close(stop)
		wg.Wait()
		if applyErr != nil {
			t.Fatal(applyErr)
		}
		after := liveMustShowProc(t, masterSock)
		t.Logf("%d reloads in %s (master reloads %d → %d, failed %d) while %d clients made %d connections through HAProxy: %d failed",
			reloads, took.Round(time.Millisecond), before.Master.Reloads, after.Master.Reloads, after.Master.FailedReloads,
			clients, attempts.Load(), failures.Load())
		if got := after.Master.Reloads - before.Master.Reloads; got != reloads {
			t.Errorf("master reloads rose by %d, want %d", got, reloads)
		}
		if failures.Load() != 0 {
			t.Errorf("%d of %d connections failed; first: %s", failures.Load(), attempts.Load(), strings.Join(firstErrs, "; "))
		}
		if attempts.Load() < int64(clients*reloads) {
			t.Errorf("only %d connections: the clients did not keep up a load", attempts.Load())
		}
	})

	t.Run("clean", func(t *testing.T) {
		if liveRules(t, node, false) == "" {
			t.Fatal("no portstripe rules to clean")
		}
		out, err := livePortstripe(node, "clean")
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("portstripe clean: %s", strings.TrimSpace(out))
		if rules := liveRules(t, node, false); rules != "" {
			t.Errorf("rules left after clean:\n%s", rules)
		}
	})
}

func liveReadFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

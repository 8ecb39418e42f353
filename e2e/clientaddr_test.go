//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

const (
	// transparentAddr is an address of the node namespace that is neither
	// loopback nor the node's public address: where a transparent backend
	// listens.
	transparentAddr = "203.0.113.10"
	// proxyV2Port is the dedicated port of the proxy-v2 service; the
	// striped ports lead to sshd.
	proxyV2Port  = 1500
	proxyV2Front = "127.0.0.1:7100" // the PROXY-reading HAProxy
)

// TestClientAddress: the backends see the client namespace's own address.
// With client_address: transparent, a real sshd on a node address of its
// own logs "Connection from 198.51.100.1", and real OpenVPN TCP servers
// (tls-auth and tls-crypt) "Peer Connection Initiated with
// [AF_INET]198.51.100.1:…"; with proxy-v2, a second HAProxy
// with accept-proxy logs the client's address from the header. A lost ip
// rule is drift that apply repairs, and `portstripe clean` removes the mark
// rules, the ip rule and the route.
func TestClientAddress(t *testing.T) {
	testenv.Require(t, "haproxy")
	dir, client, node, sshd := transparentSSHBed(t)
	liveStartEcho(t, node, liveEchoAddr)
	pp := startProxyV2Reader(t, node, dir)
	vpns := startTransparentVPNs(t, node, dir)

	stateDir, nodePath := filepath.Join(dir, "state"), filepath.Join(dir, "node.yaml")
	services := []string{
		fmt.Sprintf("  - {name: %s, kind: openvpn, tls: {mode: tls-auth, digest: SHA256}, tcp: %s, client_address: transparent}\n", vpns[0].service, vpns[0].tcpAddr),
		fmt.Sprintf("  - {name: %s, kind: openvpn, tls: {mode: tls-crypt}, tcp: %s, client_address: transparent}\n", vpns[1].service, vpns[1].tcpAddr),
		"  - {name: ssh, kind: ssh, tcp: " + transparentAddr + ":22, client_address: transparent}\n",
		fmt.Sprintf("  - {name: pp, kind: ssh, tcp: %s, client_address: proxy-v2, check: connect, striped: false, dedicated: [\"%d\"]}\n", proxyV2Front, proxyV2Port),
	}
	nf := testbed.NodeFile{Name: "clientaddr", Striped: "1000-2000", ListenPort: liveListenPort, InspectDelay: "5s",
		MaxConn: 1000, Dir: dir, User: "root", Services: services}
	liveWriteLikeEditor(t, nodePath, nf.YAML())
	apply := func(extra ...string) (string, error) {
		return livePortstripe(node, append([]string{"apply", "-c", nodePath, "--dir", stateDir}, extra...)...)
	}
	if out, err := apply(); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	t.Cleanup(func() { livePortstripe(node, "clean") })

	t.Run("transparent", func(t *testing.T) {
		sshLogsClient(t, client, dir, sshd, "transparent")
		line := regexp.MustCompile(`Connection from \S+ port \d+ on \S+ port \d+`).FindAllString(sshd.proc.LogText(), -1)
		t.Logf("sshd: %v", line)
	})

	for i, in := range vpns {
		t.Run(in.service, func(t *testing.T) {
			lport := 41100 + i // in testbed.ClientFixedPorts
			testenv.Start(t, in.service+" client", client.Command("openvpn", in.clientArgs("tcp", liveVPNPort, lport, in.service)...),
				filepath.Join(dir, in.service+"-client.log"))
			// The TCP client does not bind --lport; the address is the point.
			want := "Peer Connection Initiated with [AF_INET]" + clientAddr + ":"
			if err := in.tcp.WaitLog(want, 25*time.Second); err != nil {
				t.Errorf("the %s server did not log %q:\n%s", in.mode, want, in.tcp.LogText())
			}
		})
	}

	t.Run("proxy-v2", func(t *testing.T) {
		if err := liveEchoOnce(client, proxyV2Port, "SSH-2.0-proxy-v2\r\n"); err != nil {
			t.Fatalf("echo through the proxy-v2 service on tcp %d: %v", proxyV2Port, err)
		}
		want := "pp-client " + clientAddr + ":"
		if err := pp.WaitLog(want, 5*time.Second); err != nil {
			t.Errorf("the accept-proxy HAProxy did not log %q:\n%s", want, pp.LogText())
		}
	})

	t.Run("reply-route-drift", func(t *testing.T) {
		if out, err := node.Run("ip", "rule", "del", "fwmark", "0x5053", "lookup", "20563"); err != nil {
			t.Fatalf("delete the ip rule: %v: %s", err, out)
		}
		out, err := apply("--dry-run", "--detailed-exitcode")
		if testbed.ExitCode(err) != 2 || !strings.Contains(out, "Reply route of the transparent backends:\n  + ip rule fwmark 0x5053 lookup 20563 priority 20563\n") {
			t.Errorf("dry run without the ip rule: exit %d, want 2 naming the rule:\n%s", testbed.ExitCode(err), out)
		}
		t.Logf("apply --dry-run without the ip rule:\n%s", out)
		if out, err := apply(); err != nil {
			t.Fatalf("apply: %v\n%s", err, out)
		}
		sshLogsClient(t, client, dir, sshd, "repaired")
	})

	t.Run("clean", func(t *testing.T) {
		if out, err := livePortstripe(node, "clean"); err != nil {
			t.Fatalf("clean: %v\n%s", err, out)
		}
		for _, c := range [][]string{
			{"iptables-save", "-t", "mangle"},
			{"iptables-save", "-t", "nat"},
			{"ip", "rule", "show"},
			{"ip", "route", "show", "table", "20563"},
		} {
			out, err := node.Run(c[0], c[1:]...)
			if err != nil && strings.Contains(err.Error(), "FIB table does not exist") {
				continue // a table without routes may be gone: as clean as it gets
			}
			if err != nil {
				t.Fatalf("%s: %v", strings.Join(c, " "), err)
			}
			if strings.Contains(out, "PORTSTRIPE") || strings.Contains(out, "0x5053") || strings.Contains(out, "local default") {
				t.Errorf("after clean, %s still shows portstripe's:\n%s", strings.Join(c, " "), out)
			}
		}
	})
}

// transparentSSHBed is a client and a node namespace, transparentAddr on
// the node's lo, and a real sshd listening there on port 22.
func transparentSSHBed(t *testing.T) (dir string, client, node testbed.Netns, d *sshd) {
	t.Helper()
	testenv.Require(t, "sshd", "ssh")
	dir = t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	client, node = pair.Client, pair.Node
	if out, err := node.Run("ip", "addr", "add", transparentAddr+"/32", "dev", "lo"); err != nil {
		t.Fatalf("add %s to the node's lo: %v: %s", transparentAddr, err, out)
	}
	return dir, client, node, startSSHDAt(t, node, dir, transparentAddr+":22")
}

// sshLogsClient connects with ssh through a striped port and fails unless
// the server proved its host key and logged a new connection from the
// client namespace's own address.
func sshLogsClient(t *testing.T, client testbed.Netns, dir string, sshd *sshd, what string) {
	t.Helper()
	before := strings.Count(sshd.proc.LogText(), "Connection from "+clientAddr+" port ")
	ok, out, err := sshClient(client, dir, liveSSHPort, sshd.hostKey, filepath.Join(dir, "ssh-"+what+".log"))
	if err != nil || !ok {
		t.Fatalf("%s: ssh through striped tcp %d did not reach sshd (host key proved: %v, %v):\n%s", what, liveSSHPort, ok, err, out)
	}
	if err := sshd.proc.WaitFor(5*time.Second, func() error {
		if strings.Count(sshd.proc.LogText(), "Connection from "+clientAddr+" port ") <= before {
			return fmt.Errorf("no new line")
		}
		return nil
	}); err != nil {
		t.Errorf("%s: sshd did not log a connection from the client's address %s:\n%s", what, clientAddr, sshd.proc.LogText())
	}
}

// TestClientAddressReconcile: under `run`, a deleted ip rule, a flushed
// reply route table and a flushed mangle OUTPUT are repaired (the time it
// took is logged) and counted in portstripe_drift_repairs_total, and
// `run --cleanup` takes the reply route away when it stops.
func TestClientAddressReconcile(t *testing.T) {
	dir, client, node, sshd := transparentSSHBed(t)
	nodePath := filepath.Join(dir, "node.yaml")
	nf := testbed.NodeFile{Name: "clientaddr", Striped: "1000-2000", ListenPort: liveListenPort, InspectDelay: "5s", MaxConn: 1000, Dir: dir, User: "root",
		Services: []string{"  - {name: ssh, kind: ssh, tcp: " + transparentAddr + ":22, client_address: transparent}\n"}}
	liveWriteLikeEditor(t, nodePath, nf.YAML())
	r := startRun(t, node, dir, nodePath, "run.log", "--period", reconcilePeriod.String(), "--cleanup")
	sshLogsClient(t, client, dir, sshd, "before drift")
	for _, d := range []struct {
		name, what string
		do         []string
	}{
		{"deleted-ip-rule", "routes", []string{"ip", "rule", "del", "fwmark", "0x5053", "lookup", "20563"}},
		{"flushed-route-table", "routes", []string{"ip", "route", "flush", "table", "20563"}},
		{"flushed-mangle-output", "jumps", []string{"iptables", "-t", "mangle", "-F", "OUTPUT"}},
	} {
		t.Run(d.name, func(t *testing.T) {
			sample := `portstripe_drift_repairs_total{what="` + d.what + `"}`
			before, ok := liveMetric(r.scrape(), sample)
			if !ok {
				t.Fatalf("no %s on /metrics", sample)
			}
			if out, err := node.Run(d.do[0], d.do[1:]...); err != nil {
				t.Fatalf("%v: %s", err, out)
			}
			var after float64
			took, err := liveWaitFor(liveDeadline, 50*time.Millisecond, func() error {
				if after, _ = liveMetric(r.scrape(), sample); after <= before {
					return fmt.Errorf("%s still %v", sample, after)
				}
				return nil
			})
			if err != nil {
				t.Fatalf("%s: not repaired: %v\n%s", d.name, err, testbed.Tail(r.proc.LogText(), 20))
			}
			t.Logf("%s: repaired after %d ms (period %s)", d.name, took.Milliseconds(), reconcilePeriod)
			if after != before+1 {
				t.Errorf("%s = %v after the repair, want %v", sample, after, before+1)
			}
			sshLogsClient(t, client, dir, sshd, d.name)
		})
	}
	r.proc.Stop()
	if out, _ := node.Run("ip", "rule", "show"); strings.Contains(out, "0x5053") {
		t.Errorf("run --cleanup left the ip rule:\n%s", out)
	}
	if out, _ := node.Run("iptables-save", "-t", "mangle"); strings.Contains(out, "PORTSTRIPE") {
		t.Errorf("run --cleanup left the mark rules:\n%s", out)
	}
}

// startTransparentVPNs starts two OpenVPN TCP servers at transparentAddr,
// tls-auth on 1194 and tls-crypt on 1195, and waits until both are ready.
func startTransparentVPNs(t *testing.T, node testbed.Netns, dir string) []*instance {
	t.Helper()
	addr := netip.MustParseAddr(transparentAddr)
	vpns := []*instance{
		{service: "vpn_auth", alg: "ecc", mode: "tls-auth", digest: "SHA256", tcpAddr: netip.AddrPortFrom(addr, 1194)},
		{service: "vpn_crypt", alg: "ecc", mode: "tls-crypt", tcpAddr: netip.AddrPortFrom(addr, 1195)},
	}
	for _, in := range vpns {
		p, err := newPKI(filepath.Join(dir, "pki-"+in.service), in.alg)
		if err != nil {
			t.Fatal(err)
		}
		in.pki = p
		in.tcp = testenv.Start(t, in.service+"/tcp", node.Command("openvpn", in.serverArgs("tcp")...), filepath.Join(dir, in.service+"-tcp.log"))
	}
	for _, in := range vpns {
		if err := in.tcp.WaitLog("Initialization Sequence Completed", 15*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	return vpns
}

// startProxyV2Reader runs a HAProxy that reads the PROXY header (accept-proxy)
// at proxyV2Front, logs the client address it carries ("pp-client ADDR:PORT")
// and passes the bytes on to the echo backend.
func startProxyV2Reader(t *testing.T, node testbed.Netns, dir string) *testbed.Proc {
	t.Helper()
	cfg := filepath.Join(dir, "accept-proxy.cfg")
	conf := fmt.Sprintf(`global
    log stdout format raw local0 info
defaults
    mode tcp
    log global
    timeout connect 2s
    timeout client 30s
    timeout server 30s
frontend pp
    bind %s accept-proxy
    log-format "pp-client %%ci:%%cp"
    default_backend echo
backend echo
    server echo %s
`, proxyV2Front, liveEchoAddr)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "accept-proxy haproxy", node.Command("haproxy", "-db", "-f", cfg), filepath.Join(dir, "accept-proxy.log"))
	if err := p.WaitFor(10*time.Second, func() error {
		c, err := liveDial(node, proxyV2Front, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	}); err != nil {
		t.Fatalf("the accept-proxy HAProxy does not listen: %v\n%s", err, p.LogText())
	}
	return p
}

//go:build e2e

package e2e

import (
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/pem"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// The real servers and clients of the protocol kinds beyond OpenVPN, SSH
// and TLS by SNI (issue 15), all from Debian 12 but QUIC (quic-go, built
// into the test): microsocks + curl --socks5, prosody + go-sendxmpp, two
// tincd, ocserv + openconnect (TLS on TCP, then DTLS on UDP), openssl
// s_server/s_client -dtls, wireguard-go + wg. Each server starts in the
// node namespace at an address given by the test (the node's own address
// when clients reach it directly, loopback behind HAProxy) and is ready
// when it says so or answers, never after a sleep. Each client reports
// whether it completed its own protocol with its own server.

const (
	kindPassword = "e2e-s3cret"
	xmppDomain   = "xmpp.example.com"
	xmppUser     = "alice"
	vpnName      = "vpn.example.com" // ocserv's certificate and the SNI openconnect sends
	ocservPool   = "203.0.113.64/26" // the tunnel addresses ocserv hands out
	wgServerIP   = "203.0.113.200"   // the node's end of every WireGuard tunnel
	kindTimeout  = 20 * time.Second  // generous: only ends a hang
)

// waitDial waits until addr (tcp) accepts a connection inside ns.
func waitDial(p *testbed.Proc, ns testbed.Netns, addr string) error {
	return p.WaitFor(10*time.Second, func() error {
		return ns.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
	})
}

// listenTCPIn opens a TCP listener at addr inside ns.
func listenTCPIn(t *testing.T, ns testbed.Netns, addr string) net.Listener {
	t.Helper()
	var ln net.Listener
	if err := ns.Do(func() (err error) { ln, err = net.Listen("tcp", addr); return err }); err != nil {
		t.Fatal(err)
	}
	return ln
}

// listenUDPIn opens a UDP socket at addr inside ns.
func listenUDPIn(ns testbed.Netns, addr string) (*net.UDPConn, error) {
	var c *net.UDPConn
	err := ns.Do(func() error {
		a, err := net.ResolveUDPAddr("udp", addr)
		if err == nil {
			c, err = net.ListenUDP("udp", a)
		}
		return err
	})
	return c, err
}

// --- SOCKS5: microsocks, curl --socks5 ---

// socksTarget is a web page in the node namespace that SOCKS5 clients ask
// microsocks to fetch: the page's text proves the proxy carried them.
type socksTarget struct{ addr, body string }

func startSocksTarget(t *testing.T, node testbed.Netns, addr string) socksTarget {
	t.Helper()
	ln := listenTCPIn(t, node, addr)
	body := fmt.Sprintf("portstripe-e2e socks5 target %d\n", time.Now().UnixNano())
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { io.WriteString(w, body) }),
		ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return socksTarget{addr: addr, body: body}
}

func startMicrosocks(t *testing.T, node testbed.Netns, dir string, addr netip.AddrPort) *testbed.Proc {
	t.Helper()
	p := testenv.Start(t, "microsocks", node.Command("microsocks", "-i", addr.Addr().String(), "-p", strconv.Itoa(int(addr.Port()))),
		filepath.Join(dir, "microsocks.log"))
	if err := waitDial(p, node, addr.String()); err != nil {
		t.Fatal(err)
	}
	return p
}

// socks5Client fetches the target page through a SOCKS5 proxy at proxy
// (host:port) with curl.
func socks5Client(client testbed.Netns, proxy string, target socksTarget, logPath string) (bool, string, error) {
	out, err := client.Command("curl", "-sS", "--max-time", "10", "--socks5", proxy, "http://"+target.addr+"/").CombinedOutput()
	os.WriteFile(logPath, out, 0o600)
	return err == nil && string(out) == target.body, string(out), nil
}

// --- XMPP: prosody, go-sendxmpp ---

// startProsody runs prosody with a minimal configuration of its own (c2s at
// addr, STARTTLS with a self-signed certificate, one registered account)
// in dir/prosody.
func startProsody(t *testing.T, node testbed.Netns, dir string, addr netip.AddrPort) *testbed.Proc {
	t.Helper()
	pd := filepath.Join(dir, "prosody")
	if err := os.MkdirAll(filepath.Join(pd, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	cert, key, err := selfSigned(pd, xmppDomain)
	if err != nil {
		t.Fatal(err)
	}
	// run_as_root: prosody refuses root otherwise, and the test's files
	// are root's; prosody_user makes prosodyctl keep root too.
	conf := fmt.Sprintf(`run_as_root = true
prosody_user = "root"
prosody_group = "root"
pidfile = %[1]q
data_path = %[2]q
certificates = %[3]q
log = { { levels = { min = "info" }, to = "console" } }
modules_enabled = { "roster", "saslauth", "tls", "disco", "ping" }
modules_disabled = { "s2s" }
c2s_ports = { %[4]d }
c2s_interfaces = { %[5]q }
c2s_direct_tls_ports = { }
s2s_ports = { }
http_ports = { }
https_ports = { }
c2s_require_encryption = true
authentication = "internal_plain"
storage = "internal"
VirtualHost %[6]q
  ssl = { certificate = %[7]q, key = %[8]q }
`, filepath.Join(pd, "prosody.pid"), filepath.Join(pd, "data"), pd, addr.Port(), addr.Addr().String(), xmppDomain, cert, key)
	cfg := filepath.Join(pd, "prosody.cfg.lua")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("prosodyctl", "--config", cfg, "register", xmppUser, xmppDomain, kindPassword).CombinedOutput(); err != nil {
		t.Fatalf("prosodyctl register: %v\n%s", err, out)
	}
	p := testenv.Start(t, "prosody", node.Command("prosody", "-F", "--config", cfg), filepath.Join(dir, "prosody.log"))
	if err := p.WaitLog("Activated service 'c2s' on ["+addr.Addr().String()+"]:"+strconv.Itoa(int(addr.Port())), 15*time.Second); err != nil {
		t.Fatal(err)
	}
	return p
}

// xmppClient logs in to the XMPP server at hostport with go-sendxmpp
// (stream opener, STARTTLS, SASL) and sends the account a message; it exits
// 0 only when the server accepted the login.
func xmppClient(client testbed.Netns, hostport, logPath string) (bool, string, error) {
	jid := xmppUser + "@" + xmppDomain
	cmd := client.Command("go-sendxmpp", "--timeout", "10", "-n", "-u", jid, "-p", kindPassword, "-j", hostport, jid)
	cmd.Stdin = strings.NewReader("portstripe e2e\n")
	out, err := cmd.CombinedOutput()
	os.WriteFile(logPath, out, 0o600)
	return err == nil, string(out), nil
}

// --- tinc: two tincd daemons and their meta connection ---

// tincServer is the node's tincd ("node"), listening on TCP (and UDP) at
// its address; every client is a tincd of its own name in the client
// namespace whose host file the node knows.
type tincServer struct {
	dir  string
	proc *testbed.Proc
}

// tincConf writes a tinc 1.0 configuration for name in dir (a dummy
// device: the meta connection is what the test is about) and its key pair.
func tincConf(dir, name, extra string) error {
	if err := os.MkdirAll(filepath.Join(dir, "hosts"), 0o700); err != nil {
		return err
	}
	conf := fmt.Sprintf("Name = %s\nAddressFamily = ipv4\nDeviceType = dummy\n%s", name, extra)
	if err := os.WriteFile(filepath.Join(dir, "tinc.conf"), []byte(conf), 0o600); err != nil {
		return err
	}
	if out, err := exec.Command("tincd", "-c", dir, "-K", "2048").CombinedOutput(); err != nil {
		return fmt.Errorf("tincd -K: %v: %s", err, out)
	}
	return nil
}

func startTinc(t *testing.T, node testbed.Netns, dir string, addr netip.AddrPort) *tincServer {
	t.Helper()
	s := &tincServer{dir: filepath.Join(dir, "tinc-node")}
	bind := fmt.Sprintf("BindToAddress = %s %d\n", addr.Addr(), addr.Port())
	if err := tincConf(s.dir, "node", bind); err != nil {
		t.Fatal(err)
	}
	s.proc = testenv.Start(t, "tincd node", node.Command("tincd", "-c", s.dir, "-D", "-d3", "--pidfile", filepath.Join(s.dir, "pid")),
		filepath.Join(dir, "tincd-node.log"))
	if err := s.proc.WaitLog("Ready", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return s
}

// client runs tincd name in the client namespace, connecting to the node
// at hostport, and reports whether both daemons activated their meta
// connection (each authenticated the other's RSA key).
func (s *tincServer) client(client testbed.Netns, dir, name, hostport, logPath string) (bool, string, error) {
	cd := filepath.Join(dir, "tinc-"+name)
	if err := tincConf(cd, name, "ConnectTo = node\nPort = 0\n"); err != nil {
		return false, "", err
	}
	host, port, _ := net.SplitHostPort(hostport)
	nodeHost, err := os.ReadFile(filepath.Join(s.dir, "hosts", "node"))
	if err != nil {
		return false, "", err
	}
	if err := os.WriteFile(filepath.Join(cd, "hosts", "node"), append([]byte("Address = "+host+" "+port+"\n"), nodeHost...), 0o600); err != nil {
		return false, "", err
	}
	clientHost, err := os.ReadFile(filepath.Join(cd, "hosts", name))
	if err != nil {
		return false, "", err
	}
	if err := os.WriteFile(filepath.Join(s.dir, "hosts", name), clientHost, 0o600); err != nil {
		return false, "", err
	}
	p, err := testbed.Start("tincd "+name, client.Command("tincd", "-c", cd, "-D", "-d3", "--pidfile", filepath.Join(cd, "pid")), logPath)
	if err != nil {
		return false, "", err
	}
	defer p.Stop()
	activated := func(p *testbed.Proc, peer string) error {
		return p.WaitFor(kindTimeout, func() error {
			for _, l := range strings.Split(p.LogText(), "\n") {
				if strings.HasPrefix(l, "Connection with "+peer+" (") && strings.HasSuffix(l, ") activated") {
					return nil
				}
			}
			return fmt.Errorf("no activated connection with %s", peer)
		})
	}
	if err := activated(p, "node"); err != nil {
		return false, p.LogText(), nil
	}
	if err := activated(s.proc, name); err != nil {
		return false, p.LogText() + "\nthe node's tincd: " + err.Error(), nil
	}
	return true, p.LogText(), nil
}

// --- OpenConnect: ocserv, openconnect ---

// ocServer is ocserv with a password file and a self-signed certificate
// for vpnName; pin is its public key's pin-sha256, which the client checks.
type ocServer struct {
	proc *testbed.Proc
	pin  string
}

// startOcserv runs ocserv on TCP and UDP port (every address of the node
// namespace: HAProxy reaches the TCP side on loopback).
func startOcserv(t *testing.T, node testbed.Netns, dir string, port int) *ocServer {
	t.Helper()
	od := filepath.Join(dir, "ocserv")
	if err := os.MkdirAll(od, 0o700); err != nil {
		t.Fatal(err)
	}
	cert, key, err := selfSigned(od, vpnName)
	if err != nil {
		t.Fatal(err)
	}
	// ocserv's workers run as nobody and connect to sec-mod's socket: it
	// lives in a directory of its own that nobody can reach (the test's
	// directory is root's alone).
	sockDir, err := os.MkdirTemp("", "portstripe-e2e-ocserv-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(sockDir) })
	if err := os.Chmod(sockDir, 0o755); err != nil {
		t.Fatal(err)
	}
	passwd := filepath.Join(od, "passwd")
	cmd := exec.Command("ocpasswd", "-c", passwd, xmppUser)
	cmd.Stdin = strings.NewReader(kindPassword + "\n" + kindPassword + "\n")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("ocpasswd: %v\n%s", err, out)
	}
	pool, _ := netip.ParsePrefix(ocservPool)
	conf := fmt.Sprintf(`auth = "plain[passwd=%s]"
tcp-port = %d
udp-port = %d
socket-file = %s
pid-file = %s
server-cert = %s
server-key = %s
run-as-user = nobody
run-as-group = nogroup
isolate-workers = false
max-clients = 64
max-same-clients = 64
device = psoc
ipv4-network = %s
ipv4-netmask = %s
keepalive = 300
dpd = 60
mobile-dpd = 300
try-mtu-discovery = false
cisco-client-compat = true
dtls-legacy = true
use-occtl = false
log-level = 2
`, passwd, port, port, filepath.Join(sockDir, "ocserv.sock"), filepath.Join(od, "ocserv.pid"), cert, key,
		pool.Addr(), net.IP(net.CIDRMask(pool.Bits(), 32)).String())
	cfg := filepath.Join(od, "ocserv.conf")
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	s := &ocServer{pin: pubkeyPin(t, cert)}
	s.proc = testenv.Start(t, "ocserv", node.Command("ocserv", "-f", "-c", cfg), filepath.Join(dir, "ocserv.log"))
	if err := s.proc.WaitLog(fmt.Sprintf("listening (UDP) on 0.0.0.0:%d", port), 10*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := waitDial(s.proc, node, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		t.Fatal(err)
	}
	return s
}

// pubkeyPin is openconnect's pin-sha256 of a certificate's public key.
func pubkeyPin(t *testing.T, certPath string) string {
	t.Helper()
	b, err := os.ReadFile(certPath)
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatalf("%s: no PEM block", certPath)
	}
	c, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(c.RawSubjectPublicKeyInfo)
	return "pin-sha256:" + base64.StdEncoding.EncodeToString(sum[:])
}

// ocResult is how far a real OpenConnect client got: its TLS session
// (CSTP, the tunnel over TCP) and its DTLS session (the tunnel over UDP,
// to the UDP port the server advertised, from the client's dtlsPort).
type ocResult struct{ cstp, dtls bool }

// client runs openconnect in the client namespace against the server at
// hostport (by name: the TLS ClientHello carries vpnName as SNI) until its
// DTLS channel is up, with a tun device of its own and a script that
// configures nothing.
func (s *ocServer) client(client testbed.Netns, hostport string, dtlsPort int, logPath string) (ocResult, string, error) {
	host, port, _ := net.SplitHostPort(hostport)
	cmd := client.Command("openconnect", "--non-inter", "--passwd-on-stdin", "-u", xmppUser, "--servercert", s.pin,
		"--resolve", vpnName+":"+host, "--dtls-local-port", strconv.Itoa(dtlsPort), "-s", "/bin/true",
		"https://"+vpnName+":"+port+"/")
	cmd.Stdin = strings.NewReader(kindPassword + "\n")
	_, out, err := testbed.WatchLines(cmd, logPath, "Established DTLS connection", kindTimeout)
	return ocResult{cstp: strings.Contains(out, "CSTP connected"), dtls: strings.Contains(out, "Established DTLS connection")}, out, err
}

// --- DTLS: openssl s_server -dtls, s_client -dtls ---

// dtlsServer is openssl s_server -dtls; it prints what clients send. Its
// stdin stays open: it exits when stdin closes.
type dtlsServer struct {
	proc *testbed.Proc
	// s_server -dtls serves one client at a time: the clients take turns.
	mu sync.Mutex
}

func startDTLSServer(t *testing.T, node testbed.Netns, dir string, addr netip.AddrPort) *dtlsServer {
	t.Helper()
	cert, key, err := selfSigned(dir, "dtls.example.com")
	if err != nil {
		t.Fatal(err)
	}
	cmd := node.Command("openssl", "s_server", "-dtls", "-accept", addr.String(), "-cert", cert, "-key", key)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "s_server -dtls", cmd, filepath.Join(dir, "s_server-dtls.log"))
	t.Cleanup(func() { stdin.Close() })
	if err := p.WaitLog("ACCEPT", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return &dtlsServer{proc: p}
}

// client runs openssl s_client -dtls from lport on the client's address to
// hostport and sends token; it reports whether the handshake completed (the
// client printed its DTLS session) and waits until the server printed the
// token or the deadline passed.
func (s *dtlsServer) client(client testbed.Netns, hostport string, lport int, token, logPath string) (bool, string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := client.Command("openssl", "s_client", "-dtls", "-connect", hostport, "-bind", fmt.Sprintf("%s:%d", clientAddr, lport))
	pr, pw := io.Pipe()
	cmd.Stdin = pr
	go func() {
		io.WriteString(pw, token+"\n")
		// Close once the server has the token (or gave up waiting): then
		// s_client exits.
		s.proc.WaitLog(token, 10*time.Second)
		pw.Close()
	}()
	// s_client prints DONE when it leaves, after its stdin closed.
	_, out, err := testbed.WatchLines(cmd, logPath, "DONE", kindTimeout)
	pw.Close()
	return strings.Contains(out, "Protocol  : DTLS"), out, err
}

// sawToken reports whether the server printed what the client sent.
func (s *dtlsServer) sawToken(token string) bool { return strings.Contains(s.proc.LogText(), token) }

// --- WireGuard: wireguard-go, wg ---

// wgSeq numbers WireGuard interfaces: wireguard-go's control sockets
// (/var/run/wireguard/NAME.sock) are shared by every namespace, so names
// must be unique on the machine (the pid) and within the run.
var wgSeq atomic.Int64

func wgName(role string) string { return fmt.Sprintf("wg%s%d-%d", role, wgSeq.Add(1), os.Getpid()) }

// startWireguardGo runs wireguard-go for interface name in ns and waits for
// its control socket.
func startWireguardGo(ns testbed.Netns, dir, name string) (*testbed.Proc, error) {
	p, err := testbed.Start("wireguard-go "+name, ns.Command("wireguard-go", "-f", name), filepath.Join(dir, name+".log"))
	if err != nil {
		return nil, err
	}
	err = p.WaitFor(10*time.Second, func() error {
		_, err := ns.Run("wg", "show", name)
		return err
	})
	if err != nil {
		p.Stop()
		return nil, err
	}
	return p, nil
}

func wgKeys() (priv, pub string, err error) {
	out, err := exec.Command("wg", "genkey").Output()
	if err != nil {
		return "", "", fmt.Errorf("wg genkey: %w", err)
	}
	priv = strings.TrimSpace(string(out))
	cmd := exec.Command("wg", "pubkey")
	cmd.Stdin = strings.NewReader(priv + "\n")
	out, err = cmd.Output()
	if err != nil {
		return "", "", fmt.Errorf("wg pubkey: %w", err)
	}
	return priv, strings.TrimSpace(string(out)), nil
}

// wgSet runs `wg set name private-key FILE args…` in ns.
func wgSet(ns testbed.Netns, dir, name, priv string, args ...string) error {
	keyFile := filepath.Join(dir, name+".key")
	if err := os.WriteFile(keyFile, []byte(priv+"\n"), 0o600); err != nil {
		return err
	}
	_, err := ns.Run("wg", append([]string{"set", name, "private-key", keyFile}, args...)...)
	return err
}

// wgServer is a userspace WireGuard interface in the node namespace,
// listening on UDP port; each client adds itself as a peer.
type wgServer struct {
	node testbed.Netns
	name string
	pub  string
	port int
	seq  atomic.Int64
	mu   sync.Mutex
}

func startWGServer(t *testing.T, node testbed.Netns, dir string, port int) *wgServer {
	t.Helper()
	s := &wgServer{node: node, name: wgName("n"), port: port}
	p, err := startWireguardGo(node, dir, s.name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.Stop)
	priv, pub, err := wgKeys()
	if err != nil {
		t.Fatal(err)
	}
	s.pub = pub
	if err := wgSet(node, dir, s.name, priv, "listen-port", strconv.Itoa(port)); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"addr", "add", wgServerIP + "/32", "dev", s.name}, {"link", "set", s.name, "up"}} {
		if _, err := node.Run("ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// client brings up a WireGuard interface of its own in the client
// namespace (UDP source port lport, the server at endpoint), sends one
// datagram into the tunnel to start the handshake and waits until both
// sides report a handshake (`wg show … latest-handshakes`). It returns the
// server's view of the client's endpoint (`wg show … endpoints`).
func (s *wgServer) client(client testbed.Netns, dir, endpoint string, lport int) (bool, string, error) {
	// One client at a time: every client's tunnel routes the server's
	// tunnel address, and the client namespace has one routing table.
	s.mu.Lock()
	defer s.mu.Unlock()
	name := wgName("c")
	p, err := startWireguardGo(client, dir, name)
	if err != nil {
		return false, "", err
	}
	defer p.Stop()
	priv, pub, err := wgKeys()
	if err != nil {
		return false, "", err
	}
	tunIP := fmt.Sprintf("203.0.113.%d", 201+s.seq.Add(1)%50)
	if err := wgSet(client, dir, name, priv, "listen-port", strconv.Itoa(lport),
		"peer", s.pub, "allowed-ips", wgServerIP+"/32", "endpoint", endpoint); err != nil {
		return false, "", err
	}
	if _, err := s.node.Run("wg", "set", s.name, "peer", pub, "allowed-ips", tunIP+"/32"); err != nil {
		return false, "", err
	}
	defer s.node.Run("wg", "set", s.name, "peer", pub, "remove")
	for _, args := range [][]string{{"addr", "add", tunIP + "/32", "peer", wgServerIP, "dev", name}, {"link", "set", name, "up"}} {
		if _, err := client.Run("ip", args...); err != nil {
			return false, "", err
		}
	}
	if err := client.Do(func() error {
		c, err := net.Dial("udp", wgServerIP+":9")
		if err == nil {
			_, err = c.Write([]byte("portstripe e2e"))
			c.Close()
		}
		return err
	}); err != nil {
		return false, "", err
	}
	var detail string
	handshake := func(ns testbed.Netns, iface, peer string) bool {
		out, err := ns.Run("wg", "show", iface, "latest-handshakes")
		detail = out
		if err != nil {
			return false
		}
		for _, l := range strings.Split(out, "\n") {
			if f := strings.Fields(l); len(f) == 2 && f[0] == peer && f[1] != "0" {
				return true
			}
		}
		return false
	}
	deadline := time.Now().Add(kindTimeout)
	for !(handshake(client, name, s.pub) && handshake(s.node, s.name, pub)) {
		if time.Now().After(deadline) {
			return false, "no handshake within " + kindTimeout.String() + ": " + detail, nil
		}
		time.Sleep(50 * time.Millisecond)
	}
	out, err := s.node.Run("wg", "show", s.name, "endpoints")
	for _, l := range strings.Split(out, "\n") {
		if f := strings.Fields(l); len(f) == 2 && f[0] == pub {
			return true, f[1], err
		}
	}
	return true, "", err
}

// --- QUIC: quic-go ---

const quicALPN = "portstripe-e2e"

// quicServer echoes every stream of every QUIC connection back and
// remembers the client addresses it accepted connections from.
type quicServer struct {
	ln   *quic.Listener
	mu   sync.Mutex
	seen map[netip.AddrPort]bool
}

func startQUICServer(t *testing.T, node testbed.Netns, dir string, addr netip.AddrPort) *quicServer {
	t.Helper()
	certPath, keyPath, err := selfSigned(dir, "quic.example.com")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := tls.LoadX509KeyPair(certPath, keyPath)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := listenUDPIn(node, addr.String())
	if err != nil {
		t.Fatal(err)
	}
	ln, err := quic.Listen(conn, &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{quicALPN}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	s := &quicServer{ln: ln, seen: map[netip.AddrPort]bool{}}
	go func() {
		for {
			c, err := ln.Accept(context.Background())
			if err != nil {
				return
			}
			s.mu.Lock()
			s.seen[c.RemoteAddr().(*net.UDPAddr).AddrPort()] = true
			s.mu.Unlock()
			go func() {
				for {
					st, err := c.AcceptStream(context.Background())
					if err != nil {
						return
					}
					go func() { io.Copy(st, st); st.Close() }()
				}
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); conn.Close() })
	return s
}

// saw reports whether the server accepted a connection from src.
func (s *quicServer) saw(src netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[src]
}

// quicClient dials hostport over QUIC from lport on the client's address,
// sends a line on a stream and reads it back.
func quicClient(client testbed.Netns, hostport string, lport int) (bool, string, error) {
	conn, err := listenUDPIn(client, fmt.Sprintf("%s:%d", clientAddr, lport))
	if err != nil {
		return false, "", err
	}
	defer conn.Close()
	raddr, err := net.ResolveUDPAddr("udp", hostport)
	if err != nil {
		return false, "", err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := quic.Dial(ctx, conn, raddr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{quicALPN}}, nil)
	if err != nil {
		return false, "dial: " + err.Error(), nil
	}
	defer c.CloseWithError(0, "")
	st, err := c.OpenStreamSync(ctx)
	if err != nil {
		return false, "open stream: " + err.Error(), nil
	}
	msg := fmt.Sprintf("portstripe e2e quic %d\n", lport)
	if _, err := io.WriteString(st, msg); err != nil {
		return false, "write: " + err.Error(), nil
	}
	st.Close()
	st.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(st)
	if err != nil {
		return false, "read: " + err.Error(), nil
	}
	return string(got) == msg, fmt.Sprintf("echo %q", got), nil
}

// The kinds' backends: where each real server listens on the node.
const (
	socksPort     = 1080
	socksTargetAt = "127.0.0.1:8081" // the page clients fetch through SOCKS5
	xmppPort      = 5222
	tincPort      = 655
	ocservPort    = 4443 // TCP and UDP
	dtlsPort      = 4433
	quicPort      = 8443
	wgPort        = 21820 // inside the striped range: the range above is reserved
)

// TestKindsDirect checks every real server and client of the newer kinds
// on their own, with no portstripe in between: each client straight to its
// server's address on the node. It is what the striped matrix
// (TestKindsStriped) builds on: a client that fails here would fail there
// for reasons of its own.
func TestKindsDirect(t *testing.T) {
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	client, node := pair.Client, pair.Node
	at := func(port int) netip.AddrPort { return netip.AddrPortFrom(testbed.NodeAddr, uint16(port)) }
	hostport := func(port int) string { return at(port).String() }

	t.Run("socks5", func(t *testing.T) {
		target := startSocksTarget(t, node, socksTargetAt)
		startMicrosocks(t, node, dir, at(socksPort))
		if ok, out, err := socks5Client(client, hostport(socksPort), target, filepath.Join(dir, "curl.log")); !ok || err != nil {
			t.Errorf("curl --socks5 %s: %v, got %q, want %q", hostport(socksPort), err, out, target.body)
		}
	})
	t.Run("xmpp", func(t *testing.T) {
		p := startProsody(t, node, dir, at(xmppPort))
		if ok, out, err := xmppClient(client, hostport(xmppPort), filepath.Join(dir, "go-sendxmpp.log")); !ok || err != nil {
			t.Errorf("go-sendxmpp to %s failed: %v\n%s\nprosody:\n%s", hostport(xmppPort), err, out, testbed.Tail(p.LogText(), 10))
		}
		if want := "Authenticated as " + xmppUser + "@" + xmppDomain; !strings.Contains(p.LogText(), want) {
			t.Errorf("prosody did not log %q", want)
		}
	})
	t.Run("tinc", func(t *testing.T) {
		s := startTinc(t, node, dir, at(tincPort))
		ok, out, err := s.client(client, dir, "direct", hostport(tincPort), filepath.Join(dir, "tincd-direct.log"))
		if !ok || err != nil {
			t.Errorf("tincd direct: no activated meta connection with the node: %v\n%s", err, testbed.Tail(out, 10))
		}
	})
	t.Run("openconnect", func(t *testing.T) {
		s := startOcserv(t, node, dir, ocservPort)
		r, out, err := s.client(client, hostport(ocservPort), 41100, filepath.Join(dir, "openconnect.log"))
		if !r.cstp || !r.dtls || err != nil {
			t.Errorf("openconnect: CSTP (TLS over TCP) %v, DTLS over UDP %v: %v\n%s\nocserv:\n%s", r.cstp, r.dtls, err,
				testbed.Tail(out, 10), testbed.Tail(s.proc.LogText(), 10))
		}
	})
	t.Run("dtls", func(t *testing.T) {
		s := startDTLSServer(t, node, dir, at(dtlsPort))
		token := "portstripe-e2e-dtls-direct"
		ok, out, err := s.client(client, hostport(dtlsPort), 41101, token, filepath.Join(dir, "s_client-dtls.log"))
		if !ok || err != nil || !s.sawToken(token) {
			t.Errorf("s_client -dtls: handshake %v, server got the token %v: %v\n%s", ok, s.sawToken(token), err, testbed.Tail(out, 10))
		}
	})
	t.Run("wireguard", func(t *testing.T) {
		s := startWGServer(t, node, dir, wgPort)
		ok, endpoint, err := s.client(client, dir, hostport(wgPort), 41102)
		if !ok || err != nil {
			t.Errorf("wireguard: no handshake: %v %s", err, endpoint)
		}
		if want := fmt.Sprintf("%s:%d", clientAddr, 41102); endpoint != want {
			t.Errorf("wireguard: the server sees the client at %q, want %s", endpoint, want)
		}
	})
	t.Run("quic", func(t *testing.T) {
		s := startQUICServer(t, node, dir, at(quicPort))
		ok, detail, err := quicClient(client, hostport(quicPort), 41103)
		if !ok || err != nil {
			t.Errorf("quic echo: %v %s", err, detail)
		}
		if src := netip.AddrPortFrom(testbed.ClientAddr, 41103); !s.saw(src) {
			t.Errorf("the QUIC server accepted no connection from %s", src)
		}
	})
}

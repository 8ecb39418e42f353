package haproxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/signature"
)

// These tests run the real HAProxy on loopback: the seed node's config with
// binds, servers and sockets moved into the test's reach, real OpenVPN
// first packets (fixtures/first-packets), and the master CLI and
// runtime API clients against the running process.

const firstPackets = "../fixtures/first-packets"

type realHAProxy struct {
	dir, cfg  string
	master    *Master
	runtime   *Runtime
	frontends map[string]string // frontend name → 127.0.0.1:port
	backends  map[string]*backendListener
	// lastClient is the client address of send's last connection.
	lastClient netip.AddrPort
}

// backendListener stands in for a service: it records the first bytes of
// every connection HAProxy forwards to it.
type backendListener struct {
	name string
	ln   net.Listener
	got  chan []byte
}

func newBackend(t testing.TB, name string) *backendListener {
	return newBackendOn(t, name, netip.MustParseAddr("127.0.0.1"))
}

// newBackendOn is newBackend listening on ip.
func newBackendOn(t testing.TB, name string, ip netip.Addr) *backendListener {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	b := &backendListener{name: name, ln: ln, got: make(chan []byte, 16)}
	t.Cleanup(func() { ln.Close() })
	testbed.Serve(ln, func(c net.Conn) {
		defer c.Close()
		c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 4096)
		n, _ := io.ReadAtLeast(c, buf, 1)
		b.got <- buf[:n]
	})
	return b
}

func (b *backendListener) addr() netip.AddrPort {
	return netip.MustParseAddrPort(b.ln.Addr().String())
}

// frontendAddr picks a free port on a loopback address of its own: a port
// freed on 127.0.0.1 can be taken as the source port of another test's
// connection before HAProxy binds it; nothing else uses 127.0.86.x.
func frontendAddr(t testing.TB) netip.AddrPort {
	return freeAddr(t, netip.AddrFrom4([4]byte{127, 0, 86, byte(1 + os.Getpid()%250)}))
}

// freeAddr is a port on ip that nothing listens on.
func freeAddr(t testing.TB, ip netip.Addr) netip.AddrPort {
	ln, err := net.Listen("tcp", netip.AddrPortFrom(ip, 0).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String())
}

// startReal renders the seed node, moves it onto loopback and starts
// `haproxy -W -S <dir>/master.sock -f <dir>/haproxy.cfg`.
func startReal(t *testing.T) *realHAProxy {
	t.Helper()
	if _, err := os.Stat(firstPackets); err != nil {
		t.Skipf("no captured first packets: %v", err)
	}
	return startConfig(t, FromPlan(loadPlan(t, "")))
}

// startConfig starts c with its sockets in a temporary directory, each
// frontend bound once on loopback and each server replaced by a
// backendListener.
func startConfig(t testing.TB, c *Config) *realHAProxy {
	t.Helper()
	return startConfigOn(t, c, frontendAddr, netip.MustParseAddr("127.0.0.1"))
}

// startConfigOn is startConfig with the frontends bound at what bind
// picks and the backendListeners on backend.
func startConfigOn(t testing.TB, c *Config, bind func(testing.TB) netip.AddrPort, backend netip.Addr) *realHAProxy {
	t.Helper()
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy not installed (CI installs it)")
	}
	dir := t.TempDir()
	h := &realHAProxy{dir: dir, cfg: filepath.Join(dir, "haproxy.cfg"), frontends: map[string]string{}, backends: map[string]*backendListener{}}
	// The sockets and the workers' chroot go into the test's directory.
	empty := filepath.Join(dir, node.ChrootDir)
	if err := os.Mkdir(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	for i, l := range c.Global.Lines {
		switch l.(type) {
		case StatsSocket:
			c.Global.Lines[i] = StatsSocket{Path: filepath.Join(dir, "api.sock"), Mode: 0o600, Level: "admin", ExposeFDListeners: true}
		case Chroot:
			c.Global.Lines[i] = Chroot(empty)
		}
	}
	// maxconn 20000 needs about 40000 file descriptors, more than a test
	// sandbox may raise its limit to.
	for _, s := range []*Section{&c.Global, &c.Defaults} {
		for i, l := range s.Lines {
			if _, ok := l.(MaxConn); ok {
				s.Lines[i] = MaxConn(200)
			}
		}
	}
	for i := range c.Frontends {
		fe := &c.Frontends[i]
		lines := fe.Lines[:0]
		bound := false
		for _, l := range fe.Lines {
			if _, ok := l.(Bind); ok {
				if bound {
					continue
				}
				ap := bind(t)
				h.frontends[fe.Name] = ap.String()
				l, bound = Bind{ap}, true
			}
			lines = append(lines, l)
		}
		fe.Lines = lines
	}
	for i := range c.Backends {
		be := &c.Backends[i]
		b := newBackendOn(t, be.Name, backend)
		h.backends[be.Name] = b
		// The recording backends are not health-checked: a check's
		// connection or TLS hello would be taken for a client's.
		be.Lines = []Line{Server{Name: be.Name, Addr: b.addr()}}
	}
	if err := os.WriteFile(h.cfg, c.Marshal(), 0o600); err != nil {
		t.Fatal(err)
	}
	logf, err := os.Create(filepath.Join(dir, "haproxy.log"))
	if err != nil {
		t.Fatal(err)
	}
	msock := filepath.Join(dir, "master.sock")
	cmd := exec.Command("haproxy", "-W", "-S", msock, "-f", h.cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	t.Cleanup(func() {
		// SIGTERM to the master stops its workers too.
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-exited
		}
		logf.Close()
		if t.Failed() {
			log, _ := os.ReadFile(logf.Name())
			t.Logf("haproxy log:\n%s", log)
		}
	})
	h.master = NewMaster(msock, nil)
	h.runtime = NewRuntime(filepath.Join(dir, "api.sock"), nil)
	deadline := time.Now().Add(5 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		ps, err := h.master.ShowProc(ctx)
		cancel()
		if err == nil && len(ps.Workers) > 0 {
			if _, err := h.runtime.ShowInfo(context.Background()); err == nil {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("haproxy did not come up: %v", err)
		}
		select {
		case werr := <-exited:
			exited <- werr // for the cleanup
			t.Fatalf("haproxy exited at start: %v", werr)
		case <-time.After(20 * time.Millisecond):
		}
	}
	return h
}

func packet(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join(firstPackets, name))
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(raw)), ""))
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// send writes the pieces with a pause between them (a first packet that
// arrives in segments), then reports which backend got the connection, or
// "" when HAProxy closed it without forwarding.
func (h *realHAProxy) send(t *testing.T, frontend string, pieces ...[]byte) (string, time.Duration) {
	t.Helper()
	c, err := net.Dial("tcp", h.frontends[frontend])
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	h.lastClient = c.LocalAddr().(*net.TCPAddr).AddrPort()
	start := time.Now()
	for i, p := range pieces {
		if i > 0 {
			time.Sleep(50 * time.Millisecond)
		}
		if _, err := c.Write(p); err != nil {
			t.Fatal(err)
		}
	}
	closed := make(chan struct{})
	go func() {
		c.SetReadDeadline(time.Now().Add(8 * time.Second))
		io.Copy(io.Discard, c)
		close(closed)
	}()
	cases := make(chan string, len(h.backends))
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for name, b := range h.backends {
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case <-b.got:
				cases <- name
			case <-stop:
			}
		}()
	}
	defer func() { close(stop); wg.Wait() }()
	select {
	case name := <-cases:
		return name, time.Since(start)
	case <-closed:
		// Closed by HAProxy; a forward may still be on its way.
		select {
		case name := <-cases:
			return name, time.Since(start)
		case <-time.After(100 * time.Millisecond):
			return "", time.Since(start)
		}
	case <-time.After(8 * time.Second):
		t.Fatalf("%s: no verdict after 8s", frontend)
	}
	return "", 0
}

// appendFields is a TCP first packet with n bytes more after the fields
// OpenVPN 2.6 sends, and a length prefix that counts them, as a client that
// appends fields sends it.
func appendFields(pkt []byte, n int) []byte {
	out := append(bytes.Clone(pkt), bytes.Repeat([]byte{0xa5}, n)...)
	l := int(out[0])<<8 | int(out[1]) + n
	out[0], out[1] = byte(l>>8), byte(l)
	return out
}

func TestRealRouting(t *testing.T) {
	h := startReal(t)
	authSHA512 := packet(t, "tcp-tls-auth-sha512.hex")
	crypt := packet(t, "tcp-tls-crypt.hex")
	tests := []struct {
		name     string
		frontend string
		pieces   [][]byte
		want     string // "" = rejected
		rule     string // the decision line's rule; "" = signature
	}{
		{"tls-auth SHA512 on a striped port", "fe_striped", [][]byte{authSHA512}, "openvpn_rsa", ""},
		{"tls-crypt on a striped port", "fe_striped", [][]byte{crypt}, "openvpn_ecc", ""},
		{"first packet resent (176 bytes buffered)", "fe_striped", [][]byte{packet(t, "tcp-tls-auth-sha512-two-resends.hex")}, "openvpn_rsa", ""},
		{"first packet in three segments", "fe_striped", [][]byte{authSHA512[:2], authSHA512[2:40], authSHA512[40:]}, "openvpn_rsa", ""},
		{"tls-auth SHA512 with fields appended", "fe_striped", [][]byte{appendFields(authSHA512, 16)}, "openvpn_rsa", ""},
		{"tls-crypt with fields appended", "fe_striped", [][]byte{appendFields(crypt, 16)}, "openvpn_ecc", ""},
		{"HTTP on a striped port: rejected at once", "fe_striped", [][]byte{[]byte("GET / HTTP/1.0\r\n\r\n")}, "", RuleReject},
		{"tls-crypt on 5061 reaches its owner", "fe_openvpn_ed25519", [][]byte{crypt}, "openvpn_ed25519", ""},
		{"tls-auth still works on 5061", "fe_openvpn_ed25519", [][]byte{authSHA512}, "openvpn_rsa", ""},
		{"anything else on 5061 goes to the owner", "fe_openvpn_ed25519", [][]byte{[]byte("SSH-2.0-x\r\n")}, "openvpn_ed25519", RuleDefault},
	}
	// Each connection's decision line, by client address: where it landed
	// and why.
	want := map[netip.AddrPort]DecisionLine{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := h.land(t, tt.frontend, tt.want, tt.rule, tt.pieces...)
			want[h.lastClient] = d
		})
	}
	checkDecisions(t, h, want)
}

// land sends pieces to frontend and fails unless the connection lands on
// want ("" = rejected) at once: a decision needs only the bytes in hand,
// so no client here should wait for the 5 s inspect-delay. It returns the
// decision line the connection should log (rule "" = signature).
func (h *realHAProxy) land(t *testing.T, frontend, want, rule string, pieces ...[]byte) DecisionLine {
	t.Helper()
	got, took := h.send(t, frontend, pieces...)
	d := DecisionLine{Frontend: frontend, Rule: rule, Backend: want}
	if d.Rule == "" {
		d.Rule = RuleSignature
	}
	if d.Backend == "" {
		// HAProxy names the frontend as a rejected stream's backend.
		d.Backend = frontend
	}
	if got != want {
		t.Errorf("landed on %q, want %q", got, want)
	}
	if took > 2*time.Second {
		t.Errorf("took %v: waited for the inspect-delay", took)
	}
	return d
}

// TestRealDualStack runs the dual-stack node's haproxy.cfg (haproxy -c
// passes it as rendered: TestGoldenHAProxyCheck) with its frontends bound
// on IPv6 loopback and IPv6 backends: clients over IPv6 are classified by
// the same ACLs, and the runtime API shows each IPv6 server at the address
// the plan names, as apply compares them.
func TestRealDualStack(t *testing.T) {
	p := loadPlan(t, "fixtures/dual-stack-node.yaml")
	cfg := Render(p)
	for _, want := range []string{"bind 203.0.113.10:20000", "bind [2001:db8::10]:20000", "server ssh [::1]:2222 check", "server sites [2001:db8::20]:8443 check"} {
		if !strings.Contains(string(cfg), "    "+want+"\n") {
			t.Errorf("haproxy.cfg lacks %q", want)
		}
	}
	if _, err := os.Stat(firstPackets); err != nil {
		t.Skipf("no captured first packets: %v", err)
	}
	loop6 := netip.IPv6Loopback()
	h := startConfigOn(t, FromPlan(p), func(t testing.TB) netip.AddrPort { return freeAddr(t, loop6) }, loop6)
	hello, err := signature.ClientHello("vpn.example.org")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, want string
		pkt        []byte
	}{
		{"tls-auth SHA512", "openvpn_rsa", packet(t, "tcp-tls-auth-sha512.hex")},
		{"tls-crypt", "openvpn_ecc", packet(t, "tcp-tls-crypt.hex")},
		{"SSH", "ssh", []byte("SSH-2.0-OpenSSH_9.2\r\n")},
		{"TLS for vpn.example.org", "sites", hello},
		{"HTTP: rejected", "", []byte("GET / HTTP/1.0\r\n\r\n")},
	}
	want := map[netip.AddrPort]DecisionLine{}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, _ := h.send(t, "fe_striped", tt.pkt)
			if !h.lastClient.Addr().Is6() {
				t.Fatalf("client %s is not IPv6", h.lastClient)
			}
			d := DecisionLine{Frontend: "fe_striped", Rule: RuleSignature, Backend: tt.want}
			if tt.want == "" {
				d.Rule, d.Backend = RuleReject, "fe_striped"
			}
			want[h.lastClient] = d
			if got != tt.want {
				t.Fatalf("landed on %q, want %q", got, tt.want)
			}
		})
	}
	checkDecisions(t, h, want)
	stats, err := h.runtime.ShowStat(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for name, b := range h.backends {
		s := findStat(stats, name, name)
		if s == nil {
			t.Fatalf("show stat has no server %s/%s", name, name)
		}
		if s.Addr != b.addr().String() {
			t.Errorf("server %s at %q, want %q (as the plan writes it)", name, s.Addr, b.addr())
		}
	}
}

// checkDecisions waits for one decision line per client in want (HAProxy
// writes it when the connection ends) and compares where each landed.
func checkDecisions(t *testing.T, h *realHAProxy, want map[netip.AddrPort]DecisionLine) {
	t.Helper()
	var got map[netip.AddrPort][]DecisionLine
	for deadline := time.Now().Add(5 * time.Second); ; {
		got = map[netip.AddrPort][]DecisionLine{}
		n := 0
		log, _ := os.ReadFile(filepath.Join(h.dir, "haproxy.log"))
		for _, l := range strings.Split(string(log), "\n") {
			if d, ok := ParseDecisionLine(l); ok {
				got[d.Client] = append(got[d.Client], d)
				n++
			}
		}
		if n >= len(want) || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	for client, w := range want {
		ds := got[client]
		if len(ds) != 1 {
			t.Errorf("client %s: %d decision lines, want 1: %v", client, len(ds), ds)
			continue
		}
		d := ds[0]
		if d.Frontend != w.Frontend || d.Rule != w.Rule || d.Backend != w.Backend {
			t.Errorf("client %s: frontend=%s rule=%s backend=%s, want frontend=%s rule=%s backend=%s\n%s", client, d.Frontend, d.Rule, d.Backend, w.Frontend, w.Rule, w.Backend, d.Line)
		}
		if w.Rule == RuleReject && (d.Flags != "PR" || d.Server != "<NOSRV>") {
			t.Errorf("client %s: rejected with flags=%s server=%s, want PR <NOSRV>: %s", client, d.Flags, d.Server, d.Line)
		}
		if d.BytesIn == 0 {
			t.Errorf("client %s: bytes_in=0 after sending its first packet: %s", client, d.Line)
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d clients have decision lines, want %d", len(got), len(want))
	}
}

func TestRealSockets(t *testing.T) {
	h := startReal(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	ps, err := h.master.ShowProc(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ps.Master.Reloads != 0 || ps.Master.FailedReloads != 0 || len(ps.Workers) != 1 {
		t.Errorf("show proc at start: %+v", ps)
	}

	stats, err := h.runtime.ShowStat(ctx)
	if err != nil {
		t.Fatal(err)
	}
	rsa := findStat(stats, "openvpn_rsa", "openvpn_rsa")
	if rsa == nil || rsa.Type != StatServer || rsa.Addr != h.backends["openvpn_rsa"].addr().String() {
		t.Fatalf("openvpn_rsa server row: %+v", rsa)
	}
	if fe := findStat(stats, "fe_striped", "FRONTEND"); fe == nil || fe.Status != "OPEN" {
		t.Errorf("fe_striped row: %+v", fe)
	}

	// Move openvpn_rsa onto another listener through the runtime API. Same
	// IP, new port: HAProxy answers "no need to change the addr, port
	// changed from '…' to '…' by 'stats socket command'".
	moved := newBackend(t, "openvpn_rsa (moved)")
	ans, err := h.runtime.sock.command(ctx, "set server openvpn_rsa/openvpn_rsa addr 127.0.0.1 port "+itoa(moved.addr().Port()))
	if err != nil || !strings.HasPrefix(ans, "no need to change the addr, port changed from ") {
		t.Fatalf("set server answered %q, %v", ans, err)
	}
	if err := h.runtime.SetServerAddr(ctx, "openvpn_rsa", "openvpn_rsa", moved.addr()); err != nil {
		t.Fatalf("same address again: %v", err)
	}
	h.backends["openvpn_rsa"] = moved
	if got, _ := h.send(t, "fe_striped", packet(t, "tcp-tls-auth-sha512.hex")); got != "openvpn_rsa" {
		t.Errorf("after set server addr: landed on %q", got)
	}
	if err := h.runtime.SetServerAddr(ctx, "openvpn_rsa", "nope", moved.addr()); !errors.Is(err, ErrCommand) {
		t.Errorf("unknown server: %v", err)
	}

	if err := h.runtime.DisableServer(ctx, "openvpn_rsa", "openvpn_rsa"); err != nil {
		t.Fatal(err)
	}
	stats, _ = h.runtime.ShowStat(ctx)
	if s := findStat(stats, "openvpn_rsa", "openvpn_rsa"); s == nil || s.Status != "MAINT" {
		t.Errorf("after disable: %+v", s)
	}
	if err := h.runtime.EnableServer(ctx, "openvpn_rsa", "openvpn_rsa"); err != nil {
		t.Fatal(err)
	}
	stats, _ = h.runtime.ShowStat(ctx)
	if s := findStat(stats, "openvpn_rsa", "openvpn_rsa"); s == nil || s.Status == "MAINT" {
		t.Errorf("after enable: %+v", s)
	}

	// A good reload: the count rises, nothing failed, a new worker.
	ps2, err := h.master.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ps2.Master.Reloads != 1 || ps2.Master.FailedReloads != 0 || len(ps2.Workers) != 1 || ps2.Workers[0].PID == ps.Workers[0].PID {
		t.Errorf("after reload: %+v", ps2)
	}

	// A broken config: the master says so, the worker keeps serving.
	good, _ := os.ReadFile(h.cfg)
	if err := os.WriteFile(h.cfg, append(good, "    bogus_keyword 1\n"...), 0o600); err != nil {
		t.Fatal(err)
	}
	ps3, err := h.master.Reload(ctx)
	var re *ReloadError
	if !errors.As(err, &re) {
		t.Fatalf("reload of a broken config: %v", err)
	}
	if ps3.Master.Reloads != 2 || ps3.Master.FailedReloads != 1 || ps3.Workers[0].PID != ps2.Workers[0].PID {
		t.Errorf("after failed reload: %+v", ps3)
	}
	h.backends["openvpn_rsa"] = newBackend(t, "unused") // the reload put the config's address back
	if got, _ := h.send(t, "fe_striped", packet(t, "tcp-tls-crypt.hex")); got != "openvpn_ecc" {
		t.Errorf("old worker after failed reload: landed on %q", got)
	}

	if err := os.WriteFile(h.cfg, good, 0o600); err != nil {
		t.Fatal(err)
	}
	ps4, err := h.master.Reload(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if ps4.Master.Reloads != 3 || ps4.Master.FailedReloads != 0 {
		t.Errorf("after fixing: %+v", ps4)
	}
}

func findStat(stats []Stat, proxy, name string) *Stat {
	for i := range stats {
		if stats[i].Proxy == proxy && stats[i].Name == name {
			return &stats[i]
		}
	}
	return nil
}

func itoa(p uint16) string { return strconv.Itoa(int(p)) }

// TestRealSyslog: with haproxy.log set to a syslog server's address, the
// chrooted workers send each decision line there over UDP (RFC 5424).
func TestRealSyslog(t *testing.T) {
	if _, err := os.Stat(firstPackets); err != nil {
		t.Skipf("no captured first packets: %v", err)
	}
	server, err := net.ListenUDP("udp", net.UDPAddrFromAddrPort(netip.MustParseAddrPort("127.0.0.1:0")))
	if err != nil {
		t.Fatal(err)
	}
	defer server.Close()
	p := loadPlan(t, "")
	p.HAProxy.Log, p.HAProxy.Syslog = node.LogSyslog, server.LocalAddr().(*net.UDPAddr).AddrPort()
	h := startConfig(t, FromPlan(p))
	if got, _ := h.send(t, "fe_striped", packet(t, "tcp-tls-crypt.hex")); got != "openvpn_ecc" {
		t.Fatalf("landed on %q, want openvpn_ecc", got)
	}
	client := h.lastClient
	server.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := make([]byte, 2048)
	for {
		n, err := server.Read(buf)
		if err != nil {
			t.Fatalf("no decision line for %s at the syslog server: %v", client, err)
		}
		msg := string(buf[:n])
		i := strings.Index(msg, decisionPrefix)
		if !strings.HasPrefix(msg, "<") || i < 0 {
			continue // HAProxy's own messages (proxy started, …)
		}
		d, ok := ParseDecisionLine(strings.TrimRight(msg[i:], "\n"))
		if !ok || d.Client != client || d.Rule != RuleSignature || d.Backend != "openvpn_ecc" {
			t.Fatalf("syslog message %q: parsed %+v (ok %v), want client %s rule signature backend openvpn_ecc", msg, d, ok, client)
		}
		if !strings.HasPrefix(msg, "<134>1 ") { // local0.info, RFC 5424 version 1
			t.Errorf("syslog message %q is not RFC 5424 local0.info", msg)
		}
		return
	}
}

// BenchmarkRealDecisionLog: a junk connection through the real HAProxy
// (accepted, rejected at once, closed), with a decision line to the
// master's output (under and past haproxy.log_rate) and with none.
func BenchmarkRealDecisionLog(b *testing.B) {
	for _, bc := range []struct {
		name string
		log  string
		rate int
	}{{"file", node.LogFile, 100000}, {"file-past-log_rate", node.LogFile, 1}, {"none", node.LogNone, 100}} {
		b.Run(bc.name, func(b *testing.B) {
			p := loadPlan(b, "")
			p.HAProxy.Log, p.HAProxy.LogRate = bc.log, bc.rate
			h := startConfig(b, FromPlan(p))
			addr := h.frontends["fe_striped"]
			junk := []byte("GET / HTTP/1.0\r\n\r\n")
			b.ResetTimer()
			for b.Loop() {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Fatal(err)
				}
				c.Write(junk)
				io.Copy(io.Discard, c)
				c.Close()
			}
		})
	}
}

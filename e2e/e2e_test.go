//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// samplePorts are the striped ports every OpenVPN instance is tried on,
// besides the random ones; reservedPorts must reach nothing.
var (
	samplePorts   = []int{1, 53, 80, 443, 1194, 5060, 5061, 5062, 5063, 8080, 29999}
	reservedPorts = []int{30000, 44444, 65535}
	randomCount   = 20
	parallelism   = 12
)

const none = "none"

// clientCase is one real client connecting to one port of the node, and what
// happened to it.
type clientCase struct {
	id    string
	kind  string    // openvpn, ssh, ssh-keyscan or tls
	inst  *instance // openvpn: whose client
	sni   string    // tls: the server name sent ("" sends none)
	proto string
	port  int
	lport int            // openvpn: the client's local port
	src   netip.AddrPort // the client's address and port, as captured (TCP: one connection)
	want  string         // the service the node's design sends it to, or none

	ok        bool   // the client completed its handshake with the right server
	landed    string // where its first packet actually went (service, or none)
	first     []byte // its first packet, as captured on the client's veth
	firstNote string
	predicted prediction
	detail    string
}

// suite is the running world: namespaces, servers, HAProxy, captures.
type suite struct {
	dir            string
	client, node   testbed.Netns
	nodePath       string
	instances      []*instance
	sshd           *sshd
	tls            map[string]*tlsServer // by SNI
	haproxy        *testbed.Proc
	wire, loopback *capture
	backends       map[netip.AddrPort]string // TCP backend → service
}

func TestEndToEnd(t *testing.T) { endToEnd(t, "") }

// TestEndToEndNFTables is the same matrix of real clients through the
// nftables backend's table.
func TestEndToEndNFTables(t *testing.T) { endToEnd(t, "nftables") }

// endToEnd runs the matrix with the node's rules in the given firewall
// backend ("" for the default).
func endToEnd(t *testing.T, firewall string) {
	start := time.Now()
	seed := *seedFlag
	if seed == 0 {
		seed = time.Now().UnixNano() % 1_000_000
	}
	t.Logf("random port seed: %d (rerun with -args -e2e.seed=%d)", seed, seed)
	s := setUp(t, firewall)
	t.Logf("set-up took %s", time.Since(start).Round(time.Millisecond))

	cases := buildCases(s.instances, seed)
	runStart := time.Now()
	s.runAll(cases, seed)
	t.Logf("%d clients ran in %s", len(cases), time.Since(runStart).Round(time.Millisecond))
	time.Sleep(300 * time.Millisecond) // let the servers' last log lines land
	s.analyse(t, cases)

	t.Run("openvpn", func(t *testing.T) { checkOpenVPN(t, cases) })
	t.Run("ssh-tls", func(t *testing.T) { checkBackends(t, cases) })
	t.Run("plan-equals-reality", func(t *testing.T) { checkPredictions(t, cases) })
	t.Run("decision-log", func(t *testing.T) { checkDecisionLines(t, filepath.Join(s.dir, "haproxy.log"), cases) })
	var resends []*resendCase
	t.Run("retransmit", func(t *testing.T) { resends = s.checkRetransmits(t, cases) })

	matrix := renderMatrix(seed, cases, resends, time.Since(start))
	t.Logf("matrix:\n%s", matrix)
	writeMatrix(t, matrix, firewall)
	if *updateFlag && firewall == "" {
		saveCaptured(t, cases, resends)
	}
}

// setUp builds the world of the seed node inside two namespaces, its
// rules in the given firewall backend.
func setUp(t *testing.T, firewall string) *suite {
	t.Helper()
	// Not t.TempDir: its removal would not run on an interrupt.
	dir, err := os.MkdirTemp("", "portstripe-e2e-")
	if err != nil {
		t.Fatal(err)
	}
	if *keepFlag {
		t.Logf("keeping %s (logs, PKI, node file, compiled output)", dir)
	} else {
		t.Cleanup(testbed.AtExit(func() { os.RemoveAll(dir) }))
	}
	s := &suite{dir: dir, instances: seedInstances(), tls: map[string]*tlsServer{}}
	if err := s.makePKI(); err != nil {
		t.Fatal(err)
	}
	pair := testenv.Pair(t, nsPrefix)
	s.client, s.node = pair.Client, pair.Node
	s.nodePath, _ = compileNode(t, dir, nodeFileWith(dir, s.instances, firewall))
	applyRules(t, s.node, filepath.Join(dir, "out"), firewall)
	for _, in := range s.instances {
		in.startServers(t, s.node, dir)
	}
	s.sshd = startSSHD(t, s.node, dir)
	s.tls[sniA] = startTLSServer(t, s.node, dir, sniA, tlsBackendA)
	s.tls[sniB] = startTLSServer(t, s.node, dir, sniB, tlsBackendB)
	s.haproxy = startHAProxy(t, s.node, dir, filepath.Join(dir, "out"))
	s.wire = startCapture(t, s.client, pair.ClientVeth)
	s.loopback = startCapture(t, s.node, "lo")
	s.backends = map[netip.AddrPort]string{
		netip.MustParseAddrPort(sshBackend):  "ssh",
		netip.MustParseAddrPort(tlsBackendA): "tls_a",
		netip.MustParseAddrPort(tlsBackendB): "tls_b",
	}
	for _, in := range s.instances {
		s.backends[in.tcpAddr] = in.service
	}
	return s
}

// makePKI generates the four instances' CAs in parallel.
func (s *suite) makePKI() error { return newPKIs(s.dir, s.instances) }

// buildCases lists every client the suite runs.
func buildCases(instances []*instance, seed int64) []*clientCase {
	byName := map[string]*instance{}
	for _, in := range instances {
		byName[in.service] = in
	}
	rsa, ecc := byName["openvpn_rsa"], byName["openvpn_ecc"]
	ports := append(slices.Clone(samplePorts), randomPorts(seed, randomCount)...)
	var cases []*clientCase
	lport := 41000 // in testbed.ClientFixedPorts
	add := func(in *instance, proto string, port int) {
		lport++
		cases = append(cases, &clientCase{
			id: fmt.Sprintf("%s-%s-%d", in.alg, proto, port), kind: "openvpn", inst: in,
			proto: proto, port: port, lport: lport, want: intended(in, port),
		})
	}
	for _, proto := range []string{"udp", "tcp"} {
		for _, port := range ports {
			add(rsa, proto, port)
			add(ecc, proto, port)
		}
		add(byName["openvpn_ed25519"], proto, 5061)
		add(byName["openvpn_ed448"], proto, 5062)
		// Not striped: on a shared port their tls-crypt packet is ECC's.
		add(byName["openvpn_ed25519"], proto, 443)
		add(byName["openvpn_ed448"], proto, 8080)
		for _, port := range reservedPorts {
			add(rsa, proto, port)
			add(ecc, proto, port)
		}
	}
	for _, port := range []int{22, 443, 5061, 8080, 29999} {
		cases = append(cases, &clientCase{id: fmt.Sprintf("ssh-tcp-%d", port), kind: "ssh", proto: "tcp", port: port, want: "ssh"})
	}
	// A client that waits for the server to speak first sends no first
	// packet: the frontend's inspect-delay ends and the default (reject)
	// takes it.
	cases = append(cases, &clientCase{id: "ssh-keyscan-tcp-2222", kind: "ssh-keyscan", proto: "tcp", port: 2222, want: none})
	tlsCases := []struct {
		sni   string
		ports []int
		want  string
	}{
		{sniA, []int{443, 5062, 8080}, "tls_a"},
		{sniB, []int{1, 443, 29999}, "tls_b"},
		{"", []int{443}, none},
	}
	for _, tc := range tlsCases {
		for _, port := range tc.ports {
			name := tc.sni
			if name == "" {
				name = "no-sni"
			}
			cases = append(cases, &clientCase{id: fmt.Sprintf("tls-%s-%d", name, port), kind: "tls", sni: tc.sni, proto: "tcp", port: port, want: tc.want})
		}
	}
	return cases
}

// randomPorts picks n distinct striped ports not in samplePorts.
func randomPorts(seed int64, n int) []int {
	r := rand.New(rand.NewPCG(uint64(seed), 0x5eed))
	var out []int
	for len(out) < n {
		p := 1 + r.IntN(29999)
		if !slices.Contains(samplePorts, p) && !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.Sort(out)
	return out
}

// intended is where the seed node's design sends an instance's client on a
// port: tls-auth is RSA's everywhere; a tls-crypt packet belongs to the owner
// of a dedicated port and to ECC on every other striped port.
func intended(in *instance, port int) string {
	switch {
	case port >= 30000:
		return none
	case in.mode == "tls-auth":
		return "openvpn_rsa"
	case port == 5061:
		return "openvpn_ed25519"
	case port == 5062:
		return "openvpn_ed448"
	}
	return "openvpn_ecc"
}

// runAll runs the clients, parallelism at a time, in an order shuffled by
// the seed so OpenVPN, SSH and TLS clients share the same ports at once.
func (s *suite) runAll(cases []*clientCase, seed int64) {
	order := slices.Clone(cases)
	r := rand.New(rand.NewPCG(uint64(seed), 0x0de7))
	r.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
	inParallel(parallelism, order, s.runCase)
}

// inParallel runs fn on every item, n at a time, and returns when all are
// done.
func inParallel[T any](n int, items []T, fn func(T)) {
	sem := make(chan struct{}, n)
	var wg sync.WaitGroup
	for _, it := range items {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			fn(it)
		}()
	}
	wg.Wait()
}

func (s *suite) runCase(c *clientCase) {
	logPath := filepath.Join(s.dir, "client-"+c.id+".log")
	var err error
	switch c.kind {
	case "openvpn":
		cmd := s.client.Command("openvpn", c.inst.clientArgs(c.proto, c.port, c.lport, c.id)...)
		c.ok, c.detail, err = testbed.WatchLines(cmd, logPath, "Initialization Sequence Completed", 25*time.Second)
	case "ssh":
		c.ok, c.detail, err = sshClient(s.client, s.dir, c.port, s.sshd.hostKey, logPath)
	case "ssh-keyscan":
		c.ok, c.detail, err = sshKeyscan(s.client, c.port, s.sshd.hostKey, logPath)
	case "tls":
		var cn string
		cn, c.detail, err = tlsClient(s.client, c.port, c.sni, logPath)
		c.ok = cn != "" && cn == c.sni
	}
	if err != nil {
		c.ok, c.detail = false, err.Error()
	}
}

// analyse finds each client's first packet on the wire, where it landed and
// what `portstripe route` predicts for it.
func (s *suite) analyse(t *testing.T, cases []*clientCase) {
	t.Helper()
	for _, c := range cases {
		var f flow
		f, c.first, _ = s.wire.find(c.matchFlow)
		c.src = f.src
		if c.first != nil && s.wire.sentLate(f) {
			c.firstNote = fmt.Sprintf("sent nothing until the node closed the connection, then %q; route asked with no bytes", c.first)
			c.first = []byte{}
		}
		c.landed = s.landing(c)
		if c.kind == "openvpn" && c.ok && !c.inst.handshakeWith(c.proto, c.id) {
			c.ok = false
			c.detail = "client completed, but " + c.inst.service + "'s server logged no handshake with it\n" + c.detail
		}
	}
	for _, c := range cases {
		if c.first == nil {
			s.borrowFirst(c, cases)
		}
		if c.first == nil {
			continue
		}
		p, err := route(s.nodePath, c.proto, c.port, c.first)
		if err != nil {
			t.Errorf("%s: %v", c.id, err)
			continue
		}
		c.predicted = p
	}
}

// matchFlow recognises the case's own first packet among the captured ones.
func (c *clientCase) matchFlow(f flow, payload []byte) bool {
	if f.proto != c.proto || f.src.Addr().String() != clientAddr {
		return false
	}
	switch c.kind {
	case "openvpn":
		return int(f.src.Port()) == c.lport
	case "ssh", "ssh-keyscan":
		return int(f.dst.Port()) == c.port && bytes.HasPrefix(payload, []byte("SSH-"))
	case "tls":
		if int(f.dst.Port()) != c.port || len(payload) == 0 || payload[0] != 0x16 {
			return false
		}
		if c.sni == "" {
			return !bytes.Contains(payload, []byte(sniA)) && !bytes.Contains(payload, []byte(sniB))
		}
		return bytes.Contains(payload, []byte(c.sni))
	}
	return false
}

// borrowFirst gives a client that never sent data (a TCP connection to a
// reserved port is refused) the first packet of a client of the same kind,
// so route can still be asked.
func (s *suite) borrowFirst(c *clientCase, cases []*clientCase) {
	for _, o := range cases {
		if o.first != nil && o.kind == c.kind && o.inst == c.inst && o.proto == c.proto && o.sni == c.sni {
			c.first = o.first
			c.firstNote = "sent no data (" + refusal(c) + "); route asked with the first packet of " + o.id
			return
		}
	}
}

func refusal(c *clientCase) string {
	if strings.Contains(c.detail, "Connection refused") || strings.Contains(c.detail, "connection-failed") {
		return "connection refused"
	}
	return "no data captured"
}

// landing says where the case's first packet went: for UDP, the OpenVPN
// server that logged the client's address and port; for TCP, the backend
// HAProxy forwarded the same first bytes to (captured on the node's loopback).
func (s *suite) landing(c *clientCase) string {
	if c.proto == "udp" {
		var saw []string
		for _, in := range s.instances {
			if in.sawClient(c.lport) {
				saw = append(saw, in.service)
			}
		}
		return oneOrNone(saw)
	}
	if len(c.first) == 0 {
		// Nothing to follow: it got through only if its server answered.
		if c.ok {
			return c.want
		}
		return none
	}
	key := c.first[:min(len(c.first), 43)]
	flows := s.loopback.all(func(f flow, payload []byte) bool {
		_, isBackend := s.backends[f.dst]
		return f.proto == "tcp" && isBackend && bytes.HasPrefix(payload, key)
	})
	var saw []string
	for _, f := range flows {
		if svc := s.backends[f.dst]; !slices.Contains(saw, svc) {
			saw = append(saw, svc)
		}
	}
	return oneOrNone(saw)
}

func oneOrNone(saw []string) string {
	switch len(saw) {
	case 0:
		return none
	case 1:
		return saw[0]
	}
	slices.Sort(saw)
	return "ambiguous(" + strings.Join(saw, ",") + ")"
}

func checkOpenVPN(t *testing.T, cases []*clientCase) {
	for _, c := range cases {
		if c.kind != "openvpn" {
			continue
		}
		mustWork := c.want == c.inst.service
		if c.landed != c.want {
			t.Errorf("%s: landed on %s, the design sends it to %s\n%s", c.id, c.landed, c.want, testbed.Tail(c.detail, 8))
		}
		if c.ok != mustWork {
			t.Errorf("%s: handshake completed=%v, want %v (landed on %s)\n%s", c.id, c.ok, mustWork, c.landed, testbed.Tail(c.detail, 8))
		}
	}
}

func checkBackends(t *testing.T, cases []*clientCase) {
	for _, c := range cases {
		if c.kind == "openvpn" {
			continue
		}
		if c.landed != c.want {
			t.Errorf("%s: landed on %s, want %s\n%s", c.id, c.landed, c.want, testbed.Tail(c.detail, 8))
		}
		if c.ok != (c.want != none) {
			t.Errorf("%s: reached its server=%v, want %v\n%s", c.id, c.ok, c.want != none, testbed.Tail(c.detail, 8))
		}
	}
}

func checkPredictions(t *testing.T, cases []*clientCase) {
	for _, c := range cases {
		if c.first == nil {
			t.Errorf("%s: no first packet captured, nothing to ask route about", c.id)
			continue
		}
		if c.predicted.Service != c.landed {
			t.Errorf("%s: portstripe route predicts %s (%s), the packet landed on %s; first packet %x",
				c.id, c.predicted.Service, c.predicted.Via, c.landed, c.first)
		}
	}
}

// renderMatrix lays out every case: instance × proto × port → landed on.
func renderMatrix(seed int64, cases []*clientCase, resends []*resendCase, took time.Duration) string {
	var b strings.Builder
	fmt.Fprintf(&b, "portstripe e2e matrix (seed %d, random ports %v, %s)\n", seed, randomPorts(seed, randomCount), took.Round(time.Second))
	fmt.Fprintf(&b, "%-16s %-5s %5s  %-16s %-16s %-16s %s\n", "client", "proto", "port", "design", "landed on", "route says", "handshake")
	sorted := slices.Clone(cases)
	slices.SortStableFunc(sorted, func(a, b *clientCase) int {
		if c := strings.Compare(a.who(), b.who()); c != 0 {
			return c
		}
		if c := strings.Compare(a.proto, b.proto); c != 0 {
			return c
		}
		return a.port - b.port
	})
	for _, c := range sorted {
		hs := "fail"
		if c.ok {
			hs = "ok"
		}
		mark := ""
		if c.firstNote != "" {
			mark = "  (" + c.firstNote + ")"
		}
		if c.landed != c.want || c.predicted.Service != c.landed {
			mark += "  <-- MISMATCH"
		}
		fmt.Fprintf(&b, "%-16s %-5s %5d  %-16s %-16s %-16s %s%s\n", c.who(), c.proto, c.port, c.want, c.landed, c.predicted.Service, hs, mark)
	}
	for _, r := range resends {
		fmt.Fprintf(&b, "%-16s %-5s %5d  %-16s %-16s %-16s %s  (%s)\n", r.inst.service, "tcp", r.port, r.inst.service, r.landed, r.predicted.Service, okWord(r.ok), r.name)
	}
	return b.String()
}

func okWord(ok bool) string {
	if ok {
		return "ok"
	}
	return "fail"
}

// who names the client in the matrix.
func (c *clientCase) who() string {
	switch c.kind {
	case "openvpn":
		return c.inst.service
	case "tls":
		if c.sni == "" {
			return "tls(no sni)"
		}
		return "tls " + strings.TrimSuffix(c.sni, ".example.com")
	}
	return c.kind
}

// writeMatrix writes the matrix to -e2e.matrix (a temporary file by
// default); another backend's matrix goes beside it, the backend's name
// before the extension.
func writeMatrix(t *testing.T, matrix, firewall string) {
	path := *matrixFlag
	if path == "" {
		path = filepath.Join(os.TempDir(), "portstripe-e2e-matrix.txt")
	}
	if firewall != "" {
		ext := filepath.Ext(path)
		path = strings.TrimSuffix(path, ext) + "-" + firewall + ext
	}
	if err := os.WriteFile(path, []byte(matrix), 0o644); err != nil {
		t.Errorf("write matrix: %v", err)
		return
	}
	t.Logf("matrix written to %s", path)
}

//go:build e2e

package e2e

import (
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/iptables"
)

// The abuse tests apply the seed node's RSA (tls-auth SHA512) and ECC
// (tls-crypt) instances with `portstripe apply` inside the node namespace,
// then attack the striped ports from the client namespace.
const (
	abuseClients  = 2000
	abuseMaxConn  = 5000 // room for every abuser and the real client: about 2 fds each in HAProxy
	abuseTCPPorts = 20   // abusers spread over striped TCP ports 2000-2019
	abuseVPNPort  = 8080
	abuseVPNLport = 41500 // lports here and below are in testbed.ClientFixedPorts
	junkRandom    = 300   // random UDP payloads, plus the near misses
	junkLport     = 42000
	junkPort      = 3000 // junk goes to striped UDP ports 3000-3049
)

// abuseNode is the live node of the abuse tests.
type abuseNode struct {
	dir          string
	client, node testbed.Netns
	rsa, ecc     *instance
	state        string
}

func setUpAbuse(t *testing.T) *abuseNode {
	t.Helper()
	dir, err := os.MkdirTemp("", "portstripe-abuse-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(testbed.AtExit(func() { os.RemoveAll(dir) }))
	raiseFileLimit(t)
	a := &abuseNode{dir: dir, state: filepath.Join(dir, "state")}
	instances := seedInstances()[:2]
	a.rsa, a.ecc = instances[0], instances[1]
	if err := newPKIs(dir, instances); err != nil {
		t.Fatal(err)
	}
	pair := testenv.Pair(t, nsPrefix)
	a.client, a.node = pair.Client, pair.Node
	for _, in := range instances {
		in.startServers(t, a.node, dir)
	}
	yaml := strings.Replace(nodeFile(dir, instances), "maxconn: 1000", fmt.Sprintf("maxconn: %d", abuseMaxConn), 1)
	nodePath := filepath.Join(dir, "node.yaml")
	if err := os.WriteFile(nodePath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	// apply starts HAProxy as a daemon in the node namespace; deleting the
	// namespace kills it.
	if out, err := a.node.Run(cliPath, "apply", "-c", nodePath, "--dir", a.state); err != nil {
		t.Fatalf("portstripe apply: %v\n%s", err, out)
	}
	return a
}

// raiseFileLimit lifts the soft descriptor limit to the hard one: the test
// holds every abuser's socket, and HAProxy (which inherits the limit) two
// descriptors per connection.
func raiseFileLimit(t *testing.T) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	lim.Cur = lim.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	if need := uint64(2*abuseMaxConn + abuseClients + 1000); lim.Cur < need {
		t.Skipf("descriptor limit %d, the abuse test needs %d", lim.Cur, need)
	}
}

// status is what `portstripe status --json` reports in the node namespace.
func (a *abuseNode) status(t *testing.T) (frontends map[string]haproxy.Stat, rules []iptables.Counter) {
	t.Helper()
	out, _ := a.node.Command(cliPath, "status", "--dir", a.state, "--json").Output()
	var st struct {
		Backends []haproxy.Stat     `json:"backends"`
		Rules    []iptables.Counter `json:"rules"`
		Problems []string           `json:"problems"`
	}
	if err := json.Unmarshal(out, &st); err != nil {
		t.Fatalf("portstripe status --json: %v in %q", err, out)
	}
	if len(st.Problems) > 0 {
		t.Fatalf("portstripe status: %v", st.Problems)
	}
	frontends = map[string]haproxy.Stat{}
	for _, s := range st.Backends {
		if s.Type == haproxy.StatFrontend {
			frontends[s.Proxy] = s
		}
	}
	return frontends, st.Rules
}

// TestAbuseIdleClients: 2,000 TCP clients on striped ports that send
// nothing or one byte are held by HAProxy at most for the inspect-delay and
// then cut, and a real OpenVPN client connects while they are held.
func TestAbuseIdleClients(t *testing.T) {
	a := setUpAbuse(t)
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	start := time.Now()
	// Sockets made inside do belong to the client namespace for good.
	err := a.client.Do(func() error {
		for i := range abuseClients {
			c, err := net.DialTimeout("tcp", net.JoinHostPort(nodeAddr, fmt.Sprint(2000+i%abuseTCPPorts)), 5*time.Second)
			if err != nil {
				return fmt.Errorf("abuser %d: %w", i, err)
			}
			conns = append(conns, c)
			if i%2 == 1 {
				// One byte: a prefix of an OpenVPN length, so HAProxy waits
				// for more rather than refusing at once.
				if _, err := c.Write([]byte{0}); err != nil {
					return fmt.Errorf("abuser %d: %w", i, err)
				}
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%d abusers connected in %s (half idle, half sent one byte)", len(conns), time.Since(start).Round(time.Millisecond))

	vpnStart := time.Now()
	cmd := a.client.Command("openvpn", a.rsa.clientArgs("tcp", abuseVPNPort, abuseVPNLport, "abuse")...)
	ok, lines, err := testbed.WatchLines(cmd, filepath.Join(a.dir, "client-abuse.log"), "Initialization Sequence Completed", 20*time.Second)
	if err != nil || !ok {
		t.Fatalf("OpenVPN client on tcp %d among %d abusers: %v\n%s", abuseVPNPort, len(conns), err, testbed.Tail(lines, 20))
	}
	took := time.Since(vpnStart)
	time.Sleep(300 * time.Millisecond) // let the server log the handshake
	if !a.rsa.handshakeWith("tcp", "abuse") {
		t.Errorf("the RSA server logged no handshake with the client:\n%s", testbed.Tail(a.rsa.tcp.LogText(), 20))
	}
	t.Logf("a real OpenVPN client (RSA, tcp %d) connected in %s among the abusers", abuseVPNPort, took.Round(time.Millisecond))
	fe, _ := a.status(t)
	if held := fe["fe_striped"].Scur; time.Since(start) < 5*time.Second && held < abuseClients {
		t.Errorf("HAProxy holds %d sessions while the client connected, want the %d abusers", held, abuseClients)
	}

	// The inspect-delay (5 s) ends every abuser: default reject.
	deadline := time.Now().Add(15 * time.Second)
	for {
		fe, _ = a.status(t)
		if fe["fe_striped"].Scur == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("HAProxy still holds %d sessions %s after the abusers connected", fe["fe_striped"].Scur, time.Since(start))
		}
		time.Sleep(250 * time.Millisecond)
	}
	t.Logf("all abusers cut %s after the first connected; fe_striped: max %d concurrent, %d in all", time.Since(start).Round(time.Millisecond), fe["fe_striped"].Smax, fe["fe_striped"].Stot)
	if fe["fe_striped"].Smax < abuseClients {
		t.Errorf("HAProxy saw at most %d concurrent sessions, want the %d abusers", fe["fe_striped"].Smax, abuseClients)
	}
	open := 0
	for _, c := range conns {
		c.SetReadDeadline(time.Now().Add(10 * time.Millisecond))
		if _, err := c.Read(make([]byte, 1)); errors.Is(err, os.ErrDeadlineExceeded) {
			open++
		}
	}
	if open > 0 {
		t.Errorf("%d abusers are still connected after the inspect-delay", open)
	}
}

// junk is a UDP payload that no rule may divert.
type junk struct {
	what    string
	payload []byte
}

// nearMisses are first packets one check away from OpenVPN's: tls-auth
// SHA512 has opcode 0x38 and packet-id 1 at 73, tls-crypt packet-id 1 at 9
// (2.6 sends 86 and 54 bytes; the length is not checked, so packets longer
// than that are no near miss: a client may append fields).
func nearMisses() []junk {
	packet := func(length int, opcode byte, pidAt int, pid uint32) []byte {
		b := make([]byte, length)
		for i := range b {
			b[i] = byte(0xa5 + i)
		}
		b[0] = opcode
		if pidAt+4 <= length {
			b[pidAt], b[pidAt+1], b[pidAt+2], b[pidAt+3] = byte(pid>>24), byte(pid>>16), byte(pid>>8), byte(pid)
		}
		return b
	}
	return []junk{
		{"tls-auth layout, wrong opcode", packet(86, 0x40, 73, 1)},
		{"tls-auth opcode, cut inside the packet-id", packet(76, 0x38, 73, 1)},
		{"tls-auth layout, packet-id 2", packet(86, 0x38, 73, 2)},
		{"tls-auth length and opcode, packet-id elsewhere", packet(86, 0x38, 41, 1)},
		{"tls-crypt layout, wrong opcode", packet(54, 0x20, 9, 1)},
		{"tls-crypt opcode, cut inside the packet-id", packet(12, 0x38, 9, 1)},
		{"tls-crypt layout, packet-id 0", packet(54, 0x38, 9, 0)},
		{"tls-crypt length and opcode, packet-id elsewhere", packet(54, 0x38, 13, 1)},
		{"opcode only", []byte{0x38}},
		{"empty", nil},
	}
}

// TestAbuseUDPJunk: random payloads and near misses sent to striped UDP
// ports are diverted by no rule and reach no OpenVPN listener, while a
// real first packet sent the same way is.
func TestAbuseUDPJunk(t *testing.T) {
	a := setUpAbuse(t)
	seed := uint64(time.Now().UnixNano())
	if *seedFlag != 0 {
		seed = uint64(*seedFlag)
	}
	t.Logf("junk seed %d (rerun with -args -e2e.seed=%d)", seed, seed)
	r := rand.New(rand.NewPCG(seed, 0))
	sent := nearMisses()
	for i := range junkRandom {
		b := make([]byte, r.IntN(300))
		for j := range b {
			b[j] = byte(r.UintN(256))
		}
		sent = append(sent, junk{fmt.Sprintf("random %d", i), b})
	}
	real := tlsCryptFirstPacket(t) // the control

	_, before := a.status(t)
	send := func(lport, port int, payload []byte) error {
		return a.client.Do(func() error {
			c, err := net.DialUDP("udp", &net.UDPAddr{IP: net.ParseIP(clientAddr), Port: lport}, &net.UDPAddr{IP: net.ParseIP(nodeAddr), Port: port})
			if err != nil {
				return err
			}
			defer c.Close()
			_, err = c.Write(payload)
			return err
		})
	}
	for i, j := range sent {
		if err := send(junkLport+i, junkPort+i%50, j.payload); err != nil {
			t.Fatalf("%s: %v", j.what, err)
		}
	}
	controlLport := junkLport + len(sent)
	if err := send(controlLport, junkPort, real); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond) // let the servers log what reached them
	_, after := a.status(t)

	moved := map[string]uint64{}
	for i, c := range after {
		if strings.HasPrefix(c.Chain, "PORTSTRIPE-U-") && i < len(before) && c.Packets > before[i].Packets {
			moved[c.Comment] += c.Packets - before[i].Packets
		}
	}
	for rule, n := range moved {
		if !strings.HasPrefix(rule, "openvpn_ecc: ") || n != 1 {
			t.Errorf("rule %q took %d packets; want only openvpn_ecc's, by 1 (the real packet)", rule, n)
		}
	}
	if len(moved) != 1 {
		t.Errorf("rule counters moved %v; want only openvpn_ecc's, by 1 (the real packet)", moved)
	}
	if !a.ecc.sawClient(controlLport) {
		t.Errorf("the ECC server did not see the real first packet from port %d", controlLport)
	}
	for i, j := range sent {
		for _, in := range []*instance{a.rsa, a.ecc} {
			if in.sawClient(junkLport + i) {
				t.Errorf("%s reached %s", j.what, in.service)
			}
		}
	}
	t.Logf("%d junk datagrams (%d near misses) to udp %d-%d: no rule diverted any, no OpenVPN server saw one; the control packet went to openvpn_ecc",
		len(sent), len(nearMisses()), junkPort, junkPort+49)
}

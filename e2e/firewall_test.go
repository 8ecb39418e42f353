//go:build e2e

package e2e

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
)

// svcVPNUDP is a tls-crypt OpenVPN instance with only a UDP listener, at
// which these tests run a UDP echo.
const svcVPNUDP = `  - name: vpn_udp
    kind: openvpn
    tls: {mode: tls-crypt}
    udp: 5060
`

// TestFirewallSwitch: apply moves a live node from iptables to nftables and
// back while a client keeps opening TCP connections and UDP flows through
// striped ports: not one attempt fails, and after each apply only the new
// backend's rules are installed.
func TestFirewallSwitch(t *testing.T) {
	b := newEchoBed(t)
	startUDPEcho(t, b.node, "0.0.0.0:5060")
	first := tlsCryptFirstPacket(t)
	write := func(fw string) {
		liveWriteLikeEditor(t, b.nodePath, testbed.NodeFile{Name: "live", Striped: "1000-2000", ListenPort: liveListenPort,
			InspectDelay: "5s", MaxConn: 1000, Dir: b.dir, Firewall: fw, Services: []string{svcEcho, svcVPNUDP}}.YAML())
	}
	apply := func(fw string) {
		t.Helper()
		write(fw)
		out, err := livePortstripe(b.node, "apply", "-c", b.nodePath, "--dir", b.stateDir)
		if err != nil {
			t.Fatalf("apply with firewall: %s: %v\n%s", fw, err, out)
		}
		t.Logf("apply with firewall: %s:\n%s", fw, strings.TrimSpace(out))
	}
	apply("iptables")
	echoWorks(t, b.client, 1001, "iptables")
	if err := udpEchoOnce(b.client, 1002, first); err != nil {
		t.Fatalf("udp through iptables: %v", err)
	}

	var attempts, failures atomic.Int64
	var lastErr atomic.Value
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			port := 1000 + i%1000
			for _, try := range []func() error{
				func() error { return liveEchoOnce(b.client, port, "SSH-2.0-switch\r\n") },
				func() error { return udpEchoOnce(b.client, port, first) },
			} {
				attempts.Add(1)
				if err := try(); err != nil {
					failures.Add(1)
					lastErr.Store(fmt.Sprintf("port %d: %v", port, err))
				}
			}
		}
	}()
	for _, fw := range []string{"nftables", "iptables", "nftables"} {
		before := attempts.Load()
		apply(fw)
		_, nftErr := b.node.Run("nft", "list", "table", "inet", "portstripe")
		ipt := strings.Contains(natRules(t, b.node), "PORTSTRIPE")
		if (nftErr == nil) != (fw == "nftables") || ipt != (fw == "iptables") {
			t.Errorf("after apply with firewall: %s: nft table there %v, iptables chains there %v; want only %s's", fw, nftErr == nil, ipt, fw)
		}
		// Let the client go through the new backend alone for a while.
		liveWaitFor(liveDeadline, 20*time.Millisecond, func() error {
			if attempts.Load() < before+20 {
				return fmt.Errorf("%d attempts", attempts.Load()-before)
			}
			return nil
		})
	}
	close(stop)
	<-done
	t.Logf("%d attempts (TCP connections and UDP flows) during three switches, %d failed", attempts.Load(), failures.Load())
	if n := failures.Load(); n > 0 {
		t.Errorf("%d of %d attempts failed while switching backends; last: %v", n, attempts.Load(), lastErr.Load())
	}
}

// tlsCryptFirstPacket is a real OpenVPN 2.6 tls-crypt client's first UDP
// datagram.
func tlsCryptFirstPacket(t *testing.T) []byte {
	t.Helper()
	h, err := os.ReadFile("../fixtures/first-packets/udp-tls-crypt.hex")
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.TrimSpace(string(h)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// startUDPEcho answers every datagram to addr in ns with itself until the
// test ends.
func startUDPEcho(t *testing.T, ns testbed.Netns, addr string) {
	t.Helper()
	var pc net.PacketConn
	if err := ns.Do(func() error {
		var err error
		pc, err = net.ListenPacket("udp", addr)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 2048)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			pc.WriteTo(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
}

// udpEchoOnce sends payload to a striped UDP port from a new source port
// (a new flow, so it is classified afresh) and checks it comes back.
func udpEchoOnce(client testbed.Netns, port int, payload []byte) error {
	var c *net.UDPConn
	if err := client.Do(func() error {
		var err error
		c, err = net.DialUDP("udp", nil, &net.UDPAddr{IP: net.ParseIP(nodeAddr), Port: port})
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	if _, err := c.Write(payload); err != nil {
		return fmt.Errorf("udp write: %w", err)
	}
	buf := make([]byte, 2048)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("udp echo: %w", err)
	}
	if !bytes.Equal(buf[:n], payload) {
		return fmt.Errorf("udp echo of %d bytes, sent %d", n, len(payload))
	}
	return nil
}

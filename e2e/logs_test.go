//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testbed"
)

// logClient is one client of TestDecisionLog: what it sends through which
// public port, and the decision line it must leave.
type logClient struct {
	name    string
	port    int
	send    string // "" sends nothing and closes
	rule    string
	backend string
}

// TestDecisionLog: after an apply, every client through the node's DNAT
// rules and HAProxy leaves exactly one decision line in the state
// directory's haproxy.log, naming its own address and port, the public port
// it dialled (read back from the kernel, not the frontend's 20000), and
// where it landed and why.
func TestDecisionLog(t *testing.T) {
	b := newEchoBed(t)
	if out, err := livePortstripe(b.node, "apply", "-c", b.nodePath, "--dir", b.stateDir, "--set", "haproxy.log_rate="+strconv.Itoa(logRate)); err != nil {
		t.Fatalf("apply: %v\n%s", err, out)
	}
	clients := []logClient{
		{name: "ssh-looking echo client", port: 1022, send: "SSH-2.0-decision-log\r\n", rule: haproxy.RuleSignature, backend: "echo"},
		{name: "junk client", port: 1500, send: "junk that no signature matches\r\n", rule: haproxy.RuleReject, backend: "fe_striped"},
		{name: "client that sends nothing", port: 1999, rule: haproxy.RuleReject, backend: "fe_striped"},
	}
	want := map[netip.AddrPort]logClient{}
	for _, c := range clients {
		want[logDial(t, b.client, c)] = c
	}
	log := filepath.Join(b.stateDir, "haproxy.log")
	var got map[netip.AddrPort][]haproxy.DecisionLine
	if _, err := liveWaitFor(liveDeadline, 50*time.Millisecond, func() error {
		got = readDecisions(t, log)
		for client := range want {
			if len(got[client]) == 0 {
				return os.ErrNotExist
			}
		}
		return nil
	}); err != nil {
		raw, _ := os.ReadFile(log)
		t.Fatalf("not every client has a decision line within %s:\n%s", liveDeadline, raw)
	}
	for client, c := range want {
		ds := got[client]
		if len(ds) != 1 {
			t.Errorf("%s (%s): %d decision lines, want 1: %v", c.name, client, len(ds), ds)
			continue
		}
		d := ds[0]
		t.Logf("%s: %s", c.name, d.Line)
		if d.Client.Addr() != testbed.ClientAddr || d.Dst != testbed.NodeAddr || int(d.Port) != c.port {
			t.Errorf("%s: client=%s dst=%s port=%d, want client %s dst %s port %d (the public port)", c.name, d.Client, d.Dst, d.Port, client, testbed.NodeAddr, c.port)
		}
		if d.Frontend != "fe_striped" || d.Rule != c.rule || d.Backend != c.backend {
			t.Errorf("%s: frontend=%s rule=%s backend=%s, want fe_striped %s %s", c.name, d.Frontend, d.Rule, d.Backend, c.rule, c.backend)
		}
		if c.rule == haproxy.RuleReject && d.Flags != "PR" {
			t.Errorf("%s: flags=%s, want PR (rejected by the frontend's rules)", c.name, d.Flags)
		}
		if d.BytesIn != int64(len(c.send)) {
			t.Errorf("%s: bytes_in=%d, want the %d bytes it sent", c.name, d.BytesIn, len(c.send))
		}
	}
	if len(got) != len(want) {
		t.Errorf("%d clients have decision lines, want %d: %v", len(got), len(want), got)
	}
	for client, c := range want {
		out, err := livePortstripe(b.node, "logs", "--dir", b.stateDir, "--client", client.String())
		wantWhy := map[string]string{haproxy.RuleSignature: "signature of echo matched → backend echo", haproxy.RuleReject: "no signature matched → rejected"}[c.rule]
		if err != nil || strings.Count(out, "\n") != 1 || !strings.Contains(out, client.String()+" → port "+strconv.Itoa(c.port)+" (fe_striped): "+wantWhy) {
			t.Errorf("portstripe logs --client %s (%s): %v\n%s", client, c.name, err, out)
		}
	}

	t.Run("flood", func(t *testing.T) {
		// A flood of junk connections: every one is rejected, but at most
		// about log_rate a second leave a line (HAProxy's conn_rate is a
		// sliding average, hence the slack of two periods).
		const n = 300
		start := time.Now()
		for i := range n {
			logDial(t, b.client, logClient{name: "flood " + strconv.Itoa(i), port: 1000 + i%1000, send: "flood\r\n", rule: haproxy.RuleReject})
		}
		took := time.Since(start)
		time.Sleep(time.Second) // the last lines are written as the connections end
		lines := 0
		for _, ds := range readDecisions(t, log) {
			lines += len(ds)
		}
		lines -= len(clients)
		bound := int(float64(logRate)*(took.Seconds()+2)) + logRate
		t.Logf("%d connections in %v left %d decision lines (log_rate %d; bound %d)", n, took.Round(time.Millisecond), lines, logRate, bound)
		if lines < 1 || lines > bound {
			t.Errorf("%d connections in %v left %d decision lines, want 1 to %d at log_rate %d", n, took, lines, bound, logRate)
		}
	})
}

// logRate is the haproxy.log_rate of TestDecisionLog: low, so a flood a
// test can make is well past it.
const logRate = 10

// logDial runs one client through public port c.port and returns its
// address as the node sees it.
func logDial(t *testing.T, client testbed.Netns, c logClient) netip.AddrPort {
	t.Helper()
	conn, err := liveDial(client, net.JoinHostPort(nodeAddr, strconv.Itoa(c.port)), 3*time.Second)
	if err != nil {
		t.Fatalf("%s: %v", c.name, err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	if c.send == "" {
		return conn.LocalAddr().(*net.TCPAddr).AddrPort()
	}
	if _, err := io.WriteString(conn, c.send); err != nil {
		t.Fatalf("%s: write: %v", c.name, err)
	}
	got, _ := io.ReadAll(io.LimitReader(conn, int64(len(c.send))))
	if echoed := string(got) == c.send; echoed != (c.rule == haproxy.RuleSignature) {
		t.Fatalf("%s: got %q back (want the echo only when a signature matched)", c.name, got)
	}
	return conn.LocalAddr().(*net.TCPAddr).AddrPort()
}

// readDecisions reads the decision lines of a haproxy.log, by client.
func readDecisions(t *testing.T, path string) map[netip.AddrPort][]haproxy.DecisionLine {
	t.Helper()
	raw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	out := map[netip.AddrPort][]haproxy.DecisionLine{}
	for _, l := range strings.Split(string(raw), "\n") {
		if d, ok := haproxy.ParseDecisionLine(l); ok {
			out[d.Client] = append(out[d.Client], d)
		}
	}
	return out
}

// checkDecisionLines: every TCP client of the matrix that reached a
// frontend left decision lines naming the public port it dialled and where
// it landed (its backend, or reject), one for each connection: exactly one
// for an SSH or TLS client; an OpenVPN client that lands on the wrong
// server may reconnect from its fixed port. A client of a reserved port
// never reached HAProxy and leaves none.
func checkDecisionLines(t *testing.T, log string, cases []*clientCase) {
	// HAProxy writes a TCP connection's line when the session ends, which
	// can be after the client has gone: wait (boundedly) for a line from
	// every client that reached a frontend.
	var byClient map[netip.AddrPort][]haproxy.DecisionLine
	liveWaitFor(10*time.Second, 100*time.Millisecond, func() error {
		byClient = readDecisions(t, log)
		for _, c := range cases {
			if c.proto == "tcp" && c.src.IsValid() && !slices.Contains(reservedPorts, c.port) && len(byClient[c.src]) == 0 {
				return fmt.Errorf("no line for %s yet", c.id)
			}
		}
		return nil
	})
	// The client namespace reuses ephemeral ports: two cases may share a
	// source address and port, one after the other, to different public
	// ports (or, rarely, the same one).
	type key struct {
		src  netip.AddrPort
		port int
	}
	sharing, ports := map[key]int{}, map[netip.AddrPort][]int{}
	for _, c := range cases {
		if c.proto == "tcp" && c.src.IsValid() {
			sharing[key{c.src, c.port}]++
			ports[c.src] = append(ports[c.src], c.port)
		}
	}
	for src, ds := range byClient {
		for _, d := range ds {
			if cs, ok := ports[src]; ok && !slices.Contains(cs, int(d.Port)) {
				t.Errorf("%s: a decision line for public port %d, which no client from there dialled (%v): %s", src, d.Port, cs, d.Line)
			}
		}
	}
	checked, reconnected := 0, 0
	for _, c := range cases {
		if c.proto != "tcp" {
			continue
		}
		if !c.src.IsValid() {
			if !slices.Contains(reservedPorts, c.port) {
				t.Errorf("%s: no connection of its captured: cannot find its decision line", c.id)
			}
			continue
		}
		var ds []haproxy.DecisionLine
		for _, d := range byClient[c.src] {
			if int(d.Port) == c.port {
				ds = append(ds, d)
			}
		}
		n := sharing[key{c.src, c.port}]
		switch {
		case slices.Contains(reservedPorts, c.port):
			if len(ds) != 0 {
				t.Errorf("%s: a reserved port's client has decision lines: %v", c.id, ds)
			}
			continue
		case len(ds) == 0, len(ds) > n && c.kind != "openvpn":
			t.Errorf("%s (%s): %d decision lines, want %d: %v", c.id, c.src, len(ds), n, ds)
			continue
		}
		checked++
		if len(ds) > n {
			reconnected++
		}
		for _, d := range ds {
			if d.Dst != testbed.NodeAddr {
				t.Errorf("%s: dst=%s, want %s: %s", c.id, d.Dst, testbed.NodeAddr, d.Line)
			}
			if n > 1 {
				continue // which line is whose cannot be told
			}
			if landed := c.landed != none; landed != (d.Rule != haproxy.RuleReject) || landed && d.Backend != c.landed {
				t.Errorf("%s: landed on %s, its decision line says rule=%s backend=%s: %s", c.id, c.landed, d.Rule, d.Backend, d.Line)
			}
		}
	}
	t.Logf("%d TCP clients checked against their decision lines (%d OpenVPN clients reconnected)", checked, reconnected)
}

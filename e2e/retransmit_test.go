//go:build e2e

package e2e

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// resendCase is a raw TCP client replaying a real client's captured first
// packet, cut or doubled the way slow or impatient clients do.
// resendLport is the first client port of the resend cases, in
// testbed.ClientFixedPorts above the OpenVPN clients' (41000 on) and below
// the abuse tests' junk (42000 on).
const resendLport = 41800

type resendCase struct {
	name     string
	inst     *instance
	port     int
	lport    int      // the client's local port, in testbed.ClientFixedPorts
	segments [][]byte // written one by one, with a pause between

	wire      []byte // the first segment as captured on the wire
	reply     []byte
	ok        bool
	landed    string
	predicted prediction
	err       error
}

// resendPause is the gap between segments: long enough that HAProxy reads
// the first segment alone.
const resendPause = 400 * time.Millisecond

func (s *suite) checkRetransmits(t *testing.T, cases []*clientCase) []*resendCase {
	var resends []*resendCase
	// RSA (tls-auth) on a shared and on a dedicated port; ECC (tls-crypt)
	// on shared ports only, as 5061 and 5062 belong to other tls-crypt
	// instances.
	ports := map[string][]int{"openvpn_rsa": {8080, 5061}, "openvpn_ecc": {8080, 443}}
	for _, in := range s.instances {
		if ports[in.service] == nil {
			continue
		}
		pkt := firstPacket(cases, in, "tcp")
		if pkt == nil {
			t.Errorf("no captured TCP first packet of a successful %s client to replay", in.service)
			continue
		}
		for _, port := range ports[in.service] {
			resends = append(resends,
				&resendCase{name: "split after the length prefix", inst: in, port: port, segments: [][]byte{pkt[:2], pkt[2:]}},
				&resendCase{name: "split in the middle", inst: in, port: port, segments: [][]byte{pkt[:len(pkt)/2], pkt[len(pkt)/2:]}},
				&resendCase{name: "sent twice in one write", inst: in, port: port, segments: [][]byte{append(slices.Clone(pkt), pkt...)}},
				&resendCase{name: "sent twice, two writes", inst: in, port: port, segments: [][]byte{pkt, pkt}},
			)
		}
	}
	// A fixed local port per case: with an ephemeral one, an earlier
	// client's flow from the same port (an SSH banner, a ClientHello) was
	// taken for this case's first segment.
	for i, r := range resends {
		r.lport = resendLport + i
	}
	var wg sync.WaitGroup
	for _, r := range resends {
		wg.Add(1)
		go func() { defer wg.Done(); s.resend(r) }()
	}
	wg.Wait()
	for _, r := range resends {
		stream := bytes.Join(r.segments, nil)
		p, err := route(s.nodePath, "tcp", r.port, stream)
		if err != nil {
			t.Errorf("%s: %v", r.name, err)
		}
		r.predicted = p
		id := fmt.Sprintf("%s tcp %d %s", r.inst.service, r.port, r.name)
		switch {
		case r.err != nil:
			t.Errorf("%s: %v", id, r.err)
		case !r.ok:
			t.Errorf("%s: no HARD_RESET_SERVER answer from %s: got %x", id, r.inst.service, r.reply)
		}
		if len(r.segments) > 1 && !bytes.Equal(r.wire, r.segments[0]) {
			t.Errorf("%s: the first segment on the wire was %d bytes, want %d: the split did not happen", id, len(r.wire), len(r.segments[0]))
		}
		if p.Service != r.inst.service {
			t.Errorf("%s: portstripe route predicts %s (%s) for the stream %x", id, p.Service, p.Via, stream)
		}
		t.Logf("%s: %d segments, answered=%v, route=%s", id, len(r.segments), r.ok, p.Service)
	}
	return resends
}

// firstPacket returns the captured first packet of a client of in that
// completed its handshake over proto.
func firstPacket(cases []*clientCase, in *instance, proto string) []byte {
	for _, c := range cases {
		if c.inst == in && c.proto == proto && c.ok && c.first != nil && c.firstNote == "" {
			return c.first
		}
	}
	return nil
}

// resend connects from the client namespace, writes the segments with
// TCP_NODELAY and a pause between, and waits for the server's first packet:
// P_CONTROL_HARD_RESET_SERVER_V2 (opcode 8), which only the instance holding
// the client's tls-auth/tls-crypt key sends. For tls-auth it must also
// acknowledge the client's session id, which it carries in clear.
func (s *suite) resend(r *resendCase) {
	var conn *net.TCPConn
	r.err = s.client.Do(func() error {
		d := net.Dialer{Timeout: 5 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(clientAddr), Port: r.lport}}
		c, err := d.Dial("tcp", net.JoinHostPort(nodeAddr, fmt.Sprint(r.port)))
		if err != nil {
			return err
		}
		conn = c.(*net.TCPConn)
		return nil
	})
	if r.err != nil {
		return
	}
	defer conn.Close()
	conn.SetNoDelay(true)
	local, remote := unmapped(conn.LocalAddr()), unmapped(conn.RemoteAddr())
	for i, seg := range r.segments {
		if i > 0 {
			time.Sleep(resendPause)
		}
		if _, err := conn.Write(seg); err != nil {
			r.err = fmt.Errorf("write segment %d: %w", i+1, err)
			return
		}
	}
	time.Sleep(50 * time.Millisecond) // let the capture see the first segment
	_, r.wire, _ = s.wire.find(func(f flow, _ []byte) bool { return f == flow{"tcp", local, remote} })
	conn.SetReadDeadline(time.Now().Add(8 * time.Second))
	head := make([]byte, 2)
	if _, err := io.ReadFull(conn, head); err != nil {
		r.err = fmt.Errorf("read answer: %w", err)
		return
	}
	body := make([]byte, int(head[0])<<8|int(head[1]))
	if _, err := io.ReadFull(conn, body); err != nil {
		r.err = fmt.Errorf("read answer: %w", err)
		return
	}
	r.reply = append(head, body...)
	sessionID := r.segments[0]
	if len(sessionID) < 11 {
		sessionID = bytes.Join(r.segments, nil)
	}
	sessionID = sessionID[3:11]
	r.ok = len(body) > 0 && body[0]>>3 == 8
	if r.inst.mode == "tls-auth" {
		r.ok = r.ok && bytes.Contains(body[9:], sessionID)
	}
	if r.ok {
		r.landed = r.inst.service
	} else {
		r.landed = none
	}
}

// saveCaptured writes the run's first packets, one per kind of client, to
// fixtures/captured for the unit tests.
func saveCaptured(t *testing.T, cases []*clientCase, resends []*resendCase) {
	dir := filepath.Join("..", "fixtures", "captured")
	files := map[string][]byte{}
	for _, c := range cases {
		if !c.ok || c.first == nil || c.firstNote != "" {
			continue
		}
		var name string
		switch c.kind {
		case "openvpn":
			name = fmt.Sprintf("%s-%s-%s.hex", c.proto, c.inst.mode, c.inst.alg)
			if c.inst.mode == "tls-auth" {
				name = fmt.Sprintf("%s-tls-auth-%s-%s.hex", c.proto, strings.ToLower(c.inst.digest), c.inst.alg)
			}
		case "ssh":
			name = "tcp-ssh-banner.hex"
		case "tls":
			name = "tcp-tls-clienthello-sni-" + c.sni + ".hex"
		}
		if _, done := files[name]; !done {
			files[name] = c.first
		}
	}
	for _, c := range cases {
		if c.kind == "tls" && c.sni == "" && c.first != nil {
			files["tcp-tls-clienthello-no-sni.hex"] = c.first
		}
	}
	for _, r := range resends {
		if r.ok && r.name == "sent twice in one write" && r.inst.mode == "tls-auth" {
			files["tcp-tls-auth-sha512-rsa-twice.hex"] = r.segments[0]
		}
	}
	for name, b := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(fmt.Sprintf("%x", b)), 0o644); err != nil {
			t.Errorf("save captured %s: %v", name, err)
		}
	}
	t.Logf("wrote %d captured first packets to %s", len(files), dir)
}

// unmapped is a TCP address as the capture parses it (IPv4, not mapped).
func unmapped(a net.Addr) netip.AddrPort {
	ap := a.(*net.TCPAddr).AddrPort()
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
}

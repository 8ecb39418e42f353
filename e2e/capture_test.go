//go:build e2e

package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
)

// flow is one direction of a TCP connection or UDP exchange, by ports.
type flow struct {
	proto    string // "tcp" or "udp"
	src, dst netip.AddrPort
}

// capture records, for every flow it sees leaving an interface, the payload
// of its first packet that carries any: the first UDP datagram, the first TCP
// segment with data. It reads an AF_PACKET socket, so it sees exactly what
// went on the wire, before netfilter rewrote anything. It also notes the TCP
// flows whose first data left only after the other side had closed or reset
// the connection: a client that waits for the server to speak first (such
// as ssh-keyscan) sent nothing while the node was deciding.
type capture struct {
	name       string
	fd         int
	stop       atomic.Bool
	done       chan struct{}
	mu         sync.Mutex
	first      map[flow][]byte
	order      []flow
	peerClosed map[flow]bool // by the outgoing flow the FIN or RST answered
	late       map[flow]bool // first data sent after peerClosed
}

// reverse is the flow's other direction.
func (f flow) reverse() flow { return flow{f.proto, f.dst, f.src} }

// Outgoing packets reach only packet sockets of protocol ETH_P_ALL; the
// loop keeps the IPv4 ones.
const (
	ethPAll = 0x0003
	ethPIP  = 0x0800
)

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// startCapture opens a packet socket on ifname inside ns and records the
// packets the namespace sends on it (PACKET_OUTGOING).
func startCapture(t *testing.T, ns testbed.Netns, ifname string) *capture {
	t.Helper()
	c := &capture{name: string(ns) + "/" + ifname, done: make(chan struct{}), first: map[flow][]byte{},
		peerClosed: map[flow]bool{}, late: map[flow]bool{}}
	err := ns.Do(func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		fd, err := syscall.Socket(syscall.AF_PACKET, syscall.SOCK_DGRAM, int(htons(ethPAll)))
		if err != nil {
			return fmt.Errorf("packet socket: %w", err)
		}
		c.fd = fd
		if err := syscall.SetsockoptInt(fd, syscall.SOL_SOCKET, syscall.SO_RCVBUF, 8<<20); err != nil {
			return err
		}
		tv := syscall.NsecToTimeval(int64(100 * time.Millisecond))
		if err := syscall.SetsockoptTimeval(fd, syscall.SOL_SOCKET, syscall.SO_RCVTIMEO, &tv); err != nil {
			return err
		}
		return syscall.Bind(fd, &syscall.SockaddrLinklayer{Protocol: htons(ethPAll), Ifindex: ifi.Index})
	})
	if err != nil {
		t.Fatalf("capture on %s: %v", c.name, err)
	}
	go c.loop()
	t.Cleanup(testbed.AtExit(c.close))
	return c
}

func (c *capture) loop() {
	defer close(c.done)
	buf := make([]byte, 1<<16)
	for !c.stop.Load() {
		n, from, err := syscall.Recvfrom(c.fd, buf, 0)
		if err != nil {
			continue // timeout (EAGAIN) or interrupted: check stop and read on
		}
		ll, ok := from.(*syscall.SockaddrLinklayer)
		if !ok || ll.Protocol != htons(ethPIP) {
			continue
		}
		f, payload, flags, ok := parseIPv4(buf[:n])
		switch {
		case !ok:
		case ll.Pkttype == syscall.PACKET_OUTGOING && len(payload) > 0:
			c.record(f, payload)
		case ll.Pkttype == syscall.PACKET_HOST && flags&(tcpFIN|tcpRST) != 0:
			c.mu.Lock()
			c.peerClosed[f.reverse()] = true
			c.mu.Unlock()
		}
	}
}

func (c *capture) record(f flow, payload []byte) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, seen := c.first[f]; seen {
		return
	}
	c.first[f] = append([]byte(nil), payload...)
	c.late[f] = c.peerClosed[f]
	c.order = append(c.order, f)
}

// sentLate reports whether the flow's first data left after the other side
// had closed the connection.
func (c *capture) sentLate(f flow) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.late[f]
}

func (c *capture) close() {
	c.stop.Store(true)
	<-c.done
	syscall.Close(c.fd)
}

// TCP flags parseIPv4 reports.
const (
	tcpFIN = 0x01
	tcpRST = 0x04
)

// parseIPv4 returns the flow, the transport payload and, for TCP, the flags
// of an IPv4 TCP or UDP packet.
func parseIPv4(b []byte) (flow, []byte, byte, bool) {
	if len(b) < 20 || b[0]>>4 != 4 {
		return flow{}, nil, 0, false
	}
	ihl := int(b[0]&0x0f) * 4
	total := int(binary.BigEndian.Uint16(b[2:4]))
	if total > len(b) || ihl < 20 || total < ihl {
		return flow{}, nil, 0, false
	}
	src, _ := netip.AddrFromSlice(b[12:16])
	dst, _ := netip.AddrFromSlice(b[16:20])
	l4 := b[ihl:total]
	switch b[9] {
	case syscall.IPPROTO_UDP:
		if len(l4) < 8 {
			return flow{}, nil, 0, false
		}
		return flow{"udp", netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2])), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4]))}, l4[8:], 0, true
	case syscall.IPPROTO_TCP:
		if len(l4) < 20 {
			return flow{}, nil, 0, false
		}
		off := int(l4[12]>>4) * 4
		if off < 20 || off > len(l4) {
			return flow{}, nil, 0, false
		}
		return flow{"tcp", netip.AddrPortFrom(src, binary.BigEndian.Uint16(l4[0:2])), netip.AddrPortFrom(dst, binary.BigEndian.Uint16(l4[2:4]))}, l4[off:], l4[13], true
	}
	return flow{}, nil, 0, false
}

// find returns the first payload of the first flow (in capture order) that
// match accepts.
func (c *capture) find(match func(flow, []byte) bool) (flow, []byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, f := range c.order {
		if match(f, c.first[f]) {
			return f, c.first[f], true
		}
	}
	return flow{}, nil, false
}

// all returns every flow match accepts, in capture order.
func (c *capture) all(match func(flow, []byte) bool) []flow {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []flow
	for _, f := range c.order {
		if match(f, c.first[f]) {
			out = append(out, f)
		}
	}
	return out
}

package main

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/portstripe/portstripe/internal/testbed"
)

// The benchmark re-executes itself in the namespaces: `-role backend` in the
// node namespace (the tiny TCP/UDP servers), `-role client` in the client
// namespace (the load generator). The orchestrator stays on the host.

// backendMain serves TCP ports (answer the first read with one byte 'A',
// then count what follows and, at the client's end of stream, send the count
// as 8 bytes) and UDP ports (answer every datagram with one byte).
func backendMain(tcpPorts, udpPorts string) error {
	var wg sync.WaitGroup
	for _, p := range splitList(tcpPorts) {
		ln, err := net.Listen("tcp4", "0.0.0.0:"+p)
		if err != nil {
			return err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			testbed.Serve(ln, serveTCP)()
		}()
	}
	for _, p := range splitList(udpPorts) {
		pc, err := net.ListenPacket("udp4", "0.0.0.0:"+p)
		if err != nil {
			return err
		}
		if u, ok := pc.(*net.UDPConn); ok {
			u.SetReadBuffer(4 << 20)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 2048)
			for {
				_, addr, err := pc.ReadFrom(buf)
				if err != nil {
					return
				}
				pc.WriteTo([]byte{'A'}, addr)
			}
		}()
	}
	fmt.Println("ready")
	wg.Wait()
	return nil
}

func serveTCP(c net.Conn) {
	defer c.Close()
	buf := make([]byte, 256<<10)
	if _, err := c.Read(buf); err != nil {
		return
	}
	if _, err := c.Write([]byte{'A'}); err != nil {
		return
	}
	// A bulk client then sends an 8-byte length and that many bytes, and
	// gets the count back (no half-close: sslh closes both ways on one).
	var hdr [8]byte
	if _, err := io.ReadFull(c, hdr[:]); err != nil {
		return
	}
	want := binary.BigEndian.Uint64(hdr[:])
	var total uint64
	for total < want {
		n, err := c.Read(buf[:min(uint64(len(buf)), want-total)])
		total += uint64(n)
		if err != nil {
			return
		}
	}
	binary.BigEndian.PutUint64(hdr[:], total)
	c.Write(hdr[:])
}

// Probe is a first packet and where to send it.
type Probe struct {
	Name   string `json:"name"`
	Addr   string `json:"addr"`
	Packet []byte `json:"packet"`
}

// ClientSpec is what one client process does.
type ClientSpec struct {
	Mode     string        `json:"mode"` // conn | bulk | udp | paired | udp-paired
	Probes   []Probe       `json:"probes"`
	Paths    []PairPath    `json:"paths,omitempty"` // paired: the paths alternated
	Workers  int           `json:"workers"`
	Count    int           `json:"count"`     // stop after this many attempts, or pairs (0: none)
	Duration time.Duration `json:"duration"`  // and after this long
	UntilEOF bool          `json:"until_eof"` // also stop when stdin closes
	Bytes    int64         `json:"bytes"`     // bulk: bytes to send
	Timeout  time.Duration `json:"timeout"`   // per connection or datagram
	PortFrom int           `json:"port_from"`
	PortTo   int           `json:"port_to"` // udp: destination ports cycled through
	Sockets  int           `json:"sockets"` // udp-paired: sockets per path, each its own source port
}

// PairPath is one path of a paired run: its name and the probes that take
// it (the same first packets, in the same order, as every other path's).
type PairPath struct {
	// Netns, in a udp-paired run, is the namespace the path's sockets are
	// opened in (its own client host).
	Netns  string  `json:"netns,omitempty"`
	Name   string  `json:"name"`
	Probes []Probe `json:"probes"`
}

// ClientResult is what it reports, as JSON on stdout.
type ClientResult struct {
	Attempts  int                `json:"attempts"`
	Failures  int                `json:"failures"`
	Errors    map[string]int     `json:"errors,omitempty"`
	Latencies []int64            `json:"latencies_ns,omitempty"`
	PerProbe  map[string][]int64 `json:"per_probe_ns,omitempty"`
	Elapsed   time.Duration      `json:"elapsed"`
	Bytes     int64              `json:"bytes,omitempty"`
	// Paired: per path (in Paths' order), per pair, the set-up latency
	// in ns, or -1 where that connection failed.
	Paired [][]int64 `json:"paired_ns,omitempty"`
	// PerPath, in a udp-paired run: per path (in Paths' order), what its
	// datagrams came to.
	PerPath []PathTally `json:"per_path,omitempty"`
}

// PathTally is one path's datagrams in a udp-paired run.
type PathTally struct {
	// Sent datagrams went out; Failures could not be sent.
	Sent, Failures int
	// CPU is the sending thread's CPU time around the path's sends.
	CPU time.Duration
}

func clientMain(specJSON string) error {
	var s ClientSpec
	if err := json.Unmarshal([]byte(specJSON), &s); err != nil {
		return err
	}
	var res ClientResult
	var err error
	switch s.Mode {
	case "conn":
		res = runConns(s)
	case "bulk":
		res, err = runBulk(s)
	case "udp":
		res, err = runUDP(s)
	case "paired":
		res = runPaired(s)
	case "udp-paired":
		res, err = runUDPPaired(s)
	default:
		err = fmt.Errorf("unknown mode %q", s.Mode)
	}
	if err != nil {
		return err
	}
	return json.NewEncoder(os.Stdout).Encode(res)
}

// stopper says when a loop must end: count, duration, or stdin closed.
type stopper struct {
	n        atomic.Int64
	count    int64
	deadline time.Time
	eof      atomic.Bool
}

func newStopper(s ClientSpec) *stopper {
	st := &stopper{count: int64(s.Count), deadline: time.Now().Add(s.Duration)}
	if s.UntilEOF {
		go func() {
			io.Copy(io.Discard, os.Stdin)
			st.eof.Store(true)
		}()
	}
	return st
}

// next returns the attempt number, or -1 when the loop must end.
func (st *stopper) next() int64 {
	if st.eof.Load() || time.Now().After(st.deadline) {
		return -1
	}
	i := st.n.Add(1) - 1
	if st.count > 0 && i >= st.count {
		return -1
	}
	return i
}

type tally struct {
	mu  sync.Mutex
	res ClientResult
}

func (t *tally) add(probe string, lat time.Duration, err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.res.Attempts++
	if err != nil {
		t.res.Failures++
		if t.res.Errors == nil {
			t.res.Errors = map[string]int{}
		}
		t.res.Errors[errClass(err)]++
		return
	}
	t.res.Latencies = append(t.res.Latencies, int64(lat))
	if t.res.PerProbe == nil {
		t.res.PerProbe = map[string][]int64{}
	}
	t.res.PerProbe[probe] = append(t.res.PerProbe[probe], int64(lat))
}

// errClass shortens an error to its kind, without addresses and ports.
func errClass(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, ": "); i >= 0 {
		s = s[i+2:]
	}
	return s
}

// setup connects to p.Addr, sends p's first packet and waits for the
// backend's one-byte answer: the connection set-up the bench measures.
func setup(p Probe, timeout time.Duration, buf []byte) (time.Duration, error) {
	t0 := time.Now()
	err := func() error {
		c, err := net.DialTimeout("tcp", p.Addr, timeout)
		if err != nil {
			return fmt.Errorf("dial: %w", err)
		}
		defer c.Close()
		c.SetDeadline(t0.Add(timeout))
		if _, err := c.Write(p.Packet); err != nil {
			return fmt.Errorf("write: %w", err)
		}
		n, err := c.Read(buf)
		if err != nil {
			return fmt.Errorf("read: %w", err)
		}
		if n < 1 || buf[0] != 'A' {
			return fmt.Errorf("answer: unexpected %q", buf[:n])
		}
		return nil
	}()
	return time.Since(t0), err
}

// runPaired is one client that alternates between the paths connection by
// connection: pair i makes one connection through every path, with the same
// first packet (probe i mod len), one after another, the path that goes
// first rotating from pair to pair so that none always follows another.
// Neighbouring connections share the machine's state of the moment, so a
// slow spell lands on every path alike and the per-pair differences leave
// most of it out.
func runPaired(s ClientSpec) ClientResult {
	st := newStopper(s)
	var t tally
	n := len(s.Paths)
	t.res.Paired = make([][]int64, n)
	buf := make([]byte, 16)
	start := time.Now()
	for {
		i := st.next()
		if i < 0 {
			break
		}
		for j := range n {
			k := (int(i) + j) % n
			path := s.Paths[k]
			p := path.Probes[int(i)%len(path.Probes)]
			lat, err := setup(p, s.Timeout, buf)
			t.add(path.Name+" "+p.Name, lat, err)
			v := int64(lat)
			if err != nil {
				v = -1
			}
			t.res.Paired[k] = append(t.res.Paired[k], v)
		}
	}
	t.res.Elapsed = time.Since(start)
	t.res.Latencies, t.res.PerProbe = nil, nil // all in Paired
	return t.res
}

// runConns: each attempt connects, sends a probe's first packet and waits
// for the backend's one-byte answer; the latency is connect → answer.
func runConns(s ClientSpec) ClientResult {
	st := newStopper(s)
	var t tally
	start := time.Now()
	var wg sync.WaitGroup
	for range s.Workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, 16)
			for {
				i := st.next()
				if i < 0 {
					return
				}
				p := s.Probes[int(i)%len(s.Probes)]
				lat, err := setup(p, s.Timeout, buf)
				t.add(p.Name, lat, err)
			}
		}()
	}
	wg.Wait()
	t.res.Elapsed = time.Since(start)
	return t.res
}

// runBulk sends the first probe's packet, waits for the answer, then
// streams s.Bytes and waits for the backend's count: throughput is bytes
// over the time from the answer to the count.
func runBulk(s ClientSpec) (ClientResult, error) {
	var res ClientResult
	p := s.Probes[0]
	c, err := net.DialTimeout("tcp", p.Addr, s.Timeout)
	if err != nil {
		return res, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(s.Duration))
	if _, err := c.Write(p.Packet); err != nil {
		return res, err
	}
	one := make([]byte, 1)
	if _, err := io.ReadFull(c, one); err != nil {
		return res, fmt.Errorf("answer: %w", err)
	}
	chunk := make([]byte, 256<<10)
	start := time.Now()
	var hdr [8]byte
	binary.BigEndian.PutUint64(hdr[:], uint64(s.Bytes))
	if _, err := c.Write(hdr[:]); err != nil {
		return res, err
	}
	var sent int64
	for sent < s.Bytes {
		n := min(int64(len(chunk)), s.Bytes-sent)
		m, err := c.Write(chunk[:n])
		sent += int64(m)
		if err != nil {
			return res, fmt.Errorf("after %d bytes: %w", sent, err)
		}
	}
	var b [8]byte
	if _, err := io.ReadFull(c, b[:]); err != nil {
		return res, fmt.Errorf("count: %w", err)
	}
	res.Elapsed = time.Since(start)
	res.Bytes = int64(binary.BigEndian.Uint64(b[:]))
	res.Attempts = 1
	if res.Bytes != sent {
		return res, fmt.Errorf("backend counted %d bytes of %d", res.Bytes, sent)
	}
	return res, nil
}

// runUDP: each worker has one socket and sends every datagram to the next
// destination port, so every datagram starts a new conntrack flow (only a
// flow's first packet goes through the nat table), and waits for the
// answer.
func runUDP(s ClientSpec) (ClientResult, error) {
	st := newStopper(s)
	var t tally
	host, _, err := net.SplitHostPort(s.Probes[0].Addr)
	if err != nil {
		return t.res, err
	}
	span := s.PortTo - s.PortFrom + 1
	start := time.Now()
	var wg sync.WaitGroup
	for range s.Workers {
		pc, err := net.ListenPacket("udp4", "0.0.0.0:0")
		if err != nil {
			return t.res, err
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer pc.Close()
			buf := make([]byte, 64)
			// A worker stops when its destination ports are used up: the
			// count is shared, so a fast worker may reach its span first.
			for k := 0; k < span; k++ {
				i := st.next()
				if i < 0 {
					return
				}
				p := s.Probes[int(i)%len(s.Probes)]
				dst, _ := net.ResolveUDPAddr("udp4", net.JoinHostPort(host, strconv.Itoa(s.PortFrom+k)))
				t0 := time.Now()
				_, err := pc.WriteTo(p.Packet, dst)
				if err == nil {
					pc.SetReadDeadline(t0.Add(s.Timeout))
					_, _, err = pc.ReadFrom(buf)
				}
				t.add(p.Name, time.Since(t0), err)
			}
		}()
	}
	wg.Wait()
	t.res.Elapsed = time.Since(start)
	return t.res, nil
}

// runUDPPaired sends new flows through several paths at once, open loop,
// alternating between the paths batch by batch (the path that goes first
// rotating), from one OS thread: per path s.Sockets sockets opened in the
// path's own client namespace, each datagram to the path's next
// destination port and, once the ports are used up, from its next socket,
// so no (source port, destination port) pair repeats and every datagram is
// a new flow. Through a veth pair the node's whole receive path (netfilter
// included) runs in the sending thread's softirq, inside the send, so the
// thread's CPU time around a path's batch is what that path's datagrams
// cost, whatever else the machine runs meanwhile.
func runUDPPaired(s ClientSpec) (ClientResult, error) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	var res ClientResult
	n := len(s.Paths)
	host, _, err := net.SplitHostPort(s.Paths[0].Probes[0].Addr)
	if err != nil {
		return res, err
	}
	span, sockets := s.PortTo-s.PortFrom+1, max(s.Sockets, 1)
	conns := make([][]*net.UDPConn, n)
	defer func() {
		for _, cs := range conns {
			for _, c := range cs {
				c.Close()
			}
		}
	}()
	for j, p := range s.Paths {
		err := testbed.Netns(p.Netns).Do(func() error {
			for range sockets {
				pc, err := net.ListenUDP("udp4", nil)
				if err != nil {
					return err
				}
				conns[j] = append(conns[j], pc)
			}
			return nil
		})
		if err != nil {
			return res, fmt.Errorf("%s: %w", p.Name, err)
		}
	}
	dsts := make([]*net.UDPAddr, span)
	for k := range dsts {
		dsts[k], _ = net.ResolveUDPAddr("udp4", net.JoinHostPort(host, strconv.Itoa(s.PortFrom+k)))
	}
	cpu := func() time.Duration {
		var ts unix.Timespec
		unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts)
		return time.Duration(ts.Nano())
	}
	const batch = 32
	res.PerPath = make([]PathTally, n)
	next := make([]int, n) // per path, its next (socket, port) pair
	deadline := time.Now().Add(s.Duration)
	start := time.Now()
	for round := 0; time.Now().Before(deadline); round++ {
		for step := range n {
			j := (round + step) % n
			if next[j]+batch > span*sockets {
				deadline = time.Now() // pairs used up: stop every path alike
				break
			}
			path, t := s.Paths[j], &res.PerPath[j]
			t0 := cpu()
			for b := range batch {
				k := next[j] + b
				p := path.Probes[k%len(path.Probes)]
				if _, err := conns[j][k/span].WriteToUDP(p.Packet, dsts[k%span]); err != nil {
					t.Failures++
				} else {
					t.Sent++
				}
			}
			t.CPU += cpu() - t0
			next[j] += batch
		}
	}
	res.Elapsed = time.Since(start)
	for _, t := range res.PerPath {
		res.Attempts += t.Sent + t.Failures
		res.Failures += t.Failures
	}
	return res, nil
}

func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}

// percentile of sorted nanoseconds, q in [0,1].
func percentile(sorted []int64, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	i := int(q*float64(len(sorted)-1) + 0.5)
	return time.Duration(sorted[i])
}

func sorted(v []int64) []int64 {
	out := append([]int64(nil), v...)
	sort.Slice(out, func(i, j int) bool { return out[i] < out[j] })
	return out
}

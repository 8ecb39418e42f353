// Package signature says what the first packet of each service looks like,
// derived from the service's settings (never typed in by the operator), and
// matches captured packets against it. The iptables and HAProxy emitters
// translate the same Signature into u32 and req.payload checks.
package signature

import (
	"bytes"
	"cmp"
	"container/heap"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
)

// Family groups signatures whose fixed first bytes differ from every other
// family's (OpenVPN's opcode or length prefix, TLS's 0x16 0x03, "SSH-",
// an HTTP method, WireGuard's 01000000), so only signatures of one family can
// ever take each other's packets. Each kind's file declares its family.
type Family string

// familyInfo is what the planner and explain know of a family.
type familyInfo struct {
	// rank orders decision lists: byte checks that decide on a few bytes
	// first, protocol parsers (TLS, HTTP) last.
	rank int
	// hint ends an ambiguity error: what else the operator can change.
	hint string
	// caveat says what the family's signatures assume about clients.
	caveat func(Signature) string
	// catches replaces the byte comparison of Catches within the family.
	catches func(s, o Signature) bool
	// precedence orders the family's signatures before Order looks at
	// what they catch (lower first); nil keeps the given order.
	precedence func(Signature) int
	// open: the family's bytes are the operator's and may look like any
	// other family's, so its signatures are compared with other
	// families' by their first packets (see Open).
	open bool
}

// Open reports whether s may take another family's clients: the planner
// then compares it with every other signature of a port by example
// packets, where it otherwise trusts families to differ.
func (s Signature) Open() bool { return families[s.Family].open }

// sub is s's precedence within its family.
func sub(s Signature) int {
	if p := families[s.Family].precedence; p != nil {
		return p(s)
	}
	return 0
}

// families are declared by the kinds' files, in init.
var families = map[Family]familyInfo{}

// Bytes is a fixed run of bytes at an offset of the first packet: for UDP the
// datagram's payload, for TCP the stream (OpenVPN's length prefix included).
type Bytes struct {
	Offset int `json:"offset"`
	Value  Hex `json:"value"`
	// Mask, when set (as long as Value), picks the bits compared: the
	// packet's bytes ANDed with Mask must equal Value, which has no bit
	// outside Mask.
	Mask Hex `json:"mask,omitempty"`
	// What names the field in words, for explain ("opcode", "packet-id 1").
	What string `json:"what"`
}

// Hex is a byte string that reads as hex in plan.json.
type Hex []byte

func (h Hex) MarshalText() ([]byte, error) { return []byte(hex.EncodeToString(h)), nil }

func (h *Hex) UnmarshalText(b []byte) error {
	v, err := hex.DecodeString(string(b))
	*h = v
	return err
}

// Signature is what a service's first packet looks like on one protocol.
type Signature struct {
	Proto  Proto  `json:"proto"`
	Family Family `json:"family"`
	// Label names the flavour: "OpenVPN tls-auth SHA512".
	Label string `json:"label"`
	// Length is the exact UDP payload length checked; 0 means any.
	Length int `json:"length,omitempty"`
	// Size is the length of the first packet as OpenVPN 2.6 sends it (UDP
	// payload, TCP length prefix), checked or not: other clients may append
	// fields, never send less, so a check for a shorter exact length cannot
	// take these clients. 0 when it varies.
	Size int `json:"size,omitempty"`
	// Bytes must all match.
	Bytes []Bytes `json:"bytes,omitempty"`
	// TLSHello asks for a TLS ClientHello; SNI, when set, for one of these
	// server names in it.
	TLSHello bool     `json:"tls_hello,omitempty"`
	SNI      []string `json:"sni,omitempty"`
	// ALPN, when set, asks for a ClientHello offering one of these
	// protocols (application_layer_protocol_negotiation).
	ALPN []string `json:"alpn,omitempty"`
	// HTTP asks for an HTTP/1 request line.
	HTTP bool `json:"http,omitempty"`
	// MinLength is the least UDP payload length checked; 0 means any.
	MinLength int `json:"min_length,omitempty"`
	// Contains asks for these bytes anywhere in what a TCP client has sent
	// so far (a text, for HAProxy's -m sub).
	Contains string `json:"contains,omitempty"`
	// Regex asks for what a TCP client has sent so far to match this
	// anchored regular expression, which matches at most RegexMax bytes.
	Regex    string `json:"regex,omitempty"`
	RegexMax int    `json:"regex_max,omitempty"`
}

// ErrNoMatch: a signature that checks nothing would take every first
// packet; the planner refuses one, the emitters never render one.
var ErrNoMatch = errors.New("checks nothing, so it would take every first packet")

// Empty reports whether s checks nothing at all.
func (s Signature) Empty() bool {
	return s.Length == 0 && s.MinLength == 0 && len(s.Bytes) == 0 && !s.TLSHello && len(s.SNI) == 0 &&
		len(s.ALPN) == 0 && !s.HTTP && s.Contains == "" && s.Regex == ""
}

// Parsed reports whether s needs more than byte and length tests (a
// protocol parser, a search or a regex): HAProxy can check it, the kernel
// cannot.
func (s Signature) Parsed() bool {
	return s.TLSHello || len(s.SNI) > 0 || len(s.ALPN) > 0 || s.HTTP || s.Contains != "" || s.Regex != ""
}

// Check says why s cannot be classified on its protocol, or nil: on UDP
// the kernel classifies, with byte and length tests only.
func (s Signature) Check() error {
	switch {
	case s.Empty():
		return ErrNoMatch
	case s.Proto == UDP && s.Parsed():
		return fmt.Errorf("needs a protocol parser, which the kernel's UDP classification does not have")
	}
	return nil
}

// Describe says in words what the signature relies on.
func (s Signature) Describe() string {
	var parts []string
	if s.Length > 0 {
		parts = append(parts, fmt.Sprintf("payload length %d", s.Length))
	}
	if s.MinLength > 0 {
		parts = append(parts, fmt.Sprintf("payload length at least %d", s.MinLength))
	}
	for _, b := range s.Bytes {
		if b.Mask != nil {
			parts = append(parts, fmt.Sprintf("%s %s (mask %s) at %d", b.What, hex.EncodeToString(b.Value), hex.EncodeToString(b.Mask), b.Offset))
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s at %d", b.What, hex.EncodeToString(b.Value), b.Offset))
	}
	if s.Size > 0 && s.exactLength() == 0 {
		parts = append(parts, fmt.Sprintf("length not checked (OpenVPN 2.6 sends %d)", s.Size))
	}
	if s.TLSHello {
		parts = append(parts, "TLS ClientHello")
	}
	if len(s.SNI) > 0 {
		parts = append(parts, "SNI in {"+strings.Join(s.SNI, ", ")+"}")
	}
	if len(s.ALPN) > 0 {
		parts = append(parts, "ALPN offers one of {"+strings.Join(s.ALPN, ", ")+"}")
	}
	if s.HTTP {
		parts = append(parts, "HTTP/1 request line")
	}
	if s.Contains != "" {
		parts = append(parts, fmt.Sprintf("%q in what the client sent", s.Contains))
	}
	if s.Regex != "" {
		parts = append(parts, fmt.Sprintf("regex %s on the first %d bytes", s.Regex, s.RegexMax))
	}
	return strings.Join(parts, "; ")
}

// Caveat says what the signature assumes about clients that a client may
// not do, for explain.
func (s Signature) Caveat() string {
	if c := families[s.Family].caveat; c != nil {
		return c(s)
	}
	return ""
}

// Result is the outcome of matching a first packet against a signature.
type Result int

const (
	NoMatch Result = iota
	Match
	// NeedMore: the bytes so far agree but do not decide; HAProxy waits for
	// more until the inspect-delay ends, then treats it as no match.
	NeedMore
)

// Match tests a first packet: a UDP payload or the first bytes of a TCP
// stream.
func (s Signature) Match(payload []byte) Result {
	if s.Empty() {
		return NoMatch
	}
	if s.Proto == UDP && (s.Length > 0 && len(payload) != s.Length || len(payload) < s.MinLength) {
		return NoMatch
	}
	short := false
	for _, b := range s.Bytes {
		// Compare what is there: a mismatch decides at once.
		if !b.matches(payload) {
			return NoMatch
		}
		if b.Offset+len(b.Value) > len(payload) {
			short = true
		}
	}
	switch {
	case s.TLSHello:
		return matchTLS(payload, s.SNI, s.ALPN)
	case s.HTTP:
		return matchHTTP(payload)
	case s.Contains != "" && !bytes.Contains(payload, []byte(s.Contains)),
		s.Regex != "" && !regexp.MustCompile(s.Regex).Match(payload):
		// HAProxy reads the whole buffer again as more comes in.
		if s.Proto == TCP {
			return NeedMore
		}
		return NoMatch
	case short && s.Proto == TCP:
		return NeedMore
	case short:
		return NoMatch
	}
	return Match
}

// matches compares the bytes of p that b covers, as far as p goes.
func (b Bytes) matches(p []byte) bool {
	for i, v := range b.Value {
		at := b.Offset + i
		if at >= len(p) {
			return true
		}
		m := byte(0xFF)
		if b.Mask != nil {
			m = b.Mask[i]
		}
		if p[at]&m != v {
			return false
		}
	}
	return true
}

// Catches reports whether s may take a real first packet of the service whose
// signature is o. Bytes o leaves open are random in o's packets; a check
// that needs four or more of them matches once in 2^32 or less, which SPEC
// accepts as telling the two apart (tls-auth SHA256 vs tls-crypt).
func (s Signature) Catches(o Signature) bool {
	if s.Proto != o.Proto || s.Family != o.Family {
		return false
	}
	if c := families[s.Family].catches; c != nil {
		return c(s, o)
	}
	if l := s.exactLength(); l > 0 {
		if ol := o.exactLength(); (ol > 0 && ol != l) || o.Size > l {
			return false
		}
	}
	// Bytes o fixes whole; a byte it masks is partly random.
	fixed := map[int]byte{}
	for _, b := range o.Bytes {
		for i, v := range b.Value {
			if b.Mask == nil || b.Mask[i] == 0xFF {
				fixed[b.Offset+i] = v
			}
		}
	}
	random := 0
	for _, b := range s.Bytes {
		for i, v := range b.Value {
			pos := b.Offset + i
			if o.Length > 0 && pos >= o.Length {
				return false
			}
			m := byte(0xFF)
			if b.Mask != nil {
				m = b.Mask[i]
			}
			f, ok := fixed[pos]
			if !ok {
				random++
			} else if f&m != v {
				return false
			}
		}
	}
	return random < 4
}

// CheckedEnd is where the last byte s checks ends: a packet that matches
// holds at least that many bytes.
func (s Signature) CheckedEnd() int {
	end := 0
	for _, b := range s.Bytes {
		end = max(end, b.Offset+len(b.Value))
	}
	return end
}

// exactLength is the packet length s insists on: the UDP payload length, or
// on TCP the OpenVPN length prefix when s checks it; 0 when it is open.
func (s Signature) exactLength() int {
	if s.Proto == UDP {
		return s.Length
	}
	if s.Family == FamilyOpenVPN && len(s.Bytes) > 0 && s.Bytes[0].Offset == 0 && len(s.Bytes[0].Value) >= 2 {
		return int(s.Bytes[0].Value[0])<<8 | int(s.Bytes[0].Value[1])
	}
	return 0
}

// Order sorts signatures into the order a decision list tries them: cheap
// byte checks first, and a signature that would take another's packets after
// that one (SNI names before a catch-all TLS service). It keeps the given
// order otherwise. It fails with the indexes of two that take each other's
// packets.
func Order(sigs []Signature) (order []int, a, b int, err error) {
	idx := make([]int, len(sigs))
	for i := range idx {
		idx[i] = i
	}
	// Families of one rank are kept together (by name), so each family
	// is one run below.
	slices.SortStableFunc(idx, func(x, y int) int {
		fx, fy := sigs[x].Family, sigs[y].Family
		return cmp.Or(families[fx].rank-families[fy].rank, strings.Compare(string(fx), string(fy)), sub(sigs[x])-sub(sigs[y]))
	})
	g := catchGraph{count: make([]int, len(idx)), caughtBy: make([][]int, len(idx)), first: [2]int{-1, -1}}
	// Signatures of different families never catch each other: the graph
	// is built per run of one family.
	for lo := 0; lo < len(idx); {
		hi := lo + 1
		for hi < len(idx) && sigs[idx[hi]].Family == sigs[idx[lo]].Family {
			hi++
		}
		if sigs[idx[lo]].Family == FamilyTLS {
			g.tls(sigs, idx, lo, hi)
		} else {
			g.pairs(sigs, idx, lo, hi)
		}
		lo = hi
	}
	if g.first[0] >= 0 {
		x, y := idx[g.first[0]], idx[g.first[1]]
		return nil, x, y, ambiguity(sigs[x], sigs[y])
	}
	return g.order(idx), 0, 0, nil
}

// catchGraph is which signature catches which, by position in Order's
// sorted idx, and the first pair (in position order) that catch each other.
type catchGraph struct {
	count    []int   // how many of the others each one catches
	caughtBy [][]int // the ones that catch each one
	first    [2]int  // the first ambiguous pair, -1 for none
}

func (g *catchGraph) catches(k, o int) {
	g.count[k]++
	g.caughtBy[o] = append(g.caughtBy[o], k)
}

func (g *catchGraph) ambiguous(i, j int) {
	if g.first[0] < 0 || i < g.first[0] || i == g.first[0] && j < g.first[1] {
		g.first = [2]int{i, j}
	}
}

// pairs tests every pair of positions lo..hi-1. Families other than TLS
// have a handful of signatures that tell each other apart (OpenVPN's
// flavours, one SSH, one HTTP, one WireGuard): a longer run holds an
// ambiguous pair among its first few, and stops there.
func (g *catchGraph) pairs(sigs []Signature, idx []int, lo, hi int) {
	for i := lo; i < hi; i++ {
		for j := i + 1; j < hi; j++ {
			ij, ji := sigs[idx[i]].Catches(sigs[idx[j]]), sigs[idx[j]].Catches(sigs[idx[i]])
			switch {
			case ij && ji:
				g.ambiguous(i, j)
				return
			case ij:
				g.catches(i, j)
			case ji:
				g.catches(j, i)
			}
		}
	}
}

// tls is pairs for TLS signatures, in time linear in their SNI names (sites
// may have thousands). Order has sorted them by precedence (tlsLevel): SNI
// and ALPN, SNI, ALPN, neither. Within a level two catch each other when
// they have a name (SNI), a protocol (ALPN) or a name and protocol (both)
// in common; one without either catches every other.
func (g *catchGraph) tls(sigs []Signature, idx []int, lo, hi int) {
	var holder [3]map[string]int
	for i := range holder {
		holder[i] = map[string]int{}
	}
	var catchAll, named []int
	for k := lo; k < hi; k++ {
		s := sigs[idx[k]]
		level := tlsLevel(s)
		if level == 3 {
			catchAll = append(catchAll, k)
			continue
		}
		named = append(named, k)
		for _, key := range tlsKeys(s) {
			if first, ok := holder[level][key]; ok {
				g.ambiguous(first, k)
			} else {
				holder[level][key] = k
			}
		}
	}
	if len(catchAll) > 1 {
		g.ambiguous(catchAll[0], catchAll[1])
		return
	}
	for _, c := range catchAll {
		for _, k := range named {
			g.catches(c, k)
		}
	}
}

// order is the order the signatures are tried in: again and again, the
// first one left that catches none of the others left (or, in a cycle, the
// first one left), so a signature goes after those it would take.
func (g *catchGraph) order(idx []int) []int {
	free := &positions{}
	for k, c := range g.count {
		if c == 0 {
			heap.Push(free, k)
		}
	}
	done := make([]bool, len(idx))
	out := make([]int, 0, len(idx))
	next := 0 // the first position not done
	for len(out) < len(idx) {
		for free.Len() > 0 && done[(*free)[0]] {
			heap.Pop(free)
		}
		var k int
		if free.Len() > 0 {
			k = heap.Pop(free).(int)
		} else {
			for done[next] {
				next++
			}
			k = next
		}
		done[k] = true
		out = append(out, idx[k])
		for _, s := range g.caughtBy[k] {
			if g.count[s]--; g.count[s] == 0 && !done[s] {
				heap.Push(free, s)
			}
		}
	}
	return out
}

// positions is a min-heap of positions (container/heap).
type positions []int

func (h positions) Len() int           { return len(h) }
func (h positions) Less(i, j int) bool { return h[i] < h[j] }
func (h positions) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *positions) Push(x any)        { *h = append(*h, x.(int)) }
func (h *positions) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

// ambiguity explains why two signatures cannot be told apart and what the
// operator can change.
func ambiguity(a, b Signature) error {
	what := fmt.Sprintf("%s and %s take each other's clients", a.Label, b.Label)
	if a.Label == b.Label {
		what = "both are " + a.Label
	}
	hint := "give one of them dedicated ports" + families[a.Family].hint
	return fmt.Errorf("no signature tells them apart (%s); %s", what, hint)
}

package signature

import (
	"encoding/hex"
	"fmt"
	"regexp/syntax"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/portstripe/portstripe/internal/clip"
)

// Custom: what the registry lacks, declared in the node file: on TCP a
// prefix or an anchored, bounded regex on the first bytes; on UDP byte
// tests (offset, bytes, mask) the kernel runs, with an optional length.
var CustomKind Kind = customKind{}

// FamilyCustom: the operator's bytes, which may look like any other
// family's: the planner compares a custom signature with every other
// signature of a port by their first packets.
const FamilyCustom Family = "custom"

func init() {
	register(CustomKind, 200)
	families[FamilyCustom] = familyInfo{rank: 1, open: true, hint: " or other custom bytes", caveat: func(s Signature) string {
		if s.Regex != "" {
			return "a client whose first bytes start like the regex but do not match it waits for the inspect-delay (HAProxy reads the buffer again as more comes)"
		}
		return ""
	}}
}

// Custom is a custom service's compiled settings.
type Custom struct {
	// Prefix (TCP): the first bytes.
	Prefix []byte
	// Regex (TCP): anchored, matching at most RegexMax bytes; Literal is
	// the fixed text it starts with, tested first as bytes.
	Regex    string
	RegexMax int
	Literal  []byte
	// Match (UDP): byte tests, all of which must hold, and the payload's
	// exact or least length (0: any).
	Match     []Bytes
	Length    int
	MinLength int
}

// Limits of the custom settings: enough for a protocol's magic, small
// enough that a rule stays one line and reads stay inside a datagram.
const (
	maxPrefix   = 64
	maxRegexLen = 256
	maxMatches  = 8
	maxMatchLen = 16
	maxUDP      = 65507
)

type customKind struct{}

func (customKind) Name() string    { return "custom" }
func (customKind) Protos() []Proto { return []Proto{UDP, TCP} }
func (customKind) Keys() []string  { return []string{"custom"} }
func (customKind) Probe() Probe    { return ProbeConnect }

// Client: a custom client's first packet is the operator's; route takes
// it as --payload-hex.
func (customKind) Client([]string) (Settings, error) {
	return Settings{}, fmt.Errorf("a custom client's first packet is yours: give it with --payload-hex or --payload-file")
}

func (customKind) Clients(Settings) []string { return nil }

func (customKind) Samples() []Raw {
	return []Raw{
		{Custom: RawCustom{Prefix: "4b4250524f544f2f3120"}, Protos: []Proto{TCP}},
		{Custom: RawCustom{Regex: `^KBRE/[0-9]{1,3}[[:blank:]]`}, Protos: []Proto{TCP}},
		{Custom: RawCustom{Match: []RawMatch{{Offset: "0", Bytes: "ffffffff"}, {Offset: "4", Bytes: "54"}}, MinLength: "9"}, Protos: []Proto{UDP}},
		{Custom: RawCustom{Match: []RawMatch{{Offset: "0", Bytes: "c0", Mask: "f0"}}, Length: "32"}, Protos: []Proto{UDP}},
	}
}

func (customKind) Settings(raw Raw) (Settings, error) {
	c, r := Custom{}, raw.Custom
	tcp, udp := slices.Contains(raw.Protos, TCP), slices.Contains(raw.Protos, UDP)
	switch {
	case r.Prefix != "" && r.Regex != "":
		return Settings{}, settingErr("custom.regex", "give prefix or regex, not both")
	case (r.Prefix != "" || r.Regex != "") && !tcp:
		return Settings{}, settingErr("custom", "prefix and regex test a TCP client's first bytes, and the service has no tcp backend")
	case tcp && r.Prefix == "" && r.Regex == "":
		return Settings{}, settingErr("custom", "required with tcp: prefix (hex) or regex, what a TCP client's first bytes look like")
	case (len(r.Match) > 0 || r.Length != "" || r.MinLength != "") && !udp:
		return Settings{}, settingErr("custom.match", "match, length and min_length test a UDP datagram, and the service has no udp listener")
	case udp && len(r.Match) == 0:
		return Settings{}, settingErr("custom.match", "required with udp: the byte tests ({offset, bytes, mask}) a client's first datagram passes")
	}
	var err error
	if r.Prefix != "" {
		if c.Prefix, err = hexField("custom.prefix", r.Prefix, maxPrefix); err != nil {
			return Settings{}, err
		}
	}
	if r.Regex != "" {
		if err := customRegex(r.Regex, &c); err != nil {
			return Settings{}, err
		}
	}
	if udp {
		if err := customMatch(r, &c); err != nil {
			return Settings{}, err
		}
	}
	return Settings{Custom: c}, nil
}

// hexField decodes a hex value of 1 to max bytes.
func hexField(key, v string, max int) ([]byte, error) {
	b, err := hex.DecodeString(strings.TrimPrefix(v, "0x"))
	switch {
	case err != nil:
		return nil, settingErr(key, "%q is not hex (two digits 0-9 a-f per byte, e.g. 4b42)", clip.Text(v))
	case len(b) == 0 || len(b) > max:
		return nil, settingErr(key, "%d bytes; want 1 to %d", len(b), max)
	}
	return b, nil
}

// customRegex checks a regex HAProxy (PCRE) and Go read alike, that
// starts at the first byte and cannot match more than maxRegexLen bytes,
// so HAProxy never reads further than the first bytes of the buffer.
func customRegex(re string, c *Custom) error {
	for _, ch := range re {
		if ch > unicode.MaxASCII || !unicode.IsPrint(ch) || strings.ContainsRune(" \\'\"#", ch) {
			return settingErr("custom.regex", "%q: only printable ASCII without spaces, backslashes, quotes or # (haproxy.cfg would read them; write [[:blank:]] for a space, [.] for a dot)", clip.Text(re))
		}
	}
	parsed, err := syntax.Parse(re, syntax.Perl)
	if err != nil {
		return settingErr("custom.regex", "%q does not compile: %v", clip.Text(re), err)
	}
	parsed = parsed.Simplify()
	if !strings.HasPrefix(re, "^") {
		return settingErr("custom.regex", "%q is not anchored: start it with ^ (it is tried on the first bytes only)", clip.Text(re))
	}
	n, bounded := maxLen(parsed)
	switch {
	case !bounded:
		return settingErr("custom.regex", "%q is unbounded (*, + or {n,} can match without end); bound every repeat ({1,16}) so it matches at most %d bytes", clip.Text(re), maxRegexLen)
	case n > maxRegexLen:
		return settingErr("custom.regex", "%q can match %d bytes; at most %d", clip.Text(re), n, maxRegexLen)
	case n == 0:
		return settingErr("custom.regex", "%q matches nothing but the start; it would take every client", clip.Text(re))
	}
	c.Regex, c.RegexMax, c.Literal = re, n, literalStart(parsed)
	return nil
}

// literalStart is the fixed text an anchored regex starts with, tested
// first as bytes so other clients fail at once.
func literalStart(re *syntax.Regexp) []byte {
	if re.Op != syntax.OpConcat || len(re.Sub) < 2 || re.Sub[0].Op != syntax.OpBeginText {
		return nil
	}
	if lit := re.Sub[1]; lit.Op == syntax.OpLiteral && lit.Flags&syntax.FoldCase == 0 {
		return []byte(string(lit.Rune))
	}
	return nil
}

// maxLen is the most bytes re can match, and whether that is bounded.
func maxLen(re *syntax.Regexp) (int, bool) {
	switch re.Op {
	case syntax.OpLiteral:
		n := 0
		for _, r := range re.Rune {
			n += len(string(r))
		}
		return n, true
	case syntax.OpCharClass:
		if len(re.Rune) > 0 && re.Rune[len(re.Rune)-1] <= unicode.MaxASCII {
			return 1, true
		}
		return 4, true // a rune, in UTF-8
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return 4, true
	case syntax.OpConcat:
		total := 0
		for _, s := range re.Sub {
			n, ok := maxLen(s)
			if !ok {
				return 0, false
			}
			total += n
		}
		return total, true
	case syntax.OpAlternate:
		most := 0
		for _, s := range re.Sub {
			n, ok := maxLen(s)
			if !ok {
				return 0, false
			}
			most = max(most, n)
		}
		return most, true
	case syntax.OpCapture, syntax.OpQuest:
		return maxLen(re.Sub[0])
	case syntax.OpRepeat:
		n, ok := maxLen(re.Sub[0])
		if !ok || re.Max < 0 {
			return 0, false
		}
		return n * re.Max, true
	case syntax.OpStar, syntax.OpPlus:
		return 0, false
	}
	return 0, true // anchors, empty
}

// customMatch reads custom.match and the lengths: disjoint byte runs that
// lie inside the datagram, each value inside its mask.
func customMatch(r RawCustom, c *Custom) error {
	var err error
	if r.Length != "" {
		if c.Length, err = lengthField("custom.length", r.Length); err != nil {
			return err
		}
	}
	if r.MinLength != "" {
		if r.Length != "" {
			return settingErr("custom.min_length", "give length (exact) or min_length, not both")
		}
		if c.MinLength, err = lengthField("custom.min_length", r.MinLength); err != nil {
			return err
		}
	}
	if len(r.Match) > maxMatches {
		return settingErr("custom.match", "%d entries; at most %d", len(r.Match), maxMatches)
	}
	covered := map[int]int{}
	for i, m := range r.Match {
		key := fmt.Sprintf("custom.match[%d]", i)
		off, err := strconv.Atoi(m.Offset)
		if err != nil || off < 0 || off > maxUDP-1 {
			return settingErr(key+".offset", "%q is not a payload offset (0 to %d)", clip.Text(m.Offset), maxUDP-1)
		}
		if m.Bytes == "" {
			return settingErr(key+".bytes", "required: the bytes (hex) at offset %d", off)
		}
		b := Bytes{Offset: off, What: "bytes"}
		if b.Value, err = hexField(key+".bytes", m.Bytes, maxMatchLen); err != nil {
			return err
		}
		if m.Mask != "" {
			if b.Mask, err = hexField(key+".mask", m.Mask, maxMatchLen); err != nil {
				return err
			}
			if len(b.Mask) != len(b.Value) {
				return settingErr(key+".mask", "%d bytes, and bytes has %d; give one mask byte per byte", len(b.Mask), len(b.Value))
			}
			for k := range b.Value {
				if b.Value[k]&^b.Mask[k] != 0 {
					return settingErr(key+".bytes", "byte %d (%02x) has bits the mask (%02x) leaves out; no packet could match", k, b.Value[k], b.Mask[k])
				}
			}
		}
		end := off + len(b.Value)
		if c.Length > 0 && end > c.Length {
			return settingErr(key, "bytes %d-%d lie past the payload length %d", off, end-1, c.Length)
		}
		for at := off; at < end; at++ {
			if j, ok := covered[at]; ok {
				return settingErr(key, "byte %d is tested by custom.match[%d] too; give each byte one test (overlapping matches)", at, j)
			}
			covered[at] = i
		}
		c.Match = append(c.Match, b)
	}
	slices.SortStableFunc(c.Match, func(a, b Bytes) int { return a.Offset - b.Offset })
	return nil
}

func lengthField(key, v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 || n > maxUDP {
		return 0, settingErr(key, "%q is not a UDP payload length (1 to %d)", clip.Text(v), maxUDP)
	}
	return n, nil
}

func (customKind) Signature(s Settings, p Proto) Signature {
	c := s.Custom
	sig := Signature{Proto: p, Family: FamilyCustom}
	switch {
	case p == UDP:
		sig.Label = "custom match"
		sig.Bytes, sig.Length, sig.MinLength = c.Match, c.Length, c.MinLength
		for _, b := range c.Match {
			sig.Label += " " + hex.EncodeToString(b.Value) + "@" + strconv.Itoa(b.Offset)
		}
	case c.Prefix != nil:
		sig.Label = "custom prefix " + hex.EncodeToString(c.Prefix)
		sig.Bytes = []Bytes{{Offset: 0, Value: c.Prefix, What: "custom prefix"}}
	default:
		sig.Label = "custom regex " + c.Regex
		sig.Regex, sig.RegexMax = c.Regex, c.RegexMax
		if len(c.Literal) > 0 {
			sig.Bytes = []Bytes{{Offset: 0, Value: c.Literal, What: "the regex's fixed start"}}
		}
	}
	return sig
}

// Example: the declared bytes with filler between them (UDP, as long as
// the length says), the prefix and a line (TCP), or the shortest text the
// regex matches.
func (k customKind) Example(s Settings, p Proto) (Example, error) {
	sig := k.Signature(s, p)
	var packet []byte
	switch {
	case p == UDP:
		sig.Size = max(sig.Length, sig.MinLength)
		packet = sig.layout()
	case s.Custom.Prefix != nil:
		packet = append(slices.Clone(s.Custom.Prefix), " hello\r\n"...)
	default:
		parsed, _ := syntax.Parse(s.Custom.Regex, syntax.Perl)
		packet = shortest(parsed.Simplify(), nil)
	}
	return Example{packet, fmt.Sprintf("%s (%d bytes made up from the settings)", sig.Label, len(packet))}, nil
}

// shortest appends the shortest text re matches.
func shortest(re *syntax.Regexp, out []byte) []byte {
	switch re.Op {
	case syntax.OpLiteral:
		return append(out, string(re.Rune)...)
	case syntax.OpCharClass:
		return append(out, string(re.Rune[0])...)
	case syntax.OpAnyChar, syntax.OpAnyCharNotNL:
		return append(out, 'x')
	case syntax.OpConcat:
		for _, s := range re.Sub {
			out = shortest(s, out)
		}
	case syntax.OpAlternate:
		return shortest(re.Sub[0], out)
	case syntax.OpCapture, syntax.OpPlus:
		return shortest(re.Sub[0], out)
	case syntax.OpRepeat:
		for range re.Min {
			out = shortest(re.Sub[0], out)
		}
	}
	return out
}

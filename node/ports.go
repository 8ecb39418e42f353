package node

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/portstripe/portstripe/signature"
)

// Proto is a transport protocol a port range is striped for; the
// registry of kinds (signature) defines it, and node reads the registry.
type Proto = signature.Proto

const (
	TCP = signature.TCP
	UDP = signature.UDP
)

// Protos lists the protocols in the order every output walks them.
var Protos = signature.Protos

// PortRange is an inclusive range of ports, From <= To.
type PortRange struct {
	From uint16 `json:"from"`
	To   uint16 `json:"to"`
}

// Contains reports whether p lies in the range.
func (r PortRange) Contains(p uint16) bool { return r.From <= p && p <= r.To }

// Overlaps reports whether the two ranges share a port.
func (r PortRange) Overlaps(o PortRange) bool { return r.From <= o.To && o.From <= r.To }

// Len is the number of ports in the range.
func (r PortRange) Len() int { return int(r.To) - int(r.From) + 1 }

func (r PortRange) String() string {
	if r.From == r.To {
		return strconv.Itoa(int(r.From))
	}
	return fmt.Sprintf("%d-%d", r.From, r.To)
}

// ParsePortRange reads "443" or "1-29999".
func ParsePortRange(s string) (PortRange, error) {
	s = strings.TrimSpace(s)
	lo, hi, isRange := strings.Cut(s, "-")
	from, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{from, from}, nil
	}
	to, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if to < from {
		return PortRange{}, fmt.Errorf("range %q is reversed (want LOW-HIGH)", clip(s))
	}
	return PortRange{from, to}, nil
}

func parsePort(s string) (uint16, error) {
	n, err := strconv.Atoi(strings.TrimSpace(s))
	if err != nil {
		return 0, fmt.Errorf("%q is not a port number (want 1-65535 or LOW-HIGH)", clip(s))
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("port %d is out of range (allowed 1-65535)", n)
	}
	return uint16(n), nil
}

// PortSet is a sorted list of disjoint, non-adjacent ranges.
type PortSet []PortRange

// NewPortSet sorts and merges ranges (overlapping or adjacent ones join).
func NewPortSet(rs ...PortRange) PortSet {
	s := append(PortSet(nil), rs...)
	sort.Slice(s, func(i, j int) bool { return s[i].From < s[j].From })
	out := s[:0]
	for _, r := range s {
		if n := len(out); n > 0 && int(r.From) <= int(out[n-1].To)+1 {
			if r.To > out[n-1].To {
				out[n-1].To = r.To
			}
			continue
		}
		out = append(out, r)
	}
	return out
}

// Contains reports whether p is in the set.
func (s PortSet) Contains(p uint16) bool {
	i := sort.Search(len(s), func(i int) bool { return s[i].To >= p })
	return i < len(s) && s[i].From <= p
}

// Minus returns the ports of s that are not in o.
func (s PortSet) Minus(o PortSet) PortSet {
	var out PortSet
	for _, r := range s {
		from := int(r.From)
		for _, x := range o {
			if int(x.To) < from || x.From > r.To {
				continue
			}
			if int(x.From) > from {
				out = append(out, PortRange{uint16(from), x.From - 1})
			}
			from = int(x.To) + 1
		}
		if from <= int(r.To) {
			out = append(out, PortRange{uint16(from), r.To})
		}
	}
	return out
}

func (s PortSet) String() string {
	parts := make([]string, len(s))
	for i, r := range s {
		parts[i] = r.String()
	}
	return strings.Join(parts, ",")
}

// Short writes the set in at most limit bytes when it can: as many
// leading ranges as fit, then "and N more ranges". The cut depends only on
// the set, so the same set always reads the same (rule comments).
func (s PortSet) Short(limit int) string {
	full := s.String()
	if len(full) <= limit {
		return full
	}
	// Grow the prefix from the front (linear, not one String per cut).
	best := fmt.Sprintf("%d ranges", len(s))
	var b strings.Builder
	for k := 0; k < len(s)-1; k++ {
		if k > 0 {
			b.WriteByte(',')
		}
		b.WriteString(s[k].String())
		short := fmt.Sprintf("%s and %d more ranges", b.String(), len(s)-k-1)
		if len(short) > limit {
			break
		}
		best = short
	}
	return best
}

// MarshalText writes the set as in a node file: "1-5060,5063-29999".
func (s PortSet) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText reads what MarshalText writes.
func (s *PortSet) UnmarshalText(b []byte) error {
	var rs []PortRange
	for _, part := range strings.Split(string(b), ",") {
		if part == "" {
			continue
		}
		r, err := ParsePortRange(part)
		if err != nil {
			return err
		}
		rs = append(rs, r)
	}
	*s = NewPortSet(rs...)
	return nil
}

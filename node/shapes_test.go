package node

import (
	"fmt"
	"strings"
	"testing"
)

// shapes make node files of hostile shapes, n levels deep or n entries
// wide, for the loader's benchmarks and fuzz target: what once made
// parsing cubic or quadratic before the unknown-key check was reached.
var shapes = []struct {
	name string
	gen  func(n int) string
}{
	// nesting under an unknown key, block style: n lines, n levels
	{"deep-block", func(n int) string {
		var b strings.Builder
		b.WriteString(okHead + okSvc + "x:\n")
		for i := range n {
			b.WriteString(strings.Repeat(" ", i+1) + "a:\n")
		}
		return b.String()
	}},
	// nesting in one line, flow style, under a known key
	{"deep-flow", func(n int) string {
		return okHead + okSvc + "haproxy: " + strings.Repeat("{a: ", n) + "1" + strings.Repeat("}", n) + "\n"
	}},
	{"deep-list", func(n int) string {
		return okHead + okSvc + "reserved: " + strings.Repeat("[", n) + strings.Repeat("]", n) + "\n"
	}},
	// a wide map under an unknown key
	{"wide-unknown", func(n int) string {
		var b strings.Builder
		b.WriteString(okHead + okSvc + "x:\n")
		for i := range n {
			fmt.Fprintf(&b, "  k%d: {}\n", i)
		}
		return b.String()
	}},
	// a wide map of unknown keys where a known map belongs
	{"wide-known", func(n int) string {
		var b strings.Builder
		b.WriteString(okHead + okSvc + "haproxy:\n")
		for i := range n {
			fmt.Fprintf(&b, "  k%d: %d\n", i, i)
		}
		return b.String()
	}},
	// the same key over and over
	{"wide-duplicates", func(n int) string {
		return okHead + okSvc + "haproxy:\n" + strings.Repeat("  maxconn: 5\n", n)
	}},
	// a valid node: n services
	{"services", func(n int) string {
		var b strings.Builder
		b.WriteString(okHead + okSvc)
		for i := range n {
			fmt.Fprintf(&b, "  - {name: s%d, kind: ssh, tcp: 127.0.0.1:%d, dedicated: [%d]}\n", i, 1+i%65535, 1+i%29999)
		}
		return b.String()
	}},
	// a valid node: n addresses
	{"addresses", func(n int) string {
		var b strings.Builder
		b.WriteString("name: t\naddresses:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - 10.%d.%d.%d\n", i>>16&255, i>>8&255, i&255)
		}
		return b.String() + okSvc
	}},
	// n single ports, the last overlapping the first
	{"long-port-list", func(n int) string {
		var b strings.Builder
		b.WriteString(okHead + okSvc + "reserved:\n")
		for i := range n {
			fmt.Fprintf(&b, "  - %d\n", 30000+i%35536)
		}
		return b.String()
	}},
	{"long-string", func(n int) string {
		return "name: " + strings.Repeat("a", n) + "\naddresses: [198.51.100.2]\n" + okSvc
	}},
	{"documents", func(n int) string {
		return okHead + okSvc + strings.Repeat("---\nname: t\n", n)
	}},
}

// sizedTo returns the shape's file with n grown until it holds about size
// bytes.
func sizedTo(gen func(int) string, size int) string {
	n := 1
	for len(gen(n)) < size {
		n *= 2
	}
	lo, hi := n/2, n
	for lo < hi {
		mid := (lo + hi) / 2
		if len(gen(mid)) < size {
			lo = mid + 1
		} else {
			hi = mid
		}
	}
	return gen(lo)
}

// checkRefusalOrNode is what every input gets: a node, or a one-line input
// error.
func checkRefusalOrNode(t testing.TB, data []byte) {
	t.Helper()
	n, err := Parse(data, "shape.yaml", Options{})
	if err != nil {
		if !IsInputError(err) || strings.ContainsAny(err.Error(), "\n\r") || len(err.Error()) > 512 {
			t.Fatalf("not a one-line input error: %q", err)
		}
		return
	}
	if len(n.Services) == 0 {
		t.Fatalf("accepted a node without services")
	}
}

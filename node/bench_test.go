package node

import (
	"strings"
	"testing"
)

// benchShapes runs Parse on each named shape, built by size.
func benchShapes(b *testing.B, size func(name string) string) {
	for _, s := range shapes {
		data := []byte(size(s.name))
		if len(data) == 0 {
			continue
		}
		b.Run(s.name, func(b *testing.B) {
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				checkRefusalOrNode(b, data)
			}
		})
	}
}

func shape(name string) func(int) string {
	for _, s := range shapes {
		if s.name == name {
			return s.gen
		}
	}
	panic("no shape " + name)
}

// BenchmarkLoadDeep: 4,000 levels of nesting, block and flow style (once
// > 10 s before the unknown-key check), and yaml.v3's own limit.
func BenchmarkLoadDeep(b *testing.B) {
	benchShapes(b, func(name string) string {
		if !strings.HasPrefix(name, "deep-") {
			return ""
		}
		return shape(name)(4000)
	})
}

// BenchmarkLoadWide: 100,000 entries in one map or list.
func BenchmarkLoadWide(b *testing.B) {
	benchShapes(b, func(name string) string {
		if !strings.HasPrefix(name, "wide-") && name != "long-port-list" {
			return ""
		}
		return shape(name)(100000)
	})
}

// BenchmarkLoad1MB: a 1 MB file of every shape, valid nodes included.
func BenchmarkLoad1MB(b *testing.B) {
	benchShapes(b, func(name string) string { return sizedTo(shape(name), 1<<20) })
}

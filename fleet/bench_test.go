package fleet

import (
	"fmt"
	"testing"

	"github.com/portstripe/portstripe/internal/nodegen"
	"github.com/portstripe/portstripe/node"
)

// BenchmarkCompile is fleet compile without the file read: parse the
// fleet file, resolve and compile every node (issue 16's goal: 5,000 nodes
// in under 3 s on the project's 2-core machine).
func BenchmarkCompile(b *testing.B) {
	for _, n := range []int{1000, 5000} {
		data := nodegen.Fleet(n)
		b.Run(fmt.Sprintf("nodes=%d", n), func(b *testing.B) {
			for b.Loop() {
				fl, err := node.ParseFleet(data, "bench.yaml")
				if err != nil {
					b.Fatal(err)
				}
				if _, err := Compile(fl); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

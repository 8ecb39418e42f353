package nftables

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/version"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// nodePlan plans a node file of the repository ("" is the built-in seed
// node), named as in the other goldens' headers.
func nodePlan(t testing.TB, path string) *plan.Plan {
	t.Helper()
	var n *node.Node
	var err error
	if path == "" {
		n, err = node.Load(node.Options{})
	} else {
		data, rerr := os.ReadFile(filepath.Join("..", path))
		if rerr != nil {
			t.Fatal(rerr)
		}
		n, err = node.Parse(data, path, node.Options{})
	}
	if err != nil {
		t.Fatal(err)
	}
	p, err := plan.Build(n)
	if err != nil {
		t.Fatal(err)
	}
	p.Generator = version.Get().String() // as compiler.FromNode does
	return p
}

func TestRenderGolden(t *testing.T) {
	for _, c := range []struct{ dir, node string }{
		{"seed", ""},
		{"ssh-tls", "fixtures/ssh-tls-node.yaml"},
		{"transparent", "fixtures/transparent-node.yaml"},
	} {
		t.Run(c.dir, func(t *testing.T) {
			golden.Check(t, filepath.Join("..", "fixtures", "golden", c.dir, File), Render(nodePlan(t, c.node)))
		})
	}
}

package nftables

import (
	"path/filepath"
	"testing"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/testplan"
)

var nodePlan = testplan.Node

func TestRenderGolden(t *testing.T) {
	for _, c := range []struct{ dir, node string }{
		{"seed", ""},
		{"ssh-tls", "fixtures/ssh-tls-node.yaml"},
		{"transparent", "fixtures/transparent-node.yaml"},
		{"dual-stack", "fixtures/dual-stack-node.yaml"},
		{"kinds", "fixtures/kinds-node.yaml"},
	} {
		t.Run(c.dir, func(t *testing.T) {
			golden.Check(t, filepath.Join("..", "fixtures", "golden", c.dir, File), Render(nodePlan(t, c.node)))
		})
	}
}

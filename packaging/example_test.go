package packaging

import (
	"testing"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/node"
)

// TestExampleNodeCompiles: the node file the package installs as
// /etc/portstripe/node.yaml is one portstripe accepts, with both its
// services on every striped port (the unit tests catch a schema change
// that breaks it; the deb tests compile it from the unpacked package).
func TestExampleNodeCompiles(t *testing.T) {
	res, err := compiler.Compile(node.Options{Path: "node.yaml"})
	if err != nil {
		t.Fatalf("packaging/node.yaml: %v", err)
	}
	if got := len(res.Node.Services); got != 2 {
		t.Errorf("the example has %d services, want its 2 (openvpn, ssh)", got)
	}
	for _, f := range []string{compiler.HAProxyFile, compiler.NFTFile} {
		if len(res.Files[f]) == 0 {
			t.Errorf("no %s", f)
		}
	}
}

package nodegen

import (
	"fmt"
	"strings"

	"github.com/portstripe/portstripe/fixtures"
)

// Fleet returns a fleet file of n nodes for benchmarks: the example fleet's
// plan, nodes across 10 regions and 3 providers, every 10th with an
// override, every 7th with its own SSH service, every 13th without the
// Ed25519 instance. Node i is named n<i> and has the address 10.0.0.0 + i + 1.
func Fleet(n int) []byte {
	var b strings.Builder
	plan, _, _ := strings.Cut(string(fixtures.Fleet), "nodes:\n")
	b.WriteString(plan)
	b.WriteString("nodes:\n")
	for i := range n {
		a := i + 1
		fmt.Fprintf(&b, "  - name: n%d\n    addresses: [10.%d.%d.%d]\n    labels: {region: r%d, provider: p%d}\n", i, a>>16&255, a>>8&255, a&255, i%10, i%3)
		if i%10 == 0 {
			b.WriteString("    overrides: {haproxy: {maxconn: 16384}}\n")
		}
		if i%7 == 0 {
			b.WriteString("    services: [{name: ssh, kind: ssh, tcp: 127.0.0.1:22}]\n")
		}
		if i%13 == 0 {
			b.WriteString("    without: [openvpn_ed25519]\n")
		}
	}
	return []byte(b.String())
}

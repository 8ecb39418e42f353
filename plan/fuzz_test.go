package plan_test

import (
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/nodegen"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// nodeFiles are the example nodes the fuzz targets start from.
func nodeFiles(f *testing.F) [][]byte {
	f.Helper()
	paths, err := filepath.Glob("../fixtures/*.yaml")
	if err != nil || len(paths) == 0 {
		f.Fatalf("no node files in ../fixtures: %v", err)
	}
	var out [][]byte
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		out = append(out, data)
	}
	return out
}

var dedicatedRE = regexp.MustCompile(`dedicated: \[[^\]]*\]`)

// FuzzPlan: for any node file that loads, Build never panics and either
// refuses with a one-line input error or gives a plan whose ranges point to
// lists of their protocol, never overlap or touch reserved ports, and
// render into a haproxy.cfg that passes Validate.
func FuzzPlan(f *testing.F) {
	for _, data := range nodeFiles(f) {
		f.Add(data)
		// The same node with every service striped: ambiguous ports.
		f.Add(dedicatedRE.ReplaceAll(data, []byte("striped: true")))
	}
	// Random nodes reach more of the planner than the examples alone.
	r := rand.New(rand.NewPCG(1, 2))
	for range 20 {
		f.Add([]byte(nodegen.Node(r)))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := node.Parse(data, "fuzz.yaml", node.Options{})
		if err != nil {
			return
		}
		p, err := plan.Build(n)
		if err != nil {
			if !node.IsInputError(err) || strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("not a one-line input error: %q", err)
			}
			return
		}
		checkRanges(t, p)
		if err := haproxy.FromPlan(p).Validate(); err != nil {
			t.Fatalf("haproxy.cfg of a valid plan: %v", err)
		}
		if rules := iptables.Render(p); len(rules) == 0 {
			t.Fatal("no rules rendered")
		}
	})
}

func checkRanges(t *testing.T, p *plan.Plan) {
	t.Helper()
	byProto := map[node.Proto][]plan.Range{}
	for _, r := range p.Ranges {
		if r.List < 0 || r.List >= len(p.Lists) {
			t.Fatalf("range %+v points to list %d of %d", r, r.List, len(p.Lists))
		}
		if l := p.Lists[r.List]; l.Proto != r.Proto || !slices.ContainsFunc(l.Ports, func(x node.PortRange) bool { return x.From <= r.From && r.To <= x.To }) {
			t.Fatalf("range %+v is not among the ports %s of its list (%s)", r, l.Ports, l.Proto)
		}
		if r.From > r.To || r.From == 0 {
			t.Fatalf("range %+v is empty or holds port 0", r)
		}
		for _, q := range byProto[r.Proto] {
			if r.Ports().Overlaps(q.Ports()) {
				t.Fatalf("ranges %+v and %+v overlap", q, r)
			}
		}
		for _, res := range p.Node.Reserved {
			if r.Ports().Overlaps(res) {
				t.Fatalf("range %+v touches reserved ports %s", r, res)
			}
		}
		byProto[r.Proto] = append(byProto[r.Proto], r)
	}
}

// FuzzRoute: Route never panics, and names a service of the node or none.
func FuzzRoute(f *testing.F) {
	var plans []*plan.Plan
	for _, data := range nodeFiles(f) {
		n, err := node.Parse(data, "fuzz.yaml", node.Options{})
		if err != nil {
			f.Fatal(err)
		}
		p, err := plan.Build(n)
		if err != nil {
			f.Fatal(err)
		}
		plans = append(plans, p)
	}
	var packets [][]byte
	for _, dir := range []string{"../fixtures/first-packets", "../fixtures/captured"} {
		paths, _ := filepath.Glob(filepath.Join(dir, "*.hex"))
		for _, path := range paths {
			text, err := os.ReadFile(path)
			if err != nil {
				f.Fatal(err)
			}
			b, err := hex.DecodeString(strings.TrimSpace(string(text)))
			if err != nil {
				f.Fatalf("%s: %v", path, err)
			}
			packets = append(packets, b)
		}
	}
	if len(packets) == 0 {
		f.Fatal("no captured first packets to seed the corpus")
	}
	for i, b := range packets {
		for _, port := range []uint16{443, 5061, 22, 30000} {
			f.Add(uint8(i), i%2 == 0, port, b)
		}
	}
	f.Add(uint8(0), true, uint16(0), []byte{})
	f.Fuzz(func(t *testing.T, which uint8, udp bool, port uint16, payload []byte) {
		p := plans[int(which)%len(plans)]
		proto := node.TCP
		if udp {
			proto = node.UDP
		}
		r := p.Route(proto, port, payload)
		if r.Via == "" {
			t.Fatalf("route %+v says nothing about why", r)
		}
		if r.Service == plan.None {
			if r.Target != "" {
				t.Fatalf("route to none with a target: %+v", r)
			}
			return
		}
		if !slices.ContainsFunc(p.Backends, func(b plan.Backend) bool { return b.Service == r.Service }) && !udp {
			t.Fatalf("tcp route to %q, which has no backend: %+v", r.Service, r)
		}
		known := false
		for _, l := range p.Lists {
			for _, d := range l.Decisions {
				known = known || d.Target.Service == r.Service
			}
			known = known || l.Default.Service == r.Service
		}
		if !known || r.Target == "" {
			t.Fatalf("route to %q, not a service of the plan (or no target): %+v", r.Service, r)
		}
	})
}

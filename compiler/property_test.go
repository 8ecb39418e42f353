package compiler_test

import (
	"context"
	"flag"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/nodegen"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
)

var (
	propertySeed  = flag.Uint64("property.seed", 20261125, "seed of the generated nodes in TestGeneratedNodes")
	propertyNodes = flag.Int("property.nodes", 200, "how many generated nodes TestGeneratedNodes checks")
)

// generated is one generated node, compiled.
type generated struct {
	yaml string
	res  *compiler.Result
}

// TestGeneratedNodes: every generated valid node compiles into a
// haproxy.cfg that the real `haproxy -c -dW` accepts without a warning, and
// rules that the kernel loads (iptables-restore, and ip6tables-restore for
// the nodes with an IPv6 address, in one throwaway network namespace, each
// node's rules replacing the previous node's).
func TestGeneratedNodes(t *testing.T) {
	r := rand.New(rand.NewPCG(*propertySeed, 0))
	t.Logf("seed %d (-property.seed), %d nodes (-property.nodes)", *propertySeed, *propertyNodes)
	nodes := make([]generated, *propertyNodes)
	draws := 0
	for i := range nodes {
		yaml, d := nodegen.Valid(r)
		draws += d
		n, err := node.Parse([]byte(yaml), "generated-"+strconv.Itoa(i)+".yaml", node.Options{})
		if err != nil {
			t.Fatalf("node %d: %v", i, err)
		}
		res, err := compiler.FromNode(n)
		if err != nil {
			t.Fatalf("node %d does not compile: %v\n%s", i, err, yaml)
		}
		nodes[i] = generated{yaml, res}
	}
	t.Logf("%d of %d drawn nodes were valid", len(nodes), draws)
	t.Run("haproxy -c", func(t *testing.T) { checkHAProxy(t, nodes) })
	t.Run("iptables-restore", func(t *testing.T) { checkRules(t, nodes) })
}

// checkHAProxy runs haproxy -c on two cores at once.
func checkHAProxy(t *testing.T, nodes []generated) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy not installed (CI installs it)")
	}
	dir := t.TempDir()
	work := make(chan int)
	var wg sync.WaitGroup
	for range 2 {
		wg.Go(func() {
			for i := range work {
				cfg := filepath.Join(dir, strconv.Itoa(i)+".cfg")
				if err := os.WriteFile(cfg, nodes[i].res.Files[compiler.HAProxyFile], 0o600); err != nil {
					t.Error(err)
					continue
				}
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				err := haproxy.Checker{ZeroWarning: true}.Check(ctx, cfg)
				cancel()
				if err != nil {
					t.Errorf("node %d: %v\nnode file:\n%s", i, err, nodes[i].yaml)
				}
			}
		})
	}
	for i := range nodes {
		work <- i
	}
	close(work)
	wg.Wait()
}

// checkRules loads each node's rules into one namespace: Check would make
// a namespace per node, which costs more than the load itself.
func checkRules(t *testing.T, nodes []generated) {
	testenv.Require(t, "iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save")
	ns := string(testenv.Netns(t, "property"))
	m, err := iptables.New(iptables.Options{Netns: ns})
	if err != nil {
		t.Fatal(err)
	}
	m6, err := iptables.New(iptables.Options{Netns: ns, IPv6: true})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	v6 := 0
	for i, g := range nodes {
		if err := m.Apply(ctx, g.res.Files[compiler.RulesFile]); err != nil {
			t.Fatalf("node %d: %v\nnode file:\n%s", i, err, g.yaml)
		}
		if rules, ok := g.res.Files[compiler.Rules6File]; ok {
			v6++
			if err := m6.Apply(ctx, rules); err != nil {
				t.Fatalf("node %d, rules.v6: %v\nnode file:\n%s", i, err, g.yaml)
			}
		}
	}
	if v6 == 0 {
		t.Errorf("none of %d nodes has an IPv6 address: rules.v6 went untested", len(nodes))
	}
	t.Logf("%d of %d nodes also loaded a rules.v6", v6, len(nodes))
}

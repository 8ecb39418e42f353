// Package fleet compiles a fleet file into one node file and its outputs per
// node (a generation), publishes generations to the store, rolls them out
// in waves and reports where every node stands. The store's layout is
// fleet/store's.
package fleet

import (
	"fmt"
	"runtime"
	"sync"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/node"
)

// Node is one compiled node of a generation.
type Node struct {
	node.FleetNode
	// File is the resolved node file, as the node's agent gets it.
	File   []byte
	Result *compiler.Result
	// Outputs and OutputsSHA256 are store.Outputs and store.OutputsHash of
	// Result.Files.
	Outputs       map[string]string
	OutputsSHA256 string
}

// Record is the node's record in a published generation.
func (n *Node) Record() store.GenNode {
	return store.GenNode{
		Node: n.Name, NodeFile: string(n.File), NodeSHA256: n.Result.Node.SHA256,
		Outputs: n.Outputs, OutputsSHA256: n.OutputsSHA256, Labels: n.Labels,
	}
}

// Generation is a compiled fleet file: every node, in the file's order.
type Generation struct {
	Fleet *node.Fleet
	Nodes []*Node
}

// Node returns the node with that name.
func (g *Generation) Node(name string) (*Node, bool) {
	for _, n := range g.Nodes {
		if n.Name == name {
			return n, true
		}
	}
	return nil, false
}

// Load reads a fleet file and compiles it.
func Load(path string) (*Generation, error) {
	fl, err := node.LoadFleet(path)
	if err != nil {
		return nil, err
	}
	return Compile(fl)
}

// Compile resolves every node of the fleet into its node file and compiles
// it with the node compiler, GOMAXPROCS nodes at a time. One failing node
// refuses the whole generation: the error is the first failing node's (in
// file order), with its field path in the fleet file, and says how many
// others fail.
func Compile(fl *node.Fleet) (*Generation, error) {
	g := &Generation{Fleet: fl, Nodes: make([]*Node, len(fl.Nodes))}
	errs := make([]error, len(fl.Nodes))
	next := make(chan int)
	var wg sync.WaitGroup
	for range min(runtime.GOMAXPROCS(0), len(fl.Nodes)) {
		wg.Go(func() {
			for i := range next {
				g.Nodes[i], errs[i] = compileNode(fl, i)
			}
		})
	}
	for i := range fl.Nodes {
		next <- i
	}
	close(next)
	wg.Wait()
	var first error
	failed := 0
	for _, err := range errs {
		if err != nil {
			if first == nil {
				first = err
			}
			failed++
		}
	}
	if failed > 1 {
		return nil, othersFail(first, failed-1)
	}
	if first != nil {
		return nil, first
	}
	return g, nil
}

func compileNode(fl *node.Fleet, i int) (*Node, error) {
	fn := fl.Nodes[i]
	n, file, err := fl.ParseNode(i, store.Source(fl.Name, fn.Name))
	if err != nil {
		return nil, err
	}
	res, err := compiler.FromNode(n)
	if err != nil {
		return nil, fl.FleetError(i, err)
	}
	out := store.Outputs(res.Files)
	return &Node{FleetNode: fn, File: file, Result: res, Outputs: out, OutputsSHA256: store.OutputsHash(out)}, nil
}

// othersFail adds to the first node's error how many more nodes fail,
// keeping it an input error (exit 2) when it is one.
func othersFail(err error, others int) error {
	more := fmt.Sprintf(" (and %d more nodes fail; fix this one and compile again)", others)
	if fe, ok := err.(*node.FieldError); ok {
		return &node.FieldError{Path: fe.Path, Msg: fe.Msg + more}
	}
	return fmt.Errorf("%w%s", err, more)
}

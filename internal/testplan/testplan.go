// Package testplan gives the emitters' tests the repository's example
// nodes as plans, compiled as `portstripe compile` would, and its captured
// first packets.
package testplan

import (
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/version"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// Root is the repository's directory.
var Root = func() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..")
}()

// Node plans a node file of the repository, named by its path from Root
// as in the goldens' headers ("" is the built-in seed node).
func Node(t testing.TB, path string) *plan.Plan {
	t.Helper()
	var n *node.Node
	var err error
	if path == "" {
		n, err = node.Load(node.Options{})
	} else {
		data, rerr := os.ReadFile(filepath.Join(Root, path))
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

// Packet reads a captured packet: a hex file, blanks and newlines ignored.
func Packet(t testing.TB, path string) []byte {
	t.Helper()
	text, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(string(text)), ""))
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	return b
}

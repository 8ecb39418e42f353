package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// TestMetricsLoopbackByDefault: run serves metrics on loopback unless told
// otherwise.
func TestMetricsLoopbackByDefault(t *testing.T) {
	c, _, err := newRoot(nil, nil).Find([]string{"run"})
	if err != nil {
		t.Fatal(err)
	}
	f := c.Flags().Lookup("metrics")
	if f == nil {
		t.Fatal("run has no --metrics flag")
	}
	ap, err := netip.ParseAddrPort(f.DefValue)
	if err != nil || !ap.Addr().IsLoopback() {
		t.Errorf("--metrics defaults to %q, want a loopback address", f.DefValue)
	}
}

// productDirs are the packages that ship in the binary; test helpers,
// benchmarks and the e2e suite run programs of their own.
var productDirs = []string{"artifact", "cmd", "compiler", "firewall", "fixtures", "haproxy", "iptables", "nftables", "node", "plan", "signature", "supervisor", "templates", "internal/golden", "internal/oneline", "internal/sysexec", "internal/textdiff"}

// execSites are the only places the shipped code starts programs, and what
// each may start: the program is fixed or looked up by a fixed name, and
// node-file text reaches arguments only after validation (socket paths
// match node's socketRE; rules go to iptables-restore and nft on stdin,
// never as arguments).
var execSites = map[string]string{
	"supervisor/proxy.go:HAProxy.Start":          "haproxy -W -S <validated master socket>,mode,600 -f <state dir>/haproxy.cfg",
	"haproxy/check.go:ExecRunner.CombinedOutput": "haproxy -c -f <file>",
	"internal/sysexec/sysexec.go:OS.Run":         "iptables-restore, iptables-save, their ip6tables twins, nft or ip, names fixed in iptables and nftables (see Command literals)",
}

// TestNoShell: no shipped code runs a shell, programs start only at the
// reviewed sites above, and every iptables Command names a fixed program.
func TestNoShell(t *testing.T) {
	fset := token.NewFileSet()
	var sites []string
	for _, d := range productDirs {
		root := filepath.Join("../..", d)
		err := filepath.WalkDir(root, func(path string, e fs.DirEntry, err error) error {
			if err != nil || e.IsDir() || !strings.HasSuffix(path, ".go") || strings.HasSuffix(path, "_test.go") {
				return err
			}
			src, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel("../..", path)
			for _, shell := range []string{`"sh"`, `"bash"`, `"/bin/sh"`, `"/bin/bash"`, `sh -c`, `bash -c`} {
				if strings.Contains(string(src), shell) {
					t.Errorf("%s mentions %s: no shell may run node-file text", rel, shell)
				}
			}
			f, err := parser.ParseFile(fset, path, src, 0)
			if err != nil {
				return err
			}
			sites = append(sites, execCalls(t, fset, rel, f)...)
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
	slices.Sort(sites)
	var want []string
	for s := range execSites {
		want = append(want, s)
	}
	slices.Sort(want)
	if !slices.Equal(sites, want) {
		t.Errorf("programs are started at\n  %s\nreviewed sites are\n  %s\n(review a new site and add it to execSites)", strings.Join(sites, "\n  "), strings.Join(want, "\n  "))
	}
}

// execCalls returns file:function for every os/exec or syscall start in f,
// and checks that each iptables Command literal names a fixed program.
func execCalls(t *testing.T, fset *token.FileSet, rel string, f *ast.File) []string {
	var sites []string
	for _, decl := range f.Decls {
		fn, ok := decl.(*ast.FuncDecl)
		if !ok {
			continue
		}
		name := fn.Name.Name
		if fn.Recv != nil && len(fn.Recv.List) > 0 {
			recv := fn.Recv.List[0].Type
			if s, ok := recv.(*ast.StarExpr); ok {
				recv = s.X
			}
			if id, ok := recv.(*ast.Ident); ok {
				name = id.Name + "." + name
			}
		}
		ast.Inspect(fn, func(n ast.Node) bool {
			switch n := n.(type) {
			case *ast.ReturnStmt:
				// Manager.restoreCmd and saveCmd name the family's tool:
				// each return is a literal of the list.
				if name == "Manager.restoreCmd" || name == "Manager.saveCmd" {
					for _, r := range n.Results {
						lit, ok := r.(*ast.BasicLit)
						prog, _ := strconv.Unquote(litValue(lit))
						if !ok || !slices.Contains(iptablesTools, prog) {
							t.Errorf("%s: %s returns %s, not one of %v", fset.Position(r.Pos()), name, prog, iptablesTools)
						}
					}
				}
			case *ast.SelectorExpr:
				if pkg, ok := n.X.(*ast.Ident); ok && (pkg.Name == "exec" && strings.HasPrefix(n.Sel.Name, "Command") ||
					pkg.Name == "syscall" && (n.Sel.Name == "Exec" || n.Sel.Name == "ForkExec") || pkg.Name == "os" && n.Sel.Name == "StartProcess") {
					sites = append(sites, rel+":"+name)
				}
			case *ast.CompositeLit:
				tools, ok := commandTools(rel, n.Type)
				if ok {
					for _, el := range n.Elts {
						kv, ok := el.(*ast.KeyValueExpr)
						if !ok || kv.Key.(*ast.Ident).Name != "Name" {
							continue
						}
						if isToolCall(kv.Value) {
							continue // checked where it is declared, below
						}
						lit, ok := kv.Value.(*ast.BasicLit)
						prog, _ := strconv.Unquote(litValue(lit))
						if !ok || !slices.Contains(tools, prog) {
							t.Errorf("%s: Command{Name: ...} in %s is not one of %v", fset.Position(kv.Value.Pos()), name, tools)
						}
					}
				}
			}
			return true
		})
	}
	return sites
}

// iptablesTools are the programs the iptables package may run.
var iptablesTools = []string{"ip", "iptables-restore", "iptables-save", "ip6tables-restore", "ip6tables-save"}

// nftablesTools are the programs the nftables package may run.
var nftablesTools = []string{"ip", "nft"}

// commandTools reports whether a composite literal of type typ in file rel
// is a firewall backend's Command (iptables' Command, nftables'
// sysexec.Command), and the programs it may name.
func commandTools(rel string, typ ast.Expr) ([]string, bool) {
	switch t := typ.(type) {
	case *ast.Ident:
		return iptablesTools, t.Name == "Command" && strings.HasPrefix(rel, "iptables/")
	case *ast.SelectorExpr:
		pkg, ok := t.X.(*ast.Ident)
		return nftablesTools, ok && pkg.Name == "sysexec" && t.Sel.Name == "Command" && strings.HasPrefix(rel, "nftables/")
	}
	return nil, false
}

// isToolCall reports whether e is m.restoreCmd() or m.saveCmd().
func isToolCall(e ast.Expr) bool {
	c, ok := e.(*ast.CallExpr)
	if !ok || len(c.Args) > 0 {
		return false
	}
	sel, ok := c.Fun.(*ast.SelectorExpr)
	return ok && (sel.Sel.Name == "restoreCmd" || sel.Sel.Name == "saveCmd")
}

func litValue(l *ast.BasicLit) string {
	if l == nil {
		return ""
	}
	return l.Value
}

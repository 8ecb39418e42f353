package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const exampleNote = "using the built-in example node"

// atDefaultNodeFile points the live default node file into a temporary
// directory, holding content unless it is empty.
func atDefaultNodeFile(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "node.yaml")
	if content != "" {
		if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	old := defaultNodeFile
	defaultNodeFile = path
	t.Cleanup(func() { defaultNodeFile = old })
	t.Setenv("PORTSTRIPE_CONFIG", "")
	return path
}

// TestDefaultNodeFileMissing: with no node file at the live default, apply
// and run refuse (exit 2, saying where they looked) rather than apply the
// example node; compile, explain and route use the example and say so.
func TestDefaultNodeFileMissing(t *testing.T) {
	path := atDefaultNodeFile(t, "")
	for _, cmd := range []string{"apply", "run"} {
		code, _, errOut := portstripe(t, cmd, "--dir", t.TempDir())
		if code != 2 || !strings.Contains(errOut, "no node file: "+path+" does not exist") {
			t.Errorf("%s without a node file: exit %d, %q; want exit 2 naming %s", cmd, code, errOut, path)
		}
	}
	for _, args := range [][]string{{"compile", "-o", t.TempDir()}, {"explain"},
		{"route", "--proto", "udp", "--port", "443", "--client", "openvpn:tls-crypt"}} {
		code, _, errOut := portstripe(t, args...)
		if code != 0 || strings.TrimSpace(errOut) != "portstripe: "+exampleNote+"; -c FILE for yours" {
			t.Errorf("%v: exit %d, stderr %q; want 0 and the note that it used the example", args, code, errOut)
		}
	}
	if _, _, errOut := portstripe(t, "explain", "-c", "../../fixtures/ssh-tls-node.yaml"); strings.Contains(errOut, exampleNote) {
		t.Errorf("explain -c FILE says it used the example: %q", errOut)
	}
}

// TestDefaultNodeFileUsed: a node file at the live default is what apply,
// run and check read (a broken one is refused, exit 2, before anything is
// touched); compile, explain and route still use the example.
func TestDefaultNodeFileUsed(t *testing.T) {
	atDefaultNodeFile(t, "name: broken\nbogus_key: 1\n")
	for _, args := range [][]string{{"apply", "--dir", t.TempDir()}, {"run", "--dir", t.TempDir()}, {"check"}} {
		code, _, errOut := portstripe(t, args...)
		if code != 2 || !strings.Contains(errOut, "bogus_key") {
			t.Errorf("%v: exit %d, %q; want exit 2 on the default node file's bogus_key", args, code, errOut)
		}
	}
	code, out, errOut := portstripe(t, "explain")
	if code != 0 || !strings.HasPrefix(out, "node seed ") || !strings.Contains(errOut, exampleNote) {
		t.Errorf("explain: exit %d, %q, stderr %q; want the example node", code, firstLine(out), errOut)
	}
}

// TestExplainRouteFromDir: explain and route --dir answer from the plan.json
// compile (or apply) wrote, not from a node file.
func TestExplainRouteFromDir(t *testing.T) {
	dir := t.TempDir()
	if code, _, errOut := portstripe(t, "compile", "-c", "../../fixtures/ssh-tls-node.yaml", "-o", dir); code != 0 {
		t.Fatalf("compile: %s", errOut)
	}
	for _, args := range [][]string{{"explain"}, {"explain", "--json"},
		{"route", "--proto", "tcp", "--port", "443", "--client", "ssh", "--json"},
		{"route", "--proto", "tcp", "--port", "443", "--client", "tls:www.example.org"}} {
		code, fromDir, errOut := portstripe(t, append(args, "--dir", dir)...)
		if code != 0 || errOut != "" {
			t.Fatalf("%v --dir: exit %d, %q", args, code, errOut)
		}
		_, compiled, _ := portstripe(t, append(args, "-c", "../../fixtures/ssh-tls-node.yaml")...)
		_, seed, _ := portstripe(t, args...)
		if fromDir != compiled {
			t.Errorf("%v --dir differs from compiling the same node:\n%s\n---\n%s", args, fromDir, compiled)
		}
		if fromDir == seed {
			t.Errorf("%v --dir answers as for the example node: %s", args, firstLine(fromDir))
		}
	}

	empty := t.TempDir()
	if code, _, errOut := portstripe(t, "explain", "--dir", empty); code != 1 || !strings.Contains(errOut, "nothing applied in "+empty) {
		t.Errorf("explain --dir with no plan.json: exit %d, %q; want exit 1, nothing applied", code, errOut)
	}
	if code, _, errOut := portstripe(t, "explain", "--dir", dir, "-c", "../../fixtures/seed-node.yaml"); code != 2 {
		t.Errorf("explain --dir with -c: exit %d, %q; want 2", code, errOut)
	}
}

func firstLine(s string) string { l, _, _ := strings.Cut(s, "\n"); return l }

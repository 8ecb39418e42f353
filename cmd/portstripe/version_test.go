package main

import (
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/internal/version"
)

// TestVersionFlag: --version is one line, and the emitted files' headers
// name the same version.
func TestVersionFlag(t *testing.T) {
	want := version.Get().String()
	if code, out, errOut := portstripe(t, "--version"); code != 0 || out != "portstripe "+want+"\n" {
		t.Errorf("--version: exit %d, %q (%s); want %q", code, out, errOut, "portstripe "+want+"\n")
	}
	dir := t.TempDir()
	if code, _, errOut := portstripe(t, "compile", "-o", dir); code != 0 {
		t.Fatalf("compile: exit %d: %s", code, errOut)
	}
	for _, f := range []string{"haproxy.cfg", "rules.v4"} {
		b, err := os.ReadFile(filepath.Join(dir, f))
		if err != nil || !strings.Contains(string(b), "\n# portstripe: "+want+"\n") {
			t.Errorf("%s's header lacks %q (%v):\n%.400s", f, "# portstripe: "+want, err, b)
		}
	}
}

// TestVersionOutput: version reports the build and what it finds on PATH,
// a missing program as "not found", in text and as the golden -o json
// document (docs/json.md).
func TestVersionOutput(t *testing.T) {
	bin := t.TempDir()
	haproxy := filepath.Join(bin, "haproxy")
	if err := os.WriteFile(haproxy, []byte("#!/bin/sh\necho 'HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin)

	code, out, errOut := portstripe(t, "version")
	if code != 0 {
		t.Fatalf("version: exit %d: %s", code, errOut)
	}
	for _, line := range []string{"portstripe: " + version.Get().String(), "haproxy:    HAProxy version 2.6.12-1+deb12u4 2026/10/17 - https://haproxy.org/ (" + haproxy + ")",
		"iptables:   not found on PATH", "nft:        not found on PATH"} {
		if !slices.Contains(strings.Split(out, "\n"), line) {
			t.Errorf("version lacks the line %q:\n%s", line, out)
		}
	}

	// The golden document: this fake PATH, and the Go version normalised
	// (it is the toolchain's, not the repository's).
	doc := documents(t, []string{"version"}, 0, strings.NewReplacer(bin, "/usr/sbin", `"go_version": "`+runtime.Version()+`"`, `"go_version": "go1.26.8"`))
	golden.Check(t, filepath.Join(jsonGoldenDir, "version.json"), doc)

	if code, out, errOut := portstripe(t, "version", "-o", "xml"); code != 2 || out != "" || !strings.Contains(errOut, "want text, json or yaml") {
		t.Errorf("version -o xml: exit %d, %q, %q; want exit 2 naming the formats", code, out, errOut)
	}
}

// TestGenMan: the hidden gen-man writes one page per command a user can
// run (itself left out), from the same text as --help.
func TestGenMan(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "man1")
	if code, _, errOut := portstripe(t, "gen-man", dir); code != 0 {
		t.Fatalf("gen-man: exit %d: %s", code, errOut)
	}
	var want []string
	var walk func(c *cobra.Command, name string)
	walk = func(c *cobra.Command, name string) {
		want = append(want, name+".1")
		for _, s := range c.Commands() {
			if s.IsAvailableCommand() {
				walk(s, name+"-"+s.Name())
			}
		}
	}
	root := newRoot(nil, nil)
	root.InitDefaultCompletionCmd() // cobra adds it when a command line runs
	walk(root, "portstripe")
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range entries {
		got = append(got, e.Name())
	}
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("gen-man wrote %v, want %v", got, want)
	}
	if slices.Contains(got, "portstripe-gen-man.1") || !slices.Contains(got, "portstripe-version.1") {
		t.Errorf("gen-man pages %v: want version's, not gen-man's", got)
	}
	page, err := os.ReadFile(filepath.Join(dir, "portstripe-install-unit.1"))
	if err != nil || !strings.Contains(string(page), `.TH "PORTSTRIPE" "1"`) || !strings.Contains(string(page), "binary") || strings.Contains(string(page), "Auto generated") {
		t.Errorf("portstripe-install-unit.1 (%v):\n%.600s", err, page)
	}
}

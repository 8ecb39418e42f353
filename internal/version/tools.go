package version

import (
	"context"
	"errors"
	"os/exec"
	"strings"
	"time"
	"unicode"
)

// Tool is a program portstripe drives, as found on PATH.
type Tool struct {
	Name  string `json:"name"`
	Found bool   `json:"found"`
	Path  string `json:"path,omitempty"`
	// Version is the version number from Line ("2.6.12-1+deb12u4",
	// "1.8.9"); Line is the first line the program printed, which also
	// says iptables' backend ("iptables v1.8.9 (nf_tables)").
	Version string `json:"version,omitempty"`
	Line    string `json:"line,omitempty"`
	// Error says why a program that was found gave no version.
	Error string `json:"error,omitempty"`
}

// probes are the programs and the flag that prints their version.
var probes = []struct{ name, flag string }{
	{"haproxy", "-v"},
	{"iptables", "-V"},
	{"nft", "-v"},
}

// Tools runs each program's version flag, each bounded by timeout (a
// program that hangs is reported, not waited for).
func Tools(ctx context.Context, timeout time.Duration) []Tool {
	out := make([]Tool, 0, len(probes))
	for _, p := range probes {
		out = append(out, probe(ctx, timeout, p.name, p.flag))
	}
	return out
}

func probe(ctx context.Context, timeout time.Duration, name, flag string) Tool {
	t := Tool{Name: name}
	path, err := exec.LookPath(name)
	if err != nil {
		return t
	}
	t.Found, t.Path = true, path
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, flag)
	cmd.WaitDelay = timeout // a child holding the output open does not hang us
	b, err := cmd.CombinedOutput()
	t.Line, _, _ = strings.Cut(strings.TrimSpace(string(b)), "\n")
	t.Line = strings.TrimSpace(t.Line)
	switch {
	case errors.Is(ctx.Err(), context.DeadlineExceeded):
		t.Error = "no answer to " + name + " " + flag + " within " + timeout.String()
	case err != nil:
		t.Error = name + " " + flag + ": " + err.Error()
	}
	if t.Version = versionIn(t.Line); t.Version == "" && t.Error == "" {
		t.Error = "no version number in " + name + " " + flag + "'s output"
	}
	return t
}

// versionIn finds the first word of line that is a version number,
// without its leading "v": "HAProxy version 2.6.12-1+deb12u4 2026/10/17"
// gives "2.6.12-1+deb12u4", "nftables v1.0.6 (Lester Gooch #5)" "1.0.6".
func versionIn(line string) string {
	for _, w := range strings.Fields(line) {
		w = strings.TrimPrefix(w, "v")
		if len(w) > 2 && unicode.IsDigit(rune(w[0])) && strings.Contains(w, ".") {
			return w
		}
	}
	return ""
}

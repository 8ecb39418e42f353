// Package textdiff says how two texts differ, line by line, for messages
// an operator reads (golden test failures, reload reasons).
package textdiff

import (
	"fmt"
	"strings"
)

// Lines lists up to n lines that differ, as "line N: - old / + new".
func Lines(want, got string, n int) []string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	var out []string
	for i := 0; i < max(len(w), len(g)) && len(out) < n; i++ {
		var wl, gl string
		if i < len(w) {
			wl = w[i]
		}
		if i < len(g) {
			gl = g[i]
		}
		if wl != gl {
			out = append(out, fmt.Sprintf("line %d: - %s / + %s", i+1, strings.TrimSpace(wl), strings.TrimSpace(gl)))
		}
	}
	return out
}

// Unified is a readable diff of two texts: the lines only in want marked
// "-", only in got "+", a few unchanged lines around them for context.
// Empty when they are equal. (A small LCS, to keep go-cmp out of go.mod.)
func Unified(want, got string) string {
	if want == got {
		return ""
	}
	a, b := strings.Split(want, "\n"), strings.Split(got, "\n")
	lcs := make([][]int, len(a)+1)
	for i := range lcs {
		lcs[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				lcs[i][j] = lcs[i+1][j+1] + 1
			} else {
				lcs[i][j] = max(lcs[i+1][j], lcs[i][j+1])
			}
		}
	}
	type op struct {
		mark byte
		line string
		n    int // line number in want (or got for "+")
	}
	var ops []op
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, op{' ', a[i], i + 1})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, op{'-', a[i], i + 1})
			i++
		default:
			ops = append(ops, op{'+', b[j], j + 1})
			j++
		}
	}
	const context = 2
	var out strings.Builder
	last := -1
	for k, o := range ops {
		near := false
		for d := max(0, k-context); d <= min(len(ops)-1, k+context); d++ {
			if ops[d].mark != ' ' {
				near = true
				break
			}
		}
		if !near {
			continue
		}
		if last >= 0 && k > last+1 {
			out.WriteString("   ...\n")
		}
		fmt.Fprintf(&out, "%c %4d %s\n", o.mark, o.n, o.line)
		last = k
	}
	return out.String()
}

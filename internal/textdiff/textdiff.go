// Package textdiff says how two texts differ, line by line, for messages
// an operator reads (golden test failures, reload reasons, apply plans).
package textdiff

import (
	"fmt"
	"strings"
)

// Edit is one line of an edit script: Mark ' ' (in both), '-' (only in
// the old list) or '+' (only in the new one), with its 1-based position in
// the list it comes from (the new one for '+').
type Edit struct {
	Mark byte
	Line string
	N    int
}

// Edits turns a into b with the fewest removals and additions (a small
// LCS, to keep go-cmp out of go.mod), in order.
func Edits(a, b []string) []Edit {
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
	var ops []Edit
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case i < len(a) && j < len(b) && a[i] == b[j]:
			ops = append(ops, Edit{' ', a[i], i + 1})
			i, j = i+1, j+1
		case i < len(a) && (j == len(b) || lcs[i+1][j] >= lcs[i][j+1]):
			ops = append(ops, Edit{'-', a[i], i + 1})
			i++
		default:
			ops = append(ops, Edit{'+', b[j], j + 1})
			j++
		}
	}
	return ops
}

// Unified is a readable diff of two texts: the lines only in want marked
// "-", only in got "+", a few unchanged lines around them for context.
// Empty when they are equal.
func Unified(want, got string) string {
	if want == got {
		return ""
	}
	return Format(Edits(strings.Split(want, "\n"), strings.Split(got, "\n")))
}

// Format writes an edit script as Unified does: the changed lines and a
// few around them, with their numbers.
func Format(ops []Edit) string {
	const context = 2
	var out strings.Builder
	last := -1
	for k, o := range ops {
		near := false
		for d := max(0, k-context); d <= min(len(ops)-1, k+context); d++ {
			if ops[d].Mark != ' ' {
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
		fmt.Fprintf(&out, "%c %4d %s\n", o.Mark, o.N, o.Line)
		last = k
	}
	return out.String()
}

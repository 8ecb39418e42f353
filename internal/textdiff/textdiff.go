// Package textdiff says how two texts differ, line by line, for messages
// an operator reads (golden test failures, reload reasons, apply plans).
package textdiff

import (
	"fmt"
	"slices"
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

// Edits' bounds. A plan for a node of 20,000 services diffs frontends of
// tens of thousands of lines, where an LCS table would take gigabytes.
// Myers' search keeps, for D differences, about D² numbers (maxCells: 32
// MB) and compares about D·(N+M) lines (maxWork: well under a second).
const (
	maxCells = 1 << 22
	maxWork  = 1 << 27
)

// Edits turns a into b with the fewest removals and additions (Myers'
// O(ND) diff, to keep go-cmp out of go.mod), in order. Beyond maxCells
// (texts that differ almost everywhere) the rest is all removed and then
// all added: still a correct script, only a longer one.
func Edits(a, b []string) []Edit {
	pre := 0
	for pre < len(a) && pre < len(b) && a[pre] == b[pre] {
		pre++
	}
	suf := 0
	for suf < len(a)-pre && suf < len(b)-pre && a[len(a)-1-suf] == b[len(b)-1-suf] {
		suf++
	}
	var ops []Edit
	for i := range pre {
		ops = append(ops, Edit{' ', a[i], i + 1})
	}
	ops = append(ops, myers(a[pre:len(a)-suf], b[pre:len(b)-suf], pre)...)
	for k := suf; k > 0; k-- {
		ops = append(ops, Edit{' ', a[len(a)-k], len(a) - k + 1})
	}
	return ops
}

// myers is Edits of the lines between the common prefix (off lines long)
// and suffix: Myers' greedy search for the shortest edit, then a walk back
// through the V arrays saved on the way (at step d only k in [-d-1, d+1]
// can be read back, so only that much of each is kept).
func myers(a, b []string, off int) []Edit {
	n, m := len(a), len(b)
	most := n + m
	v := make([]int, 2*most+2)
	var trace [][]int
	done := false
	for d := 0; d <= most && !done; d++ {
		if (d+1)*(d+1) > maxCells || d*(most+1) > maxWork {
			return replaceAll(a, b, off)
		}
		lo, hi := max(0, most-d-1), min(len(v), most+d+2)
		trace = append(trace, slices.Clone(v[lo:hi]))
		for k := -d; k <= d; k += 2 {
			var x int
			if k == -d || (k != d && v[most+k-1] < v[most+k+1]) {
				x = v[most+k+1] // down: a line of b added
			} else {
				x = v[most+k-1] + 1 // right: a line of a removed
			}
			y := x - k
			for x < n && y < m && a[x] == b[y] {
				x, y = x+1, y+1
			}
			v[most+k] = x
			if x >= n && y >= m {
				done = true
				break
			}
		}
	}
	var rev []Edit
	x, y := n, m
	for d := len(trace) - 1; d >= 0; d-- {
		at := func(k int) int { return trace[d][most+k-max(0, most-d-1)] }
		k := x - y
		prevK := k - 1
		if k == -d || (k != d && at(k-1) < at(k+1)) {
			prevK = k + 1
		}
		prevX := at(prevK)
		prevY := prevX - prevK
		for x > prevX && y > prevY {
			rev = append(rev, Edit{' ', a[x-1], off + x})
			x, y = x-1, y-1
		}
		if d > 0 {
			if x == prevX {
				rev = append(rev, Edit{'+', b[y-1], off + y})
			} else {
				rev = append(rev, Edit{'-', a[x-1], off + x})
			}
		}
		x, y = prevX, prevY
	}
	slices.Reverse(rev)
	return rev
}

func replaceAll(a, b []string, off int) []Edit {
	var ops []Edit
	for i, l := range a {
		ops = append(ops, Edit{'-', l, off + i + 1})
	}
	for j, l := range b {
		ops = append(ops, Edit{'+', l, off + j + 1})
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

package textdiff

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// sides rebuilds both texts from an edit script: every script must.
func sides(ops []Edit) (a, b []string) {
	for _, o := range ops {
		if o.Mark != '+' {
			a = append(a, o.Line)
		}
		if o.Mark != '-' {
			b = append(b, o.Line)
		}
	}
	return a, b
}

// lcs is the length of a longest common subsequence, the slow way.
func lcs(a, b []string) int {
	t := make([][]int, len(a)+1)
	for i := range t {
		t[i] = make([]int, len(b)+1)
	}
	for i := len(a) - 1; i >= 0; i-- {
		for j := len(b) - 1; j >= 0; j-- {
			if a[i] == b[j] {
				t[i][j] = t[i+1][j+1] + 1
			} else {
				t[i][j] = max(t[i+1][j], t[i][j+1])
			}
		}
	}
	return t[0][0]
}

// TestEditsRebuildBothSides: random scripts rebuild both texts, are as
// short as can be, and number each line as its text does.
func TestEditsRebuildBothSides(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 500 {
		a, b := make([]string, r.IntN(12)), make([]string, r.IntN(12))
		for i := range a {
			a[i] = fmt.Sprint(r.IntN(4))
		}
		for i := range b {
			b[i] = fmt.Sprint(r.IntN(4))
		}
		ops := Edits(a, b)
		ga, gb := sides(ops)
		if !slices.Equal(ga, a) || !slices.Equal(gb, b) {
			t.Fatalf("Edits(%q, %q) rebuilds %q, %q", a, b, ga, gb)
		}
		changed := 0
		for _, o := range ops {
			if o.Mark != ' ' {
				changed++
			}
			if side := map[bool][]string{true: b, false: a}[o.Mark == '+']; side[o.N-1] != o.Line {
				t.Fatalf("Edits(%q, %q): %c line %d is %q, not %q", a, b, o.Mark, o.N, o.Line, side[o.N-1])
			}
		}
		if want := len(a) + len(b) - 2*lcs(a, b); changed != want {
			t.Fatalf("Edits(%q, %q): %d lines changed, want %d", a, b, changed, want)
		}
	}
}

// TestEditsRemovalFirst: a line replaced reads as the old one removed,
// then the new one added (what plans show as "changed in place").
func TestEditsRemovalFirst(t *testing.T) {
	ops := Edits([]string{"a", "old", "c"}, []string{"a", "new", "c"})
	if len(ops) != 4 || ops[1].Mark != '-' || ops[2].Mark != '+' {
		t.Errorf("got %+v, want a, -old, +new, c", ops)
	}
}

// TestEditsLargeInput: a one-line change in 200,000 lines is that one
// line, and two unrelated texts too big for the LCS table still give a
// correct script (past the bounds: all removed, then all added).
func TestEditsLargeInput(t *testing.T) {
	a := make([]string, 200_000)
	for i := range a {
		a[i] = fmt.Sprint("server s", i)
	}
	b := slices.Clone(a)
	b[100_000] = "changed"
	var marks []string
	for _, o := range Edits(a, b) {
		if o.Mark != ' ' {
			marks = append(marks, fmt.Sprintf("%c%d %s", o.Mark, o.N, o.Line))
		}
	}
	if got := strings.Join(marks, ", "); got != "-100001 server s100000, +100001 changed" {
		t.Errorf("one changed line: %s", got)
	}
	c := make([]string, 5000)
	for i := range c {
		c[i] = fmt.Sprint("other ", i)
	}
	ga, gc := sides(Edits(a[:5000], c))
	if !slices.Equal(ga, a[:5000]) || !slices.Equal(gc, c) {
		t.Error("the script for two unrelated large texts does not rebuild them")
	}
}

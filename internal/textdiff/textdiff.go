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

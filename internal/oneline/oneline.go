// Package oneline keeps free text (node names, file paths, comments) on
// the one line of a rules file it is written into, within the length the
// file's tool takes.
package oneline

import (
	"strings"
	"unicode"
	"unicode/utf8"
)

// Clean turns control characters (C0 with newline, CR and NUL, DEL, C1),
// the Unicode line separators and bytes that are not UTF-8 into spaces, so
// the text stays on its line.
func Clean(s string) string {
	return strings.Map(func(r rune) rune {
		if unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == utf8.RuneError {
			return ' '
		}
		return r
	}, s)
}

// Cut cuts s to n bytes on a rune boundary.
func Cut(s string, n int) string {
	if len(s) <= n {
		return s
	}
	s = s[:n]
	for !utf8.ValidString(s) {
		s = s[:len(s)-1]
	}
	return s
}

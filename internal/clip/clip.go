// Package clip shortens text from the input that goes into an error
// message, so that the line stays readable whatever the input.
package clip

import "unicode/utf8"

// Text clips s to 40 bytes.
func Text(s string) string { return To(s, 40) }

// To clips s to max bytes, at a rune boundary, marking the cut with "…".
func To(s string, max int) string {
	if len(s) <= max {
		return s
	}
	cut := max
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + "…"
}

package main

import (
	"bytes"
	"context"
	"regexp"
	"testing"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/node"
)

// TestPanicIsInternalError runs the real command tree with an injected
// command that panics: whatever the panic carries (even an input error),
// it is a bug, so one line and exit 1, never 2 ("your file is wrong").
func TestPanicIsInternalError(t *testing.T) {
	for name, boom := range map[string]func(){
		"index out of range": func() { var xs []int; _ = xs[len(xs)] },
		"nil map":            func() { var m map[string]int; m["x"] = 1 },
		"input error value":  func() { panic(&node.FieldError{Path: "services[0].name", Msg: "looks like an input error"}) },
		"multi-line value":   func() { panic("first\nsecond") },
	} {
		t.Run(name, func(t *testing.T) {
			var out, errOut bytes.Buffer
			root := newRoot(&out, &errOut)
			root.AddCommand(&cobra.Command{Use: "boom", RunE: func(*cobra.Command, []string) error { boom(); return nil }})
			code := execute(context.Background(), root, []string{"boom"}, &errOut)
			if code != exitFailure {
				t.Errorf("exit %d, want %d", code, exitFailure)
			}
			re := regexp.MustCompile(`^portstripe: internal error: .+ \(at cmd/portstripe\.TestPanicIsInternalError\.func\d+:\d+\); please report\n$`)
			if !re.MatchString(errOut.String()) {
				t.Errorf("stderr %q, want one line like %s", errOut.String(), re)
			}
		})
	}
}

package main

import (
	"bytes"
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/golden"
	"github.com/portstripe/portstripe/supervisor"
)

// TestPlanText: apply --dry-run prints the plan supervisor's golden JSON
// holds (a port range narrowed, a service added) the way a reviewer reads
// it; the summary is the last line.
func TestPlanText(t *testing.T) {
	data, err := os.ReadFile("../../fixtures/golden/apply-plan/plan.json")
	if err != nil {
		t.Fatal(err)
	}
	var p supervisor.ApplyPlan
	if err := json.Unmarshal(data, &p); err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	printPlan(&out, &p)
	golden.Check(t, "../../fixtures/golden/apply-plan/plan.txt", out.Bytes())
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	if last := lines[len(lines)-1]; last != p.Summary {
		t.Errorf("last line %q, want the summary %q", last, p.Summary)
	}
}

func TestPlanTextNoChanges(t *testing.T) {
	var out bytes.Buffer
	printPlan(&out, &supervisor.ApplyPlan{NoChanges: true, Summary: "No changes: the machine matches the node file."})
	if out.String() != "No changes: the machine matches the node file.\n" {
		t.Errorf("got %q", out.String())
	}
}

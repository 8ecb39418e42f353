package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/safefile"
	"github.com/portstripe/portstripe/plan"
)

// SavedPlan is a plan file (apply --dry-run --out FILE): the plan as a
// reviewer read it, and the files it applies, so that applying it later
// applies exactly them, not a recompile of a node file that may have moved.
type SavedPlan struct {
	*ApplyPlan
	// Desired are the compiled files, by name (haproxy.cfg, rules.v4,
	// plan.json).
	Desired map[string]string `json:"desired_files"`
}

// maxPlanFile bounds what ReadPlanFile reads: the desired files, JSON
// escaped, and the plan around them.
const maxPlanFile = 4 * artifact.MaxFileSize

// WritePlanFile saves p with the compiled files it would apply, mode 0600
// (the files describe the node's routing), atomically.
func WritePlanFile(path string, p *ApplyPlan, res *compiler.Result) error {
	s := SavedPlan{ApplyPlan: p, Desired: map[string]string{}}
	for n, b := range res.Files {
		s.Desired[n] = string(b)
	}
	data, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return artifact.WriteFile(path, append(data, '\n'))
}

// ReadPlanFile reads a plan file WritePlanFile wrote (a regular file, at
// most maxPlanFile bytes) and the compiled node it applies. Anything else
// is an error saying it is not a portstripe plan.
func ReadPlanFile(path string) (*SavedPlan, *compiler.Result, error) {
	data, err := safefile.Read(path, maxPlanFile)
	if err != nil {
		return nil, nil, err
	}
	var s SavedPlan
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&s); err != nil || s.ApplyPlan == nil || s.Schema != PlanSchema {
		why := fmt.Sprintf("no %q schema", PlanSchema)
		if err != nil {
			why = err.Error()
		}
		return nil, nil, fmt.Errorf("%s is not a portstripe plan (%s); make one with apply --dry-run --out FILE", path, why)
	}
	files := map[string][]byte{}
	for n, b := range s.Desired {
		files[n] = []byte(b)
	}
	res, err := resultFrom(files)
	if err != nil {
		return nil, nil, fmt.Errorf("%s is not a complete portstripe plan: %w", path, err)
	}
	return &s, res, nil
}

// resultFrom rebuilds a compiled node from its files (haproxy.cfg,
// rules.v4 and plan.json, nothing else).
func resultFrom(files map[string][]byte) (*compiler.Result, error) {
	var errs []error
	for _, n := range []string{compiler.HAProxyFile, compiler.RulesFile, compiler.PlanFile} {
		if _, ok := files[n]; !ok {
			errs = append(errs, fmt.Errorf("no %s", n))
		}
	}
	if len(files) != 3 {
		errs = append(errs, fmt.Errorf("%d files, want haproxy.cfg, rules.v4 and plan.json", len(files)))
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var p plan.Plan
	if err := json.Unmarshal(files[compiler.PlanFile], &p); err != nil {
		return nil, fmt.Errorf("%s: %w", compiler.PlanFile, err)
	}
	return &compiler.Result{Files: files, Plan: &p}, nil
}

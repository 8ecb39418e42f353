package supervisor

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

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
	// Desired are the compiled files, by name (haproxy.cfg, plan.json and
	// the firewall's: rules.v4, rules.v6 or portstripe.nft).
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

// resultFrom rebuilds a compiled node from its files: haproxy.cfg,
// plan.json and the files of the firewall backend plan.json names, nothing
// else.
func resultFrom(files map[string][]byte) (*compiler.Result, error) {
	pj, ok := files[compiler.PlanFile]
	if !ok {
		return nil, fmt.Errorf("no %s", compiler.PlanFile)
	}
	var p plan.Plan
	if err := json.Unmarshal(pj, &p); err != nil {
		return nil, fmt.Errorf("%s: %w", compiler.PlanFile, err)
	}
	fw := compiler.FirewallFiles(p.FirewallName())
	if fw == nil {
		return nil, fmt.Errorf("%s: no firewall backend %q", compiler.PlanFile, p.Firewall)
	}
	var errs []error
	for _, n := range []string{compiler.HAProxyFile, fw[0]} {
		if _, ok := files[n]; !ok {
			errs = append(errs, fmt.Errorf("no %s", n))
		}
	}
	for n := range files {
		if n != compiler.HAProxyFile && n != compiler.PlanFile && !slices.Contains(fw, n) {
			errs = append(errs, fmt.Errorf("%s is not a file of a %s node", n, fw[0]))
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &compiler.Result{Files: files, Plan: &p}, nil
}

// Package agenttest stands in for run's apply path under an agent, for
// tests and the benchmark: a recording fake, no HAProxy, no firewall.
package agenttest

import (
	"context"

	"github.com/portstripe/portstripe/fleet/agent"
	"github.com/portstripe/portstripe/supervisor"
)

// Serve takes every desired state a yields until ctx ends, hands it to
// record, and answers it as an apply that succeeds would (a refused one
// with its error), as run's loop does.
func Serve(ctx context.Context, a *agent.Agent, record func(supervisor.Desire)) {
	desires, _ := a.Watch(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case d := <-desires:
			record(d)
			if d.Err != nil {
				a.Passed(supervisor.Pass{Err: d.Err})
				continue
			}
			a.Passed(supervisor.Pass{Desired: d.Result, Serving: d.Result})
		}
	}
}

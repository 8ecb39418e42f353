package agent

import (
	"context"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/supervisor"
)

// LiveProbe reads a live node for the status: HAProxy answering, the first
// packets the rules of p (the plan it serves) classified, their counters'
// sum, and the sessions HAProxy's frontends accepted.
func LiveProbe(live supervisor.Live) func(ctx context.Context, p *plan.Plan) Reading {
	return func(ctx context.Context, p *plan.Plan) Reading {
		var r Reading
		_, err := live.Procs(ctx)
		r.HAProxyUp = err == nil
		if cs, err := live.Counters(ctx, p); err == nil {
			for _, c := range cs {
				r.FirstPackets += c.Packets
			}
		}
		if stats, err := live.Stats(ctx); err == nil {
			for _, s := range stats {
				if s.Type == haproxy.StatFrontend {
					r.Sessions += uint64(s.Stot)
				}
			}
		}
		return r
	}
}

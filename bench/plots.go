package main

import "path/filepath"

// plots writes the PNGs next to BENCHMARKS.md.
func (rep *report) plots(dir string) error {
	for _, series := range []string{"services", "ranges"} {
		var x, compile, restore, per []float64
		for _, p := range rep.scale {
			if p.Series != series {
				continue
			}
			x = append(x, float64(p.X))
			compile = append(compile, float64(p.Compile)/1e6)
			restore = append(restore, float64(p.Restore)/1e6)
			per = append(per, float64(p.PerRule)/1e6)
		}
		if len(x) == 0 {
			continue
		}
		pl := Plot{Title: "compile and apply time against " + series, XLabel: series + " in the node", YLabel: "milliseconds", LogX: true, LogY: true,
			Series: []Series{{"compile", x, compile}, {"apply: one iptables-restore", x, restore}, {"apply: go-iptables per rule", x, per}}}
		if err := pl.WritePNG(filepath.Join(dir, "bench-scale-"+series+".png")); err != nil {
			return err
		}
	}
	var rs []Series
	for _, series := range []string{"services", "ranges"} {
		var x, rules, naive []float64
		for _, p := range rep.scale {
			if p.Series == series {
				x = append(x, float64(p.X))
				rules = append(rules, float64(p.Rules))
				naive = append(naive, float64(p.NaiveRules))
			}
		}
		if len(x) > 0 {
			rs = append(rs, Series{"rules, " + series, x, rules}, Series{"naive one per port, " + series, x, naive})
		}
	}
	if len(rs) > 0 {
		pl := Plot{Title: "iptables rules against node size", XLabel: "services or ranges in the node", YLabel: "rules", LogX: true, LogY: true, Series: rs}
		if err := pl.WritePNG(filepath.Join(dir, "bench-rules.png")); err != nil {
			return err
		}
	}
	if len(rep.lists) > 0 {
		var ss []Series
		for _, c := range []string{caseLast, caseTypical} {
			for _, class := range classes {
				var x, y []float64
				for _, l := range rep.lists {
					if l.Case == c && l.Class == class {
						x, y = append(x, float64(l.PlanLists)), append(y, l.Rate())
					}
				}
				if len(x) > 0 {
					ss = append(ss, Series{class + ", " + c, x, y})
				}
			}
		}
		pl := Plot{Title: "new UDP flows per CPU-second against decision lists", XLabel: "decision lists in the plan", YLabel: "new flows per CPU-second", LogX: true, LegendRoom: true, Series: ss}
		if err := pl.WritePNG(filepath.Join(dir, "bench-lists.png")); err != nil {
			return err
		}
	}
	if len(rep.paths) > 0 {
		var ss []Series
		for _, name := range []string{"direct", "DNAT only", "portstripe", "portstripe tuned", "sslh-select", "sslh-fork"} {
			p := rep.path(name)
			if p == nil || len(p.Lat) == 0 {
				continue
			}
			var x, y []float64
			for i := 1; i <= 199; i++ {
				q := float64(i) / 200
				if i > 190 {
					q = 0.95 + float64(i-190)*0.0049
				}
				x = append(x, float64(pct(p.Lat, q))/1e3)
				y = append(y, q*100)
			}
			ss = append(ss, Series{name, x, y})
		}
		pl := Plot{Title: "tcp set-up latency, one client", XLabel: "microseconds, connect to first answer byte", YLabel: "percentile", LogX: true, Series: ss}
		if err := pl.WritePNG(filepath.Join(dir, "bench-latency.png")); err != nil {
			return err
		}
	}
	return nil
}

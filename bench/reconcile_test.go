package main

import (
	"math"
	"testing"
	"time"
)

// TestReconcileSummary: the cost per pass is the difference of the two
// runs' CPU over the passes, and the share of one core at the default
// 10 s period is that cost per 10 s plus the baseline's share.
func TestReconcileSummary(t *testing.T) {
	ms := time.Millisecond
	res := reconcileResult{Windows: []reconcileWindow{
		{Wall: 20 * time.Second, Passes: 20, CPU: 100 * ms, BaseCPU: 20 * ms, HAProxy: 30 * ms, BaseHAProxy: 10 * ms, PassCPU: 4 * ms, PassHAProxy: 1 * ms},
		{Wall: 20 * time.Second, Passes: 20, CPU: 70 * ms, BaseCPU: 10 * ms, HAProxy: 10 * ms, BaseHAProxy: 10 * ms, PassCPU: 3 * ms, PassHAProxy: 0},
		{Wall: 20 * time.Second, Passes: 20, CPU: 120 * ms, BaseCPU: 20 * ms, HAProxy: 20 * ms, BaseHAProxy: 10 * ms, PassCPU: 5 * ms, PassHAProxy: ms / 2},
	}}
	s := res.summary()
	if s.Median.Pass != 4*ms || s.MinPass != 3*ms || s.MaxPass != 5*ms || s.Passes != 60 {
		t.Errorf("median %s (min %s, max %s) over %d passes, want 4ms (3ms, 5ms) over 60", s.Median.Pass, s.MinPass, s.MaxPass, s.Passes)
	}
	// Pooled: (290 − 50) ms over 60 passes; baseline 50 ms over 60 s.
	if s.Pooled.Pass != 4*ms || s.Pooled.HAProxy != ms/2 {
		t.Errorf("pooled %s per pass, HAProxy %s, want 4ms and 0.5ms", s.Pooled.Pass, s.Pooled.HAProxy)
	}
	near := func(got, want float64) bool { return math.Abs(got-want) < 1e-9 }
	// 4 ms every 10 s is 0.04%; the baseline 20 ms in 20 s is 0.1%.
	if !near(s.Median.Percent(), 0.14) {
		t.Errorf("median share at the default period %.4f%%, want 0.14%%", s.Median.Percent())
	}
	if !near(s.Pooled.BasePercent, 100*0.05/60) || !near(s.Pooled.HAProxyPercent(), 0.005) {
		t.Errorf("pooled baseline %.4f%%, HAProxy %.4f%%", s.Pooled.BasePercent, s.Pooled.HAProxyPercent())
	}
	// The median's 0.14% + 0.005% for HAProxy beats the pooled 0.04% +
	// 0.083% + 0.005%.
	if !near(s.Worst(), 0.145) {
		t.Errorf("worst %.4f%%, want 0.145%% (the median's, HAProxy's share included)", s.Worst())
	}
}

package supervisor

import (
	"testing"

	"github.com/portstripe/portstripe/internal/version"
)

// /metrics says which portstripe serves it, as --version does.
func TestBuildInfoMetric(t *testing.T) {
	mfs, err := NewMetrics(nil).Registry.Gather()
	if err != nil {
		t.Fatal(err)
	}
	v := version.Get()
	want := map[string]string{"version": v.Version, "revision": v.Revision, "goversion": v.GoVersion}
	for _, mf := range mfs {
		if mf.GetName() != "portstripe_build_info" {
			continue
		}
		if len(mf.GetMetric()) != 1 || mf.GetMetric()[0].GetGauge().GetValue() != 1 {
			t.Fatalf("portstripe_build_info: want one gauge of 1, got %v", mf.GetMetric())
		}
		got := map[string]string{}
		for _, l := range mf.GetMetric()[0].GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if len(got) != len(want) {
			t.Errorf("portstripe_build_info labels %v, want %v", got, want)
		}
		for k, w := range want {
			if got[k] != w {
				t.Errorf("portstripe_build_info{%s=%q}, want %q", k, got[k], w)
			}
		}
		return
	}
	t.Fatal("no portstripe_build_info metric")
}

package routing

import (
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/plan"
)

// TestEnsureObserveRemove: in a network namespace, Ensure adds the rule and
// the route once (twice is the same), Observe sees each half go missing,
// and Remove leaves `ip rule` and the table as they were.
func TestEnsureObserveRemove(t *testing.T) {
	testenv.Require(t, "ip")
	ns := testenv.Netns(t, "route")
	m := Manager{Netns: string(ns)}
	rr := plan.TransparentReplyRoute
	ip := func(args ...string) string {
		t.Helper()
		out, err := ns.Run("ip", args...)
		if err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
		return out
	}
	rulesBefore := ip("rule", "show")
	if o, err := m.Observe(rr); err != nil || o.Rule || o.Route {
		t.Fatalf("Observe before Ensure = %+v, %v; want nothing", o, err)
	}
	for range 2 {
		if err := m.Ensure(rr); err != nil {
			t.Fatal(err)
		}
	}
	if got, want := ip("rule", "show"), "20563:\tfrom all fwmark 0x5053 lookup 20563"; strings.Count(got, want) != 1 {
		t.Errorf("ip rule show after two Ensures, want one %q:\n%s", want, got)
	}
	if got := ip("route", "show", "table", "20563"); strings.TrimSpace(got) != "local default dev lo scope host" {
		t.Errorf("table 20563 = %q, want the local default route", got)
	}
	if o, err := m.Observe(rr); err != nil || !o.Rule || !o.Route {
		t.Errorf("Observe after Ensure = %+v, %v; want both", o, err)
	}
	ip("rule", "del", "fwmark", "0x5053", "lookup", "20563")
	if o, _ := m.Observe(rr); o.Rule || !o.Route {
		t.Errorf("Observe without the rule = %+v", o)
	}
	ip("route", "flush", "table", "20563")
	if err := m.Ensure(rr); err != nil {
		t.Fatal(err)
	}
	if o, _ := m.Observe(rr); !o.Rule || !o.Route {
		t.Errorf("Ensure did not repair: %+v", o)
	}
	for range 2 {
		if err := m.Remove(rr); err != nil {
			t.Fatal(err)
		}
	}
	if got := ip("rule", "show"); got != rulesBefore {
		t.Errorf("ip rule after Remove:\n%s\nwant\n%s", got, rulesBefore)
	}
	if got := ip("route", "show", "table", "20563"); strings.TrimSpace(got) != "" {
		t.Errorf("table 20563 after Remove = %q", got)
	}
}

package nodegen

import (
	"fmt"
	"testing"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
)

// The lists benchmark reports the lists a node from Lists plans to, and
// sends its worst case to the last range: both must be what Lists says.
func TestListsPlansNLists(t *testing.T) {
	for _, n := range []int{1, 2, 10, 1000, 10000} {
		t.Run(fmt.Sprint(n), func(t *testing.T) {
			nd, err := node.Parse([]byte(Lists("198.51.100.2", n)), "lists.yaml", node.Options{})
			if err != nil {
				t.Fatal(err)
			}
			p, err := plan.Build(nd)
			if err != nil {
				t.Fatal(err)
			}
			if got := len(p.UDPLists()); got != n {
				t.Errorf("%d UDP lists in the plan, want %d", got, n)
			}
			var last plan.Range
			for _, r := range p.Ranges {
				if r.Proto == node.UDP && r.From > last.From {
					last = r
				}
			}
			if l := p.Lists[last.List]; last.To != 29999 || len(l.Decisions) != 1 || l.Decisions[0].Target.Service != "rsa" {
				t.Errorf("last UDP range %d-%d goes to list %s %v, want rsa's striped list up to 29999", last.From, last.To, l.Name, l.Decisions)
			}
		})
	}
}

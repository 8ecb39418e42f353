// Package routing manages the reply route of transparent backends (see
// plan.ReplyRoute): one ip rule and one route, through netlink, in this
// process's network namespace or a named one.
package routing

import (
	"errors"
	"fmt"
	"net"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"

	"github.com/portstripe/portstripe/plan"
)

// Observed is what the kernel holds of a reply route.
type Observed struct {
	// Rule: an ip rule sends the mark to the table, at the route's priority.
	Rule bool `json:"rule"`
	// Route: the table holds "local 0.0.0.0/0 dev lo".
	Route bool `json:"route"`
}

// Manager adds, reads and removes a reply route.
type Manager struct {
	// Netns is a network namespace name (from `ip netns add`); empty is
	// this process's namespace.
	Netns string
}

// handle opens a netlink socket in the manager's namespace.
func (m Manager) handle() (*netlink.Handle, error) {
	if m.Netns == "" {
		return netlink.NewHandle(unix.NETLINK_ROUTE)
	}
	ns, err := netns.GetFromName(m.Netns)
	if err != nil {
		return nil, fmt.Errorf("network namespace %s: %w", m.Netns, err)
	}
	defer ns.Close()
	return netlink.NewHandleAt(ns, unix.NETLINK_ROUTE)
}

func rule(rr plan.ReplyRoute) *netlink.Rule {
	r := netlink.NewRule()
	r.Family, r.Priority, r.Table, r.Mark = unix.AF_INET, rr.Priority, rr.Table, rr.Mark
	return r
}

func route(rr plan.ReplyRoute, lo netlink.Link) *netlink.Route {
	return &netlink.Route{
		Dst: &net.IPNet{IP: net.IPv4zero.To4(), Mask: net.CIDRMask(0, 32)}, Type: unix.RTN_LOCAL,
		Table: rr.Table, LinkIndex: lo.Attrs().Index, Scope: netlink.SCOPE_HOST,
	}
}

// Observe reports which halves of the reply route are in place.
func (m Manager) Observe(rr plan.ReplyRoute) (Observed, error) {
	h, err := m.handle()
	if err != nil {
		return Observed{}, fmt.Errorf("read the reply route: %w", err)
	}
	defer h.Close()
	var o Observed
	if o.Rule, err = hasRule(h, rr); err != nil {
		return o, fmt.Errorf("read the reply route: %w", err)
	}
	routes, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: rr.Table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return o, fmt.Errorf("read the reply route: table %d: %w", rr.Table, err)
	}
	for _, r := range routes {
		if r.Type == unix.RTN_LOCAL && (r.Dst == nil || r.Dst.String() == "0.0.0.0/0") {
			o.Route = true
		}
	}
	return o, nil
}

func hasRule(h *netlink.Handle, rr plan.ReplyRoute) (bool, error) {
	rules, err := h.RuleListFiltered(unix.AF_INET, rule(rr), netlink.RT_FILTER_PRIORITY|netlink.RT_FILTER_TABLE|netlink.RT_FILTER_MARK)
	if err != nil {
		return false, fmt.Errorf("ip rules: %w", err)
	}
	return len(rules) > 0, nil
}

// Ensure adds what is missing of the reply route; what is there stays.
func (m Manager) Ensure(rr plan.ReplyRoute) error {
	h, err := m.handle()
	if err != nil {
		return fmt.Errorf("add the reply route: %w", err)
	}
	defer h.Close()
	lo, err := h.LinkByName("lo")
	if err != nil {
		return fmt.Errorf("add the reply route: %w", err)
	}
	if err := h.RouteReplace(route(rr, lo)); err != nil {
		return fmt.Errorf("add the reply route: local 0.0.0.0/0 dev lo table %d: %w", rr.Table, err)
	}
	ok, err := hasRule(h, rr)
	if err != nil {
		return fmt.Errorf("add the reply route: %w", err)
	}
	if !ok {
		if err := h.RuleAdd(rule(rr)); err != nil {
			return fmt.Errorf("add the reply route: ip rule fwmark %#x lookup %d: %w", rr.Mark, rr.Table, err)
		}
	}
	return nil
}

// Remove deletes the reply route's rules (every copy) and its table's
// routes; nothing there is not an error.
func (m Manager) Remove(rr plan.ReplyRoute) error {
	h, err := m.handle()
	if err != nil {
		return fmt.Errorf("remove the reply route: %w", err)
	}
	defer h.Close()
	for range 100 {
		ok, err := hasRule(h, rr)
		if err != nil {
			return fmt.Errorf("remove the reply route: %w", err)
		}
		if !ok {
			break
		}
		if err := h.RuleDel(rule(rr)); err != nil {
			return fmt.Errorf("remove the reply route: ip rule fwmark %#x lookup %d: %w", rr.Mark, rr.Table, err)
		}
	}
	routes, err := h.RouteListFiltered(unix.AF_INET, &netlink.Route{Table: rr.Table}, netlink.RT_FILTER_TABLE)
	if err != nil {
		return fmt.Errorf("remove the reply route: table %d: %w", rr.Table, err)
	}
	for _, r := range routes {
		if err := h.RouteDel(&r); err != nil && !errors.Is(err, unix.ESRCH) {
			return fmt.Errorf("remove the reply route: table %d: %w", rr.Table, err)
		}
	}
	return nil
}

//go:build e2e

package e2e

import (
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// nftTable is the node's portstripe table as nft lists it, without
// counter values (what a user looks at).
func nftTable(t *testing.T, node testbed.Netns) string {
	t.Helper()
	out, err := node.Run("nft", "-s", "list", "table", "inet", "portstripe")
	if err != nil {
		return ""
	}
	return out
}

// TestReconcileNFTables: a node with `firewall: nftables` serves through
// its own table, which other tools' iptables flushes leave alone; `run`
// puts the table back within two reconcile periods after `nft flush
// ruleset` or a flushed chain, and counts the repairs.
func TestReconcileNFTables(t *testing.T) {
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	client, node := pair.Client, pair.Node
	nodePath := filepath.Join(dir, "node.yaml")
	liveStartEcho(t, node, liveEchoAddr)
	liveWriteLikeEditor(t, nodePath, liveNode{listenPort: liveListenPort, inspectDelay: "5s", services: []string{svcEcho}, firewall: "nftables"}.yaml(dir))
	r := startRun(t, node, dir, nodePath, "run.log", "--period", reconcilePeriod.String(), "--cleanup")
	echoWorks(t, client, 1001, "nftables")
	table := nftTable(t, node)
	if !strings.Contains(table, "tcp dport @tcp_frontends") {
		t.Fatalf("no portstripe table after run:\n%s", table)
	}
	if rules := liveRules(t, node, false); rules != "" {
		t.Errorf("a nftables node has iptables rules too:\n%s", rules)
	}
	// status reads the table's counters: the TCP map's rule took the echo.
	out, err := livePortstripe(node, "status", "--dir", filepath.Join(dir, "state"))
	m := regexp.MustCompile(`rule node +(\d+) packets  tcp: to the HAProxy frontend`).FindStringSubmatch(out)
	if err != nil || m == nil || m[1] == "0" {
		t.Errorf("status: %v, want the TCP rule's counter above 0:\n%s", err, out)
	}
	t.Logf("status:\n%s", strings.TrimSpace(out))

	t.Run("iptables-flush", func(t *testing.T) {
		for _, cmd := range [][]string{{"iptables", "-t", "nat", "-F"}, {"iptables", "-t", "nat", "-X"}, {"iptables", "-t", "mangle", "-F"}} {
			if out, err := node.Run(cmd[0], cmd[1:]...); err != nil {
				t.Fatalf("%s: %v\n%s", strings.Join(cmd, " "), err, out)
			}
		}
		if err := liveEchoOnce(client, 1050, "SSH-2.0-after-iptables-flush\r\n"); err != nil {
			t.Errorf("after iptables -t nat -F the echo through tcp 1050 fails: %v", err)
		}
		if got := nftTable(t, node); got != table {
			t.Errorf("iptables flushes changed the table:\nbefore:\n%s\nafter:\n%s", table, got)
		}
	})

	for i, do := range [][]string{{"nft", "flush", "ruleset"}, {"nft", "flush", "chain", "inet", "portstripe", "node"}} {
		t.Run(do[1]+"-"+do[2], func(t *testing.T) {
			driftRepaired(t, r, client, node, 1100+i, "rules", do, func() string { return nftTable(t, node) })
		})
	}

	r.proc.Stop()
	if got := nftTable(t, node); got != "" {
		t.Errorf("run --cleanup left the table:\n%s", got)
	}
}

//go:build e2e

package e2e

import (
	"fmt"
	"io"
	"net"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestClientAddressNFTables: a transparent backend behind a nftables node
// sees the client's own address (real sshd logs it): the table's
// reply_marks chain marks the backend's replies for the reply route; `run`
// puts a flushed reply_marks chain back, and clean removes the table and
// the route.
func TestClientAddressNFTables(t *testing.T) {
	dir, client, node, sshd := transparentSSHBed(t)
	nodePath := filepath.Join(dir, "node.yaml")
	nf := testbed.NodeFile{Name: "clientaddr", Striped: "1000-2000", ListenPort: liveListenPort, InspectDelay: "5s", MaxConn: 1000, Dir: dir, User: "root",
		Firewall: "nftables", Services: []string{"  - {name: ssh, kind: ssh, tcp: " + transparentAddr + ":22, client_address: transparent}\n"}}
	liveWriteLikeEditor(t, nodePath, nf.YAML())
	r := startRun(t, node, dir, nodePath, "run.log", "--period", reconcilePeriod.String())
	sshLogsClient(t, client, dir, sshd, "nftables")
	if table := nftTable(t, node); !strings.Contains(table, "ip saddr "+transparentAddr+" tcp sport 22 meta mark set 0x00005053") {
		t.Errorf("no reply mark for the transparent backend:\n%s", table)
	}

	t.Run("flushed-reply-marks", func(t *testing.T) {
		if out, err := node.Run("nft", "flush", "chain", "inet", "portstripe", "reply_marks"); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		took, err := liveWaitFor(liveDeadline, 50*time.Millisecond, func() error {
			if !strings.Contains(nftTable(t, node), "meta mark set 0x00005053") {
				return fmt.Errorf("the mark rule is not back")
			}
			return nil
		})
		if err != nil {
			t.Fatalf("not repaired: %v\n%s", err, testbed.Tail(r.proc.LogText(), 20))
		}
		t.Logf("reply_marks repaired after %d ms (period %s)", took.Milliseconds(), reconcilePeriod)
		sshLogsClient(t, client, dir, sshd, "repaired")
	})

	r.proc.Stop()
	if out, err := livePortstripe(node, "clean"); err != nil {
		t.Fatalf("clean: %v\n%s", err, out)
	}
	if got := nftTable(t, node); got != "" {
		t.Errorf("clean left the table:\n%s", got)
	}
	if out, _ := node.Run("ip", "rule", "show"); strings.Contains(out, "0x5053") {
		t.Errorf("clean left the ip rule:\n%s", out)
	}
}

// TestReconcileNFTablesRestartAndReboot: with `firewall: nftables`, a
// restart of portstripe keeps an open client connection, the HAProxy
// master and the table as they were; after a reboot (HAProxy killed, the
// ruleset flushed) a fresh run brings the table and HAProxy back.
func TestReconcileNFTablesRestartAndReboot(t *testing.T) {
	dir := t.TempDir()
	pair := testenv.Pair(t, nsPrefix)
	client, node := pair.Client, pair.Node
	nodePath, masterSock := filepath.Join(dir, "node.yaml"), filepath.Join(dir, "master.sock")
	liveStartEcho(t, node, liveEchoAddr)
	liveWriteLikeEditor(t, nodePath, liveNode{listenPort: liveListenPort, inspectDelay: "5s", services: []string{svcEcho}, firewall: "nftables"}.yaml(dir))
	r := startRun(t, node, dir, nodePath, "run.log", "--period", reconcilePeriod.String())
	echoWorks(t, client, 1001, "first run")
	table, master := nftTable(t, node), liveMustShowProc(t, masterSock).Master.PID

	// A session open across the restart.
	c, err := liveDial(client, net.JoinHostPort(nodeAddr, "1002"), 3*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	echoOn := func(what string) {
		t.Helper()
		msg := "SSH-2.0-" + what + "\r\n"
		c.SetDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, len(msg))
		if _, err := io.WriteString(c, msg); err != nil {
			t.Fatalf("%s: write on the open session: %v", what, err)
		}
		if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
			t.Fatalf("%s: the open session echoed %q, %v", what, buf, err)
		}
	}
	echoOn("before-restart")
	r.proc.Stop()
	r = startRun(t, node, dir, nodePath, "run2.log", "--period", reconcilePeriod.String())
	r.waitApplies("unchanged", 1)
	echoOn("after-restart")
	if got := nftTable(t, node); got != table {
		t.Errorf("the restart changed the table:\nbefore:\n%s\nafter:\n%s", table, got)
	}
	if got := liveMustShowProc(t, masterSock).Master.PID; got != master {
		t.Errorf("the restart replaced the HAProxy master: pid %d, was %d", got, master)
	}
	r.proc.Stop()

	reboot(t, node, masterSock)
	if got := nftTable(t, node); got != "" {
		t.Fatalf("after the reboot the table is still there:\n%s", got)
	}
	r = startRun(t, node, dir, nodePath, "run3.log", "--period", reconcilePeriod.String(), "--cleanup")
	echoWorks(t, client, 1003, "after the reboot")
	if got := nftTable(t, node); got != table {
		t.Errorf("after the reboot the table differs:\nbefore:\n%s\nafter:\n%s", table, got)
	}
	liveMustShowProc(t, masterSock)
	r.proc.Stop()
}

//go:build e2e

package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// The TCP backends besides OpenVPN, on the node's loopback.
const (
	sshBackend  = "127.0.0.1:22"
	tlsBackendA = "127.0.0.1:8443"
	tlsBackendB = "127.0.0.1:8444"
	sniA        = "a.example.com"
	sniB        = "b.example.com"
	listenPort  = 20000
)

// nodeFile is the seed node moved to the node namespace's address, plus an
// SSH backend and two TLS backends told apart by SNI, all striped. maxconn is
// small: HAProxy needs about 2×maxconn file descriptors.
func nodeFile(dir string, instances []*instance) string { return nodeFileWith(dir, instances, "") }

// nodeFileWith is nodeFile with the given firewall backend ("" for the
// default).
func nodeFileWith(dir string, instances []*instance, firewall string) string {
	var b strings.Builder
	for _, in := range instances {
		fmt.Fprintf(&b, "  - name: %s\n    kind: openvpn\n", in.service)
		if in.mode == "tls-auth" {
			fmt.Fprintf(&b, "    tls: {mode: tls-auth, digest: %s}\n", in.digest)
		} else {
			fmt.Fprintf(&b, "    tls: {mode: %s}\n", in.mode)
		}
		fmt.Fprintf(&b, "    udp: %d\n    tcp: %s\n", in.udpPort, in.tcpAddr)
		for _, p := range in.dedicated {
			fmt.Fprintf(&b, "    dedicated: [\"%d\"]\n", p)
		}
	}
	fmt.Fprintf(&b, `  - name: ssh
    kind: ssh
    tcp: %s
  - name: tls_a
    kind: tls
    sni: [%s]
    tcp: %s
  - name: tls_b
    kind: tls
    sni: [%s]
    tcp: %s
`, sshBackend, sniA, tlsBackendA, sniB, tlsBackendB)
	return testbed.NodeFile{Name: "e2e", Striped: "1-29999", ListenPort: listenPort, InspectDelay: "5s",
		MaxConn: 1000, Dir: dir, Firewall: firewall, Services: []string{b.String()}}.YAML()
}

// compileNode writes the node file and runs `portstripe compile` on it.
func compileNode(t *testing.T, dir, yaml string) (nodePath, outDir string) {
	t.Helper()
	nodePath = filepath.Join(dir, "node.yaml")
	outDir = filepath.Join(dir, "out")
	if err := os.WriteFile(nodePath, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(cliPath, "compile", "-c", nodePath, "-o", outDir).CombinedOutput()
	if err != nil {
		t.Fatalf("portstripe compile -c %s: %v\n%s", nodePath, err, out)
	}
	t.Logf("portstripe compile:\n%s", strings.TrimSpace(string(out)))
	return nodePath, outDir
}

// applyRules loads the compiled rules into the node namespace: for
// nftables, portstripe.nft with one nft -f; for iptables, rules.v4 into the
// nat table with one iptables-restore --noflush, then the jumps to PORTSTRIPE
// from PREROUTING and OUTPUT.
func applyRules(t *testing.T, node testbed.Netns, outDir, firewall string) {
	t.Helper()
	if firewall == "nftables" {
		cmd := node.Command("nft", "-f", filepath.Join(outDir, "portstripe.nft"))
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("nft -f portstripe.nft in %s: %v\n%s", node, err, out)
		}
		return
	}
	rules, err := os.ReadFile(filepath.Join(outDir, "rules.v4"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := node.Command("iptables-restore", "--noflush")
	cmd.Stdin = bytes.NewReader(rules)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("iptables-restore --noflush rules.v4 in %s: %v\n%s", node, err, out)
	}
	for _, chain := range []string{"PREROUTING", "OUTPUT"} {
		if _, err := node.Run("iptables", "-t", "nat", "-I", chain, "-j", "PORTSTRIPE"); err != nil {
			t.Fatal(err)
		}
	}
}

// startHAProxy validates haproxy.cfg and starts HAProxy in master-worker mode
// inside the node namespace, then waits until the first frontend accepts.
func startHAProxy(t *testing.T, node testbed.Netns, dir, outDir string) *testbed.Proc {
	t.Helper()
	cfg := filepath.Join(outDir, "haproxy.cfg")
	if out, err := node.Run("haproxy", "-c", "-f", cfg); err != nil {
		t.Fatalf("haproxy -c: %v\n%s", err, out)
	}
	// dir is the node file's haproxy.run_dir: the workers' chroot is in it.
	if err := haproxy.PrepareRunDir(dir); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "haproxy", node.Command("haproxy", "-W", "-S", filepath.Join(dir, "master.sock"), "-f", cfg),
		filepath.Join(dir, "haproxy.log"))
	addr := net.JoinHostPort(nodeAddr, fmt.Sprint(listenPort))
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := node.Do(func() error {
			c, err := net.DialTimeout("tcp", addr, time.Second)
			if err == nil {
				c.Close()
			}
			return err
		})
		if err == nil {
			return p
		}
		if p.Exited() || time.Now().After(deadline) {
			t.Fatalf("haproxy does not accept on %s: %v\n%s", addr, err, testbed.Tail(p.LogText(), 20))
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// prediction is what `portstripe route -o json` says about a first packet.
type prediction struct {
	Service string `json:"service"`
	Target  string `json:"target"`
	Via     string `json:"via"`
}

// route asks the CLI where a first packet lands.
func route(nodePath, proto string, port int, payload []byte) (prediction, error) {
	var p prediction
	out, err := exec.Command(cliPath, "route", "-c", nodePath, "--proto", proto, "--port", fmt.Sprint(port),
		"--payload-hex", fmt.Sprintf("%x", payload), "-o", "json").Output()
	if err != nil {
		if ee, ok := err.(*exec.ExitError); ok {
			return p, fmt.Errorf("portstripe route %s %d: %v: %s", proto, port, err, ee.Stderr)
		}
		return p, fmt.Errorf("portstripe route %s %d: %v", proto, port, err)
	}
	if err := json.Unmarshal(out, &p); err != nil {
		return p, fmt.Errorf("portstripe route %s %d: %v in %q", proto, port, err, out)
	}
	return p, nil
}

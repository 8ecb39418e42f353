//go:build e2e

package e2e

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
)

var (
	seedFlag   = flag.Int64("e2e.seed", 0, "seed for the random sample of striped ports (0: from the clock; logged either way)")
	matrixFlag = flag.String("e2e.matrix", "", "write the landing matrix to this file (default: $TMPDIR/portstripe-e2e-matrix.txt)")
	updateFlag = flag.Bool("e2e.update-captured", false, "rewrite fixtures/captured/*.hex from this run's captured first packets")
	keepFlag   = flag.Bool("e2e.keep", false, "keep the temporary directory (logs, PKI, configs) after the run")
)

// The test network (testbed.NewPair): a client host and a node host joined
// by one veth pair, in namespaces named pse2e-*.
var (
	clientAddr = testbed.ClientAddr.String()
	nodeAddr   = testbed.NodeAddr.String()
)

const nsPrefix = "pse2e-"

// cliPath is the portstripe CLI built once by TestMain.
var cliPath string

// tools are the programs the suite drives, with the Debian package that
// brings each.
var tools = map[string]string{
	"ip":               "iproute2",
	"iptables":         "iptables",
	"iptables-restore": "iptables",
	"haproxy":          "haproxy",
	"openvpn":          "openvpn",
	"openssl":          "openssl",
	"sshd":             "openssh-server",
	"ssh":              "openssh-client",
	"ssh-keygen":       "openssh-client",
	"ssh-keyscan":      "openssh-client",
	"etcd":             "etcd-server",
	// The real servers and clients of the newer kinds (kinds_test.go).
	"microsocks":   "microsocks",
	"curl":         "curl",
	"prosody":      "prosody",
	"prosodyctl":   "prosody",
	"go-sendxmpp":  "go-sendxmpp",
	"tincd":        "tinc",
	"ocserv":       "ocserv",
	"ocpasswd":     "ocserv",
	"openconnect":  "openconnect",
	"wireguard-go": "wireguard-go",
	"wg":           "wireguard-tools",
}

func TestMain(m *testing.M) {
	flag.Parse()
	if err := preflight(); err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	dir, err := os.MkdirTemp("", "portstripe-e2e-bin-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	removeBin := testbed.AtExit(func() { os.RemoveAll(dir) })
	cliPath = filepath.Join(dir, "portstripe")
	if err := buildCLI(cliPath); err != nil {
		removeBin()
		fmt.Fprintln(os.Stderr, "e2e:", err)
		os.Exit(1)
	}
	for _, ns := range testbed.RemoveStale(nsPrefix) {
		fmt.Fprintf(os.Stderr, "e2e: removed namespace %s left by an earlier run\n", ns)
	}
	stop := testbed.HandleSignals("e2e")
	code := m.Run()
	stop()
	removeBin()
	os.Exit(code)
}

// preflight fails early, and says what to install, when the suite cannot run.
func preflight() error {
	if os.Geteuid() != 0 {
		return fmt.Errorf("the end-to-end suite creates network namespaces and must run as root")
	}
	var missing []string
	for tool, pkg := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			missing = append(missing, fmt.Sprintf("%s (apt-get install %s)", tool, pkg))
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("missing tools: %v", missing)
	}
	return nil
}

func buildCLI(out string) error {
	start := time.Now()
	cmd := exec.Command("go", "build", "-o", out, "github.com/portstripe/portstripe/cmd/portstripe")
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/portstripe: %v\n%s", err, b)
	}
	fmt.Fprintf(os.Stderr, "e2e: built %s in %s\n", out, time.Since(start).Round(time.Millisecond))
	return nil
}

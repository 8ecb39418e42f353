//go:build e2e

package e2e

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testbed"
	"github.com/portstripe/portstripe/internal/testenv"
)

// sshd is a real OpenSSH server on the node's loopback with a host key
// generated for this run.
type sshd struct {
	proc    *testbed.Proc
	hostKey string // public key line: "ssh-ed25519 AAAA…"
}

// startSSHD runs sshd -D in the node namespace; nobody can log in (no
// passwords, no authorized keys), which is enough: the host key proves which
// server answered.
func startSSHD(t *testing.T, node testbed.Netns, dir string) *sshd {
	t.Helper()
	return startSSHDAt(t, node, dir, sshBackend)
}

// startSSHDAt is startSSHD listening at addr.
func startSSHDAt(t *testing.T, node testbed.Netns, dir, addr string) *sshd {
	t.Helper()
	key := filepath.Join(dir, "ssh_host_ed25519_key")
	if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "portstripe-e2e", "-f", key).CombinedOutput(); err != nil {
		t.Fatalf("ssh-keygen: %v: %s", err, out)
	}
	pub, err := os.ReadFile(key + ".pub")
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(pub))
	// sshd refuses to start without its privilege separation directory,
	// which Debian's service unit normally creates.
	if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
		t.Fatal(err)
	}
	cfg := filepath.Join(dir, "sshd_config")
	conf := fmt.Sprintf(`ListenAddress %s
HostKey %s
PidFile none
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
AuthorizedKeysFile none
LogLevel VERBOSE
`, addr, key)
	if err := os.WriteFile(cfg, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	p := testenv.Start(t, "sshd", node.Command("/usr/sbin/sshd", "-D", "-e", "-f", cfg), filepath.Join(dir, "sshd.log"))
	if err := p.WaitLog("Server listening on", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return &sshd{proc: p, hostKey: f[0] + " " + f[1]}
}

// tlsServer is `openssl s_server` with a certificate naming cn.
type tlsServer struct {
	cn   string
	proc *testbed.Proc
}

// startTLSServer runs it at addr, with extra s_server options (-alpn h2).
func startTLSServer(t *testing.T, node testbed.Netns, dir, cn, addr string, extra ...string) *tlsServer {
	t.Helper()
	cert, key, err := selfSigned(dir, cn)
	if err != nil {
		t.Fatal(err)
	}
	args := append([]string{"s_server", "-accept", addr, "-cert", cert, "-key", key, "-www"}, extra...)
	p := testenv.Start(t, "s_server "+cn, node.Command("openssl", args...),
		filepath.Join(dir, "s_server-"+cn+".log"))
	if err := p.WaitLog("ACCEPT", 10*time.Second); err != nil {
		t.Fatal(err)
	}
	return &tlsServer{cn: cn, proc: p}
}

// sshClient connects with the real ssh client and reports whether the server
// proved the expected host key: with StrictHostKeyChecking and a known_hosts
// holding only that key, ssh gets as far as authentication ("Permission
// denied") only when the key matched.
func sshClient(client testbed.Netns, dir string, port int, hostKey, logPath string) (bool, string, error) {
	return sshClientTo(client, testbed.NodeAddr, dir, port, hostKey, logPath)
}

// sshClientTo is sshClient connecting to addr.
func sshClientTo(client testbed.Netns, addr netip.Addr, dir string, port int, hostKey, logPath string) (bool, string, error) {
	known := filepath.Join(dir, fmt.Sprintf("known_hosts-%s-%d", addr, port))
	host := fmt.Sprintf("[%s]:%d", addr, port)
	if port == 22 {
		host = addr.String() // ssh writes the default port without brackets
	}
	line := host + " " + hostKey + "\n"
	if err := os.WriteFile(known, []byte(line), 0o600); err != nil {
		return false, "", err
	}
	cmd := client.Command("ssh", "-F", "/dev/null", "-p", fmt.Sprint(port),
		"-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", "UserKnownHostsFile="+known,
		"-o", "GlobalKnownHostsFile=/dev/null", "-o", "ConnectTimeout=8", "-o", "IdentitiesOnly=yes",
		"-o", "IdentityFile=/dev/null", "-o", "PreferredAuthentications=publickey",
		"e2e@"+addr.String(), "true")
	ok, out, err := testbed.WatchLines(cmd, logPath, "Permission denied", 15*time.Second)
	return ok, out, err
}

// tlsClient runs openssl s_client with the given SNI ("" sends none) and
// extra options (-alpn h2), and returns the common name of the
// certificate the server presented.
func tlsClient(client testbed.Netns, port int, sni, logPath string, extra ...string) (string, string, error) {
	return tlsClientTo(client, testbed.NodeAddr, port, sni, logPath, extra...)
}

// tlsClientTo is tlsClient connecting to addr.
func tlsClientTo(client testbed.Netns, addr netip.Addr, port int, sni, logPath string, extra ...string) (string, string, error) {
	args := append([]string{"s_client", "-connect", netip.AddrPortFrom(addr, uint16(port)).String(), "-brief"}, extra...)
	if sni != "" {
		args = append(args, "-servername", sni)
	} else {
		args = append(args, "-noservername")
	}
	cmd := client.Command("openssl", args...)
	cmd.Stdin = strings.NewReader("")
	ok, out, err := testbed.WatchLines(cmd, logPath, "Peer certificate: CN = ", 15*time.Second)
	if err != nil || !ok {
		return "", out, err
	}
	for _, l := range strings.Split(out, "\n") {
		if cn, found := strings.CutPrefix(l, "Peer certificate: CN = "); found {
			return strings.TrimSpace(cn), out, nil
		}
	}
	return "", out, nil
}

// sshKeyscan runs ssh-keyscan, which, unlike ssh, waits for the server's
// banner before it sends its own: through a classifying frontend it has no
// first packet to be classified by. It reports whether it got the host key.
func sshKeyscan(client testbed.Netns, port int, hostKey, logPath string) (bool, string, error) {
	cmd := client.Command("ssh-keyscan", "-T", "15", "-t", "ed25519", "-p", fmt.Sprint(port), nodeAddr)
	_, out, err := testbed.WatchLines(cmd, logPath, hostKey, 20*time.Second)
	return err == nil && strings.Contains(out, hostKey), out, err
}

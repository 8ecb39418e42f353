package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// decisionLog is a haproxy.log as a master writes it: its own notices
// around the decision lines of four connections from three clients, one
// over IPv6.
const decisionLog = `[NOTICE]   (100) : New worker (101) forked
[NOTICE]   (100) : Loading success.
portstripe decision start=1796157673.075 client=198.51.100.7 client_port=40312 dst=203.0.113.10 port=443 frontend=fe_striped rule=signature backend=ssh server=ssh bytes_in=21 bytes_out=40 duration_ms=5012 flags=--
portstripe decision start=1796157674.000 client=198.51.100.9 client_port=51122 dst=203.0.113.10 port=8080 frontend=fe_striped rule=reject backend=fe_striped server=<NOSRV> bytes_in=9 bytes_out=0 duration_ms=0 flags=PR
[WARNING]  (101) : Server ssh/ssh is DOWN, reason: Layer4 connection problem.
portstripe decision start=1796157675.500 client=198.51.100.7 client_port=40400 dst=203.0.113.10 port=22 frontend=fe_ssh rule=default backend=openvpn server=openvpn bytes_in=54 bytes_out=0 duration_ms=3 flags=SC
portstripe decision start=1796157675.800 client=2001:db8:2::7 client_port=40500 dst=2001:db8::10 port=20000 frontend=fe_striped rule=signature backend=ssh server=ssh bytes_in=21 bytes_out=40 duration_ms=7 flags=--
portstripe decision start=1796157676.000 client=198.51.100.7 client_port=40401 dst=203.0.113.10 po`

// TestLogsCommand: `portstripe logs` answers where a client landed and
// why, one line per connection, from the state directory's haproxy.log.
func TestLogsCommand(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "haproxy.log"), []byte(decisionLog), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, errOut := portstripe(t, "logs", "--dir", dir, "--client", "198.51.100.7")
	want := `2026-12-01T20:41:13.075Z  198.51.100.7:40312 → port 443 (fe_striped): signature of ssh matched → backend ssh; 21 B in, 40 B out, 5.012s, flags --
2026-12-01T20:41:15.500Z  198.51.100.7:40400 → port 22 (fe_ssh): no signature matched → the list's default, backend openvpn; 54 B in, 0 B out, 3ms, flags SC
`
	if code != 0 || out != want {
		t.Errorf("logs --client 198.51.100.7: exit %d, stderr %q, stdout:\n%s\nwant:\n%s", code, errOut, out, want)
	}
	_, out, _ = portstripe(t, "logs", "--dir", dir, "--client", "198.51.100.9:51122")
	if !strings.Contains(out, "198.51.100.9:51122 → port 8080 (fe_striped): no signature matched → rejected; 9 B in, 0 B out, 0s, flags PR") {
		t.Errorf("logs for the rejected client:\n%s", out)
	}
	// Over IPv6 the port HAProxy logs is its frontend's: logs says so
	// rather than pass it off as the port the client dialled.
	for _, client := range []string{"2001:db8:2::7", "[2001:db8:2::7]:40500"} {
		_, out, _ = portstripe(t, "logs", "--dir", dir, "--client", client)
		if want := "2026-12-01T20:41:15.800Z  [2001:db8:2::7]:40500 → frontend port 20000 (fe_striped; over IPv6 HAProxy sees the DNATed port, not the one dialled): signature of ssh matched → backend ssh; 21 B in, 40 B out, 7ms, flags --\n"; out != want {
			t.Errorf("logs --client %s:\n%s\nwant:\n%s", client, out, want)
		}
	}
	_, out, _ = portstripe(t, "logs", "--dir", dir, "-n", "1")
	if lines := strings.Split(strings.TrimSpace(out), "\n"); len(lines) != 1 || !strings.Contains(lines[0], ":40500 ") {
		t.Errorf("logs -n 1 shows other than the last connection:\n%s", out)
	}
	_, out, _ = portstripe(t, "logs", "--dir", dir, "--client", "192.0.2.1")
	if !strings.HasPrefix(out, "no decision lines for client 192.0.2.1 in ") {
		t.Errorf("logs for a client with no lines: %q", out)
	}
	if code, _, errOut := portstripe(t, "logs", "--dir", dir, "--client", "nobody"); code != 2 || !strings.Contains(errOut, `--client "nobody": want an IP address or IP:PORT`) {
		t.Errorf("logs --client nobody: exit %d, %q; want 2 and the flag named", code, errOut)
	}
	if code, _, errOut := portstripe(t, "logs", "--dir", t.TempDir()); code != 1 || !strings.Contains(errOut, "haproxy.log: no HAProxy started by apply or run wrote one here") {
		t.Errorf("logs in an empty state dir: exit %d, %q", code, errOut)
	}
}

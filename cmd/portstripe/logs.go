package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/haproxy"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/supervisor"
)

// logsTail is how much of the end of haproxy.log logs reads: a bound on
// the time and memory one look takes, whatever the file's size.
const logsTail = 16 << 20

func logsCmd() *cobra.Command {
	var (
		dir    string
		client string
		last   int
	)
	c := &cobra.Command{
		Use:   "logs [--dir DIR] [--client IP[:PORT]] [-n 20]",
		Short: "Show where TCP connections landed and why (HAProxy's decision lines)",
		Long: `logs reads the decision lines HAProxy writes to <dir>/haproxy.log, one per
TCP connection when it ends (haproxy.log: file, the default), and shows the
last -n of them, oldest first: when the client connected, its address, the
public port it dialled, the frontend, whether a signature matched (and so
which service's backend took it), the list's default took it or it was
rejected, bytes, duration and HAProxy's termination flags. --client keeps
one client's (an address, or address:port for one connection).

It reads at most the last 16 MiB of the file. The lines' format is in the
README ("Decision log"); grep works on the file too. UDP first packets are
decided in the kernel and counted per rule (status, metrics), not logged.`,
		Example: `  portstripe logs --client 198.51.100.7
  portstripe logs -n 100 --dir /var/lib/portstripe`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			want, err := parseClient(client)
			if err != nil {
				return usageError{err}
			}
			if last < 1 {
				return usageError{fmt.Errorf("-n %d: want at least 1", last)}
			}
			if err := logsWritten(dir); err != nil {
				return err
			}
			ds, err := readDecisions(filepath.Join(dir, supervisor.LogFile), want)
			if err != nil {
				return err
			}
			if len(ds) > last {
				ds = ds[len(ds)-last:]
			}
			w := cmd.OutOrStdout()
			if len(ds) == 0 {
				fmt.Fprintf(w, "no decision lines%s in %s\n", clientSuffix(client), filepath.Join(dir, supervisor.LogFile))
			}
			for _, d := range ds {
				fmt.Fprintln(w, describeDecision(d))
			}
			return nil
		},
	}
	c.Flags().StringVar(&dir, "dir", defaultDir, "state directory apply/run write to (haproxy.log is there)")
	c.Flags().StringVar(&client, "client", "", "only this client: IP, or IP:PORT for one connection")
	c.Flags().IntVarP(&last, "lines", "n", 20, "show the last N matching connections")
	return c
}

// clientFilter is --client: an address, and a port when one was given.
type clientFilter struct {
	addr netip.Addr
	port uint16 // 0 = any
}

func parseClient(s string) (clientFilter, error) {
	if s == "" {
		return clientFilter{}, nil
	}
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return clientFilter{ap.Addr().Unmap(), ap.Port()}, nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil {
		return clientFilter{}, fmt.Errorf("--client %q: want an IP address or IP:PORT", s)
	}
	return clientFilter{addr: a.Unmap()}, nil
}

func (f clientFilter) match(d haproxy.DecisionLine) bool {
	return !f.addr.IsValid() || d.Client.Addr() == f.addr && (f.port == 0 || d.Client.Port() == f.port)
}

func clientSuffix(client string) string {
	if client == "" {
		return ""
	}
	return " for client " + client
}

// logsWritten says why there are no lines to read when the applied node
// sends them elsewhere or nowhere (haproxy.log: none or a syslog server).
func logsWritten(dir string) error {
	data, err := artifact.ReadFile(filepath.Join(dir, compiler.PlanFile))
	if errors.Is(err, fs.ErrNotExist) {
		return nil // nothing applied: haproxy.log says the rest
	}
	var p plan.Plan
	if err == nil {
		err = json.Unmarshal(data, &p)
	}
	if err != nil {
		return fmt.Errorf("applied plan in %s unreadable: %w", dir, err)
	}
	switch p.HAProxy.Log {
	case node.LogNone:
		return fmt.Errorf("the node applied in %s has haproxy.log: none; HAProxy writes no decision lines", dir)
	case node.LogSyslog:
		return fmt.Errorf("the node applied in %s sends the decision lines to the syslog server %s (haproxy.log), not to %s", dir, p.HAProxy.Syslog, supervisor.LogFile)
	}
	return nil
}

// readDecisions reads the decision lines of the last logsTail bytes of
// path that match f, in the file's order.
func readDecisions(path string, f clientFilter) ([]haproxy.DecisionLine, error) {
	file, err := artifact.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no %s: no HAProxy started by apply or run wrote one here (--dir names another state directory)", path)
	}
	if err != nil {
		return nil, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return nil, err
	}
	r := bufio.NewReaderSize(file, 64<<10)
	if off := st.Size() - logsTail; off > 0 {
		if _, err := file.Seek(off, io.SeekStart); err != nil {
			return nil, err
		}
		r.ReadString('\n') // the first line is cut
	}
	var out []haproxy.DecisionLine
	for n := int64(0); n < logsTail; {
		line, err := r.ReadString('\n')
		n += int64(len(line))
		if d, ok := haproxy.ParseDecisionLine(strings.TrimSuffix(line, "\n")); ok && f.match(d) {
			out = append(out, d)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// describeDecision is one connection in words.
func describeDecision(d haproxy.DecisionLine) string {
	var why string
	switch d.Rule {
	case haproxy.RuleSignature:
		why = "signature of " + d.Backend + " matched → backend " + d.Backend
	case haproxy.RuleDefault:
		why = "no signature matched → the list's default, backend " + d.Backend
	case haproxy.RuleReject:
		why = "no signature matched → rejected"
	default:
		why = "rule " + d.Rule + " → backend " + d.Backend
	}
	port := fmt.Sprintf("port %d (%s)", d.Port, d.Frontend)
	if d.Dst.Is6() && !d.Dst.Is4In6() {
		// HAProxy reads the destination before DNAT back only over IPv4.
		port = fmt.Sprintf("frontend port %d (%s; over IPv6 HAProxy sees the DNATed port, not the one dialled)", d.Port, d.Frontend)
	}
	return fmt.Sprintf("%s  %s → %s: %s; %d B in, %d B out, %s, flags %s",
		d.Start.Format("2006-01-02T15:04:05.000Z"), d.Client, port, why, d.BytesIn, d.BytesOut, d.Duration.Round(time.Millisecond), d.Flags)
}

package haproxy

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/portstripe/portstripe/node"
)

// DecisionFormat is the line HAProxy writes per TCP connection when it
// ends: where the client landed and why. Keys are stable; README.md
// ("Decision log") documents them field by field.
//
// start is when HAProxy accepted the connection, in Unix seconds with
// milliseconds: the raw format carries no time of its own, and the
// workers' chroot holds no time zone.
//
// port is the frontend's port as HAProxy reads it: on IPv4 HAProxy reads
// the destination before DNAT back from the kernel, so it is the public
// port the client dialled; over IPv6 it would be the frontend's own
// (DNATed) port.
//
// rule is "reject" or "default" when no signature matched (set by the
// frontend's own rules), else "signature": the backend is then the
// service whose signature matched. Naming the matched service with a
// set-var per decision before the accept rule would make HAProxy wait for
// the bytes of every signature still undecided, which the single accept
// rule does not.
const DecisionFormat = "portstripe decision start=%Ts.%ms client=%ci client_port=%cp dst=%fi port=%fp frontend=%f" +
	" rule=%[var(" + RuleVar + "," + RuleSignature + ")] backend=%b server=%s" +
	" bytes_in=%U bytes_out=%B duration_ms=%Tt flags=%ts"

// The values of rule= in a decision line.
const (
	RuleSignature = "signature"
	RuleDefault   = "default"
	RuleReject    = "reject"
)

// floodACL names the ACL that holds while a frontend takes more new
// connections per second than haproxy.log_rate.
const floodACL = "ps_log_flood"

// logDefaults are the defaults section's logging lines: the target and
// the decision format every frontend inherits.
func logDefaults(h node.HAProxy) []Line {
	var t LogTarget
	switch h.Log {
	case node.LogFile:
		// The master's stdout is the state directory's haproxy.log; its
		// workers inherit it.
		t = LogTarget{Address: "stdout", Format: "raw", Facility: "daemon"}
	case node.LogSyslog:
		t = LogTarget{Address: h.Syslog.String(), Format: "rfc5424", Facility: "local0"}
	default:
		return nil
	}
	return []Line{t, LogFormat(DecisionFormat)}
}

// logLimit are a frontend's lines that count its connections, and the
// rule (first among the content rules, so it holds however the connection
// ends) that writes no line for a connection past haproxy.log_rate per
// second: a flood of connections cannot flood the log.
func logLimit(h node.HAProxy, used map[string]bool) (table, silence []Line) {
	if h.Log == node.LogNone {
		return nil, nil
	}
	name := uniqueName(floodACL, used)
	return []Line{Comment(fmt.Sprintf("a decision line per connection, at most %d a second (haproxy.log_rate)", h.LogRate)), ConnRateTable{}, TrackConnRate{}},
		[]Line{
			ACL{Name: name, Fetch: "sc0_conn_rate", Match: fmt.Sprintf("gt %d", h.LogRate)},
			TCPRequestContent{Action: SilenceLog, Cond: Cond{name}},
		}
}

// decisionRule names the decision in the log line (rule=) when no
// signature matched: reject or default.
func decisionRule(h node.HAProxy, rule string) []Line {
	if h.Log == node.LogNone {
		return nil
	}
	return []Line{TCPRequestContent{Action: SetRule(rule)}}
}

// DecisionLine is one decision line read back.
type DecisionLine struct {
	Start    time.Time // UTC
	Client   netip.AddrPort
	Dst      netip.Addr
	Port     uint16
	Frontend string
	Rule     string
	Backend  string
	Server   string
	BytesIn  int64
	BytesOut int64
	Duration time.Duration
	Flags    string
	Line     string // the line as HAProxy wrote it
}

// decisionPrefix starts every decision line.
const decisionPrefix = "portstripe decision "

// ParseDecisionLine reads a line DecisionFormat wrote; ok is false for any
// other line (HAProxy's own notices, alerts, a torn line).
func ParseDecisionLine(line string) (d DecisionLine, ok bool) {
	rest, found := strings.CutPrefix(line, decisionPrefix)
	if !found {
		return d, false
	}
	d.Line = line
	var client netip.Addr
	var clientPort uint64
	fields := 0
	for _, kv := range strings.Fields(rest) {
		k, v, _ := strings.Cut(kv, "=")
		var err error
		switch k {
		case "start":
			var ms int64
			ms, err = strconv.ParseInt(strings.Replace(v, ".", "", 1), 10, 64)
			if len(v) < 5 || v[len(v)-4] != '.' {
				err = strconv.ErrSyntax
			}
			d.Start = time.UnixMilli(ms).UTC()
		case "client":
			client, err = netip.ParseAddr(v)
		case "client_port":
			clientPort, err = strconv.ParseUint(v, 10, 16)
		case "dst":
			d.Dst, err = netip.ParseAddr(v)
		case "port":
			var p uint64
			p, err = strconv.ParseUint(v, 10, 16)
			d.Port = uint16(p)
		case "frontend":
			d.Frontend = v
		case "rule":
			d.Rule = v
		case "backend":
			d.Backend = v
		case "server":
			d.Server = v
		case "bytes_in":
			d.BytesIn, err = strconv.ParseInt(v, 10, 64)
		case "bytes_out":
			d.BytesOut, err = strconv.ParseInt(v, 10, 64)
		case "duration_ms":
			var ms int64
			ms, err = strconv.ParseInt(v, 10, 64)
			d.Duration = time.Duration(ms) * time.Millisecond
		case "flags":
			d.Flags = v
		default:
			continue
		}
		if err != nil {
			return DecisionLine{}, false
		}
		fields++
	}
	d.Client = netip.AddrPortFrom(client.Unmap(), uint16(clientPort))
	return d, fields == decisionFields && client.IsValid()
}

// decisionFields is how many key=value fields DecisionFormat writes.
var decisionFields = strings.Count(DecisionFormat, "=")

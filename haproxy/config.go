// Package haproxy turns a plan into haproxy.cfg, checks it with the real
// `haproxy -c`, and drives a running HAProxy through its master CLI and
// runtime API. The config model and the socket clients are shaped like
// haproxytech/config-parser and client-native (which cannot be downloaded
// here), kept to what portstripe emits and calls.
package haproxy

import (
	"fmt"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Config is a haproxy.cfg: a header comment, then its sections in the order
// HAProxy reads them.
type Config struct {
	Header    []string
	Global    Section
	Defaults  Section
	Frontends []Section
	Backends  []Section
}

// SectionType is a section keyword.
type SectionType string

const (
	GlobalSection   SectionType = "global"
	DefaultsSection SectionType = "defaults"
	FrontendSection SectionType = "frontend"
	BackendSection  SectionType = "backend"
)

// Section is one section and its lines, in order.
type Section struct {
	Type  SectionType
	Name  string // empty for global and defaults
	Lines []Line
}

// Line is one typed line of a section.
type Line interface {
	// String renders the line without indentation or newline.
	String() string
}

// Comment is a "# ..." line. Newlines and other control characters are
// replaced when rendered: comments carry text from the node file (its path)
// that must not start a directive of its own.
type Comment string

func (c Comment) String() string { return "# " + oneLine(string(c)) }

// MasterWorker is the global "master-worker" keyword.
type MasterWorker struct{}

func (MasterWorker) String() string { return "master-worker" }

// Description is the global "description", which "show info" reads back
// from the worker serving the stats socket: portstripe writes the
// configuration's hash there, so what a worker runs is observed, not assumed.
type Description string

func (d Description) String() string { return "description " + oneLine(string(d)) }

// User and Group are the global "user" and "group": the account the
// workers switch to once the master (root) has bound the listeners.
type (
	User  string
	Group string
)

func (u User) String() string  { return "user " + string(u) }
func (g Group) String() string { return "group " + string(g) }

// Chroot is the global "chroot <dir>": workers are confined to it (an
// empty directory) before they read a byte from a client.
type Chroot string

func (c Chroot) String() string { return "chroot " + string(c) }

// HardStopAfter is the global "hard-stop-after": how long an old worker
// may keep serving after a reload before it is stopped.
type HardStopAfter time.Duration

func (h HardStopAfter) String() string { return "hard-stop-after " + FormatDuration(time.Duration(h)) }

// MaxConn is "maxconn N" (global: per process; defaults: per frontend).
type MaxConn int

func (m MaxConn) String() string { return fmt.Sprintf("maxconn %d", int(m)) }

// StatsSocket is the global "stats socket" serving the runtime API.
type StatsSocket struct {
	Path  string
	Mode  os.FileMode
	Level string // user, operator or admin
	// ExposeFDListeners lets a new process take the listening sockets over
	// (seamless reload).
	ExposeFDListeners bool
}

func (s StatsSocket) String() string {
	b := fmt.Sprintf("stats socket %s mode %o level %s", s.Path, s.Mode.Perm(), s.Level)
	if s.ExposeFDListeners {
		b += " expose-fd listeners"
	}
	return b
}

// Mode is "mode tcp" or "mode http".
type Mode string

func (m Mode) String() string { return "mode " + string(m) }

// Timeout is "timeout <name> <duration>".
type Timeout struct {
	Name string // connect, client, server, ...
	D    time.Duration
}

func (t Timeout) String() string { return "timeout " + t.Name + " " + FormatDuration(t.D) }

// Bind is a frontend's "bind addr:port".
type Bind struct {
	Addr netip.AddrPort
}

func (b Bind) String() string { return "bind " + b.Addr.String() }

// TCPRequestInspectDelay bounds how long content rules wait for bytes.
type TCPRequestInspectDelay struct {
	D time.Duration
}

func (t TCPRequestInspectDelay) String() string {
	return "tcp-request inspect-delay " + FormatDuration(t.D)
}

// ACL is a named test: "acl <name> <fetch> [<match>]". Fetch includes the
// sample fetch and its flags (`req.payload(0,3) -m bin`), Match the patterns.
type ACL struct {
	Name  string
	Fetch string
	Match string
}

func (a ACL) String() string {
	if a.Match == "" {
		return "acl " + a.Name + " " + a.Fetch
	}
	return "acl " + a.Name + " " + a.Fetch + " " + a.Match
}

// Cond is a condition made of named ACLs that must all hold; empty means
// unconditional.
type Cond []string

// or separates the terms of a condition: "a b || c d" holds when a and b
// hold, or c and d do.
const or = "||"

// maxWords is how many words HAProxy 2.6 reads on one line (MAX_LINE_ARGS):
// a longer line is a fatal "too many words" error.
const maxWords = 64

// words counts the words of a line as HAProxy splits them (on spaces and
// tabs), without making them.
func words(line string) int {
	n, in := 0, false
	for i := 0; i < len(line); i++ {
		space := line[i] == ' ' || line[i] == '\t'
		if !space && !in {
			n++
		}
		in = !space
	}
	return n
}

// OrLines joins conditions into as few conditions of at most words words
// as it can ("a b || c d"), each condition kept whole: rules that, together,
// hold when any of the conditions does.
func OrLines(words int, conds ...Cond) []Cond {
	var out []Cond
	var cur Cond
	for _, c := range conds {
		if len(cur) > 0 && len(cur)+1+len(c) > words {
			out, cur = append(out, cur), nil
		}
		if len(cur) > 0 {
			cur = append(cur, or)
		}
		cur = append(cur, c...)
	}
	if len(cur) > 0 {
		out = append(out, cur)
	}
	return out
}

func (c Cond) suffix() string {
	if len(c) == 0 {
		return ""
	}
	return " if " + strings.Join(c, " ")
}

// Action is what a tcp-request content rule does.
type Action string

const (
	Accept Action = "accept"
	Reject Action = "reject"
	// SilenceLog writes no log line for the connection.
	SilenceLog Action = "set-log-level silent"
)

// RuleVar is the transaction variable naming a connection's decision in
// its log line (rule=).
const RuleVar = "txn.ps_rule"

// SetRule sets RuleVar to rule, an HAProxy name.
func SetRule(rule string) Action { return Action("set-var(" + RuleVar + ") str(" + rule + ")") }

// TCPRequestContent is "tcp-request content <action> [if <cond>]".
type TCPRequestContent struct {
	Action Action
	Cond   Cond
}

func (t TCPRequestContent) String() string {
	return "tcp-request content " + string(t.Action) + t.Cond.suffix()
}

// UseBackend is "use_backend <name> if <cond>".
type UseBackend struct {
	Name string
	Cond Cond
}

func (u UseBackend) String() string { return "use_backend " + u.Name + u.Cond.suffix() }

// DefaultBackend is "default_backend <name>".
type DefaultBackend struct {
	Name string
}

func (d DefaultBackend) String() string { return "default_backend " + d.Name }

// Server is a backend's "server <name> <addr:port>".
type Server struct {
	Name string
	Addr netip.AddrPort
	// Check health-checks the server (the "check" keyword), as the
	// backend's check options say.
	Check bool
	// Disabled starts the server in maintenance (the "disabled" keyword).
	Disabled bool
	// SendProxy is "send-proxy" or "send-proxy-v2": a PROXY protocol
	// header with the client's address before the client's bytes; empty
	// sends none.
	SendProxy string
}

func (s Server) String() string {
	b := "server " + s.Name + " " + s.Addr.String()
	if s.Check {
		b += " check"
	}
	if s.SendProxy != "" {
		b += " " + s.SendProxy
	}
	if s.Disabled {
		b += " disabled"
	}
	return b
}

// LogTarget is "log <address> format <format> <facility>": where a proxy's
// log lines go.
type LogTarget struct {
	Address  string // stdout, or a syslog server's IP:PORT (UDP)
	Format   string // raw, rfc5424, ...
	Facility string
}

func (l LogTarget) String() string {
	return "log " + l.Address + " format " + l.Format + " " + l.Facility
}

// LogFormat is `log-format "<format>"`, the one line portstripe quotes:
// its format is DecisionFormat, a constant, never node file text.
type LogFormat string

func (l LogFormat) String() string { return `log-format "` + string(l) + `"` }

// ConnRateTable is a frontend's one-entry stick table counting its new
// connections per second, which the log rate limit reads.
type ConnRateTable struct{}

func (ConnRateTable) String() string {
	return "stick-table type integer size 1 expire 10s store conn_rate(1s)"
}

// TrackConnRate is "tcp-request connection track-sc0 int(0)": every
// connection counts in its frontend's ConnRateTable under the one key 0.
type TrackConnRate struct{}

func (TrackConnRate) String() string { return "tcp-request connection track-sc0 int(0)" }

// UseSrcClientIP is a backend's "source 0.0.0.0 usesrc clientip": HAProxy
// connects to the servers from the client's address (TPROXY).
type UseSrcClientIP struct{}

func (UseSrcClientIP) String() string { return "source 0.0.0.0 usesrc clientip" }

// Option is a proxy's "option <name>" (tcp-check, ssl-hello-chk).
type Option string

func (o Option) String() string { return "option " + string(o) }

// TCPCheckExpect is "tcp-check expect rstring <regex>": what a health
// check waits to read from the server.
type TCPCheckExpect string

func (t TCPCheckExpect) String() string { return "tcp-check expect rstring " + string(t) }

// String renders the config: sections start at column 0, their lines are
// indented by four spaces, and one blank line separates sections.
func (c *Config) String() string {
	var b strings.Builder
	for _, h := range c.Header {
		b.WriteString(Comment(h).String())
		b.WriteByte('\n')
	}
	for _, s := range c.sections() {
		if b.Len() > 0 {
			b.WriteByte('\n')
		}
		b.WriteString(string(s.Type))
		if s.Name != "" {
			b.WriteString(" " + s.Name)
		}
		b.WriteByte('\n')
		for _, l := range s.Lines {
			b.WriteString("    ")
			b.WriteString(l.String())
			b.WriteByte('\n')
		}
	}
	return b.String()
}

// Marshal is String as bytes, what is written to haproxy.cfg.
func (c *Config) Marshal() []byte { return []byte(c.String()) }

func (c *Config) sections() []Section {
	out := []Section{c.Global, c.Defaults}
	out = append(out, c.Frontends...)
	return append(out, c.Backends...)
}

// nameRE is what HAProxy accepts in ACL, proxy and server names.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.:-]+$`)

// Validate checks that every name and word the lines carry is one HAProxy
// token, so no value can split a line or start a comment. Node validation
// already restricts names; this guards the emitter against other callers.
func (c *Config) Validate() error {
	for _, s := range c.sections() {
		where := string(s.Type)
		if s.Name != "" {
			where += " " + s.Name
			if !nameRE.MatchString(s.Name) {
				return fmt.Errorf("haproxy config: %s: name is not a HAProxy name", where)
			}
		}
		for i, l := range s.Lines {
			w := words(l.String())
			// HAProxy reads no words after "#".
			if _, ok := l.(Comment); w > maxWords && !ok {
				return fmt.Errorf("haproxy config: %s, line %d: %d words, more than HAProxy reads on one line (%d)", where, i+1, w, maxWords)
			}
			if err := validateLine(l); err != nil {
				return fmt.Errorf("haproxy config: %s, line %d (%s): %w", where, i+1, oneLine(l.String()), err)
			}
		}
	}
	return nil
}

func validateLine(l Line) error {
	var names []string
	var words []string
	switch l := l.(type) {
	case ACL:
		names, words = []string{l.Name}, []string{l.Fetch, l.Match}
	case TCPRequestContent:
		names = l.Cond
	case UseBackend:
		names = append([]string{l.Name}, l.Cond...)
	case DefaultBackend:
		names = []string{l.Name}
	case Server:
		names = []string{l.Name}
	case StatsSocket:
		words = []string{l.Path, l.Level}
	case User:
		names = []string{string(l)}
	case Group:
		names = []string{string(l)}
	case Chroot:
		words = []string{string(l)}
	case Timeout:
		names = []string{l.Name}
	}
	for _, n := range names {
		if n != or && !nameRE.MatchString(n) {
			return fmt.Errorf("%q is not a HAProxy name (A-Z a-z 0-9 _ . : -)", n)
		}
	}
	for _, w := range words {
		if strings.ContainsAny(w, "#\\\"'") || strings.IndexFunc(w, isControl) >= 0 {
			return fmt.Errorf("%q holds a character that would need quoting", w)
		}
	}
	return nil
}

// isControl reports the characters no line of haproxy.cfg carries: C0
// controls (newline, CR, NUL, ...), DEL, C1 controls, the Unicode line and
// paragraph separators, and bytes that are not UTF-8.
func isControl(r rune) bool {
	return unicode.IsControl(r) || r == '\u2028' || r == '\u2029' || r == utf8.RuneError
}

// oneLine is the one way free text (comments, the header's node file path)
// reaches haproxy.cfg: every character isControl reports becomes '?', so the
// text stays on its line.
func oneLine(s string) string {
	return strings.Map(func(r rune) rune {
		if isControl(r) {
			return '?'
		}
		return r
	}, s)
}

// FormatDuration writes d in the largest HAProxy time unit (d, h, m, s, ms)
// that represents it exactly, so "1h" reads as written in the node file.
// HAProxy has no sub-millisecond timeouts for these keywords; node
// validation only allows whole milliseconds.
func FormatDuration(d time.Duration) string {
	units := []struct {
		suffix string
		size   time.Duration
	}{{"d", 24 * time.Hour}, {"h", time.Hour}, {"m", time.Minute}, {"s", time.Second}}
	for _, u := range units {
		if d >= u.size && d%u.size == 0 {
			return fmt.Sprintf("%d%s", d/u.size, u.suffix)
		}
	}
	return fmt.Sprintf("%dms", d.Milliseconds())
}

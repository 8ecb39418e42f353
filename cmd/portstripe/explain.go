package main

import (
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"unicode"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/internal/safefile"
	"github.com/portstripe/portstripe/iptables"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/plan"
	"github.com/portstripe/portstripe/supervisor"
)

func explainCmd(nf *nodeFlags) *cobra.Command {
	var (
		out outputFormat
		dir string
	)
	c := &cobra.Command{
		Use:   "explain [-c node.yaml | --dir DIR] [-o text|json|yaml]",
		Short: "Print the port map: per protocol and port range, what is tried in which order",
		Long: `explain prints the compiled plan as a table: for each protocol and port
range, the signatures tried on a client's first packet in order, the service
each leads to and where it lands, then the default for packets that match
none, and the services left out of a port (with the reason). Below the table,
what each signature relies on.

It compiles the node file (without -c: the built-in example node), or with
--dir reads the plan applied on this node (DIR/plan.json, written by apply,
run or compile). -o json prints the node and the rows as one document
(schema portstripe.explain/v1, docs/json.md).`,
		Example: `  portstripe explain -c node.yaml
  portstripe explain --dir /var/lib/portstripe   # what this node has applied
  portstripe explain -o json | jq '.rows[] | select(.service == "ssh")'`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			p, err := loadPlan(cmd, nf, dir)
			if err != nil {
				return err
			}
			doc := explainDoc{Schema: schema("explain"), Node: docNode(p.Node), Rows: p.Explain(), Limits: limits(p)}
			return out.write(cmd.OutOrStdout(), doc, func(w io.Writer) error { return writeExplain(w, p) })
		},
	}
	registerOutput(c, &out)
	planDirFlag(c, &dir)
	return c
}

func planDirFlag(c *cobra.Command, dir *string) {
	c.Flags().StringVar(dir, "dir", "", "read the plan applied in this state directory (DIR/plan.json; apply's default is "+defaultDir+") instead of compiling")
}

// loadPlan compiles the node the flags name, or reads the plan applied in
// dir.
func loadPlan(cmd *cobra.Command, nf *nodeFlags, dir string) (*plan.Plan, error) {
	if dir == "" {
		if err := nf.resolve(cmd, exampleNode); err != nil {
			return nil, err
		}
		res, err := nf.compile()
		if err != nil {
			return nil, err
		}
		return res.Plan, nil
	}
	for _, f := range []string{"config", "set"} {
		if cmd.Flags().Changed(f) {
			return nil, usageError{fmt.Errorf("--dir reads the applied plan; --%s is for compiling a node file, give one or the other", f)}
		}
	}
	res, err := supervisor.LoadApplied(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("nothing applied in %s (no %s); without --dir, -c FILE compiles a node file", dir, compiler.PlanFile)
	}
	if err != nil {
		return nil, err
	}
	return res.Plan, nil
}

// explainDoc is explain's -o json|yaml document.
type explainDoc struct {
	Schema string     `json:"schema"`
	Node   nodeDoc    `json:"node"`
	Rows   []plan.Row `json:"rows"`
	// Limits are what the firewall backend cannot classify on this node.
	Limits []string `json:"limits,omitempty"`
}

// limits are what the plan's firewall backend cannot classify: over IPv6,
// UDP behind extension headers.
func limits(p *plan.Plan) []string {
	if !hasUDP(p) || len(node.AddressesOf(p.Node.Addresses, node.IPv6)) == 0 || ipv6Limit(p) == "" {
		return nil
	}
	return []string{"udp over IPv6: " + ipv6Limit(p)}
}

// familyAddresses writes the node's addresses per family.
func familyAddresses(addrs []netip.Addr) string {
	var parts []string
	for _, f := range node.Families {
		if of := node.AddressesOf(addrs, f); len(of) > 0 {
			parts = append(parts, fmt.Sprintf("%s %s", f, joinAddrs(of)))
		}
	}
	if len(parts) > 1 {
		return strings.Join(parts, ", ") + " (the same decisions on both)"
	}
	return strings.Join(parts, "")
}

// nodeDoc is the node a document describes: plan.json's node, with the
// reserved ports as ranges rather than the node file's text.
type nodeDoc struct {
	plan.NodeInfo
	Reserved []node.PortRange `json:"reserved"`
}

func docNode(n plan.NodeInfo) nodeDoc { return nodeDoc{n, n.Reserved} }

func writeExplain(w io.Writer, p *plan.Plan) error {
	fmt.Fprintf(w, "node %s from %s (sha256 %s)\n", p.Node.Name, p.Node.Source, p.Node.SHA256)
	writeOverrides(w, p.Node)
	fmt.Fprintf(w, "addresses: %s; reserved ports %s get no rule\n", familyAddresses(p.Node.Addresses), p.Node.Reserved)
	kernel := "kernel (u32)"
	if p.Firewall == node.NFTables {
		kernel = "kernel (nft)"
		fmt.Fprintf(w, "firewall: nftables (table inet portstripe: UDP by an interval verdict map to each list's chain)\n\n")
	} else {
		fmt.Fprintf(w, "firewall: iptables (rules.v4%s: UDP by dispatch rules and u32 matches)\n\n", map[bool]string{true: ", rules.v6"}[iptables.HasRules6(p)])
	}
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "PROTO\tPORTS\tVIA\t#\tSIGNATURE\tSERVICE\tTARGET")
	prev := ""
	for _, r := range p.Explain() {
		portText := node.PortSet(r.Ports).String()
		key := string(r.Proto) + portText
		proto, ports, via := string(r.Proto), shorten(portText, 40), kernel
		if r.Frontend != nil {
			via = fmt.Sprintf("%s :%d", r.Frontend.Name, r.Frontend.Port)
		}
		if key == prev {
			proto, ports, via = "", "", ""
		}
		prev = key
		step, sig := strconv.Itoa(r.Step), r.Signature
		switch r.Rule {
		case plan.RuleDefault:
			step, sig = "default", "no signature matched"
		case plan.RuleLeftOut:
			step, sig = "left out", "(cannot be told apart from the owner)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", proto, ports, via, step, sig, r.Service, targetText(r))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "\nWhat each check relies on:")
	seen := map[string]bool{}
	var caveats []string
	for _, r := range p.Explain() {
		line := fmt.Sprintf("  %s %s: %s", r.Proto, r.Signature, r.Relies)
		switch r.Rule {
		case plan.RuleDefault:
			line = fmt.Sprintf("  %s %s default: %s", r.Proto, r.List, r.Relies)
		case plan.RuleLeftOut:
			line = fmt.Sprintf("  %s %s left out of %s: %s", r.Proto, r.Service, node.PortSet(r.Ports), r.Relies)
		}
		if r.Caveat != "" && !seen[r.Caveat] {
			seen[r.Caveat] = true
			caveats = append(caveats, "  "+r.Caveat)
		}
		if r.Relies == "" || seen[line] {
			continue
		}
		seen[line] = true
		fmt.Fprintln(w, line)
	}
	if len(caveats) > 0 {
		fmt.Fprintln(w, "\nWhat they assume of clients:")
		fmt.Fprintln(w, strings.Join(caveats, "\n"))
	}
	if ls := limits(p); len(ls) > 0 {
		fmt.Fprintln(w, "\nWhat the firewall cannot classify:")
		for _, l := range ls {
			fmt.Fprintln(w, "  "+l)
		}
	}
	writeHealth(w, p)
	writeClientAddresses(w, p)
	return nil
}

// healthWords says what each health check of the plan does.
var healthWords = map[plan.HealthCheck]string{
	plan.CheckConnect:   "a TCP connect",
	plan.CheckSSHBanner: "its SSH banner",
	plan.CheckTLSHello:  "an answer to a TLS hello",
}

// writeHealth says how each TCP backend is health-checked and what its
// being DOWN means: HAProxy has no other server for it, so the connections
// the rules and signatures send there are closed, on every port whose
// default it is too.
func writeHealth(w io.Writer, p *plan.Plan) {
	if len(p.Backends) == 0 {
		return
	}
	fmt.Fprintln(w, "\nTCP backends (HAProxy checks each every 2 s; while one is DOWN, connections routed to it are closed):")
	for _, b := range p.Backends {
		check := "not checked (check: none): always taken for UP"
		if words, ok := healthWords[b.Check]; ok {
			check = "checked by " + words
		}
		var defaults []string
		for _, l := range p.Lists {
			if l.Proto == node.TCP && l.Default.Service == b.Service {
				defaults = append(defaults, l.Ports.String())
			}
		}
		line := fmt.Sprintf("  %s %s: %s", b.Service, b.Addr, check)
		if len(defaults) > 0 {
			line += fmt.Sprintf("; the default of tcp %s, so while it is DOWN every client there that matches no other signature is closed", strings.Join(defaults, ","))
		}
		fmt.Fprintln(w, line)
	}
}

// writeClientAddresses says what each TCP backend sees as the client's
// address and what that costs, and why UDP listeners need nothing.
func writeClientAddresses(w io.Writer, p *plan.Plan) {
	fmt.Fprintln(w, "\nThe client's address at the backends (client_address):")
	for _, b := range p.Backends {
		fmt.Fprintf(w, "  tcp %s %s: %s\n", b.Service, b.Addr, p.ClientAddressNote(b))
	}
	if hasUDP(p) {
		fmt.Fprintln(w, "  "+plan.UDPClientAddressNote)
	}
}

func hasUDP(p *plan.Plan) bool {
	for _, r := range p.Ranges {
		if r.Proto == node.UDP {
			return true
		}
	}
	return false
}

// targetText is where a row lands, in the table's words.
func targetText(r plan.Row) string {
	switch {
	case r.Rule == plan.RuleLeftOut:
		return "-"
	case r.Target == nil && r.Proto == node.UDP:
		return "not diverted"
	case r.Target == nil:
		return "reject"
	case r.Proto == node.UDP:
		return fmt.Sprintf("udp :%d", r.Target.Port)
	}
	return "tcp " + r.Target.Backend.String()
}

// shorten keeps long port lists readable in the table; -o json has them whole.
func shorten(s string, n int) string {
	if len(s) <= n {
		return s
	}
	cut := strings.LastIndex(s[:n], ",")
	if cut < 0 {
		cut = n
	}
	return s[:cut] + ",…"
}

func routeCmd(nf *nodeFlags) *cobra.Command {
	var (
		proto, payloadHex, payloadFile, client, dir string
		port                                        int
		out                                         outputFormat
	)
	c := &cobra.Command{
		Use:   "route --proto udp|tcp|udp6|tcp6|udp4|tcp4 --port N (--payload-hex HEX | --payload-file F | --client KIND) [-c node.yaml | --dir DIR] [-o text|json|yaml]",
		Short: "Say which service a client's first packet on a port reaches",
		Long: `route answers "where does this client land?" from the same plan the emitters
turn into rules: give the protocol, the public port the client connects to,
and its first packet (UDP: the datagram's payload; TCP: the first bytes of the
stream, OpenVPN's 2-byte length prefix included). It prints the service, the
address it lands on, and which rule took it; "none" when no rule does
(a reserved port, or a default that rejects). -o json prints it as one
document (schema portstripe.route/v1, docs/json.md).

--proto names the family as OpenVPN's --proto does: udp6 and tcp6 are a
client sending to the node's (first) IPv6 address, udp4 and tcp4 to its
IPv4 one, plain udp and tcp to its first address of either family. Both
families go through the same decision lists; over IPv6 with the iptables
backend, a UDP first packet behind extension headers is not diverted (the
answer says so).

--payload-file reads hex text (as in fixtures/first-packets/*.hex) or,
if the file is not hex, its raw bytes. Without a capture, --client makes the
first packet of a client described in the node file's words: a kind, then
for openvpn the tls mode (and digest for tls-auth), for tls the server name
(` + clientSpecs + `).

It compiles the node file (without -c: the built-in example node), or with
--dir reads the plan applied on this node (DIR/plan.json).`,
		Example: `  portstripe route --proto udp --port 5061 --client openvpn:tls-crypt
  portstripe route --proto tcp --port 443 --client openvpn:tls-auth:SHA512
  portstripe route --proto tcp --port 443 --client tls:www.example.org
  portstripe route --proto udp6 --port 443 --client openvpn:tls-crypt -c dual-stack.yaml
  portstripe route --proto udp --port 5061 --payload-file fixtures/first-packets/udp-tls-crypt.hex
  portstripe route --proto tcp --port 80 --payload-hex 5353482d322e30 -o json
  portstripe route --dir /var/lib/portstripe --proto tcp --port 443 --client ssh`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pr, fam, ok := parseRouteProto(proto)
			if !ok {
				return usageError{fmt.Errorf("--proto %q: want %s", proto, strings.Join(routeProtos, ", "))}
			}
			if port < 1 || port > 65535 {
				return usageError{fmt.Errorf("--port %d: want 1-65535", port)}
			}
			n := 0
			for _, f := range []string{"payload-hex", "payload-file", "client"} {
				if cmd.Flags().Changed(f) {
					n++
				}
			}
			if n != 1 {
				return usageError{fmt.Errorf("give the first packet with exactly one of --payload-hex, --payload-file and --client")}
			}
			var payload []byte
			var what string
			var err error
			if cmd.Flags().Changed("client") {
				payload, what, err = clientPacket(client, pr)
			} else {
				payload, err = readPayload(payloadHex, payloadFile)
			}
			if err != nil {
				return err
			}
			p, err := loadPlan(cmd, nf, dir)
			if err != nil {
				return err
			}
			dst := p.Node.Addresses[0]
			if fam != "" {
				of := node.AddressesOf(p.Node.Addresses, fam)
				if len(of) == 0 {
					return usageError{fmt.Errorf("--proto %s: node %s has no %s address (addresses: %s)", proto, p.Node.Name, fam, joinAddrs(p.Node.Addresses))}
				}
				dst = of[0]
			}
			r := p.RouteTo(dst, pr, uint16(port), payload)
			doc := routeDoc{Schema: schema("route"), Route: r, Client: what}
			if r.Family == node.IPv6 && pr == node.UDP && r.Rule != plan.RuleNotStriped && r.Rule != plan.RuleReserved {
				doc.Limit = ipv6Limit(p)
			}
			return out.write(cmd.OutOrStdout(), doc, func(w io.Writer) error {
				target := r.Target
				if target == "" {
					target = "-"
				}
				fmt.Fprintf(w, "%s %d → %s at %s\n  via %s\n", proto, port, r.Service, target, r.Via)
				if what != "" {
					fmt.Fprintf(w, "  client: %s\n", what)
				}
				if doc.Limit != "" {
					fmt.Fprintf(w, "  limit: %s\n", doc.Limit)
				}
				return nil
			})
		},
	}
	c.Flags().StringVar(&proto, "proto", "", "udp or tcp, to the node's first address; udp6/tcp6 or udp4/tcp4 to its IPv6 or IPv4 one (required)")
	c.Flags().IntVar(&port, "port", 0, "public port the client connects to, 1-65535 (required)")
	c.Flags().StringVar(&payloadHex, "payload-hex", "", "the first packet as hex")
	c.Flags().StringVar(&payloadFile, "payload-file", "", "file holding the first packet (hex text or raw bytes)")
	c.Flags().StringVar(&client, "client", "", "make the first packet of such a client: openvpn:tls-crypt, openvpn:tls-auth:SHA512, ssh, tls:NAME, … (see above)")
	registerOutput(c, &out)
	planDirFlag(c, &dir)
	completeValues(c, "proto", routeProtos...)
	_ = c.RegisterFlagCompletionFunc("client", completeClient(nf))
	return c
}

// routeDoc is route's -o json|yaml document.
type routeDoc struct {
	Schema string `json:"schema"`
	plan.Route
	// Client is what --client made, empty for a payload given as such.
	Client string `json:"client,omitempty"`
	// Limit is what the firewall backend cannot classify on this route
	// (UDP over IPv6 through iptables: extension headers).
	Limit string `json:"limit,omitempty"`
}

// routeProtos are --proto's values: OpenVPN's names for a protocol, with
// the family or without.
var routeProtos = []string{"udp", "tcp", "udp6", "tcp6", "udp4", "tcp4"}

// parseRouteProto reads --proto: the protocol, and the family of the node
// address the client sends to ("" for the node's first address).
func parseRouteProto(s string) (node.Proto, node.Family, bool) {
	if !slices.Contains(routeProtos, s) {
		return "", "", false
	}
	switch pr := node.Proto(s[:3]); s[3:] {
	case "6":
		return pr, node.IPv6, true
	case "4":
		return pr, node.IPv4, true
	default:
		return pr, "", true
	}
}

// ipv6Limit is what the plan's firewall backend cannot classify over
// IPv6: iptables' u32 reads fixed offsets, so extension headers hide a
// first packet from it; "" for a backend without that limit.
func ipv6Limit(p *plan.Plan) string {
	if p.FirewallName() == node.IPTables {
		return iptables.Extension6Limit
	}
	return ""
}

// joinAddrs writes addresses as a list.
func joinAddrs(as []netip.Addr) string {
	s := make([]string, len(as))
	for i, a := range as {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// maxPayloadFile bounds --payload-file: the hex text of a 64 KiB datagram,
// with room for spaces and line breaks.
const maxPayloadFile = 256 << 10

// readPayload reads the first packet from --payload-file, or else from
// --payload-hex, where an empty value is a client that sent nothing
// (ssh-keyscan). Which flags were given is checked by the caller rather than
// by cobra, so a mistake is a usage error, exit 2.
func readPayload(hexText, file string) ([]byte, error) {
	if file != "" {
		data, err := safefile.Read(file, maxPayloadFile)
		if errors.Is(err, safefile.ErrTooLarge) {
			return nil, usageError{fmt.Errorf("--payload-file %s: larger than %d bytes; a first packet is at most 64 KiB, as hex text at most twice that", file, maxPayloadFile)}
		}
		if err != nil {
			return nil, usageError{fmt.Errorf("--payload-file: %w", err)}
		}
		text := strings.Map(func(r rune) rune {
			if unicode.IsSpace(r) {
				return -1
			}
			return r
		}, string(data))
		if b, err := hex.DecodeString(text); err == nil && len(text) > 0 {
			return b, nil
		}
		return data, nil
	}
	b, err := hex.DecodeString(strings.Join(strings.Fields(hexText), ""))
	if err != nil {
		return nil, usageError{fmt.Errorf("--payload-hex: %w", err)}
	}
	return b, nil
}

package main

import (
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/signature"
)

// clientSpecs is the --client grammar, for help and errors.
const clientSpecs = "openvpn:tls-auth:DIGEST, openvpn:tls-crypt, openvpn:tls-crypt-v2, openvpn:none, wireguard, ssh, tls, tls:SERVER-NAME, http"

// clientPacket makes the first packet a client described by spec sends on
// p, for route --client, and says what it is. The words are the node
// file's: a kind, then for openvpn the tls mode and digest, for tls the
// server name it asks for.
func clientPacket(spec string, p node.Proto) ([]byte, string, error) {
	parts := strings.Split(spec, ":")
	kind, args := node.Kind(parts[0]), parts[1:]
	bad := func(why string) error {
		return usageError{fmt.Errorf("--client %q: %s (want one of %s)", spec, why, clientSpecs)}
	}
	switch {
	case !slices.Contains(node.Kinds, kind):
		return nil, "", bad("unknown kind")
	case kind == node.WireGuard && p == node.TCP:
		return nil, "", bad("WireGuard runs over UDP only")
	case kind != node.OpenVPN && kind != node.WireGuard && p == node.UDP:
		return nil, "", bad(string(kind) + " clients use TCP")
	case kind != node.OpenVPN && kind != node.TLS && len(args) > 0:
		return nil, "", bad(string(kind) + " takes nothing more")
	}
	switch kind {
	case node.SSH:
		return []byte("SSH-2.0-OpenSSH_9.2p1\r\n"), "SSH client banner", nil
	case node.HTTP:
		return []byte("GET / HTTP/1.1\r\nHost: example.org\r\n\r\n"), "HTTP/1.1 request", nil
	case node.TLS:
		sni := strings.Join(args, ":")
		hello, err := signature.ClientHello(sni)
		if err != nil {
			return nil, "", fmt.Errorf("make a TLS ClientHello: %w", err)
		}
		what := "TLS ClientHello without SNI"
		if sni != "" {
			what = "TLS ClientHello with SNI " + sni
		}
		return hello, fmt.Sprintf("%s (Go's crypto/tls, %d bytes)", what, len(hello)), nil
	}
	// OpenVPN and WireGuard: laid out from the signature.
	s := node.Service{Kind: kind, UDP: 1, TCP: netip.MustParseAddrPort("127.0.0.1:1")}
	what := "WireGuard handshake initiation"
	if kind == node.OpenVPN {
		if len(args) == 0 || !slices.Contains(node.TLSModes, node.TLSMode(args[0])) {
			return nil, "", bad("an openvpn client needs its tls mode")
		}
		s.TLS.Mode = node.TLSMode(args[0])
		switch {
		case s.TLS.Mode == node.TLSAuth && (len(args) != 2 || node.Digests[strings.ToUpper(args[1])] == 0):
			return nil, "", bad("a tls-auth client needs its digest (SHA1, SHA256, SHA384, SHA512)")
		case s.TLS.Mode != node.TLSAuth && len(args) != 1:
			return nil, "", bad("only tls-auth takes a digest")
		case s.TLS.Mode == node.TLSAuth:
			s.TLS.Digest = strings.ToUpper(args[1])
		}
	}
	sig, _ := signature.For(s, p)
	if kind == node.OpenVPN {
		what = sig.Label + " first packet, as OpenVPN 2.6 lays it out"
	}
	packet := sig.Example()
	return packet, fmt.Sprintf("%s (%d bytes; its random fields made up)", what, len(packet)), nil
}

// clientKinds are the --client values for each kind, in clientSpecs'
// order; a service of the node file fills in its own.
func clientKinds() []string {
	var out []string
	for _, m := range node.TLSModes {
		if m != node.TLSAuth {
			out = append(out, "openvpn:"+string(m))
			continue
		}
		for _, d := range slices.Sorted(maps.Keys(node.Digests)) {
			out = append(out, "openvpn:tls-auth:"+d)
		}
	}
	return append(out, string(node.WireGuard), string(node.SSH), string(node.TLS), string(node.HTTP))
}

// clientFor is the --client value that reaches service s (one per server
// name, for a TLS service that lists some).
func clientFor(s node.Service) []string {
	switch s.Kind {
	case node.OpenVPN:
		spec := "openvpn:" + string(s.TLS.Mode)
		if s.TLS.Mode == node.TLSAuth {
			spec += ":" + s.TLS.Digest
		}
		return []string{spec}
	case node.TLS:
		if len(s.SNI) == 0 {
			return []string{string(node.TLS)}
		}
		out := make([]string, len(s.SNI))
		for i, n := range s.SNI {
			out[i] = "tls:" + n
		}
		return out
	}
	return []string{string(s.Kind)}
}

// completeClient completes route's --client: the clients of the node
// file's services first, then every other kind, leaving out those that
// cannot use --proto. Each says where it lands: on --port when given (the
// plan routes the packet it would send), else which services it is for.
func completeClient(nf *nodeFlags) cobra.CompletionFunc {
	return func(cmd *cobra.Command, _ []string, toComplete string) ([]cobra.Completion, cobra.ShellCompDirective) {
		flag := cmd.Flag("proto").Value.String()
		proto, _, known := parseRouteProto(flag)
		port, _ := cmd.Flags().GetInt("port")
		res, err := nf.compile()
		var specs []string
		reaches := map[string][]string{}
		if err == nil {
			for _, s := range res.Node.Services {
				for _, spec := range clientFor(s) {
					if reaches[spec] == nil {
						specs = append(specs, spec)
					}
					reaches[spec] = append(reaches[spec], s.Name)
				}
			}
		}
		for _, spec := range clientKinds() {
			if reaches[spec] == nil {
				specs = append(specs, spec)
			}
		}
		var out []cobra.Completion
		for _, spec := range specs {
			if !strings.HasPrefix(spec, toComplete) {
				continue
			}
			desc := ""
			if names := reaches[spec]; names != nil {
				desc = "for " + strings.Join(names, ", ")
			}
			if known {
				payload, _, err := clientPacket(spec, proto)
				if err != nil {
					continue // no such client on this protocol
				}
				if res != nil && port >= 1 && port <= 65535 {
					// Both families take the same lists: which service
					// a client reaches does not depend on the address.
					r := res.Plan.Route(proto, uint16(port), payload)
					desc = fmt.Sprintf("%s %d → %s", flag, port, r.Service)
				}
			}
			out = append(out, cobra.CompletionWithDesc(spec, desc))
		}
		return out, cobra.ShellCompDirectiveNoFileComp
	}
}

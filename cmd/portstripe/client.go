package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/signature"
)

// clientSpecs is the --client grammar, for help and errors: every
// kind's forms, as the registry lists them.
var clientSpecs = strings.Join(clientKinds(), ", ")

// clientPacket makes the first packet a client described by spec sends on
// p, for route --client, and says what it is. The words are the node
// file's: a kind, then what its settings need (for openvpn the tls mode
// and digest, for tls the server name it asks for); the kind lays the
// packet out.
func clientPacket(spec string, p node.Proto) ([]byte, string, error) {
	parts := strings.Split(spec, ":")
	bad := func(why string) error {
		return usageError{fmt.Errorf("--client %q: %s (want one of %s)", spec, why, clientSpecs)}
	}
	kind, ok := signature.LookupKind(parts[0])
	switch {
	case !ok:
		return nil, "", bad("unknown kind")
	case !slices.Contains(kind.Protos(), p):
		return nil, "", bad(fmt.Sprintf("%s clients use %s", kind.Name(), kind.Protos()[0]))
	}
	settings, err := kind.Client(parts[1:])
	if err != nil {
		return nil, "", bad(err.Error())
	}
	ex, err := kind.Example(settings, p)
	if err != nil {
		return nil, "", err
	}
	return ex.Packet, ex.What, nil
}

// clientKinds are the --client values of every kind, in the registry's
// order; a service of the node file fills in its own.
func clientKinds() []string {
	var out []string
	for _, k := range signature.Kinds() {
		out = append(out, k.Clients(signature.Settings{})...)
	}
	return out
}

// clientFor is the --client value that reaches service s (one per server
// name, for a TLS service that lists some).
func clientFor(s node.Service) []string { return s.Kind.Clients(s.Settings) }

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

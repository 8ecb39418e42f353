package signature

// Proto is a transport protocol: a port range is striped for it, a service
// has endpoints on it, a signature describes a first packet on it.
type Proto string

const (
	TCP Proto = "tcp"
	UDP Proto = "udp"
)

// Protos lists the protocols in the order every output walks them.
var Protos = []Proto{UDP, TCP}

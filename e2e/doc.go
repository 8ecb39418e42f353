// Package e2e is portstripe's end-to-end suite: real OpenVPN, SSH and TLS
// clients in a client network namespace reach real servers in a node
// namespace through the rules and haproxy.cfg that `portstripe compile`
// writes, applied with the real iptables-restore and HAProxy.
//
// The tests carry the build tag e2e and need root:
//
//	go test -tags e2e ./e2e/...
//
// Flags (after -args): -e2e.seed picks the random ports, -e2e.matrix names the
// file the landing matrix is written to, -e2e.keep keeps the working directory
// with every log, -e2e.update-captured rewrites fixtures/captured/*.hex from
// the first packets this run captured. See README.md.
package e2e

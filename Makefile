.PHONY: bench bench-quick

# Benchmarks (root: network namespaces, iptables, HAProxy, sslh); writes
# BENCHMARKS.md and bench-*.png in the repository root.
bench:
	go run ./bench

bench-quick:
	go run ./bench -quick

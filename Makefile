.PHONY: bench bench-quick deb

# Benchmarks (root: network namespaces, iptables, HAProxy, sslh); writes
# BENCHMARKS.md and bench-*.png in the repository root.
bench:
	go run ./bench

bench-quick:
	go run ./bench -quick

# The Debian package: dist/portstripe_<version>-1_amd64.deb (packaging/deb.sh;
# DIST=dir puts it elsewhere, VERSION=x.y.z overrides the version).
deb:
	packaging/deb.sh

#!/usr/bin/env bash
# The project's test command: installs what the tests need from Debian's
# packages when it is missing, then runs the static checks, the unit tests
# and (as root) the end-to-end tests against the real HAProxy, iptables and
# OpenVPN in network namespaces. CI runs exactly this (.ci/run).
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pair in haproxy:haproxy openvpn:openvpn iptables-restore:iptables socat:socat \
	sshd:openssh-server ssh-keyscan:openssh-client openssl:openssl ip:iproute2 nft:nftables \
	docker-compose:docker-compose sslh:sslh systemd-analyze:systemd setpriv:util-linux capsh:libcap2-bin lintian:lintian \
	curl:curl microsocks:microsocks prosody:prosody go-sendxmpp:go-sendxmpp tincd:tinc ocserv:ocserv \
	openconnect:openconnect wireguard-go:wireguard-go wg:wireguard-tools etcd:etcd-server; do
	cmd=${pair%%:*} pkg=${pair#*:}
	command -v "$cmd" >/dev/null 2>&1 || [ -x "/usr/sbin/$cmd" ] || need+=("$pkg")
done
if [ ${#need[@]} -gt 0 ]; then
	if [ "$(id -u)" -ne 0 ]; then
		echo "test.sh: missing ${need[*]}; run as root (or: sudo apt-get install ${need[*]})" >&2
		exit 1
	fi
	echo "test.sh: installing ${need[*]} from Debian" >&2
	export DEBIAN_FRONTEND=noninteractive
	installed() { dpkg-query -W -f='${db:Status-Abbrev} ${Package}\n' | awk '$1 == "ii" { print $2 }' | sort; }
	before=$(installed)
	apt-get update -qq
	# sslh asks at install time whether to run from inetd; answer standalone.
	echo "sslh sslh/inetd_or_standalone select standalone" | debconf-set-selections
	# etcd-server's postinst starts etcd through its init script (even
	# without systemd) on 127.0.0.1:2379; the tests start their own
	# members. A policy-rc.d of our own forbids that start for the
	# install, unless the machine has one already (containers do).
	policy=""
	if [[ " ${need[*]} " == *" etcd-server "* ]] && [ ! -e /usr/sbin/policy-rc.d ]; then
		policy=/usr/sbin/policy-rc.d
		printf '#!/bin/sh\n# test.sh: no etcd daemon while installing etcd-server\n[ "$1" = etcd ] && exit 101\nexit 0\n' >"$policy"
		chmod 755 "$policy"
		trap 'rm -f "$policy"' EXIT
	fi
	apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
	if [ -n "$policy" ]; then rm -f "$policy"; trap - EXIT; fi
	# Some packages start their own daemons; the tests start their own.
	# Only the daemons of packages this run has just installed are stopped
	# and disabled: on a node that already ran haproxy, ssh or openvpn,
	# nothing of theirs is touched.
	declare -A daemons=([haproxy]="haproxy.service" [openvpn]="openvpn.service"
		[openssh-server]="ssh.service ssh.socket" [sslh]="sslh.service"
		[prosody]="prosody.service" [ocserv]="ocserv.service" [etcd-server]="etcd.service")
	for pkg in $(comm -13 <(echo "$before") <(installed)); do
		for unit in ${daemons[$pkg]:-}; do
			echo "test.sh: stopping and disabling $unit ($pkg was installed just now)" >&2
			systemctl disable --now "$unit" >/dev/null 2>&1 || true
		done
	done
fi
export PATH="$PATH:/usr/sbin:/sbin"

echo "== gofmt, go vet" >&2
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt would change: $unformatted" >&2; exit 1; fi
go vet ./...
go vet -tags e2e ./e2e/...
go vet -tags deb ./packaging/

echo "== unit tests" >&2
go test -count=1 ./...

# Bounded fuzzing of the node loader (any bytes; deep and wide shapes), the
# planner, route and the HAProxy socket answer parsers (show proc, show stat,
# show info): a count of
# executions each (about 10-15 s here), not a duration: Go 1.26's fuzzing
# coordinator can report a bare "context deadline exceeded" failure when a
# -fuzztime duration runs out with a worker mid-call (golang/go#75804, fixed
# in Go 1.27); a count has no deadline to race. -fuzzminimizetime bounds the
# minimising of each new input, which otherwise takes up to a minute.
echo "== fuzzing" >&2
for target in node:FuzzLoad:300000 node:FuzzLoadShapes:10000 plan:FuzzPlan:250000 plan:FuzzRoute:400000 \
	haproxy:FuzzParseProcs:200000 haproxy:FuzzParseStat:200000 haproxy:FuzzParseInfo:200000; do
	IFS=: read -r pkg name execs <<<"$target"
	go test -run='^$' -fuzz="^${name}\$" -fuzztime="${execs}x" -fuzzminimizetime=100x "./${pkg}"
done

if [ "$(id -u)" -eq 0 ]; then
	echo "== end-to-end tests (real HAProxy, iptables, OpenVPN in network namespaces)" >&2
	go test -count=1 -tags e2e -timeout 15m ./e2e/...
	echo "== benchmark smoke run (go run ./bench -quick; the report goes to a temporary directory)" >&2
	bench_out=$(mktemp -d)
	go run ./bench -quick -out "$bench_out" >/dev/null
	grep -q "## Targets" "$bench_out/BENCHMARKS.md"
	rm -rf "$bench_out"

	# The Debian package: packaging/deb.sh (make deb) builds it once; the
	# tests unpack it into a throwaway root (dpkg-deb -x; nothing is
	# installed on this machine) and check its files, --version, a compile
	# of its own node file, lintian, systemd-analyze verify of its unit and
	# the maintainer scripts against recording fakes.
	echo "== Debian package (make deb, checked in a throwaway root)" >&2
	go test -count=1 -tags deb ./packaging/
else
	echo "test.sh: not root, so the end-to-end tests did not run (they need network namespaces)" >&2
	exit 1
fi

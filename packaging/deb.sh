#!/usr/bin/env bash
# Builds $DIST/portstripe_<version>-1_<arch>.deb (make deb; DIST defaults to
# dist): one go build (-trimpath, the version stamped with -ldflags -X), then
# that binary writes the unit, the man pages and the completions it ships,
# and nfpm (pinned below, run from the Go module proxy) packs them with
# packaging/nfpm.yaml. Prints the package's path.
set -euo pipefail
cd "$(dirname "$0")/.."

nfpm=github.com/goreleaser/nfpm/v2/cmd/nfpm@v2.48.0
dist=${DIST:-dist}
if git rev-parse --verify -q HEAD >/dev/null 2>&1; then
	upstream=${VERSION:-$(packaging/version.sh)}
	revision=$(git rev-parse HEAD)
	epoch=$(git log -1 --format=%ct HEAD)
	modified=false
	[ -z "$(git status --porcelain --untracked-files=no)" ] || modified=true
elif [ -n "${VERSION:-}" ]; then
	# A copy without its history: the version given, no revision.
	upstream=$VERSION revision= modified=false epoch=${SOURCE_DATE_EPOCH:-$(date +%s)}
else
	echo "deb.sh: not a git checkout, so no version to give the package: VERSION=x.y.z make deb" >&2
	exit 2
fi
version=$upstream-1 # the Debian revision nfpm.yaml's release adds
short=${revision:0:12}
commit_time=$(TZ=UTC date -d "@$epoch" +%Y-%m-%dT%H:%M:%SZ)
arch=$(go env GOARCH) # Debian's names for amd64 and arm64 are Go's
maintainer=${MAINTAINER:-portstripe maintainers <maintainers@portstripe.invalid>}
# Files, man pages and the changelog carry the commit's time, not the
# build's: two builds of one commit give the same package.
export SOURCE_DATE_EPOCH=$epoch

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
pkg=github.com/portstripe/portstripe/internal/version
# -s -w: Debian ships stripped binaries. CGO_ENABLED=0: nothing in
# portstripe needs libc, so the binary depends on no library version.
CGO_ENABLED=0 go build -trimpath -o "$stage/portstripe" -ldflags "-s -w \
	-X $pkg.version=$version -X $pkg.revision=$revision \
	-X $pkg.commitTime=$commit_time -X $pkg.modified=$modified" ./cmd/portstripe

bin=$stage/portstripe
"$bin" install-unit --print --binary /usr/bin/portstripe -c /etc/portstripe/node.yaml >"$stage/portstripe.service"
"$bin" gen-man "$stage/man"
gzip -9n "$stage"/man/*.1
for sh in bash zsh fish; do
	"$bin" completion "$sh" >"$stage/completion.$sh"
done
{
	echo "portstripe ($version) unstable; urgency=medium"
	echo
	echo "  * Built from commit ${short:-(unknown)}$([ "$modified" = false ] || echo ' with uncommitted changes');"
	echo "    see the repository's history for what changed."
	echo
	echo " -- $maintainer  $(LC_ALL=C date -R -u -d "@$epoch")"
} | gzip -9n >"$stage/changelog.Debian.gz"

mkdir -p "$dist"
deb=$dist/portstripe_${version}_$arch.deb
STAGE=$stage VERSION=$upstream ARCH=$arch MAINTAINER=$maintainer \
	go run "$nfpm" package --config packaging/nfpm.yaml --packager deb --target "$deb" >&2
echo "$deb"

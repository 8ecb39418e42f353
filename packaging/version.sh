#!/bin/sh
# Prints the package version of the checkout: the tag on a tagged commit
# (v1.2.3 gives 1.2.3); past a tag, <tag>+git<commit time>.<revision>; with
# no tag, 0.0.0~git<commit time>.<revision> (~ sorts before any release).
set -eu
rev=$(git rev-parse --short=12 HEAD)
when=$(TZ=UTC git log -1 --date=format-local:%Y%m%d%H%M%S --format=%cd HEAD)
if tag=$(git describe --tags --match 'v[0-9]*' --abbrev=0 2>/dev/null); then
	base=${tag#v}
	if [ "$(git rev-list -n1 "$tag")" = "$(git rev-parse HEAD)" ]; then
		echo "$base"
	else
		echo "$base+git$when.$rev"
	fi
else
	echo "0.0.0~git$when.$rev"
fi

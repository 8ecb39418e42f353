// Package packaging builds portstripe's Debian package: `make deb` runs
// deb.sh, which builds the binary once, has it write the systemd unit, man
// pages and shell completions, and packs them with nfpm (nfpm.yaml). The
// maintainer scripts (postinst, prerm, postrm), the example node file and
// the lintian overrides live here too; README.md says why each is as it is.
//
// The package tests build the package and check it from a throwaway root
// (file list, --version, compile of its own node file, lintian,
// systemd-analyze verify, the maintainer scripts against recording fakes).
// They carry the build tag deb (nfpm comes from the Go module proxy); only
// the example node file's compile runs without it:
//
//	go test -tags deb ./packaging/
package packaging

package node

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addNodeSeeds seeds a fuzz corpus with the example node files, some
// hand-made near misses, and the node files under fixtures/.
func addNodeSeeds(f *testing.F, fixtures string) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join(fixtures, "*.yaml"))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no node files in %s: %v", fixtures, err)
	}
	for _, p := range paths {
		data, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"name: t\naddresses: [198.51.100.2]\nservices:\n  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060}\n",
		"name: t\naddresses: [198.51.100.2]\nservices:\n  - {name: w, kind: tls, sni: [a.example], tcp: 127.0.0.1:443, dedicated: [\"1-10\"]}\n",
		"services: {a: 1}\n",
		"name: [x\n",
		"\x00\xff",
	} {
		f.Add([]byte(s))
	}
}

// FuzzLoad: Parse never panics; what it refuses it refuses with a one-line
// input error; what it accepts has a name and at least one service.
func FuzzLoad(f *testing.F) {
	addNodeSeeds(f, "../fixtures")
	f.Fuzz(func(t *testing.T, data []byte) {
		n, err := Parse(data, "fuzz.yaml", Options{})
		if err != nil {
			if !IsInputError(err) {
				t.Fatalf("%v is not an input error", err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("error is not one line: %q", err)
			}
			return
		}
		if !nameRE.MatchString(n.Name) || len(n.Services) == 0 || len(n.Addresses) == 0 {
			t.Fatalf("accepted an incomplete node: %+v", n)
		}
		for _, s := range n.Services {
			if !nameRE.MatchString(s.Name) {
				t.Fatalf("accepted service name %q", s.Name)
			}
		}
	})
}

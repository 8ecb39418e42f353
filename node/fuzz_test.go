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
	for _, s := range shapes {
		f.Add([]byte(s.gen(64)))
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

// FuzzLoadShapes: deep and wide node files (see shapes), with the
// fuzzer's bytes spliced in anywhere, load or are refused with a one-line
// input error; none panics or hangs the loader.
func FuzzLoadShapes(f *testing.F) {
	for i := range shapes {
		f.Add(uint8(i), uint16(2000), uint32(0), "")
		f.Add(uint8(i), uint16(100), uint32(60), "\n  Name: x\n")
		f.Add(uint8(i), uint16(10), uint32(40), ": &a [*a]")
	}
	f.Fuzz(func(t *testing.T, which uint8, n uint16, at uint32, splice string) {
		data := shapes[int(which)%len(shapes)].gen(int(n) % 2048) // deep-block is n²/2 bytes
		pos := int(at % uint32(len(data)+1))
		checkRefusalOrNode(t, []byte(data[:pos]+splice+data[pos:]))
	})
}

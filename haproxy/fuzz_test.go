package haproxy

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// addAnswerSeeds seeds a corpus with the recorded answers of the real
// HAProxy whose names match pattern, and with short and garbage answers
// of the kind a wrong or broken socket gives.
func addAnswerSeeds(f *testing.F, pattern string) {
	f.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata/real", pattern))
	if err != nil || len(paths) == 0 {
		f.Fatalf("no recorded answers %s: %v", pattern, err)
	}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(string(b))
	}
	for _, s := range []string{"", "\n", "# ", "#", "# \n", "# pxname\n", "Unknown command.\n", "\x00\xff", "# a,b\n\"", "Pid: \n",
		"1 master 0 0d00h00m00s x\n", "99999999999999999999 master 0 0d0h0m0s x\n", "# workers\n"} {
		f.Add(s)
	}
}

// checkErr: a refused answer gives one short line, whatever the answer.
func checkErr(t *testing.T, err error) {
	t.Helper()
	if msg := err.Error(); strings.ContainsAny(msg, "\n\r") || len(msg) > 600 {
		t.Fatalf("error is not one short line (%d bytes): %q", len(msg), msg)
	}
}

// FuzzParseProcs: no answer panics the master CLI parser; what it accepts
// has a master and real pids.
func FuzzParseProcs(f *testing.F) {
	addAnswerSeeds(f, "show-proc-*.txt")
	f.Fuzz(func(t *testing.T, answer string) {
		ps, err := ParseProcs(answer)
		if err != nil {
			checkErr(t, err)
			return
		}
		if ps.Master.Type != "master" {
			t.Fatalf("master line of type %q", ps.Master.Type)
		}
		for _, p := range append(append(append([]Proc{ps.Master}, ps.Workers...), ps.OldWorkers...), ps.Programs...) {
			if p.PID <= 0 {
				t.Fatalf("pid %d accepted", p.PID)
			}
		}
	})
}

// FuzzParseStat: no answer panics the "show stat" parser (a short or
// garbage line once panicked `status`).
func FuzzParseStat(f *testing.F) {
	addAnswerSeeds(f, "show-stat*.txt")
	f.Fuzz(func(t *testing.T, answer string) {
		if _, err := ParseStat(answer); err != nil {
			checkErr(t, err)
		}
	})
}

// FuzzParseInfo: no answer panics the "show info" parser; what it accepts
// has the process id.
func FuzzParseInfo(f *testing.F) {
	addAnswerSeeds(f, "show-info.txt")
	f.Fuzz(func(t *testing.T, answer string) {
		in, err := ParseInfo(answer)
		if err != nil {
			checkErr(t, err)
			return
		}
		if in.Fields["Pid"] == "" {
			t.Fatalf("accepted without a Pid: %+v", in)
		}
	})
}

package haproxy

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// fakeRunner records the commands Check would run and answers from a
// recording of the real haproxy.
type fakeRunner struct {
	missing bool
	out     []byte
	err     error
	calls   [][]string
}

func (f *fakeRunner) LookPath(file string) (string, error) {
	if f.missing {
		return "", &exec.Error{Name: file, Err: exec.ErrNotFound}
	}
	return "/usr/sbin/" + file, nil
}

func (f *fakeRunner) CombinedOutput(_ context.Context, name string, args ...string) ([]byte, error) {
	f.calls = append(f.calls, append([]string{name}, args...))
	return f.out, f.err
}

// exitError is a real *exec.ExitError with status 1.
func exitError(t *testing.T) error {
	t.Helper()
	err := exec.Command("false").Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Skipf("false did not exit non-zero: %v", err)
	}
	return err
}

func TestCheck(t *testing.T) {
	bad, err := os.ReadFile("testdata/real/check-bad.stderr")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name      string
		checker   Checker
		runner    *fakeRunner
		wantCall  []string
		wantErr   string
		wantLines []string
		notFound  bool
	}{
		{
			name:     "valid",
			runner:   &fakeRunner{out: []byte("Configuration file is valid\n")},
			wantCall: []string{"/usr/sbin/haproxy", "-c", "-f", "/etc/x.cfg"},
		},
		{
			name:     "zero warning",
			checker:  Checker{ZeroWarning: true, Binary: "haproxy2.6"},
			runner:   &fakeRunner{out: []byte("Configuration file is valid\n")},
			wantCall: []string{"/usr/sbin/haproxy2.6", "-dW", "-c", "-f", "/etc/x.cfg"},
		},
		{
			name:     "refused, recorded from haproxy 2.6.12",
			runner:   &fakeRunner{out: bad, err: exitError(t)},
			wantCall: []string{"/usr/sbin/haproxy", "-c", "-f", "/etc/x.cfg"},
			wantErr:  "unknown keyword 'bogus_keyword' in 'backend' section",
			wantLines: []string{
				"ALERT: config : parsing [a.cfg:26] : unknown keyword 'bogus_keyword' in 'backend' section",
				"ALERT: config : Error(s) found in configuration file : a.cfg",
				"ALERT: config : Fatal errors found in configuration.",
			},
		},
		{
			name:     "not installed",
			runner:   &fakeRunner{missing: true},
			wantErr:  "not installed",
			notFound: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := tt.checker
			c.Runner = tt.runner
			err := c.Check(context.Background(), "/etc/x.cfg")
			if tt.wantCall != nil && (len(tt.runner.calls) != 1 || !reflect.DeepEqual(tt.runner.calls[0], tt.wantCall)) {
				t.Errorf("ran %q, want %q", tt.runner.calls, tt.wantCall)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatal(err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error containing %q", err, tt.wantErr)
			}
			if errors.Is(err, ErrNotInstalled) != tt.notFound {
				t.Errorf("errors.Is(err, ErrNotInstalled) = %v", !tt.notFound)
			}
			if tt.wantLines != nil {
				var ce *CheckError
				if !errors.As(err, &ce) {
					t.Fatalf("%T is not a *CheckError", err)
				}
				if !reflect.DeepEqual(ce.Lines, tt.wantLines) {
					t.Errorf("lines %q, want %q", ce.Lines, tt.wantLines)
				}
			}
		})
	}
}

func TestMessagesContinuation(t *testing.T) {
	out := `[NOTICE]   (8895) : haproxy version is 2.6.12-1+deb12u4
[WARNING]  (8895) : config : missing timeouts for frontend 'f'.
   | While not properly invalid, you will certainly encounter various problems
   | with such a configuration.
[ALERT]    (8897) : config : Some warnings were found and 'zero-warning' is set. Aborting.
`
	want := []string{
		"WARNING: config : missing timeouts for frontend 'f'. While not properly invalid, you will certainly encounter various problems with such a configuration.",
		"ALERT: config : Some warnings were found and 'zero-warning' is set. Aborting.",
	}
	if got := messages([]byte(out)); !reflect.DeepEqual(got, want) {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

// TestCheckMissingAccount: the real `haproxy -c` refuses a user or group
// the machine lacks; the error names the node file key and what to do.
func TestCheckMissingAccount(t *testing.T) {
	if _, err := exec.LookPath("haproxy"); err != nil {
		t.Skip("haproxy not installed (CI installs it)")
	}
	for _, key := range []string{"user", "group"} {
		t.Run(key, func(t *testing.T) {
			p := loadPlan(t, "")
			if key == "user" {
				p.HAProxy.User = "ps-no-such-user"
			} else {
				p.HAProxy.Group = "ps-no-such-user"
			}
			cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
			if err := os.WriteFile(cfg, Render(p), 0o600); err != nil {
				t.Fatal(err)
			}
			err := Check(context.Background(), cfg)
			want := "haproxy." + key + `: no ` + key + ` "ps-no-such-user" on this machine for HAProxy's workers to run as: install Debian's haproxy package`
			if err == nil || !strings.HasPrefix(err.Error(), want) {
				t.Fatalf("got %v\nwant %s…", err, want)
			}
			var ce *CheckError
			if !errors.As(err, &ce) {
				t.Errorf("%v does not carry HAProxy's messages", err)
			}
		})
	}
	// The seed node's default, haproxy, exists where Debian's package is
	// installed: the same file with it passes.
	cfg := filepath.Join(t.TempDir(), "haproxy.cfg")
	if err := os.WriteFile(cfg, Render(loadPlan(t, "")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Check(context.Background(), cfg); err != nil {
		t.Fatal(err)
	}
}

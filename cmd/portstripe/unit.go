package main

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/templates"
)

// executable is the running binary (a variable so tests can name another).
var executable = os.Executable

func installUnitCmd(nf *nodeFlags) *cobra.Command {
	var (
		path, dir, metrics, binary string
		print                      bool
	)
	c := &cobra.Command{
		Use:   "install-unit [-c node.yaml] [--binary PATH] [--dir DIR] [--path UNIT] [--print]",
		Short: "Write the systemd unit that runs 'portstripe run' for this node",
		Long: `install-unit writes a systemd unit running this binary's 'portstripe run' on
the node file (-c, default ` + defaultNodeFile + `); reload = SIGHUP =
re-apply. The unit is Type=notify with a watchdog, sandboxed (read-only
system, writable state and run directories only, a bounded capability set),
and KillMode=process: stopping or restarting it leaves HAProxy serving.
Then: systemctl daemon-reload && systemctl enable --now portstripe.
With --print it only prints the unit.

The unit runs this binary at its real path, so build it first (go build -o
/usr/local/bin/portstripe ./cmd/portstripe): a 'go run' binary lives in the
build cache and is refused. --binary names another path, one that need not
exist yet (the .deb's unit: --binary /usr/bin/portstripe).`,
		Example: `  portstripe install-unit --print
  portstripe install-unit -c /etc/portstripe/node.yaml
  portstripe install-unit --print --binary /usr/bin/portstripe -c /etc/portstripe/node.yaml`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := unitBinary(binary)
			if err != nil {
				return err
			}
			config := nf.path
			if config == "" {
				config = defaultNodeFile
			}
			// systemd runs the unit in /: relative paths would name other files.
			d := templates.UnitData{Binary: bin, Metrics: metrics}
			if d.Config, err = filepath.Abs(config); err == nil {
				d.Dir, err = filepath.Abs(dir)
			}
			if err != nil {
				return fmt.Errorf("install-unit: %w", err)
			}
			for _, v := range []string{d.Binary, d.Config, d.Dir, d.Metrics} {
				if strings.ContainsAny(v, " \t\n\"'\\%$;") {
					return usageError{fmt.Errorf("install-unit: %q cannot go into a unit file unquoted", v)}
				}
			}
			if rel, err := filepath.Rel("/var/lib", d.Dir); err == nil && rel != "." && !strings.HasPrefix(rel, "..") {
				d.StateDirectory = rel
			}
			var b bytes.Buffer
			if err := templates.Unit.Execute(&b, d); err != nil {
				return fmt.Errorf("install-unit: %w", err)
			}
			if print {
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			if d.StateDirectory == "" {
				// ReadWritePaths= needs it to exist; systemd creates
				// StateDirectory= ones itself.
				if err := os.MkdirAll(d.Dir, 0o700); err != nil {
					return fmt.Errorf("install-unit: %w", err)
				}
			}
			if err := artifact.WriteAll(filepath.Dir(path), map[string][]byte{filepath.Base(path): b.Bytes()}); err != nil {
				return fmt.Errorf("install-unit: %w", err)
			}
			w := cmd.OutOrStdout()
			fmt.Fprintf(w, "wrote %s: runs %s on the node file %s (state in %s)\n", path, bin, d.Config, d.Dir)
			if _, err := os.Stat(d.Config); errors.Is(err, fs.ErrNotExist) {
				fmt.Fprintf(w, "%s does not exist yet: write it (portstripe check -c %s validates it) before starting the unit\n", d.Config, d.Config)
			}
			fmt.Fprintf(w, "now: systemctl daemon-reload && systemctl enable --now %s\n", filepath.Base(path))
			return nil
		},
	}
	c.Flags().StringVar(&path, "path", "/etc/systemd/system/portstripe.service", "where to write the unit")
	c.Flags().StringVar(&dir, "dir", defaultDir, "state directory the unit's run uses")
	c.Flags().StringVar(&metrics, "metrics", "127.0.0.1:9642", "metrics address the unit's run serves")
	c.Flags().BoolVar(&print, "print", false, "print the unit instead of writing it")
	c.Flags().StringVar(&binary, "binary", "", "absolute path of the portstripe binary the unit runs (default: this binary, symlinks resolved); a 'go run' build-cache path is refused")
	return c
}

// unitBinary is the path the unit runs: the one named (--binary), or this
// binary, symlinks resolved; never one that 'go run' (or 'go test') built,
// which goes away with its build cache or work directory.
func unitBinary(named string) (string, error) {
	bin, err := named, error(nil)
	switch {
	case named != "" && !filepath.IsAbs(named):
		return "", usageError{fmt.Errorf("install-unit: --binary %q: want an absolute path (systemd runs ExecStart= as written)", named)}
	case named != "":
		bin = filepath.Clean(named)
	default:
		if bin, err = executable(); err == nil {
			bin, err = filepath.EvalSymlinks(bin)
		}
	}
	if err != nil {
		return "", fmt.Errorf("install-unit: finding this binary: %w", err)
	}
	if goBuildOutput(bin, goBuildDirs()) {
		return "", usageError{fmt.Errorf("install-unit: %s is a temporary 'go run' binary; build it: go build -o /usr/local/bin/portstripe ./cmd/portstripe, then run /usr/local/bin/portstripe install-unit", bin)}
	}
	return bin, nil
}

// buildDirs are where the go command leaves binaries it deletes later.
type buildDirs struct {
	caches []string // the build cache: go run keeps its binaries there (Go 1.24+)
	temps  []string // bases of go-build* work directories
}

func goBuildDirs() buildDirs {
	var d buildDirs
	if c := os.Getenv("GOCACHE"); c != "" {
		d.caches = append(d.caches, c)
	}
	if c, err := os.UserCacheDir(); err == nil {
		d.caches = append(d.caches, filepath.Join(c, "go-build"))
	}
	if t := os.Getenv("GOTMPDIR"); t != "" {
		d.temps = append(d.temps, t)
	}
	d.temps = append(d.temps, os.TempDir(), "/tmp")
	return d
}

// goBuildOutput says whether bin lies in a build cache or a go-build* work
// directory.
func goBuildOutput(bin string, d buildDirs) bool {
	under := func(base string) (string, bool) {
		if r, err := filepath.EvalSymlinks(base); err == nil {
			base = r
		}
		rel, err := filepath.Rel(base, bin)
		return rel, err == nil && !strings.HasPrefix(rel, "..")
	}
	for _, c := range d.caches {
		if _, ok := under(c); ok {
			return true
		}
	}
	for _, t := range d.temps {
		if rel, ok := under(t); ok && strings.HasPrefix(rel, "go-build") {
			return true
		}
	}
	return false
}

package main

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/spf13/cobra"

	"github.com/portstripe/portstripe/artifact"
	"github.com/portstripe/portstripe/templates"
)

func installUnitCmd() *cobra.Command {
	var (
		path, config, dir, metrics string
		print                      bool
	)
	c := &cobra.Command{
		Use:   "install-unit [--config-path FILE] [--path UNIT] [--print]",
		Short: "Write the systemd unit that runs 'portstripe run' for this node",
		Long: `install-unit writes a systemd unit running 'portstripe run' on the node file
(reload = SIGHUP = re-apply). Then: systemctl daemon-reload && systemctl
enable --now portstripe. With --print it only prints the unit.`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			bin, err := os.Executable()
			if err != nil {
				return fmt.Errorf("install-unit: %w", err)
			}
			for _, v := range []string{bin, config, dir, metrics} {
				if strings.ContainsAny(v, " \t\n\"'\\%$") {
					return usageError{fmt.Errorf("install-unit: %q cannot go into a unit file unquoted", v)}
				}
			}
			var b bytes.Buffer
			if err := templates.Unit.Execute(&b, templates.UnitData{Binary: bin, Config: config, Dir: dir, Metrics: metrics}); err != nil {
				return fmt.Errorf("install-unit: %w", err)
			}
			if print {
				_, err := cmd.OutOrStdout().Write(b.Bytes())
				return err
			}
			if err := artifact.WriteAll(filepath.Dir(path), map[string][]byte{filepath.Base(path): b.Bytes()}); err != nil {
				return fmt.Errorf("install-unit: %w", err)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s; now: systemctl daemon-reload && systemctl enable --now %s\n", path, filepath.Base(path))
			return nil
		},
	}
	c.Flags().StringVar(&path, "path", "/etc/systemd/system/portstripe.service", "where to write the unit")
	c.Flags().StringVar(&config, "config-path", "/etc/portstripe/node.yaml", "the node file the unit runs on")
	c.Flags().StringVar(&dir, "dir", defaultDir, "state directory")
	c.Flags().StringVar(&metrics, "metrics", "127.0.0.1:9642", "metrics address")
	c.Flags().BoolVar(&print, "print", false, "print the unit instead of writing it")
	return c
}

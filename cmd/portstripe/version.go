package main

import (
	"fmt"
	"io"
	"os"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"

	"github.com/portstripe/portstripe/internal/version"
)

// toolTimeout bounds each `haproxy -v`, `iptables -V`, `nft -v`.
const toolTimeout = 3 * time.Second

// versionDoc is what `portstripe version -o json` prints.
type versionDoc struct {
	Schema string `json:"schema"`
	version.Info
	Tools []version.Tool `json:"tools"`
}

func versionCmd() *cobra.Command {
	var out outputFormat
	c := &cobra.Command{
		Use:   "version [-o text|json|yaml]",
		Short: "Show this portstripe's version and build, and the HAProxy, iptables and nft it finds",
		Long: `version prints portstripe's version (the package's, or the module's, or
"(devel)" for a build from a checkout), the commit it was built from (and
"modified" when the tree had uncommitted changes), the Go version that built
it, and the version of haproxy, iptables and nft found on PATH ("not found"
when one is missing; each gets ` + toolTimeout.String() + ` to answer).

portstripe --version prints the first line only. The headers of haproxy.cfg
and rules.v4 and the portstripe_build_info metric carry the same version.`,
		Example: `  portstripe version
  portstripe version -o json | jq -r .version`,
		RunE: func(cmd *cobra.Command, _ []string) error {
			r := versionDoc{Schema: schema("version"), Info: version.Get(), Tools: version.Tools(cmd.Context(), toolTimeout)}
			return out.write(cmd.OutOrStdout(), r, func(w io.Writer) error { return versionText(w, r) })
		},
	}
	registerOutput(c, &out)
	return c
}

// versionText is the text form: one "name: version" line each.
func versionText(w io.Writer, r versionDoc) error {
	tw := tabwriter.NewWriter(w, 0, 0, 1, ' ', 0)
	fmt.Fprintf(tw, "portstripe:\t%s\n", r.Info)
	if r.Revision != "" {
		fmt.Fprintf(tw, "commit:\t%s %s\n", r.Revision, r.CommitTime)
	}
	fmt.Fprintf(tw, "go:\t%s\n", r.GoVersion)
	for _, t := range r.Tools {
		switch {
		case !t.Found:
			fmt.Fprintf(tw, "%s:\tnot found on PATH\n", t.Name)
		case t.Error != "":
			fmt.Fprintf(tw, "%s:\t%s (%s)\n", t.Name, t.Error, t.Path)
		default:
			fmt.Fprintf(tw, "%s:\t%s (%s)\n", t.Name, t.Line, t.Path)
		}
	}
	return tw.Flush()
}

// genManCmd writes the man pages the .deb ships (packaging/deb.sh), one
// per command, from the same command tree as --help.
func genManCmd() *cobra.Command {
	return &cobra.Command{
		Use:    "gen-man DIR",
		Short:  "Write a man page per command into DIR (for packaging)",
		Hidden: true,
		Args:   cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			root := cmd.Root()
			// No "Auto generated … on <date>" line: the pages depend only on
			// the commands (and the date on SOURCE_DATE_EPOCH).
			root.DisableAutoGenTag = true
			h := &doc.GenManHeader{Title: "PORTSTRIPE", Section: "1", Source: "portstripe " + version.Get().Version, Manual: "portstripe manual"}
			if err := os.MkdirAll(args[0], 0o755); err != nil {
				return fmt.Errorf("gen-man: %w", err)
			}
			if err := doc.GenManTree(root, h, args[0]); err != nil {
				return fmt.Errorf("gen-man: %w", err)
			}
			return nil
		},
	}
}

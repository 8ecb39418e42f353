package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"strconv"

	"github.com/spf13/cobra"
	"go.yaml.in/yaml/v3"
)

// outputFormat is the -o flag of every command whose output a script
// reads: text for people; json and yaml print one document whose
// "schema" names the command and the version of its shape (docs/json.md).
type outputFormat string

const (
	textOutput outputFormat = "text"
	jsonOutput outputFormat = "json"
	yamlOutput outputFormat = "yaml"
)

var outputFormats = []string{string(textOutput), string(jsonOutput), string(yamlOutput)}

func (o *outputFormat) String() string { return string(*o) }
func (o *outputFormat) Type() string   { return "format" }

func (o *outputFormat) Set(s string) error {
	switch f := outputFormat(s); f {
	case textOutput, jsonOutput, yamlOutput:
		*o = f
		return nil
	}
	return fmt.Errorf("want text, json or yaml")
}

// jsonAlias is the --json flag scripts written before -o use: -o json.
type jsonAlias struct{ o *outputFormat }

func (a jsonAlias) String() string { return strconv.FormatBool(*a.o == jsonOutput) }
func (a jsonAlias) Type() string   { return "bool" }

func (a jsonAlias) Set(s string) error {
	on, err := strconv.ParseBool(s)
	if err != nil {
		return err
	}
	*a.o = textOutput
	if on {
		*a.o = jsonOutput
	}
	return nil
}

// registerOutput adds -o text|json|yaml and the hidden --json to c.
func registerOutput(c *cobra.Command, o *outputFormat) {
	*o = textOutput
	c.Flags().VarP(o, "output", "o", "output format: text, json or yaml (one document with a versioned \"schema\"; docs/json.md); --json is short for -o json")
	c.Flags().Var(jsonAlias{o}, "json", "same as -o json")
	c.Flags().Lookup("json").NoOptDefVal = "true"
	_ = c.Flags().MarkHidden("json")
	completeValues(c, "output", outputFormats...)
}

// schema names a command's document and the version of its shape: a new
// version only when a field changes meaning or goes; added fields keep it.
func schema(command string) string { return "portstripe." + command + "/v1" }

// write prints doc in the format asked for, or calls text.
func (o outputFormat) write(w io.Writer, doc any, text func(io.Writer) error) error {
	switch o {
	case jsonOutput:
		enc := json.NewEncoder(w)
		enc.SetIndent("", "  ")
		return enc.Encode(doc)
	case yamlOutput:
		return writeYAML(w, doc)
	}
	return text(w)
}

// writeYAML prints doc as YAML converted from its JSON, so the two formats
// never disagree on a name or a value.
func writeYAML(w io.Writer, doc any) error {
	data, err := json.Marshal(doc)
	if err != nil {
		return err
	}
	var n yaml.Node
	if err := yaml.Unmarshal(data, &n); err != nil {
		return err
	}
	blockStyle(&n)
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(&n); err != nil {
		return err
	}
	if err := enc.Close(); err != nil {
		return err
	}
	_, err = w.Write(buf.Bytes())
	return err
}

// blockStyle drops the flow style and quotes JSON's syntax gives every
// node; the encoder still quotes a string that would read as another type.
func blockStyle(n *yaml.Node) {
	n.Style = 0
	for _, c := range n.Content {
		blockStyle(c)
	}
}

// completeValues makes the shell complete flag's value from values (and
// never from file names).
func completeValues(c *cobra.Command, flag string, values ...string) {
	_ = c.RegisterFlagCompletionFunc(flag, cobra.FixedCompletions(values, cobra.ShellCompDirectiveNoFileComp))
}

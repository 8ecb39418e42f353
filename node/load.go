package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"reflect"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/portstripe/portstripe/fixtures"
	"github.com/portstripe/portstripe/internal/safefile"
	"github.com/portstripe/portstripe/signature"
)

// MaxFileSize bounds what Load reads: a node file is a few kilobytes, and a
// huge one is a mistake (or an attack) rather than a node.
const MaxFileSize = 4 << 20

// EnvPrefix prefixes the environment variables that override node file keys:
// PORTSTRIPE_HAPROXY_INSPECT_DELAY=2s overrides haproxy.inspect_delay.
const EnvPrefix = "PORTSTRIPE"

// FieldError is an input error located by its field path in the node file.
type FieldError struct {
	Path string
	Msg  string
}

func (e *FieldError) Error() string {
	if e.Path == "" {
		return e.Msg
	}
	return e.Path + ": " + e.Msg
}

func fieldErr(path, format string, args ...any) error {
	return &FieldError{Path: path, Msg: fmt.Sprintf(format, args...)}
}

// IsInputError reports whether err is the operator's input being wrong (a
// node file that does not load, validate or plan), as opposed to the machine.
func IsInputError(err error) bool {
	var fe *FieldError
	return errors.As(err, &fe)
}

// file is the node file as written; every scalar is kept as text so that
// validate can say, with the field path, what is wrong with it. The yaml
// tags are the exact key names; scalar says which YAML scalars a field takes
// besides text (see schema.go).
type file struct {
	Name string `yaml:"name"`
	// Firewall picks the backend; left out of the settings hash when
	// unset, so adding the key changed no existing node's hash.
	Firewall  string        `yaml:"firewall" json:",omitempty"`
	Addresses []string      `yaml:"addresses"`
	Striped   protoPorts    `yaml:"striped"`
	Reserved  []string      `yaml:"reserved" scalar:"int"`
	HAProxy   haproxyFile   `yaml:"haproxy"`
	Defaults  protoDefaults `yaml:"defaults"`
	Services  []serviceFile `yaml:"services"`
}

type protoPorts struct {
	TCP []string `yaml:"tcp" scalar:"int"`
	UDP []string `yaml:"udp" scalar:"int"`
}

type protoDefaults struct {
	TCP string `yaml:"tcp"`
	UDP string `yaml:"udp"`
}

type haproxyFile struct {
	ListenPort    string       `yaml:"listen_port" scalar:"int"`
	InspectDelay  string       `yaml:"inspect_delay"`
	HardStopAfter string       `yaml:"hard_stop_after"`
	Log           string       `yaml:"log"`
	LogRate       string       `yaml:"log_rate" scalar:"int"`
	Timeouts      timeoutsFile `yaml:"timeouts"`
	MaxConn       string       `yaml:"maxconn" scalar:"int"`
	RunDir        string       `yaml:"run_dir"`
	MasterSocket  string       `yaml:"master_socket"`
	RuntimeSocket string       `yaml:"runtime_socket"`
	User          string       `yaml:"user"`
	Group         string       `yaml:"group"`
}

type timeoutsFile struct {
	Connect string `yaml:"connect"`
	Client  string `yaml:"client"`
	Server  string `yaml:"server"`
}

type serviceFile struct {
	Name string           `yaml:"name"`
	Kind string           `yaml:"kind"`
	TLS  signature.RawTLS `yaml:"tls"`
	SNI  []string         `yaml:"sni"`
	// ALPN and the keys after it are left out of the settings hash when
	// unset, so adding them changed no existing node's hash.
	ALPN     []string            `yaml:"alpn" json:",omitempty"`
	Custom   signature.RawCustom `yaml:"custom" json:",omitzero"`
	UDP      string              `yaml:"udp" scalar:"int"`
	TCP      string              `yaml:"tcp"`
	Striped  string              `yaml:"striped" scalar:"bool"`
	Disabled string              `yaml:"disabled" scalar:"bool"`
	Check    string              `yaml:"check"`
	// ClientAddress is how the TCP backend learns the client's address;
	// left out of the settings hash when unset, so adding the key changed
	// no existing node's hash.
	ClientAddress string   `yaml:"client_address" json:",omitempty"`
	Dedicated     []string `yaml:"dedicated" scalar:"int"`
}

// defaultFile holds the values a node file may leave out; what the file
// sets replaces them key by key (a list whole).
func defaultFile() file {
	return file{
		Striped:  protoPorts{TCP: []string{"1-29999"}, UDP: []string{"1-29999"}},
		Reserved: []string{"30000-65535"},
		HAProxy: haproxyFile{
			ListenPort:    "20000",
			InspectDelay:  "5s",
			HardStopAfter: "1h",
			Log:           LogFile,
			LogRate:       "100",
			Timeouts:      timeoutsFile{Connect: "5s", Client: "1h", Server: "1h"},
			MaxConn:       "4096",
			RunDir:        "/run/portstripe",
			MasterSocket:  "/run/portstripe/haproxy-master.sock",
			RuntimeSocket: "/run/portstripe/haproxy.sock",
			User:          "haproxy",
			Group:         "haproxy",
		},
		Defaults: protoDefaults{TCP: Reject, UDP: Reject},
	}
}

// Options say where a node comes from besides its file.
type Options struct {
	// Path is the node file; empty loads the built-in seed node.
	Path string
	// Set holds key=value overrides (from --set), applied over file and env.
	Set map[string]string
	// Env enables PORTSTRIPE_* environment overrides.
	Env bool
}

// Override is one setting that does not come from the node file: what a
// reviewer of the file does not see, so every output names it.
type Override struct {
	Key   string `json:"key"`
	Value string `json:"value"`
	// From is "--set" or the environment variable's name.
	From string `json:"from"`
}

// String is how headers show an override: the value quoted, so it stays on
// its line.
func (o Override) String() string { return fmt.Sprintf("%s=%q (%s)", o.Key, o.Value, o.From) }

// Load reads, decodes strictly and validates a node file.
func Load(o Options) (*Node, error) {
	data, source := fixtures.SeedNode, fixtures.SeedNodeName
	if o.Path != "" {
		var err error
		if data, err = safefile.Read(o.Path, MaxFileSize); err != nil {
			if errors.Is(err, safefile.ErrTooLarge) {
				return nil, &FieldError{Msg: fmt.Sprintf("node file %s: larger than %d bytes; a node file is YAML of a few kilobytes", o.Path, MaxFileSize)}
			}
			return nil, &FieldError{Msg: fmt.Sprintf("node file: %v", err)}
		}
		source = o.Path
	}
	return Parse(data, source, o)
}

// Parse decodes and validates node file bytes; source names them in errors
// and headers. The file is decoded strictly first (one YAML document, exact
// keys, each once, typed scalars), then the environment and --set override
// it through the same schema.
func Parse(data []byte, source string, o Options) (*Node, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s is empty; see fixtures/seed-node.yaml for an example", source)}
	}
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s is not text (binary or not UTF-8); a node file is YAML", source)}
	}
	root, err := document(data, source)
	if err != nil {
		return nil, err
	}
	f := defaultFile()
	if err := decode(root, reflect.ValueOf(&f).Elem(), "", ""); err != nil {
		return nil, err
	}
	return build(&f, data, source, o)
}

// build validates a decoded node file (data are its bytes) with the
// environment and --set applied.
func build(f *file, data []byte, source string, o Options) (*Node, error) {
	overrides, err := applyOverrides(f, o)
	if err != nil {
		return nil, err
	}
	n, err := validate(f)
	if err != nil {
		return nil, blame(err, overrides)
	}
	// JSON, not YAML: yaml.v3's encoder is quadratic in a long list.
	settings, err := json.Marshal(f)
	if err != nil {
		return nil, fmt.Errorf("encode the effective settings: %w", err)
	}
	n.Source, n.SHA256, n.SettingsSHA256, n.Overrides = source, sha256Hex(data), sha256Hex(settings), overrides
	return n, nil
}

// document parses data as exactly one YAML document whose top is a map.
func document(data []byte, source string) (*yaml.Node, error) {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	var doc yaml.Node
	err := dec.Decode(&doc)
	if errors.Is(err, io.EOF) {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s is empty (comments only); see fixtures/seed-node.yaml for an example", source)}
	}
	if err != nil {
		return nil, notYAML(source, err)
	}
	var next yaml.Node
	switch err := dec.Decode(&next); {
	case err == nil:
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s holds a second YAML document (after ---, line %d); a node file is one document", source, next.Line)}
	case !errors.Is(err, io.EOF):
		return nil, notYAML(source, err)
	}
	if len(doc.Content) == 0 || doc.Content[0].Kind != yaml.MappingNode {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s is not a map of keys (want %s)", source, strings.Join(keys(reflect.TypeFor[file]()), ", "))}
	}
	return doc.Content[0], nil
}

func notYAML(source string, err error) error {
	return &FieldError{Msg: fmt.Sprintf("node file %s is not valid YAML: %s", source, oneLine(strings.TrimPrefix(err.Error(), "yaml: ")))}
}

// applyOverrides sets the PORTSTRIPE_* variables, then the --set keys (so
// --set wins), each in sorted order, and returns them as applied.
func applyOverrides(f *file, o Options) ([]Override, error) {
	var all []Override
	if o.Env {
		// viper names the variables: haproxy.inspect_delay is
		// PORTSTRIPE_HAPROXY_INSPECT_DELAY; an empty one counts as unset.
		v := viper.New()
		v.SetEnvPrefix(EnvPrefix)
		v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
		names := envKeys(reflect.TypeFor[file](), "")
		slices.Sort(names)
		for _, k := range names {
			if err := v.BindEnv(k); err != nil {
				return nil, fmt.Errorf("environment key %s: %w", k, err)
			}
			if v.IsSet(k) {
				all = append(all, Override{Key: k, Value: v.GetString(k), From: EnvName(k)})
			}
		}
	}
	for _, k := range slices.Sorted(maps.Keys(o.Set)) {
		all = append(all, Override{Key: k, Value: o.Set[k], From: "--set"})
	}
	root := reflect.ValueOf(f).Elem()
	for i, ov := range all {
		path, err := override(root, ov.Key, ov.Value)
		if err != nil {
			var fe *FieldError
			if errors.As(err, &fe) {
				fe.Msg = ov.From + ": " + fe.Msg
			}
			return nil, err
		}
		all[i].Key = path
	}
	return all, nil
}

// blame adds to a validation error the override that set its key, which
// the node file does not show.
func blame(err error, overrides []Override) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return err
	}
	for _, ov := range slices.Backward(overrides) {
		if fe.Path == ov.Key || strings.HasPrefix(fe.Path, ov.Key+".") || strings.HasPrefix(fe.Path, ov.Key+"[") {
			fe.Msg += " (set by " + ov.From + ")"
			break
		}
	}
	return err
}

// EnvName is the environment variable that overrides key.
func EnvName(key string) string {
	return EnvPrefix + "_" + strings.ToUpper(strings.ReplaceAll(key, ".", "_"))
}

func sha256Hex(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

package node

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"reflect"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"unicode/utf8"

	"github.com/spf13/viper"

	"github.com/portstripe/portstripe/fixtures"
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

// file is the node file as written; every scalar is read as a string so that
// validate can say, with the field path, what is wrong with it.
type file struct {
	Name      string        `mapstructure:"name"`
	Addresses []string      `mapstructure:"addresses"`
	Striped   protoPorts    `mapstructure:"striped"`
	Reserved  []string      `mapstructure:"reserved"`
	HAProxy   haproxyFile   `mapstructure:"haproxy"`
	Defaults  protoDefaults `mapstructure:"defaults"`
	Services  []serviceFile `mapstructure:"services"`
}

type protoPorts struct {
	TCP []string `mapstructure:"tcp"`
	UDP []string `mapstructure:"udp"`
}

type protoDefaults struct {
	TCP string `mapstructure:"tcp"`
	UDP string `mapstructure:"udp"`
}

type haproxyFile struct {
	ListenPort    string       `mapstructure:"listen_port"`
	InspectDelay  string       `mapstructure:"inspect_delay"`
	Timeouts      timeoutsFile `mapstructure:"timeouts"`
	MaxConn       string       `mapstructure:"maxconn"`
	MasterSocket  string       `mapstructure:"master_socket"`
	RuntimeSocket string       `mapstructure:"runtime_socket"`
}

type timeoutsFile struct {
	Connect string `mapstructure:"connect"`
	Client  string `mapstructure:"client"`
	Server  string `mapstructure:"server"`
}

type serviceFile struct {
	Name      string   `mapstructure:"name"`
	Kind      string   `mapstructure:"kind"`
	TLS       tlsFile  `mapstructure:"tls"`
	SNI       []string `mapstructure:"sni"`
	UDP       string   `mapstructure:"udp"`
	TCP       string   `mapstructure:"tcp"`
	Striped   string   `mapstructure:"striped"`
	Disabled  string   `mapstructure:"disabled"`
	Dedicated []string `mapstructure:"dedicated"`
}

type tlsFile struct {
	Mode   string `mapstructure:"mode"`
	Digest string `mapstructure:"digest"`
}

// defaults are the values a node file may leave out.
var defaults = map[string]any{
	"striped.tcp":              []string{"1-29999"},
	"striped.udp":              []string{"1-29999"},
	"reserved":                 []string{"30000-65535"},
	"haproxy.listen_port":      "20000",
	"haproxy.inspect_delay":    "5s",
	"haproxy.timeouts.connect": "5s",
	"haproxy.timeouts.client":  "1h",
	"haproxy.timeouts.server":  "1h",
	"haproxy.maxconn":          "4096",
	"haproxy.master_socket":    "/run/portstripe/haproxy-master.sock",
	"haproxy.runtime_socket":   "/run/portstripe/haproxy.sock",
	"defaults.tcp":             Reject,
	"defaults.udp":             Reject,
	"name":                     "",
	"addresses":                []string{},
	"services":                 []any{},
}

// DefaultKeys lists the keys that have defaults, sorted; they are also the
// keys the environment can override.
func DefaultKeys() []string {
	keys := make([]string, 0, len(defaults))
	for k := range defaults {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
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

// Load reads, decodes strictly and validates a node file.
func Load(o Options) (*Node, error) {
	data, source := fixtures.SeedNode, fixtures.SeedNodeName
	if o.Path != "" {
		var err error
		if data, err = readFile(o.Path); err != nil {
			return nil, err
		}
		source = o.Path
	}
	return Parse(data, source, o)
}

func readFile(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, &FieldError{Msg: fmt.Sprintf("node file: %v", err)}
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
	if err != nil {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s: %v", path, err)}
	}
	if len(data) > MaxFileSize {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s: larger than %d bytes; a node file is YAML of a few kilobytes", path, MaxFileSize)}
	}
	return data, nil
}

// Parse decodes and validates node file bytes; source names them in errors
// and headers.
func Parse(data []byte, source string, o Options) (*Node, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s is empty; see fixtures/seed-node.yaml for an example", source)}
	}
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s is not text (binary or not UTF-8); a node file is YAML", source)}
	}
	v := viper.New()
	v.SetConfigType("yaml")
	for k, d := range defaults {
		v.SetDefault(k, d)
	}
	if o.Env {
		v.SetEnvPrefix(EnvPrefix)
		v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
		v.AutomaticEnv()
	}
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		return nil, &FieldError{Msg: fmt.Sprintf("node file %s is not valid YAML: %s", source, oneLine(err.Error()))}
	}
	keys := make([]string, 0, len(o.Set))
	for k := range o.Set {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := override(v, k, o.Set[k]); err != nil {
			return nil, err
		}
	}
	if err := walkKeys("", v.AllSettings(), reflect.TypeOf(file{})); err != nil {
		return nil, err
	}
	var f file
	if err := v.UnmarshalExact(&f); err != nil {
		return nil, decodeError(err)
	}
	n, err := validate(&f)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(data)
	n.Source, n.SHA256 = source, hex.EncodeToString(sum[:])
	return n, nil
}

// override sets one --set key. A key may index a list
// ("services[1].disabled", "striped.tcp[0]"): viper's Set knows only map
// keys, so the list is copied with the one value changed and set whole.
func override(v *viper.Viper, key, value string) error {
	head, rest, indexed := strings.Cut(key, "[")
	if !indexed {
		v.Set(key, value)
		return nil
	}
	changed, err := setIn(v.Get(head), "["+rest, value, head)
	if err != nil {
		return err
	}
	v.Set(head, changed)
	return nil
}

// setIn returns a copy of val with value put at path ("[2].tls.mode"); at
// is the field path so far, for errors.
func setIn(val any, path, value, at string) (any, error) {
	switch {
	case path == "":
		return value, nil
	case strings.HasPrefix(path, "["):
		end := strings.IndexByte(path, ']')
		if end < 0 {
			return nil, fieldErr(at, "--set: %q has no closing ]", path)
		}
		list, ok := val.([]any)
		if !ok {
			return nil, fieldErr(at, "--set: not a list, so it takes no [index]")
		}
		i, err := strconv.Atoi(path[1:end])
		if err != nil || i < 0 || i >= len(list) {
			return nil, fieldErr(at+path[:end+1], "--set: no such entry (%s has %d, from [0])", at, len(list))
		}
		at = fmt.Sprintf("%s[%d]", at, i)
		elem, err := setIn(list[i], path[end+1:], value, at)
		if err != nil {
			return nil, err
		}
		list = slices.Clone(list)
		list[i] = elem
		return list, nil
	case strings.HasPrefix(path, "."):
		key := path[1:]
		if i := strings.IndexAny(key, ".["); i >= 0 {
			key = key[:i]
		}
		m, ok := val.(map[string]any)
		if val == nil {
			m, ok = map[string]any{}, true // a key the file leaves out
		}
		if !ok || key == "" {
			return nil, fieldErr(at, "--set: not a map, so it takes no .key")
		}
		elem, err := setIn(m[key], path[1+len(key):], value, join(at, key))
		if err != nil {
			return nil, err
		}
		m = maps.Clone(m)
		m[key] = elem
		return m, nil
	}
	return nil, fieldErr(at, "--set: want .key or [index] after it, got %q", path)
}

// walkKeys reports the first key (in sorted order) the node file format does
// not know, with its field path; viper would otherwise drop it silently.
func walkKeys(path string, val any, t reflect.Type) error {
	switch t.Kind() {
	case reflect.Struct:
		m, ok := val.(map[string]any)
		if !ok {
			return nil // a type error; UnmarshalExact reports it
		}
		fields := map[string]reflect.Type{}
		var allowed []string
		for i := 0; i < t.NumField(); i++ {
			tag := t.Field(i).Tag.Get("mapstructure")
			fields[tag] = t.Field(i).Type
			allowed = append(allowed, tag)
		}
		keys := make([]string, 0, len(m))
		for k := range m {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			ft, ok := fields[k]
			if !ok {
				return fieldErr(join(path, k), "unknown key (allowed here: %s)", strings.Join(allowed, ", "))
			}
			if err := walkKeys(join(path, k), m[k], ft); err != nil {
				return err
			}
		}
	case reflect.Slice:
		items, ok := val.([]any)
		if !ok {
			return nil
		}
		for i, it := range items {
			if err := walkKeys(fmt.Sprintf("%s[%d]", path, i), it, t.Elem()); err != nil {
				return err
			}
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// decodeError turns mapstructure's multi-line report into one line with the
// field path first: "services[0].sni: expected a list, got a map".
func decodeError(err error) error {
	msg := err.Error()
	for _, line := range strings.Split(msg, "\n") {
		line = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(line), "*"))
		if !strings.HasPrefix(line, "'") {
			continue
		}
		path, rest, ok := strings.Cut(line[1:], "'")
		if !ok {
			continue
		}
		rest = strings.TrimSpace(rest)
		if i := strings.Index(rest, ", value:"); i >= 0 {
			rest = rest[:i]
		}
		if m := typeMismatch.FindStringSubmatch(rest); m != nil {
			return fieldErr(path, "wrong type: want %s, got %s", typeWord(m[1]), typeWord(m[2]))
		}
		return fieldErr(path, "wrong type: %s", rest)
	}
	return &FieldError{Msg: "node file: " + oneLine(msg)}
}

// typeMismatch matches mapstructure's "expected type 'string', got
// unconvertible type '[]interface {}'" and "expected a map or struct, got
// \"int\"", whose Go type names mean nothing to an operator.
var typeMismatch = regexp.MustCompile(`^expected (?:type )?['"]?([^'",]+)['"]?, got (?:unconvertible type )?['"]?([^'"]+)['"]?$`)

// typeWord names a Go type as YAML knows it.
func typeWord(goType string) string {
	switch t := strings.TrimPrefix(strings.TrimSpace(goType), "a "); {
	case t == "string":
		return "a single value (text or number)"
	case strings.HasPrefix(t, "[]") || t == "slice":
		return "a list"
	case strings.HasPrefix(t, "map") || t == "struct":
		return "a map (key: value)"
	case strings.HasPrefix(t, "int") || strings.HasPrefix(t, "uint") || strings.HasPrefix(t, "float"):
		return "a number"
	case t == "bool":
		return "true or false"
	default:
		return t
	}
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

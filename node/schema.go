package node

import (
	"bytes"
	"fmt"
	"reflect"
	"regexp"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"

	clipper "github.com/portstripe/portstripe/internal/clip"
)

// The node file's schema is the file struct itself: a struct is a map whose
// keys are the yaml tags, exactly (case-sensitive); a slice is a list; a
// string takes text, and also a YAML number or boolean where its scalar tag
// says so ("int", "bool"). decode walks the parsed YAML against it before
// anything is merged, and override puts --set and PORTSTRIPE_* values
// through the same schema, so all three refuse the same things.
//
// The walk descends only as deep as the schema (services[0].tls.mode is the
// deepest key), so a deeply nested or very wide value is refused where it
// stops fitting, without being looked into; yaml.v3 itself parses in linear
// time and stops at 10,000 levels.

// coreTags are the YAML tags a node file may spell out (!!str 443).
var coreTags = map[string]bool{
	"!!str": true, "!!int": true, "!!bool": true, "!!float": true,
	"!!null": true, "!!map": true, "!!seq": true,
}

// decode sets v from the YAML node n, which sits at path in the file.
func decode(n *yaml.Node, v reflect.Value, path, scalar string) error {
	if n.Kind == yaml.AliasNode || n.Anchor != "" {
		return fieldErr(path, "YAML anchors and aliases (&name, *name) are not allowed in a node file; write the value out")
	}
	if n.Style&yaml.TaggedStyle != 0 && !coreTags[n.Tag] {
		return fieldErr(path, "YAML tag %s is not allowed (only !!str, !!int, !!bool, !!float, !!null, !!map, !!seq)", clip(n.Tag))
	}
	switch v.Kind() {
	case reflect.Struct:
		if n.Kind != yaml.MappingNode {
			return wrongType(path, v.Type(), scalar, n)
		}
		return decodeMap(n, v, path)
	case reflect.Map:
		if n.Kind != yaml.MappingNode {
			return wrongType(path, v.Type(), scalar, n)
		}
		return decodeLabels(n, v, path, scalar)
	case reflect.Slice:
		if n.Kind != yaml.SequenceNode {
			return wrongType(path, v.Type(), scalar, n)
		}
		s := reflect.MakeSlice(v.Type(), len(n.Content), len(n.Content))
		for i, item := range n.Content {
			if err := decode(item, s.Index(i), fmt.Sprintf("%s[%d]", path, i), scalar); err != nil {
				return err
			}
		}
		v.Set(s)
		return nil
	}
	if n.Kind != yaml.ScalarNode || !takes(scalar, n.ShortTag()) {
		return wrongType(path, v.Type(), scalar, n)
	}
	v.SetString(n.Value)
	return nil
}

// takes reports whether a string field with that scalar tag takes a YAML
// scalar of that (resolved) tag. Text always: overrides are text too.
func takes(scalar, tag string) bool {
	switch tag {
	case "!!str", "!!timestamp": // 2026-12-01 unquoted is still text to us
		return true
	case "!!int":
		return scalar == "int"
	case "!!bool":
		return scalar == "bool"
	}
	return false // !!float, !!null
}

func decodeMap(n *yaml.Node, v reflect.Value, path string) error {
	line := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		if k.ShortTag() == "!!merge" {
			return fieldErr(keyPath(path, k.Value), "YAML merge keys are not allowed in a node file; write the keys out")
		}
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" || k.Anchor != "" || k.Style&yaml.TaggedStyle != 0 {
			return fieldErr(path, "the key on line %d is not a plain name (want one of: %s)", k.Line, strings.Join(keys(v.Type()), ", "))
		}
		at := keyPath(path, k.Value)
		f, err := field(v.Type(), k.Value, at)
		if err != nil {
			return err
		}
		if first, dup := line[k.Value]; dup {
			return fieldErr(at, "duplicate key (first on line %d); a key appears once", first)
		}
		line[k.Value] = k.Line
		if err := decode(val, v.Field(f), at, v.Type().Field(f).Tag.Get("scalar")); err != nil {
			return err
		}
	}
	return nil
}

// decodeLabels sets a map of plain names to scalars (a fleet node's labels).
func decodeLabels(n *yaml.Node, v reflect.Value, path, scalar string) error {
	m := reflect.MakeMapWithSize(v.Type(), len(n.Content)/2)
	line := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, val := n.Content[i], n.Content[i+1]
		at := keyPath(path, k.Value)
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" || k.Style&yaml.TaggedStyle != 0 || !plainKey.MatchString(k.Value) {
			return fieldErr(at, "the key on line %d is not a plain name (1-40 characters from A-Z a-z 0-9 _ -)", k.Line)
		}
		if first, dup := line[k.Value]; dup {
			return fieldErr(at, "duplicate key (first on line %d); a key appears once", first)
		}
		line[k.Value] = k.Line
		e := reflect.New(v.Type().Elem()).Elem()
		if err := decode(val, e, at, scalar); err != nil {
			return err
		}
		m.SetMapIndex(reflect.ValueOf(k.Value), e)
	}
	v.Set(m)
	return nil
}

// encode writes the YAML of a schema struct, the inverse of decode, in the
// style of a hand-written node file: a map per line (indented by two), a
// list of values as [a, b], a list of maps one {k: v} per line. Empty
// text, lists and maps are left out; a number or boolean where the scalar
// tag takes one is written plain, other text quoted unless it can only be
// read as text. Written directly rather than through yaml.v3's encoder,
// which took a quarter of a fleet compile; TestEncodeRoundTrip decodes
// what it writes.
func encode(b *bytes.Buffer, v reflect.Value, indent string) {
	for i := range v.NumField() {
		f, fv := v.Type().Field(i), v.Field(i)
		if empty(fv) {
			continue
		}
		b.WriteString(indent + f.Tag.Get("yaml") + ":")
		switch {
		case fv.Kind() == reflect.Struct:
			b.WriteString("\n")
			encode(b, fv, indent+"  ")
		case fv.Kind() == reflect.Slice && fv.Type().Elem().Kind() == reflect.Struct:
			b.WriteString("\n")
			for k := range fv.Len() {
				b.WriteString(indent + "  - ")
				flow(b, fv.Index(k), "")
				b.WriteString("\n")
			}
		default:
			b.WriteString(" ")
			flow(b, fv, f.Tag.Get("scalar"))
			b.WriteString("\n")
		}
	}
}

// flow writes a value on one line: {k: v, …}, [a, b] or a scalar.
func flow(b *bytes.Buffer, v reflect.Value, scalar string) {
	switch v.Kind() {
	case reflect.Struct:
		b.WriteString("{")
		first := true
		for i := range v.NumField() {
			if empty(v.Field(i)) {
				continue
			}
			if !first {
				b.WriteString(", ")
			}
			first = false
			b.WriteString(v.Type().Field(i).Tag.Get("yaml") + ": ")
			flow(b, v.Field(i), v.Type().Field(i).Tag.Get("scalar"))
		}
		b.WriteString("}")
	case reflect.Slice:
		b.WriteString("[")
		for i := range v.Len() {
			if i > 0 {
				b.WriteString(", ")
			}
			flow(b, v.Index(i), scalar)
		}
		b.WriteString("]")
	default:
		b.WriteString(scalarText(v.String(), scalar))
	}
}

func empty(v reflect.Value) bool {
	switch v.Kind() {
	case reflect.Struct:
		for i := range v.NumField() {
			if !empty(v.Field(i)) {
				return false
			}
		}
		return true
	case reflect.Slice:
		return v.IsNil()
	case reflect.Map:
		return v.Len() == 0
	}
	return v.String() == ""
}

// plainText is text YAML can only read as text, in a block and in a flow:
// a name, a word with dots, dashes and slashes, not starting with a digit
// (1e3, 0x10, 2026-12-01 read otherwise).
var plainText = regexp.MustCompile(`^[A-Za-z_/][A-Za-z0-9_./-]*$`)

// yamlWords read as booleans or null somewhere in YAML 1.1 or 1.2.
var yamlWords = map[string]bool{"true": true, "false": true, "null": true, "yes": true, "no": true, "on": true, "off": true, "y": true, "n": true}

func scalarText(s, scalar string) string {
	switch {
	case scalar == "int" && strconv.Itoa(atoi(s)) == s,
		scalar == "bool" && (s == "true" || s == "false"),
		plainText.MatchString(s) && !yamlWords[strings.ToLower(s)]:
		return s
	}
	return strconv.Quote(s) // a JSON string, which YAML reads as a double-quoted scalar
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}

// merge sets in dst what src sets (text that is not empty, a list that is
// given, even empty), key by key and a list whole: how a fleet node's
// overrides replace the shared plan's keys.
func merge(dst, src reflect.Value) {
	switch src.Kind() {
	case reflect.Struct:
		for i := range src.NumField() {
			merge(dst.Field(i), src.Field(i))
		}
	case reflect.Slice:
		if !src.IsNil() {
			dst.Set(src)
		}
	default:
		if src.String() != "" {
			dst.Set(src)
		}
	}
}

// field finds the struct field for a key, or says why there is none.
func field(t reflect.Type, key, at string) (int, error) {
	for i := range t.NumField() {
		if t.Field(i).Tag.Get("yaml") == key {
			return i, nil
		}
	}
	allowed := keys(t)
	for _, k := range allowed {
		if strings.EqualFold(k, key) {
			return 0, fieldErr(at, "unknown key (keys are case-sensitive: did you mean %s?)", k)
		}
	}
	if head, rest, dotted := strings.Cut(key, "."); dotted {
		for _, k := range allowed {
			if k == head {
				return 0, fieldErr(at, "unknown key (a key with a dot is not a path: write %s: {%s: …})", head, clip(rest))
			}
		}
	}
	return 0, fieldErr(at, "unknown key (allowed here: %s)", strings.Join(allowed, ", "))
}

func keys(t reflect.Type) []string {
	ks := make([]string, t.NumField())
	for i := range ks {
		ks[i] = t.Field(i).Tag.Get("yaml")
	}
	return ks
}

// wrongType says what the schema wants at path and what the file has.
func wrongType(path string, t reflect.Type, scalar string, n *yaml.Node) error {
	got := "text"
	switch {
	case n.Kind == yaml.MappingNode:
		got = "a map (key: value)"
	case n.Kind == yaml.SequenceNode:
		got = "a list"
	case n.ShortTag() == "!!null":
		return fieldErr(path, "wrong type: want %s, got no value (null); give one, or leave the key out", want(t, scalar))
	case n.ShortTag() == "!!bool":
		got = "the boolean " + clip(n.Value)
	case n.ShortTag() == "!!int":
		got = "the number " + clip(n.Value)
	case n.ShortTag() == "!!float":
		got = "the decimal number " + clip(n.Value)
	}
	msg := fmt.Sprintf("wrong type: want %s, got %s", want(t, scalar), got)
	if want(t, scalar) == "text" && n.Kind == yaml.ScalarNode && len(n.Value) <= 32 {
		msg += fmt.Sprintf("; quote it (%q) if you mean the text", n.Value)
	}
	return fieldErr(path, "%s", msg)
}

// want names what a field of type t takes, in the node file's words.
func want(t reflect.Type, scalar string) string {
	switch {
	case t.Kind() == reflect.Struct:
		return "a map (key: value)"
	case t.Kind() == reflect.Slice:
		return "a list"
	case scalar == "int":
		return "a number"
	case scalar == "bool":
		return "true or false"
	}
	return "text"
}

// plainKey is a key that can stand in a field path as it is.
var plainKey = regexp.MustCompile(`^[A-Za-z0-9_-]{1,40}$`)

// keyPath extends path by a key from the file; a key that is not a plain
// name is quoted, so an error line stays one line and the path unambiguous.
func keyPath(path, key string) string {
	if !plainKey.MatchString(key) {
		key = strconv.Quote(clip(key))
	}
	return join(path, key)
}

// clip and clipTo shorten input quoted in an error message.
var (
	clip   = clipper.Text
	clipTo = clipper.To
)

// override puts one text value at key ("haproxy.maxconn",
// "services[1].disabled", "striped.tcp[0]"), through the schema: an unknown
// key, a missing list entry or a key that is a map or a list of maps is an
// error. A list of values given one value becomes that one-entry list. It
// returns the key as a field path (services[1].disabled).
func override(root reflect.Value, key, value string) (string, error) {
	v, path, rest := root, "", key
	for rest != "" {
		if rest[0] == '[' {
			end := strings.IndexByte(rest, ']')
			if end < 0 {
				return "", fieldErr(path, "%q has no closing ]", rest)
			}
			if v.Kind() != reflect.Slice {
				return "", fieldErr(path, "not a list, so it takes no [index]")
			}
			i, err := strconv.Atoi(rest[1:end])
			if err != nil || i < 0 || i >= v.Len() {
				return "", fieldErr(path+clip(rest[:end+1]), "no such entry (%s has %d, from [0])", path, v.Len())
			}
			path, v, rest = fmt.Sprintf("%s[%d]", path, i), v.Index(i), rest[end+1:]
			continue
		}
		if path != "" {
			if rest[0] != '.' {
				return "", fieldErr(path, "want .key or [index] after it, got %q", clip(rest))
			}
			rest = rest[1:]
		}
		name := rest
		if i := strings.IndexAny(rest, ".["); i >= 0 {
			name = rest[:i]
		}
		if v.Kind() != reflect.Struct {
			return "", fieldErr(path, "not a map, so it takes no .key")
		}
		at := keyPath(path, name)
		f, err := field(v.Type(), name, at)
		if err != nil {
			return "", err
		}
		path, v, rest = at, v.Field(f), rest[len(name):]
	}
	switch {
	case v.Kind() == reflect.String:
		v.SetString(value)
	case v.Kind() == reflect.Slice && v.Type().Elem().Kind() == reflect.String:
		v.Set(reflect.ValueOf([]string{value}))
	default:
		return "", fieldErr(path, "wrong type: want %s, got text", want(v.Type(), ""))
	}
	return path, nil
}

// envKeys lists the keys PORTSTRIPE_* variables reach: every key of the
// schema outside lists (a variable has no [index]), maps included, so
// PORTSTRIPE_STRIPED=x is refused as --set striped=x is.
func envKeys(t reflect.Type, path string) []string {
	var out []string
	for i := range t.NumField() {
		k := join(path, t.Field(i).Tag.Get("yaml"))
		out = append(out, k)
		if ft := t.Field(i).Type; ft.Kind() == reflect.Struct {
			out = append(out, envKeys(ft, k)...)
		}
	}
	return out
}

package node

import (
	"bytes"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"unicode/utf8"

	"github.com/portstripe/portstripe/internal/safefile"
)

// MaxFleetFileSize bounds what LoadFleet reads: thousands of nodes of a few
// hundred bytes each.
const MaxFleetFileSize = 64 << 20

// fleetFile is a fleet file as written: the plan every node shares and the
// nodes. It is decoded by the node file's schema walk (schema.go), so it
// refuses what a node file refuses, with field paths from its top.
type fleetFile struct {
	// Name is the fleet's: its keys in the store, and part of every node
	// file's source name.
	Name  string          `yaml:"name"`
	Plan  planFile        `yaml:"plan"`
	Nodes []fleetNodeFile `yaml:"nodes"`
}

// planFile is a node file without what is a node's own (name, addresses);
// TestFleetSchemaFollowsTheNodeFile keeps it, and overridesFile, in step
// with file.
type planFile struct {
	Firewall string        `yaml:"firewall"`
	Striped  protoPorts    `yaml:"striped"`
	Reserved []string      `yaml:"reserved" scalar:"int"`
	HAProxy  haproxyFile   `yaml:"haproxy"`
	Defaults protoDefaults `yaml:"defaults"`
	Services []serviceFile `yaml:"services"`
}

// overridesFile holds the plan keys one node sets otherwise, key by key
// (a list whole); services change through a node's services, disabled and
// without instead.
type overridesFile struct {
	Firewall string        `yaml:"firewall"`
	Striped  protoPorts    `yaml:"striped"`
	Reserved []string      `yaml:"reserved" scalar:"int"`
	HAProxy  haproxyFile   `yaml:"haproxy"`
	Defaults protoDefaults `yaml:"defaults"`
}

type fleetNodeFile struct {
	Name      string            `yaml:"name"`
	Addresses []string          `yaml:"addresses"`
	Labels    map[string]string `yaml:"labels" scalar:"int"`
	Overrides overridesFile     `yaml:"overrides"`
	// Services are the node's own, after the plan's.
	Services []serviceFile `yaml:"services"`
	// Disabled names plan services whose TCP backend is in maintenance on
	// this node (a node file's services[i].disabled: true).
	Disabled []string `yaml:"disabled"`
	// Without names plan services this node does not run at all.
	Without []string `yaml:"without"`
}

// labelRE is what a label value may be: a word that needs no quoting in a
// table, a selector or a file name.
var labelRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$`)

// Fleet is a validated fleet file. Its nodes are resolved into node files
// one at a time (NodeFile, ParseNode), so that callers can do it in parallel.
type Fleet struct {
	Name   string
	Source string
	SHA256 string
	Nodes  []FleetNode
	plan   planFile
	nodes  []fleetNodeFile
}

// FleetNode is one node of a fleet file.
type FleetNode struct {
	// Index is the node's place in the fleet file: nodes[Index].
	Index  int
	Name   string
	Labels map[string]string
}

// Path is the node's field path in the fleet file.
func (n FleetNode) Path() string { return fmt.Sprintf("nodes[%d]", n.Index) }

// LoadFleet reads, decodes strictly and validates a fleet file.
func LoadFleet(path string) (*Fleet, error) {
	data, err := safefile.Read(path, MaxFleetFileSize)
	if err != nil {
		if errors.Is(err, safefile.ErrTooLarge) {
			return nil, &FieldError{Msg: fmt.Sprintf("fleet file %s: larger than %d bytes", path, MaxFleetFileSize)}
		}
		return nil, &FieldError{Msg: fmt.Sprintf("fleet file: %v", err)}
	}
	return ParseFleet(data, path)
}

// ParseFleet decodes and validates fleet file bytes: the schema, the names,
// labels and addresses across nodes, and the services each node's disabled
// and without name. What each node's file says is checked when it is
// resolved (ParseNode), so a bad node names itself.
func ParseFleet(data []byte, source string) (*Fleet, error) {
	if len(bytes.TrimSpace(data)) == 0 {
		return nil, &FieldError{Msg: fmt.Sprintf("fleet file %s is empty; see fixtures/fleet/eu.yaml for an example", source)}
	}
	if !utf8.Valid(data) || bytes.IndexByte(data, 0) >= 0 {
		return nil, &FieldError{Msg: fmt.Sprintf("fleet file %s is not text (binary or not UTF-8); a fleet file is YAML", source)}
	}
	root, err := document(data, source)
	if err != nil {
		var fe *FieldError
		if errors.As(err, &fe) {
			fe.Msg = strings.Replace(fe.Msg, "node file", "fleet file", 1)
			fe.Msg = strings.Replace(fe.Msg, "a node file is", "a fleet file is", 1)
			fe.Msg = strings.Replace(fe.Msg, "fixtures/seed-node.yaml", "fixtures/fleet/eu.yaml", 1)
			if strings.Contains(fe.Msg, "not a map of keys") {
				fe.Msg = fmt.Sprintf("fleet file %s is not a map of keys (want name, plan, nodes)", source)
			}
		}
		return nil, err
	}
	var f fleetFile
	sameKeys(reflect.ValueOf(&f.Plan).Elem(), reflect.ValueOf(defaultFile()), reflect.Value.Set)
	if err := decode(root, reflect.ValueOf(&f).Elem(), "", ""); err != nil {
		return nil, err
	}
	if f.Name == "" {
		return nil, fieldErr("name", "required: the fleet's name (%s)", nameRule)
	}
	if !nameRE.MatchString(f.Name) {
		return nil, fieldErr("name", "%q is not allowed (%s)", clip(f.Name), nameRule)
	}
	if len(f.Nodes) == 0 {
		return nil, fieldErr("nodes", "required: at least one node (a list of {name, addresses, ...}; see fixtures/fleet/eu.yaml)")
	}
	shared := map[string]bool{}
	for _, s := range f.Plan.Services {
		shared[s.Name] = true
	}
	names := map[string]int{}
	owner := map[netip.Addr]int{}
	fl := &Fleet{Name: f.Name, Source: source, SHA256: sha256Hex(data), plan: f.Plan, nodes: f.Nodes, Nodes: make([]FleetNode, len(f.Nodes))}
	for i, nf := range f.Nodes {
		path := fmt.Sprintf("nodes[%d]", i)
		if j, dup := names[nf.Name]; dup && nf.Name != "" {
			return nil, fieldErr(path+".name", "%q is already the name of nodes[%d] (node names must be unique)", clip(nf.Name), j)
		}
		names[nf.Name] = i
		for k, a := range nf.Addresses {
			ip, err := netip.ParseAddr(strings.TrimSpace(a))
			if err != nil {
				continue // the node's own validation says what is wrong
			}
			if j, dup := owner[ip]; dup && j != i {
				return nil, fieldErr(fmt.Sprintf("%s.addresses[%d]", path, k), "%s is also an address of nodes[%d] (%s); two nodes cannot share one", ip, j, clip(f.Nodes[j].Name))
			}
			owner[ip] = i
		}
		for _, k := range slices.Sorted(maps.Keys(nf.Labels)) {
			if v := nf.Labels[k]; !labelRE.MatchString(v) {
				return nil, fieldErr(keyPath(path+".labels", k), "%q is not a label value (1-63 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)", clip(v))
			}
		}
		for _, l := range []struct {
			key   string
			names []string
		}{{"disabled", nf.Disabled}, {"without", nf.Without}} {
			for k, name := range l.names {
				if !shared[name] {
					return nil, fieldErr(fmt.Sprintf("%s.%s[%d]", path, l.key, k), "%q is not a service of the plan (plan.services)", clip(name))
				}
			}
		}
		for k, name := range nf.Disabled {
			if slices.Contains(nf.Without, name) {
				return nil, fieldErr(fmt.Sprintf("%s.disabled[%d]", path, k), "%q is also in without: a service the node does not run cannot be disabled on it", name)
			}
		}
		fl.Nodes[i] = FleetNode{Index: i, Name: nf.Name, Labels: nf.Labels}
	}
	return fl, nil
}

// resolve is node i's node file and, per service, where it comes from.
func (fl *Fleet) resolve(i int) (file, []string) {
	nf := fl.nodes[i]
	f := file{Name: nf.Name, Addresses: nf.Addresses}
	fv := reflect.ValueOf(&f).Elem()
	sameKeys(fv, reflect.ValueOf(fl.plan), reflect.Value.Set)
	f.Services = nil
	sameKeys(fv, reflect.ValueOf(nf.Overrides), merge)
	var from []string
	for k, s := range fl.plan.Services {
		if slices.Contains(nf.Without, s.Name) {
			continue
		}
		if slices.Contains(nf.Disabled, s.Name) {
			s.Disabled = "true"
		}
		f.Services = append(f.Services, s)
		from = append(from, fmt.Sprintf("plan.services[%d]", k))
	}
	for k, s := range nf.Services {
		f.Services = append(f.Services, s)
		from = append(from, fmt.Sprintf("nodes[%d].services[%d]", i, k))
	}
	return f, from
}

// NodeFile is node i resolved into a node file: the plan with the node's
// overrides, services, disabled and without applied, every key written out.
// Labels are the fleet's, not the node's: changing one changes no node file.
func (fl *Fleet) NodeFile(i int) []byte {
	f, _ := fl.resolve(i)
	return nodeFile(f)
}

func nodeFile(f file) []byte {
	var b bytes.Buffer
	encode(&b, reflect.ValueOf(f), "")
	return b.Bytes()
}

// ParseNode resolves node i and validates its node file under source: the
// Node that Parse of the node file's bytes gives, without parsing them
// (encode leaves out what is empty, so decoding the bytes onto the
// defaults is merging the resolved file onto them). An error names the
// fleet file's field path (FleetError).
func (fl *Fleet) ParseNode(i int, source string) (*Node, []byte, error) {
	f, _ := fl.resolve(i)
	data := nodeFile(f)
	full := defaultFile()
	merge(reflect.ValueOf(&full).Elem(), reflect.ValueOf(f))
	n, err := build(&full, data, source, Options{})
	if err != nil {
		return nil, data, fl.FleetError(i, err)
	}
	return n, data, nil
}

// FleetError turns an error about node i's resolved node file (from Parse,
// the planner or the emitters) into one about the fleet file: its path is
// where the fleet file says what went wrong, and an error in the shared
// plan names the node it fails on.
func (fl *Fleet) FleetError(i int, err error) error {
	var fe *FieldError
	if !errors.As(err, &fe) {
		return fmt.Errorf("nodes[%d] (%s): %w", i, fl.nodes[i].Name, err)
	}
	path, own := fl.Origin(i, fe.Path)
	// "is already the name of services[0]": the node file's other
	// services are named by their place in the fleet file too.
	msg := servicePath.ReplaceAllStringFunc(fe.Msg, func(p string) string {
		fp, _ := fl.Origin(i, p)
		return fp
	})
	if !own {
		msg = fmt.Sprintf("on node %s (nodes[%d]): %s", fl.nodes[i].Name, i, msg)
	}
	return &FieldError{Path: path, Msg: msg}
}

var servicePath = regexp.MustCompile(`\bservices\[\d+\]`)

// Origin maps a field path of node i's resolved node file to the fleet
// file's, and says whether it is the node's own (under nodes[i]) rather
// than the shared plan's.
func (fl *Fleet) Origin(i int, path string) (string, bool) {
	node := fmt.Sprintf("nodes[%d]", i)
	head, _, _ := strings.Cut(path, ".")
	top, _, _ := strings.Cut(head, "[")
	switch top {
	case "":
		return node, true
	case "name", "addresses":
		return node + "." + path, true
	case "services":
		_, from := fl.resolve(i)
		var j int
		if _, err := fmt.Sscanf(head, "services[%d]", &j); err == nil && j >= 0 && j < len(from) {
			return from[j] + path[len(head):], strings.HasPrefix(from[j], node)
		}
		return "plan." + path, false
	}
	for _, set := range setPaths(reflect.ValueOf(fl.nodes[i].Overrides), "") {
		if path == set || strings.HasPrefix(path, set+".") || strings.HasPrefix(path, set+"[") {
			return node + ".overrides." + path, true
		}
	}
	return "plan." + path, false
}

// setPaths lists the keys v sets, as merge would apply them.
func setPaths(v reflect.Value, path string) []string {
	switch v.Kind() {
	case reflect.Struct:
		var out []string
		for i := range v.NumField() {
			out = append(out, setPaths(v.Field(i), join(path, v.Type().Field(i).Tag.Get("yaml")))...)
		}
		return out
	case reflect.Slice:
		if v.IsNil() {
			return nil
		}
	default:
		if v.String() == "" {
			return nil
		}
	}
	return []string{path}
}

// Own lists what node i sets beyond the shared plan, as fleet paths: the
// overrides it sets, its own services, and the plan services it disables
// or goes without.
func (fl *Fleet) Own(i int) []string {
	nf := fl.nodes[i]
	node := fmt.Sprintf("nodes[%d]", i)
	var out []string
	for _, p := range setPaths(reflect.ValueOf(nf.Overrides), "") {
		out = append(out, node+".overrides."+p)
	}
	for k, s := range nf.Services {
		out = append(out, fmt.Sprintf("%s.services[%d] (%s)", node, k, s.Name))
	}
	for k, s := range nf.Disabled {
		out = append(out, fmt.Sprintf("%s.disabled[%d] (%s)", node, k, s))
	}
	for k, s := range nf.Without {
		out = append(out, fmt.Sprintf("%s.without[%d] (%s)", node, k, s))
	}
	return out
}

// sameKeys calls set on each field of dst and the field of src with the
// same key: how the plan's keys and a node's overrides become its node
// file's.
func sameKeys(dst, src reflect.Value, set func(dst, src reflect.Value)) {
	for i := range src.NumField() {
		key := src.Type().Field(i).Tag.Get("yaml")
		for j := range dst.NumField() {
			if dst.Type().Field(j).Tag.Get("yaml") == key {
				set(dst.Field(j), src.Field(i))
			}
		}
	}
}

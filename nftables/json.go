package nftables

import (
	"bytes"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/portstripe/portstripe/firewall"
)

// listing is `nft -j list table` output: objects, each one key naming its
// kind ("table", "chain", "set", "map", "rule", ...) with its fields.
type listing []map[string]map[string]any

// decodeListing reads nft's JSON. Numbers stay json.Number: a 64-bit
// payload value does not survive a float64.
func decodeListing(data []byte) (listing, error) {
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc struct {
		Nftables listing `json:"nftables"`
	}
	if err := dec.Decode(&doc); err != nil {
		return nil, fmt.Errorf("read nft's JSON: %w", err)
	}
	return slices.DeleteFunc(doc.Nftables, func(o map[string]map[string]any) bool {
		_, meta := o["metainfo"]
		return meta
	}), nil
}

// each calls f for every object of the kind, in listing order.
func (l listing) each(kind string, f func(fields map[string]any)) {
	for _, o := range l {
		if fields, ok := o[kind]; ok {
			f(fields)
		}
	}
}

// hasTable reports whether `nft -j list tables` lists our table.
func (l listing) hasTable() bool {
	found := false
	l.each("table", func(t map[string]any) {
		found = found || (t["family"] == Family && t["name"] == Table)
	})
	return found
}

// state normalises a listing of our table into a firewall.State: sets and
// maps (named "@" and their name) with their declaration and elements,
// chains with their hook and rules, as stable nft-syntax strings without
// handles or counter values, written as Render writes them.
func (l listing) state() (firewall.State, error) {
	var st firewall.State
	at := map[string]int{}
	add := func(c firewall.Chain) {
		at[c.Name] = len(st.Chains)
		st.Chains = append(st.Chains, c)
	}
	for _, o := range l {
		for kind, f := range o {
			switch kind {
			case "set", "map":
				add(firewall.Chain{Table: StateTable, Name: "@" + str(f["name"]), Rules: setRules(kind, f)})
			case "chain":
				c := firewall.Chain{Table: StateTable, Name: str(f["name"]), About: str(f["comment"])}
				if h, ok := f["hook"]; ok {
					c.Rules = []string{hookDecl(str(f["type"]), str(h), f["prio"], f["policy"])}
				}
				add(c)
			case "rule":
				i, ok := at[str(f["chain"])]
				if !ok {
					return firewall.State{}, fmt.Errorf("nft lists a rule of chain %q before the chain", f["chain"])
				}
				st.Chains[i].Rules = append(st.Chains[i].Rules, ruleText(f))
			}
		}
	}
	return st, nil
}

// loadable turns a listing of our table into JSON `nft -j -f` loads as one
// transaction, like Render's file: the table created, deleted and added
// again, then its chains (map elements jump to them), then everything
// else, then the rules, all without handles. Counter values are kept.
func (l listing) loadable() ([]byte, error) {
	table := map[string]any{"family": Family, "name": Table}
	cmds := []map[string]any{
		{"add": map[string]any{"table": table}},
		{"delete": map[string]any{"table": table}},
		{"add": map[string]any{"table": table}},
	}
	var chains, others, rules []map[string]any
	for _, o := range l {
		for kind, f := range o {
			if kind == "table" {
				continue
			}
			f = withoutHandle(f)
			cmd := map[string]any{"add": map[string]any{kind: f}}
			switch kind {
			case "chain":
				chains = append(chains, cmd)
			case "rule":
				rules = append(rules, cmd)
			default:
				others = append(others, cmd)
			}
		}
	}
	cmds = append(append(append(cmds, chains...), others...), rules...)
	return json.Marshal(map[string]any{"nftables": cmds})
}

func withoutHandle(f map[string]any) map[string]any {
	out := make(map[string]any, len(f))
	for k, v := range f {
		if k != "handle" {
			out[k] = v
		}
	}
	return out
}

// setRules are a set's or map's declaration and elements.
func setRules(kind string, f map[string]any) []string {
	typ := typeName(f["type"])
	if kind == "map" {
		typ += " : " + typeName(f["map"])
	}
	out := []string{"type " + typ}
	if flags, ok := f["flags"].([]any); ok && len(flags) > 0 {
		var fl []string
		for _, x := range flags {
			fl = append(fl, str(x))
		}
		out = append(out, "flags "+strings.Join(fl, ","))
	}
	elems, _ := f["elem"].([]any)
	for _, e := range elems {
		if pair, ok := e.([]any); ok && len(pair) == 2 {
			out = append(out, expr(pair[0])+" : "+expr(pair[1]))
			continue
		}
		out = append(out, expr(e))
	}
	return out
}

// typeName is a set's key or data type; a concatenation is a list.
func typeName(v any) string {
	if parts, ok := v.([]any); ok {
		var s []string
		for _, p := range parts {
			s = append(s, str(p))
		}
		return strings.Join(s, " . ")
	}
	return str(v)
}

// hookDecl is a base chain's declaration as Render writes it, with the
// priority named where nft names it.
func hookDecl(typ, hook string, prio, policy any) string {
	p := str(prio)
	if n, err := strconv.Atoi(p); err == nil {
		p = priorityName(hook, n)
	}
	s := fmt.Sprintf("type %s hook %s priority %s;", typ, hook, p)
	if policy != nil {
		s += " policy " + str(policy) + ";"
	}
	return s
}

// priorityName is a base chain priority as nft lists it in the inet
// family: a standard name where one applies to the hook, else the number.
func priorityName(hook string, prio int) string {
	switch {
	case prio == -300:
		return "raw"
	case prio == -150:
		return "mangle"
	case prio == -100 && hook == "prerouting":
		return "dstnat"
	case prio == 0:
		return "filter"
	case prio == 50:
		return "security"
	case prio == 100 && hook == "postrouting":
		return "srcnat"
	}
	return strconv.Itoa(prio)
}

// ruleText writes a rule's statements as nft syntax, counters without
// their values, then its comment.
func ruleText(f map[string]any) string {
	exprs, _ := f["expr"].([]any)
	words := make([]string, 0, len(exprs)+1)
	for _, e := range exprs {
		words = append(words, expr(e))
	}
	if c, ok := f["comment"].(string); ok {
		words = append(words, "comment "+strconv.Quote(c))
	}
	return strings.Join(words, " ")
}

// expr writes one JSON statement or expression in nft syntax, for what
// Render writes (and nft's common verdicts); anything else as its compact
// JSON, which is stable too.
func expr(v any) string {
	switch v := v.(type) {
	case string:
		return v
	case json.Number:
		return v.String()
	case map[string]any:
		if len(v) != 1 {
			break
		}
		for k, x := range v {
			if s, ok := object(k, x); ok {
				return s
			}
		}
	}
	return compact(v)
}

func object(kind string, x any) (string, bool) {
	f, _ := x.(map[string]any)
	switch kind {
	case "match":
		left, right := f["left"], f["right"]
		r := value(right, bitsOf(left))
		switch op := str(f["op"]); {
		case op == "==" && isBinop(left):
			return expr(left) + " == " + r, true
		case op == "==":
			return expr(left) + " " + r, true
		default:
			return expr(left) + " " + op + " " + r, true
		}
	case "counter":
		return "counter", true
	case "jump", "goto":
		return kind + " " + str(f["target"]), true
	case "accept", "drop", "return", "continue":
		return kind, true
	case "vmap":
		return expr(f["key"]) + " vmap " + expr(f["data"]), true
	case "map":
		return expr(f["key"]) + " map " + expr(f["data"]), true
	case "dnat", "snat":
		s := kind
		if fam, ok := f["family"]; ok {
			s += " " + str(fam)
		}
		s += " to "
		if a, ok := f["addr"]; ok {
			s += expr(a)
		}
		if p, ok := f["port"]; ok {
			s += ":" + expr(p)
		}
		return s, true
	case "mangle":
		return expr(f["key"]) + " set " + value(f["value"], bitsOf(f["key"])), true
	case "payload":
		if base, ok := f["base"]; ok {
			return fmt.Sprintf("@%s,%s,%s", str(base), str(f["offset"]), str(f["len"])), true
		}
		return str(f["protocol"]) + " " + str(f["field"]), true
	case "meta":
		return "meta " + str(f["key"]), true
	case "&":
		if ops, ok := x.([]any); ok && len(ops) == 2 {
			return expr(ops[0]) + " & " + value(ops[1], bitsOf(ops[0])), true
		}
	case "range":
		if ends, ok := x.([]any); ok && len(ends) == 2 {
			return expr(ends[0]) + "-" + expr(ends[1]), true
		}
	case "set":
		if elems, ok := x.([]any); ok {
			var s []string
			for _, e := range elems {
				s = append(s, expr(e))
			}
			return "{ " + strings.Join(s, ", ") + " }", true
		}
	case "prefix":
		return expr(f["addr"]) + "/" + str(f["len"]), true
	}
	return "", false
}

// bitsOf is how many bits a raw payload match or a mark reads, so its
// value is written in hex as Render writes it; 0 for the rest (decimal).
func bitsOf(left any) int {
	m, _ := left.(map[string]any)
	if ops, ok := m["&"].([]any); ok && len(ops) == 2 {
		return bitsOf(ops[0])
	}
	if p, ok := m["payload"].(map[string]any); ok {
		if _, raw := p["base"]; raw {
			n, _ := strconv.Atoi(str(p["len"]))
			return n
		}
	}
	if mk, ok := m["meta"].(map[string]any); ok && mk["key"] == "mark" {
		return 32
	}
	return 0
}

func isBinop(v any) bool {
	m, _ := v.(map[string]any)
	_, ok := m["&"]
	return ok
}

// value writes a match's or mangle's right side: in hex as wide as bits
// for raw payload and marks, else as expr does.
func value(v any, bits int) string {
	if n, ok := v.(json.Number); ok && bits > 0 {
		if u, err := strconv.ParseUint(n.String(), 10, 64); err == nil {
			return hexBits(u, bits)
		}
	}
	return expr(v)
}

func str(v any) string {
	switch v := v.(type) {
	case nil:
		return ""
	case string:
		return v
	case json.Number:
		return v.String()
	}
	return compact(v)
}

// compact is v's JSON (maps in sorted key order, so stable).
func compact(v any) string {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Sprint(v)
	}
	return string(b)
}

// counters reads the counter of each commented rule, in chain and rule
// order.
func (l listing) counters() []firewall.Counter {
	var out []firewall.Counter
	l.each("rule", func(f map[string]any) {
		comment, ok := f["comment"].(string)
		if !ok {
			return
		}
		exprs, _ := f["expr"].([]any)
		i := slices.IndexFunc(exprs, func(e any) bool {
			m, _ := e.(map[string]any)
			_, ok := m["counter"]
			return ok
		})
		if i < 0 {
			return
		}
		c, _ := exprs[i].(map[string]any)["counter"].(map[string]any)
		cnt := firewall.Counter{Chain: str(f["chain"]), Comment: comment}
		cnt.Packets, _ = strconv.ParseUint(str(c["packets"]), 10, 64)
		cnt.Bytes, _ = strconv.ParseUint(str(c["bytes"]), 10, 64)
		out = append(out, cnt)
	})
	return out
}

package nftables

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"os"
	"slices"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/firewall"
	"github.com/portstripe/portstripe/internal/sysexec"
	"github.com/portstripe/portstripe/signature"
)

// fakeNft records the commands it is given and answers `nft -j list
// table` with listing (an error when nil) and `nft -j list tables` with
// tables.
type fakeNft struct {
	listing, tables []byte
	ran             []sysexec.Command
}

func (f *fakeNft) Run(_ context.Context, c sysexec.Command) ([]byte, error) {
	f.ran = append(f.ran, c)
	args := c.Args
	if c.Name == "ip" && len(args) > 4 && args[0] == "netns" && args[1] == "exec" {
		args = args[4:]
	}
	switch strings.Join(args, " ") {
	case "-j list table inet portstripe":
		if f.listing == nil {
			return nil, &sysexec.ExecError{Command: c, Stderr: "Error: No such file or directory", Err: errors.New("exit status 1")}
		}
		return f.listing, nil
	case "-j list tables inet":
		return f.tables, nil
	}
	return nil, nil
}

// seedListing is what nft 1.0.6 listed (`nft -j list table inet
// portstripe`) after loading the rendered dual-stack seed table.
func seedListing(t *testing.T) []byte {
	data, err := os.ReadFile("testdata/seed-dual-stack.json")
	if err != nil {
		t.Fatal(err)
	}
	return data
}

// TestObserveNormalises: the JSON listing becomes the State Parse reads
// from the rendered file: the same lines, with no handles or counter
// values, and a Saved table loadable as one transaction.
func TestObserveNormalises(t *testing.T) {
	f := &fakeNft{listing: seedListing(t)}
	b := New(Options{Runner: f, Netns: "ns1"})
	got, err := b.Observe(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := b.Parse(files(dualStack(t)))
	if !got.Equal(want) {
		t.Errorf("Observe differs from Parse of the rendered file:\n%s", strings.Join(firewall.Diff(want, got), "\n"))
	}
	var names []string
	for _, c := range got.Chains {
		names = append(names, c.Name)
	}
	if wantNames := []string{"@node4", "@node6", "@udp_lists", "@tcp_frontends", "prerouting", "output", "node", "list_ac1d775bcb30", "list_13180c016f22", "list_25b671564ff3"}; !slices.Equal(names, wantNames) {
		t.Errorf("chains %q, want %q in declaration order", names, wantNames)
	}
	for _, l := range got.Lines() {
		if strings.Contains(l, "handle") || strings.Contains(l, "packets") {
			t.Errorf("line keeps a handle or counter value: %s", l)
		}
	}
	for _, l := range []string{
		"[inet portstripe] @node6: 2001:db8:5::2",
		"[inet portstripe] @udp_lists: 5061 : jump list_13180c016f22",
		"[inet portstripe] @tcp_frontends: 5063-29999 : 20000",
		"[inet portstripe] prerouting: type nat hook prerouting priority dstnat; policy accept;",
		"[inet portstripe] output: ip6 daddr @node6 jump node",
		`[inet portstripe] list_ac1d775bcb30: meta l4proto udp @th,64,8 0x38 @th,648,32 0x00000001 counter dnat to :443 comment "openvpn_rsa: OpenVPN tls-auth SHA512 on udp 1-5060,5063-29999"`,
	} {
		if !slices.Contains(got.Lines(), l) {
			t.Errorf("no line %q in\n%s", l, strings.Join(got.Lines(), "\n"))
		}
	}
	if len(f.ran) != 1 || f.ran[0].String() != "ip netns exec ns1 nft -j list table inet portstripe" {
		t.Errorf("ran %v, want one nft -j list in ns1", f.ran)
	}

	// Restore loads the saved listing with nft -j as Render's file loads:
	// table created, deleted, added, then chains before the maps that
	// jump to them, rules last, no handles.
	if !bytes.Equal(got.Saved[File], seedListing(t)) {
		t.Error("Saved is not the listing")
	}
	if err := b.Restore(context.Background(), got); err != nil {
		t.Fatal(err)
	}
	last := f.ran[len(f.ran)-1]
	if last.String() != "ip netns exec ns1 nft -j -f -" {
		t.Errorf("Restore ran %s, want nft -j -f -", last)
	}
	if bytes.Contains(last.Stdin, []byte(`"handle"`)) {
		t.Errorf("Restore loads handles: %s", last.Stdin)
	}
	var doc struct {
		Nftables []map[string]map[string]json.RawMessage `json:"nftables"`
	}
	if err := json.Unmarshal(last.Stdin, &doc); err != nil {
		t.Fatal(err)
	}
	var order []string
	for _, c := range doc.Nftables {
		for verb, obj := range c {
			for kind := range obj {
				order = append(order, verb+" "+kind)
			}
		}
	}
	k := 3 // the chains, then nothing but sets, maps and rules
	for k < len(order) && order[k] == "add chain" {
		k++
	}
	if !slices.Equal(order[:3], []string{"add table", "delete table", "add table"}) || k == 3 ||
		slices.Contains(order[k:], "add chain") || order[k] != "add set" || order[len(order)-1] != "add rule" {
		t.Errorf("Restore's commands in order %v", order)
	}
}

// TestObserveMissingTable: no table is no state and no error; a listing
// that fails while the table is there is an error.
func TestObserveMissingTable(t *testing.T) {
	ctx := context.Background()
	none := []byte(`{"nftables": [{"metainfo": {"version": "1.0.6"}}, {"table": {"family": "inet", "name": "other", "handle": 1}}]}`)
	got, err := New(Options{Runner: &fakeNft{tables: none}}).Observe(ctx)
	if err != nil || got.Installed() {
		t.Errorf("Observe without the table = %v, %v; want nothing", got.Chains, err)
	}
	ours := []byte(`{"nftables": [{"table": {"family": "inet", "name": "portstripe", "handle": 1}}]}`)
	if _, err := New(Options{Runner: &fakeNft{tables: ours}}).Observe(ctx); err == nil {
		t.Error("Observe hid a failed listing of a table that is there")
	}
}

// TestApplyCleanCommands: a rendered file loads with nft -f on stdin, a
// saved JSON state with nft -j -f; Clean creates then deletes the table
// in one transaction; Restore of nothing cleans.
func TestApplyCleanCommands(t *testing.T) {
	ctx := context.Background()
	f := &fakeNft{}
	b := New(Options{Runner: f})
	rendered := Render(dualStack(t))
	if err := b.Apply(ctx, map[string][]byte{File: rendered}); err != nil {
		t.Fatal(err)
	}
	if err := b.Apply(ctx, map[string][]byte{"rules.v4": rendered}); err == nil {
		t.Error("Apply without portstripe.nft succeeded")
	}
	if err := b.Restore(ctx, firewall.State{}); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, c := range f.ran {
		got = append(got, c.String()+" <<< "+strings.ReplaceAll(string(c.Stdin[:min(len(c.Stdin), 60)]), "\n", `\n`))
	}
	want := []string{
		"nft -f - <<< # Generated by portstripe; do not edit: change the node file",
		`nft -f - <<< table inet portstripe {}\ndelete table inet portstripe\n`,
	}
	if !slices.Equal(got, want) {
		t.Errorf("ran\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// TestCountersMapBack: counters are read from the listing and named by
// the plan's list, service and signature.
func TestCountersMapBack(t *testing.T) {
	p := dualStack(t)
	l := p.Lists[1] // openvpn_ed25519's list: two decisions and a default
	var doc map[string][]map[string]map[string]any
	if err := json.Unmarshal(seedListing(t), &doc); err != nil {
		t.Fatal(err)
	}
	counts := map[string]float64{DecisionComment(l, l.Decisions[1]): 7, DefaultComment(l): 3}
	for _, o := range doc["nftables"] {
		r, ok := o["rule"]
		if !ok || r["chain"] != ListChain(l) {
			continue
		}
		if n, ok := counts[r["comment"].(string)]; ok {
			for _, e := range r["expr"].([]any) {
				if c, ok := e.(map[string]any)["counter"]; ok {
					c.(map[string]any)["packets"], c.(map[string]any)["bytes"] = n, n*100
				}
			}
		}
	}
	listing, _ := json.Marshal(doc)
	got, err := New(Options{Runner: &fakeNft{listing: listing}}).Counters(context.Background(), p)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1+2+3+3 {
		t.Errorf("%d counters, want the TCP rule's and one per decision and default of the 3 UDP lists (9): %+v", len(got), got)
	}
	if got[0].Chain != ChainNode || got[0].List != "" {
		t.Errorf("first counter %+v, want the TCP rule's, naming no decision", got[0])
	}
	want := []firewall.Counter{
		{List: "openvpn_ed25519", Service: "openvpn_ed25519", Rule: "OpenVPN tls-crypt", Chain: ListChain(l), Comment: "openvpn_ed25519: OpenVPN tls-crypt on udp 5061", Packets: 7, Bytes: 700},
		{List: "openvpn_ed25519", Service: "openvpn_ed25519", Rule: "default", Chain: ListChain(l), Comment: "default: openvpn_ed25519 on udp 5061", Packets: 3, Bytes: 300},
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			t.Errorf("no counter %+v in %+v", w, got)
		}
	}
}

// TestMatch: exact lengths count the UDP header, byte runs become @th
// matches of at most 32 bits at (8+offset)*8, a partial mask is written
// out, and signatures that need a parser get no rule.
func TestMatch(t *testing.T) {
	for _, c := range []struct {
		sig  signature.Signature
		want string
	}{
		{signature.Signature{Label: "no wrap", Length: 14, Bytes: []signature.Bytes{{Offset: 0, Value: []byte{0x38}}}}, "udp length 22 @th,64,8 0x38"},
		{signature.Signature{Label: "wg", Bytes: []signature.Bytes{{Offset: 0, Value: []byte{1, 0, 0, 0, 0xaa}}}}, "meta l4proto udp @th,64,32 0x01000000 @th,96,8 0xaa"},
		{signature.Signature{Label: "quic", MinLength: 1200, Bytes: []signature.Bytes{{Offset: 0, Value: []byte{0xc0}, Mask: []byte{0xe0}}}},
			"udp length >= 1208 @th,64,8 & 0xe0 == 0xc0"},
	} {
		got, err := Match(c.sig)
		if err != nil || got != c.want {
			t.Errorf("Match(%s) = %q, %v; want %q", c.sig.Label, got, err, c.want)
		}
	}
	if got := (payloadMatch{Offset: 64, Bits: 8, Mask: 0xf8, Value: 0x38}).String(); got != "@th,64,8 & 0xf8 == 0x38" {
		t.Errorf("masked match = %q", got)
	}
	for _, sig := range []signature.Signature{
		{Label: "tls", TLSHello: true},
		{Label: "short", Length: 4, Bytes: []signature.Bytes{{Offset: 2, Value: []byte{1, 2, 3}}}},
		{Label: "huge", Length: 0xFFFF},
		{Label: "any: it would take every datagram"},
		{Label: "search", Contains: "jabber"},
	} {
		if _, err := Match(sig); err == nil {
			t.Errorf("Match(%s) succeeded", sig.Label)
		}
	}
}

// TestCommentsBounded: rule and chain comments fit nft's 128 bytes, however
// many port ranges a list has, and keep their text on one line.
func TestCommentsBounded(t *testing.T) {
	p := dualStack(t)
	l := p.Lists[0]
	for i := range 400 {
		l.Ports = append(l.Ports, l.Ports[0])
		l.Ports[len(l.Ports)-1].From, l.Ports[len(l.Ports)-1].To = uint16(30000+2*i), uint16(30000+2*i)
	}
	for _, s := range []string{ListComment(l), DecisionComment(l, l.Decisions[0]), DefaultComment(l)} {
		if len(s) > maxComment || !strings.Contains(s, "more ranges") {
			t.Errorf("comment of %d bytes: %q", len(s), s)
		}
	}
	if q := quote("a\"b\\c\nd" + strings.Repeat("é", 100)); len(q) > maxComment+2 || strings.ContainsAny(q[1:len(q)-1], "\"\\\n") {
		t.Errorf("quote = %q", q)
	}
}

// TestWithoutNft: on a machine without nft there is no table to see or
// clean (an iptables node applies there), and loading one says why not.
func TestWithoutNft(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	ctx := context.Background()
	b := New(Options{})
	if st, err := b.Observe(ctx); err != nil || st.Installed() {
		t.Errorf("Observe = %v, %v; want nothing", st.Chains, err)
	}
	if err := b.Clean(ctx); err != nil {
		t.Errorf("Clean: %v", err)
	}
	if err := b.Apply(ctx, files(dualStack(t))); err == nil || !strings.Contains(err.Error(), "nft not found") {
		t.Errorf("Apply = %v, want nft not found", err)
	}
}

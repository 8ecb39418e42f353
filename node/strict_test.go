package node

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestStrictDecoding: what a reviewer reads is what is applied. Each file
// is refused with exactly this line; none of them was refused before the
// decoding became strict (viper folded case, merged dotted keys, dropped
// null or empty unknown keys, read only the first document, made true a 1).
func TestStrictDecoding(t *testing.T) {
	const addr = "addresses: [198.51.100.2]\n"
	for _, c := range []struct{ name, yaml, want string }{
		{"second document", okHead + okSvc + "---\nname: other\n",
			"node file t.yaml holds a second YAML document (after ---, line 5); a node file is one document"},
		{"key in another case", okHead + okSvc + "Services: []\n",
			"Services: unknown key (keys are case-sensitive: did you mean services?)"},
		{"Name beside name", okHead + "Name: other\n" + okSvc,
			"Name: unknown key (keys are case-sensitive: did you mean name?)"},
		{"nested key in another case", okHead + "haproxy: {MaxConn: 5}\n" + okSvc,
			"haproxy.MaxConn: unknown key (keys are case-sensitive: did you mean maxconn?)"},
		{"duplicate key", okHead + "name: other\n" + okSvc,
			"name: duplicate key (first on line 1); a key appears once"},
		{"duplicate nested key", okHead + okSvc + "  - {name: b, kind: ssh, tcp: 127.0.0.1:22, tcp: 127.0.0.1:23}\n",
			"services[1].tcp: duplicate key (first on line 5); a key appears once"},
		{"dotted key beside its map", okHead + "haproxy.maxconn: 5\nhaproxy: {maxconn: 100}\n" + okSvc,
			`"haproxy.maxconn": unknown key (a key with a dot is not a path: write haproxy: {maxconn: …})`},
		{"unknown key, null", okHead + okSvc + "colour:\n",
			"colour: unknown key (allowed here: name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
		{"unknown key, empty map", okHead + "haproxy: {colour: {}}\n" + okSvc,
			"haproxy.colour: unknown key (allowed here: listen_port, inspect_delay, hard_stop_after, log, log_rate, timeouts, maxconn, run_dir, master_socket, runtime_socket, user, group)"},
		{"boolean name", "name: true\n" + addr + okSvc,
			`name: wrong type: want text, got the boolean true; quote it ("true") if you mean the text`},
		{"number name", "name: 1\n" + addr + okSvc,
			`name: wrong type: want text, got the number 1; quote it ("1") if you mean the text`},
		{"number address", "name: t\naddresses: [3325256706]\n" + okSvc,
			`addresses[0]: wrong type: want text, got the number 3325256706; quote it ("3325256706") if you mean the text`},
		{"boolean port", okHead + "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: true}\n",
			"services[0].udp: wrong type: want a number, got the boolean true"},
		{"decimal port", okHead + "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060.5}\n",
			"services[0].udp: wrong type: want a number, got the decimal number 5060.5"},
		{"number for a boolean", okHead + "services:\n  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060, disabled: 1}\n",
			"services[0].disabled: wrong type: want true or false, got the number 1"},
		{"null for a known key", okHead + "striped:\n" + okSvc,
			"striped: wrong type: want a map (key: value), got no value (null); give one, or leave the key out"},
		{"text for a list", "name: t\naddresses: 198.51.100.2\n" + okSvc,
			"addresses: wrong type: want a list, got text"},
		{"binary tag", "name: !!binary dA==\n" + addr + okSvc,
			"name: YAML tag !!binary is not allowed (only !!str, !!int, !!bool, !!float, !!null, !!map, !!seq)"},
		{"local tag", "name: !vault t\n" + addr + okSvc,
			"name: YAML tag !vault is not allowed (only !!str, !!int, !!bool, !!float, !!null, !!map, !!seq)"},
		{"timestamp tag", "name: !!timestamp 2026-12-01\n" + addr + okSvc,
			"name: YAML tag !!timestamp is not allowed (only !!str, !!int, !!bool, !!float, !!null, !!map, !!seq)"},
		{"anchor", "name: &n t\n" + addr + okSvc,
			"name: YAML anchors and aliases (&name, *name) are not allowed in a node file; write the value out"},
		{"alias", okHead + "services:\n  - &a {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: 5060}\n  - *a\n",
			"services[0]: YAML anchors and aliases (&name, *name) are not allowed in a node file; write the value out"},
		{"billion laughs", okHead + okSvc + "x: &a [1, 1, 1, 1, 1, 1, 1, 1, 1]\ny: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\nz: [*b, *b, *b, *b, *b, *b, *b, *b, *b]\n",
			"x: unknown key (allowed here: name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
		{"merge key", okHead + "haproxy: {<<: {maxconn: 5}}\n" + okSvc,
			`haproxy."<<": YAML merge keys are not allowed in a node file; write the keys out`},
		{"key that is a list", okHead + "? [name]\n: t\n" + okSvc,
			"the key on line 3 is not a plain name (want one of: name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
		{"newline in a key", okHead + "\"col\\nour\": 1\n" + okSvc,
			`"col\nour": unknown key (allowed here: name, firewall, addresses, striped, reserved, haproxy, defaults, services)`},
		{"a list, not a map", "- name: t\n",
			"node file t.yaml is not a map of keys (want name, firewall, addresses, striped, reserved, haproxy, defaults, services)"},
		{"comments only", "# name: t\n",
			"node file t.yaml is empty (comments only); see fixtures/seed-node.yaml for an example"},
		{"overlap found by the sweep", okHead + `reserved: ["1-100", "200-300", "50-60"]` + "\n" + okSvc,
			"reserved[2]: 50-60 overlaps reserved[0] (1-100); list each port once"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse([]byte(c.yaml), "t.yaml", Options{})
			if err == nil || err.Error() != c.want || !IsInputError(err) {
				t.Errorf("got  %v\nwant %s", err, c.want)
			}
		})
	}
}

// TestStrictDecodingAccepts: what the strict decoding still takes.
func TestStrictDecodingAccepts(t *testing.T) {
	n, err := Parse([]byte(`name: !!str 1
addresses: ["198.51.100.2"]
striped: {tcp: [1-100, 443], udp: ["1-100"]}
reserved: [30000-65535]
haproxy: {maxconn: "99", listen_port: !!int 20000, timeouts: {}}
services:
  - {name: a, kind: openvpn, tls: {mode: tls-crypt}, udp: "5060", disabled: "true", striped: true, dedicated: [5061]}
`), "t.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if n.Name != "1" || n.HAProxy.MaxConn != 99 || n.Striped[TCP].String() != "1-100,443" || !n.Services[0].Disabled ||
		n.Services[0].Dedicated.String() != "5061" || n.HAProxy.TimeoutClient != time.Hour {
		t.Errorf("decoded %+v", n)
	}
}

// TestEnvAndSetAgree: a PORTSTRIPE_* variable and --set of its key accept
// and refuse the same values, reach the same key (left to its default by
// the file or not) and give the same effective settings.
func TestEnvAndSetAgree(t *testing.T) {
	for _, c := range []struct{ key, value, want string }{
		{"striped", "x", "striped: %s: wrong type: want a map (key: value), got text"},
		{"services", "x", "services: %s: wrong type: want a list, got text"},
		{"haproxy.timeouts", "1s", "haproxy.timeouts: %s: wrong type: want a map (key: value), got text"},
		{"striped.tcp", "1-100", ""},
		{"reserved", "40000-65535", ""},
		{"haproxy.inspect_delay", "2s", ""},
		{"haproxy.timeouts.client", "2h", ""},
		{"haproxy.maxconn", "many", `haproxy.maxconn: "many" is not a number from 1 to 1000000 (set by %s)`},
		{"defaults.udp", "a", ""},
		{"name", "true", ""},
	} {
		t.Run(c.key, func(t *testing.T) {
			env := EnvName(c.key)
			t.Setenv(env, c.value)
			byEnv, envErr := Parse([]byte(okHead+okSvc), "t.yaml", Options{Env: true})
			os.Unsetenv(env)
			bySet, setErr := Parse([]byte(okHead+okSvc), "t.yaml", Options{Set: map[string]string{c.key: c.value}})
			if c.want != "" {
				wantEnv, wantSet := c.want, c.want
				if strings.Contains(c.want, "%s") {
					wantEnv, wantSet = strings.Replace(c.want, "%s", env, 1), strings.Replace(c.want, "%s", "--set", 1)
				}
				if envErr == nil || envErr.Error() != wantEnv || setErr == nil || setErr.Error() != wantSet {
					t.Errorf("env: %v\n--set: %v\nwant %s", envErr, setErr, c.want)
				}
				return
			}
			if envErr != nil || setErr != nil {
				t.Fatalf("env: %v; --set: %v", envErr, setErr)
			}
			if byEnv.SettingsSHA256 != bySet.SettingsSHA256 {
				t.Errorf("env and --set give different settings")
			}
			plain, err := Parse([]byte(okHead+okSvc), "t.yaml", Options{})
			if err != nil {
				t.Fatal(err)
			}
			if plain.SettingsSHA256 == bySet.SettingsSHA256 || plain.SHA256 != bySet.SHA256 {
				t.Errorf("the override changed the file hash or not the settings hash")
			}
			want := []Override{{Key: c.key, Value: c.value, From: env}}
			if len(byEnv.Overrides) != 1 || byEnv.Overrides[0] != want[0] {
				t.Errorf("env overrides %+v, want %+v", byEnv.Overrides, want)
			}
			if len(bySet.Overrides) != 1 || bySet.Overrides[0].From != "--set" {
				t.Errorf("--set overrides %+v", bySet.Overrides)
			}
		})
	}
}

// TestOverrideDefaultedList: the README's --set 'striped.tcp[0]=…' works
// when the file leaves striped to its default, and is recorded.
func TestOverrideDefaultedList(t *testing.T) {
	n, err := Parse([]byte(okHead+okSvc), "t.yaml", Options{Set: map[string]string{"striped.tcp[0]": "1-1000"}})
	if err != nil {
		t.Fatal(err)
	}
	if n.Striped[TCP].String() != "1-1000" || n.Striped[UDP].String() != "1-29999" {
		t.Errorf("striped %v", n.Striped)
	}
	if got := n.Overrides; len(got) != 1 || got[0].String() != `striped.tcp[0]="1-1000" (--set)` {
		t.Errorf("overrides %v", got)
	}
	if _, err := Parse([]byte(okHead+okSvc), "t.yaml", Options{Set: map[string]string{"striped.tcp[1]": "2000"}}); err == nil ||
		err.Error() != "striped.tcp[1]: --set: no such entry (striped.tcp has 1, from [0])" {
		t.Errorf("--set past the default list: %v", err)
	}
}

// TestSettingsHash: the settings hash is of what is compiled, not of the
// file's bytes: a comment changes the file hash only.
func TestSettingsHash(t *testing.T) {
	a, err := Parse([]byte(okHead+okSvc), "t.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	b, err := Parse([]byte("# a comment\n"+okHead+"haproxy: {maxconn: 4096}\n"+okSvc), "t.yaml", Options{})
	if err != nil {
		t.Fatal(err)
	}
	if a.SHA256 == b.SHA256 || a.SettingsSHA256 != b.SettingsSHA256 || len(a.SettingsSHA256) != 64 {
		t.Errorf("file %s / %s, settings %s / %s", a.SHA256, b.SHA256, a.SettingsSHA256, b.SettingsSHA256)
	}
}

// TestEnvNamesUnique: every key the environment reaches has its own
// variable (an underscore in a key cannot make two keys one variable).
func TestEnvNamesUnique(t *testing.T) {
	seen := map[string]string{}
	for _, k := range envKeys(reflect.TypeFor[file](), "") {
		if prev, dup := seen[EnvName(k)]; dup {
			t.Errorf("%s and %s are both %s", prev, k, EnvName(k))
		}
		seen[EnvName(k)] = k
	}
	if seen["PORTSTRIPE_HAPROXY_TIMEOUTS_CLIENT"] != "haproxy.timeouts.client" || seen["PORTSTRIPE_STRIPED"] != "striped" {
		t.Errorf("env keys %v", seen)
	}
}

// TestLoadNonRegular: a node file that is not a regular file is refused at
// once (a FIFO would block the open, /dev/zero never end), in one line.
func TestLoadNonRegular(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo:        "node file: " + fifo + " is a named pipe (FIFO), not a regular file",
		"/dev/zero": "node file: /dev/zero is a device, not a regular file",
		dir:         "node file: " + dir + " is a directory, not a regular file",
	} {
		done := make(chan error, 1)
		go func() { _, err := Load(Options{Path: path}); done <- err }()
		select {
		case err := <-done:
			if err == nil || err.Error() != want || !IsInputError(err) {
				t.Errorf("%s: %v, want %s", path, err, want)
			}
		case <-time.After(10 * time.Second): // a hang, not a timing check
			t.Fatalf("%s: Load hangs", path)
		}
	}
}

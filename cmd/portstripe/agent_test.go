package main

import (
	"strings"
	"testing"
)

// run --store refuses flags that do not make a fleet node, in one line,
// exit 2, before it touches the machine or the store.
func TestRunStoreFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--store", "etcd://127.0.0.1:1"}, "--store needs --fleet NAME and --node NAME"},
		{[]string{"--store", "etcd://127.0.0.1:1", "--fleet", "eu"}, "--store needs --fleet NAME and --node NAME"},
		{[]string{"--store", "etcd://127.0.0.1:1", "--fleet", "eu", "--node", "a/b"}, `--node: "a/b" is not a fleet or node name`},
		{[]string{"--store", "etcd://127.0.0.1:1", "--fleet", "eu", "--node", "n1", "-c", "node.yaml"}, "--store takes the node file from the fleet's store: -c and --set go without it"},
		{[]string{"--store", "http://127.0.0.1:2379", "--fleet", "eu", "--node", "n1"}, `--store "http://127.0.0.1:2379": want etcd://HOST:PORT`},
		{[]string{"--store", "etcd://127.0.0.1:1", "--fleet", "eu", "--node", "n1", "--store-cert", "c.pem"}, "--store-cert and --store-key go together"},
	} {
		code, _, errOut := portstripe(t, append([]string{"run"}, c.args...)...)
		if code != 2 || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") != 0 {
			t.Errorf("run %v: exit %d, %q; want exit 2 and one line with %q", c.args, code, errOut, c.want)
		}
	}
}

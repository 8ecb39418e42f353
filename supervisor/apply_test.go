package supervisor

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/node"
)

// fakeRules records what apply would do to iptables; installed text is what
// Current returns, and Canonical is the identity.
type fakeRules struct {
	installed []byte
	applied   int
	failApply error
}

func (f *fakeRules) Check(context.Context, []byte) error { return nil }
func (f *fakeRules) Apply(_ context.Context, r []byte) error {
	if f.failApply != nil {
		return f.failApply
	}
	f.applied++
	f.installed = r
	return nil
}
func (f *fakeRules) Current(context.Context) ([]byte, error) { return f.installed, nil }
func (f *fakeRules) Canonical(_ context.Context, r []byte) ([]byte, error) {
	return r, nil
}

// fakeProxy records reloads and runtime API calls.
type fakeProxy struct {
	reloads    int
	setAddr    []string // runtime API calls, addresses and states
	failReload error
}

func (f *fakeProxy) Check(context.Context, string) error { return nil }
func (f *fakeProxy) Reload(context.Context) error {
	if f.failReload != nil {
		return f.failReload
	}
	f.reloads++
	return nil
}
func (f *fakeProxy) SetServerAddr(_ context.Context, b, s string, a netip.AddrPort) error {
	f.setAddr = append(f.setAddr, b+"/"+s+" "+a.String())
	return nil
}
func (f *fakeProxy) SetServerState(_ context.Context, b, s string, enabled bool) error {
	f.setAddr = append(f.setAddr, fmt.Sprintf("%s/%s enabled=%v", b, s, enabled))
	return nil
}
func (f *fakeProxy) FrontendsUp(context.Context, []string) error { return nil }

const testNode = `name: t
addresses: [198.51.100.2]
services:
  - {name: rsa, kind: openvpn, tls: {mode: tls-auth, digest: SHA512}, udp: 443, tcp: 127.0.0.1:1194}
  - {name: ssh, kind: ssh, tcp: 127.0.0.1:22}
`

func compile(t *testing.T, yaml string) *compiler.Result {
	t.Helper()
	n, err := node.Parse([]byte(yaml), "t.yaml", node.Options{})
	if err != nil {
		t.Fatal(err)
	}
	res, err := compiler.FromNode(n)
	if err != nil {
		t.Fatal(err)
	}
	return res
}

func newApplier(t *testing.T) (*Applier, *fakeRules, *fakeProxy) {
	r, p := &fakeRules{}, &fakeProxy{}
	return &Applier{Dir: t.TempDir(), Rules: r, Proxy: p, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}, r, p
}

func TestApplyTwiceChangesNothing(t *testing.T) {
	a, rules, proxy := newApplier(t)
	res := compile(t, testNode)
	if _, err := a.Apply(context.Background(), res); err != nil {
		t.Fatal(err)
	}
	c, err := a.Apply(context.Background(), res)
	if err != nil {
		t.Fatal(err)
	}
	if !c.Nothing || rules.applied != 1 || proxy.reloads != 1 {
		t.Errorf("second apply: %+v, rules applied %d times, %d reloads; want nothing, 1, 1", c, rules.applied, proxy.reloads)
	}
}

func TestAddressOnlyChangeUsesRuntimeAPI(t *testing.T) {
	a, rules, proxy := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	c, err := a.Apply(context.Background(), compile(t, strings.Replace(testNode, "127.0.0.1:22", "127.0.0.2:2222", 1)))
	if err != nil {
		t.Fatal(err)
	}
	if c.Reload || proxy.reloads != 1 || len(proxy.setAddr) != 1 || proxy.setAddr[0] != "ssh/ssh 127.0.0.2:2222" {
		t.Errorf("change %+v, reloads %d, runtime calls %v; want one set server and no reload", c, proxy.reloads, proxy.setAddr)
	}
	if rules.applied != 1 {
		t.Errorf("rules applied %d times, want 1 (they did not change)", rules.applied)
	}
}

func TestNewServiceReloads(t *testing.T) {
	a, _, proxy := newApplier(t)
	a.Apply(context.Background(), compile(t, testNode))
	c, err := a.Apply(context.Background(), compile(t, testNode+"  - {name: web, kind: tls, tcp: 127.0.0.1:8443}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.Reload || proxy.reloads != 2 || !strings.Contains(c.ReloadReason, "beyond server addresses") {
		t.Errorf("change %+v, %d reloads; want a reload with its reason", c, proxy.reloads)
	}
}

// TestFailedReloadRollsBack: the previous files and rules come back.
func TestFailedReloadRollsBack(t *testing.T) {
	a, rules, proxy := newApplier(t)
	first := compile(t, testNode)
	a.Apply(context.Background(), first)
	before := rules.installed
	proxy.failReload = errors.New("master refused the configuration")
	_, err := a.Apply(context.Background(), compile(t, strings.Replace(testNode, "1-29999", "1-20000", 1)+"striped: {tcp: [\"1-1000\"]}\n"))
	if err == nil || !strings.Contains(err.Error(), "master refused") {
		t.Fatalf("apply: %v, want the reload error", err)
	}
	if string(rules.installed) != string(before) {
		t.Error("rules were not rolled back")
	}
	cfg, _ := os.ReadFile(filepath.Join(a.Dir, compiler.HAProxyFile))
	if string(cfg) != string(first.Files[compiler.HAProxyFile]) {
		t.Error("haproxy.cfg was not rolled back")
	}
}

func TestStateChangeUsesRuntimeAPI(t *testing.T) {
	a, _, proxy := newApplier(t)
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	disabled := strings.Replace(testNode, "tcp: 127.0.0.1:22}", "tcp: 127.0.0.1:22, disabled: true}", 1)
	c, err := a.Apply(context.Background(), compile(t, disabled))
	if err != nil {
		t.Fatal(err)
	}
	if c.Reload || len(proxy.setAddr) != 1 || proxy.setAddr[0] != "ssh/ssh enabled=false" {
		t.Errorf("change %+v, runtime calls %v; want one disable and no reload", c, proxy.setAddr)
	}
	if _, err := a.Apply(context.Background(), compile(t, testNode)); err != nil {
		t.Fatal(err)
	}
	if proxy.reloads != 1 || proxy.setAddr[len(proxy.setAddr)-1] != "ssh/ssh enabled=true" {
		t.Errorf("re-enable: %d reloads, runtime calls %v", proxy.reloads, proxy.setAddr)
	}
}

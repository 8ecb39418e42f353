package agent_test

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/portstripe/portstripe/compiler"
	"github.com/portstripe/portstripe/fleet/agent"
	"github.com/portstripe/portstripe/fleet/agent/agenttest"
	"github.com/portstripe/portstripe/fleet/store"
	"github.com/portstripe/portstripe/internal/etcdtest"
	"github.com/portstripe/portstripe/internal/testenv"
	"github.com/portstripe/portstripe/node"
	"github.com/portstripe/portstripe/supervisor"
)

// deadline bounds every wait here: a hang, not a measurement.
const deadline = 20 * time.Second

// nodeFile is a node n1 of fleet f whose one SSH service listens on port.
func nodeFile(port int) string {
	return fmt.Sprintf(`name: n1
addresses: [198.51.100.2]
striped: {tcp: ["1000-2000"], udp: ["1000-2000"]}
haproxy: {listen_port: 20000}
services:
  - {name: ssh, kind: ssh, tcp: "127.0.0.1:%d"}
`, port)
}

// desired is the record fleet publish would write for a node file.
func desired(t *testing.T, gen uint64, file string) store.Desired {
	t.Helper()
	n, err := node.Parse([]byte(file), store.Source("f", "n1"), node.Options{})
	if err != nil {
		// A file the compiler refuses still has a hash in its record.
		return store.Desired{Generation: gen, NodeSHA256: store.SHA256([]byte(file)), NodeFile: file}
	}
	res, err := compiler.FromNode(n)
	if err != nil {
		t.Fatal(err)
	}
	return store.Desired{Generation: gen, NodeSHA256: n.SHA256, OutputsSHA256: store.OutputsHash(store.Outputs(res.Files)), NodeFile: file}
}

func put(t *testing.T, cl *clientv3.Client, key string, v any) {
	t.Helper()
	val, err := store.Encode(v)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	if _, err := cl.Put(ctx, key, val); err != nil {
		t.Fatal(err)
	}
}

// fakeRun records what run's loop would have been handed.
type fakeRun struct {
	mu    sync.Mutex
	taken []supervisor.Desire
}

func (f *fakeRun) record(d supervisor.Desire) {
	f.mu.Lock()
	f.taken = append(f.taken, d)
	f.mu.Unlock()
}

// start runs an agent for node n1 of fleet f against cfg with fakeRun.
func start(t *testing.T, cfg clientv3.Config, tune func(*agent.Agent)) (*agent.Agent, *fakeRun, *testenv.SyncBuffer) {
	t.Helper()
	logs := &testenv.SyncBuffer{}
	a := &agent.Agent{Store: cfg, Fleet: "f", Node: "n1", Log: slog.New(slog.NewTextHandler(logs, nil)),
		StatusInterval: 200 * time.Millisecond, MinBackoff: 50 * time.Millisecond, MaxBackoff: 200 * time.Millisecond}
	if tune != nil {
		tune(a)
	}
	ctx, cancel := context.WithCancel(context.Background())
	f := &fakeRun{}
	done := make(chan struct{})
	go func() { defer close(done); agenttest.Serve(ctx, a, f.record) }()
	t.Cleanup(func() { cancel(); <-done })
	return a, f, logs
}

// waitStatus waits until the node's status key satisfies ok.
func waitStatus(t *testing.T, cl *clientv3.Client, what string, ok func(store.Status) bool) store.Status {
	t.Helper()
	var st store.Status
	end := time.Now().Add(deadline)
	for time.Now().Before(end) {
		st = store.Status{} // a field the record omits must not stay from the last read
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		rev, err := store.Get(ctx, cl, store.StatusKey("f", "n1"), &st)
		cancel()
		if err == nil && rev != 0 && ok(st) {
			return st
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("status never showed %s; last %+v", what, st)
	return st
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	end := time.Now().Add(deadline)
	for !ok() {
		if time.Now().After(end) {
			t.Fatalf("never: %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// The agent ACKs what it applies, NACKs what its compiler refuses (with
// the field path) while the applied generation stays, and follows every
// change of its desired key.
func TestAgentACKAndNACK(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cl := c.Client()
	key := store.DesiredKey("f", "n1")
	d1 := desired(t, 1, nodeFile(22))
	put(t, cl, key, d1)
	_, run, _ := start(t, c.Config(), nil)
	st := waitStatus(t, cl, "ACK of generation 1", func(s store.Status) bool { return s.Result == store.ACK && s.Generation == 1 })
	if st.Applied != 1 || st.NodeSHA256 != d1.NodeSHA256 || st.OutputsSHA256 != d1.OutputsSHA256 || !st.StoreReachable || st.Version == "" {
		t.Errorf("status after ACK: %+v, want generation 1 applied, the record's hashes, the store reachable, a version", st)
	}

	bad := strings.Replace(nodeFile(22), "kind: ssh", "kind: sssh", 1)
	put(t, cl, key, desired(t, 2, bad))
	st = waitStatus(t, cl, "NACK of generation 2", func(s store.Status) bool { return s.Generation == 2 })
	if st.Result != store.NACK || !strings.HasPrefix(st.Error, "services[0].kind:") || st.Applied != 1 {
		t.Errorf("status after a refused file: %+v, want NACK with services[0].kind: …, generation 1 still applied", st)
	}

	put(t, cl, key, desired(t, 3, nodeFile(2222)))
	st = waitStatus(t, cl, "ACK of generation 3", func(s store.Status) bool { return s.Generation == 3 })
	if st.Result != store.ACK || st.Applied != 3 || st.Error != "" {
		t.Errorf("status after generation 3: %+v", st)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	if len(run.taken) != 3 || run.taken[1].Result != nil || run.taken[2].Result == nil {
		t.Fatalf("run was handed %d desired states, want 3 (the second refused)", len(run.taken))
	}
	if got := run.taken[2].Result.Files[compiler.HAProxyFile]; !bytes.Contains(got, []byte("127.0.0.1:2222")) {
		t.Errorf("generation 3's haproxy.cfg has no server 127.0.0.1:2222:\n%s", got)
	}
}

// A record whose node file does not hash to its node_sha256, or that is
// another node's, is refused like a broken file.
func TestAgentRefusesForeignRecords(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cl := c.Client()
	key := store.DesiredKey("f", "n1")
	d := desired(t, 1, nodeFile(22))
	d.NodeSHA256 = store.SHA256([]byte("something else"))
	put(t, cl, key, d)
	start(t, c.Config(), nil)
	st := waitStatus(t, cl, "NACK", func(s store.Status) bool { return s.Result == store.NACK })
	if !strings.Contains(st.Error, "not what was published") {
		t.Errorf("hash mismatch NACKed with %q", st.Error)
	}
	other := desired(t, 2, strings.Replace(nodeFile(22), "name: n1", "name: n2", 1))
	put(t, cl, key, other)
	st = waitStatus(t, cl, "NACK of generation 2", func(s store.Status) bool { return s.Generation == 2 })
	if st.Result != store.NACK || !strings.HasPrefix(st.Error, "name:") {
		t.Errorf("another node's file: %+v", st)
	}
}

// With the store gone the agent says so (Ready, the gauge) and keeps what
// it has; when the store is back it reconnects, reports the outage once in
// its status, and follows a change made meanwhile.
func TestAgentStoreOutage(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{})
	cl := c.Client()
	key := store.DesiredKey("f", "n1")
	put(t, cl, key, desired(t, 1, nodeFile(22)))
	a, run, logs := start(t, c.Config(), func(a *agent.Agent) { a.OpTimeout = 500 * time.Millisecond })
	waitStatus(t, cl, "ACK of generation 1", func(s store.Status) bool { return s.Result == store.ACK })
	c.Kill(0)
	waitFor(t, "Ready reports the store unreachable", func() bool { return a.Ready() != nil })
	if err := a.Ready(); !strings.Contains(err.Error(), "fleet store unreachable") {
		t.Errorf("Ready: %v", err)
	}
	if !strings.Contains(logs.String(), "fleet store unreachable; serving the last applied state") {
		t.Errorf("no outage line in the log:\n%s", logs)
	}
	c.Restart(0)
	waitFor(t, "Ready after the restart", func() bool { return a.Ready() == nil })
	put(t, cl, key, desired(t, 2, nodeFile(2222)))
	st := waitStatus(t, cl, "ACK of generation 2", func(s store.Status) bool { return s.Generation == 2 && s.Result == store.ACK })
	if !st.StoreReachable {
		t.Errorf("status after the outage and a change: %+v, want the store reachable", st)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	if n := len(run.taken); n != 2 {
		t.Errorf("run was handed %d desired states, want 2 (the reconnect re-read the same record)", n)
	}
}

// Over TLS with a client certificate and a user allowed only the fleet's
// keys, the agent works as without.
func TestAgentTLSAuth(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{TLS: true, Auth: true})
	pass := c.AddUser("node-n1", store.Prefix("f"))
	t.Setenv(store.PasswordEnv, pass)
	cfg, err := store.Options{URL: c.StoreURL(), CA: c.CAFile, Cert: c.CertFile, Key: c.KeyFile, User: "node-n1"}.Config()
	if err != nil {
		t.Fatal(err)
	}
	cl := c.Client()
	put(t, cl, store.DesiredKey("f", "n1"), desired(t, 1, nodeFile(22)))
	start(t, cfg, nil)
	waitStatus(t, cl, "ACK of generation 1", func(s store.Status) bool { return s.Result == store.ACK && s.Generation == 1 })
}

// An agent whose member was away while its desired key changed and the
// history was compacted reads the key again and applies the newest record.
func TestAgentCompacted(t *testing.T) {
	c := etcdtest.Start(t, etcdtest.Options{Members: 3})
	cl := c.Client()
	key := store.DesiredKey("f", "n1")
	put(t, cl, key, desired(t, 1, nodeFile(22)))
	cfg := c.Config()
	cfg.Endpoints = cfg.Endpoints[:1] // the agent knows m0 only
	// A session outliving the member's absence: the watch resumes.
	_, run, logs := start(t, cfg, func(a *agent.Agent) { a.StatusInterval, a.LeaseTTL = time.Minute, time.Minute })
	waitStatus(t, cl, "ACK of generation 1", func(s store.Status) bool { return s.Result == store.ACK })
	c.Kill(0)
	c.WaitHealthy()
	put(t, cl, key, desired(t, 2, nodeFile(2222)))
	put(t, cl, key, desired(t, 3, nodeFile(2223)))
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	resp, err := cl.Get(ctx, key)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	c.Restart(0)
	waitStatus(t, cl, "ACK of generation 3", func(s store.Status) bool { return s.Generation == 3 && s.Result == store.ACK })
	if !strings.Contains(logs.String(), "desired key's history compacted; reading it again") {
		t.Errorf("the watch did not meet the compaction:\n%s", logs)
	}
	run.mu.Lock()
	defer run.mu.Unlock()
	for _, d := range run.taken {
		if bytes.Contains(d.Result.Files[compiler.HAProxyFile], []byte("127.0.0.1:2222")) {
			t.Error("generation 2, compacted away, was applied")
		}
	}
}

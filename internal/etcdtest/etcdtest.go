// Package etcdtest starts real etcd servers (Debian's etcd-server) for tests
// and benchmarks: one member or a cluster on free ports, each with a
// temporary data directory, optionally inside a network namespace, with
// client TLS and user/password authentication on request. Members can be
// killed and started again; everything stops when the test ends, also when
// it fails (t.Cleanup, and testbed's reaper on a signal or a panic).
package etcdtest

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"

	"github.com/portstripe/portstripe/internal/testbed"
)

// Binary is the etcd server the tests run (Debian 12: etcd-server 3.4).
const Binary = "etcd"

// T is what the package needs of a test: testing.TB's methods, so a
// benchmark program can hand in its own (Fatal must not return).
type T interface {
	Helper()
	Fatal(args ...any)
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Cleanup(func())
	TempDir() string
}

// Options say what cluster to start.
type Options struct {
	// Members is the cluster size; 0 means 1.
	Members int
	// Netns runs the members inside this namespace (and dials them from
	// there); empty runs them in the test's own.
	Netns testbed.Netns
	// Hosts are the members' listen addresses, one per member; empty puts
	// every member on 127.0.0.1. Ports are always free ones.
	Hosts []string
	// TLS makes clients speak TLS and show a certificate of the test's CA
	// (--client-cert-auth); the peers talk plain HTTP among themselves.
	TLS bool
	// Auth enables etcd's authentication with a root user (RootPassword).
	Auth bool
}

// Cluster is a running etcd cluster.
type Cluster struct {
	t       T
	opts    Options
	dir     string
	Members []*Member
	// Certificate files for clients when Options.TLS: the CA that signed
	// the servers' certificates, and a client certificate and key.
	CAFile, CertFile, KeyFile string
	// RootPassword is root's password when Options.Auth.
	RootPassword string
}

// Member is one etcd server of a Cluster.
type Member struct {
	Name             string
	ClientURL        string // where clients connect (http:// or https://)
	peerURL, dataDir string
	args             []string
	proc             *testbed.Proc
	cluster          *Cluster
	starts           int
}

// Require skips the test when etcd is not installed.
func Require(t T) {
	t.Helper()
	if _, err := exec.LookPath(Binary); err != nil {
		t.Skipf("needs %s (apt-get install etcd-server): %v", Binary, err)
	}
}

// Start starts a cluster and waits until every member serves linearizable
// reads (a leader is elected and reachable from each).
func Start(t T, o Options) *Cluster {
	t.Helper()
	Require(t)
	if o.Members == 0 {
		o.Members = 1
	}
	if len(o.Hosts) == 0 {
		for range o.Members {
			o.Hosts = append(o.Hosts, "127.0.0.1")
		}
	}
	if len(o.Hosts) != o.Members {
		t.Fatalf("etcdtest: %d hosts for %d members", len(o.Hosts), o.Members)
	}
	c := &Cluster{t: t, opts: o, dir: t.TempDir()}
	scheme := "http"
	if o.TLS {
		scheme = "https"
		if err := c.makeCerts(); err != nil {
			t.Fatal(err)
		}
	}
	var initial []string
	for i, host := range o.Hosts {
		ports, err := c.freePorts(host, 2)
		if err != nil {
			t.Fatal(err)
		}
		m := &Member{
			Name:      fmt.Sprintf("m%d", i),
			ClientURL: fmt.Sprintf("%s://%s", scheme, net.JoinHostPort(host, strconv.Itoa(ports[0]))),
			peerURL:   "http://" + net.JoinHostPort(host, strconv.Itoa(ports[1])),
			dataDir:   filepath.Join(c.dir, fmt.Sprintf("m%d.etcd", i)),
			cluster:   c,
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.peerURL)
	}
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.ClientURL, "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.peerURL, "--initial-advertise-peer-urls", m.peerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", filepath.Base(c.dir),
			"--logger", "zap", "--log-outputs", "stderr",
		}
		if o.TLS {
			m.args = append(m.args, "--cert-file", filepath.Join(c.dir, "server.crt"), "--key-file", filepath.Join(c.dir, "server.key"),
				"--trusted-ca-file", c.CAFile, "--client-cert-auth")
		}
	}
	// A member waits for its peers before it serves: start all, then wait.
	for _, m := range c.Members {
		m.start()
	}
	c.WaitHealthy()
	if o.Auth {
		if err := c.enableAuth(); err != nil {
			t.Fatal(err)
		}
	}
	return c
}

// freePorts finds n free TCP ports on host (in the cluster's namespace),
// drawn at random below the ephemeral range (32768 and up): a port the
// kernel handed out and took back (listen on :0, close) may at once be
// the source port of another process's connection, and etcd's bind then
// fails, which it did with tests of several packages running at once.
func (c *Cluster) freePorts(host string, n int) ([]int, error) {
	var ports []int
	err := c.do(func() error {
		for tries := 0; len(ports) < n; tries++ {
			if tries == 1000 {
				return fmt.Errorf("etcdtest: no free port on %s in %d-%d", host, portFrom, portTo)
			}
			p := portFrom + rand.IntN(portTo-portFrom)
			if slices.Contains(ports, p) {
				continue
			}
			ln, err := net.Listen("tcp", net.JoinHostPort(host, strconv.Itoa(p)))
			if err != nil {
				continue // taken
			}
			ln.Close()
			ports = append(ports, p)
		}
		return nil
	})
	return ports, err
}

// portFrom and portTo bound the ports freePorts draws from: above the
// ports the e2e tests' HAProxy frontends and backends use, below the
// ephemeral range.
const portFrom, portTo = 12000, 19999

func (c *Cluster) do(fn func() error) error {
	if c.opts.Netns == "" {
		return fn()
	}
	return c.opts.Netns.Do(fn)
}

func (m *Member) start() {
	c := m.cluster
	m.starts++
	cmd := exec.Command(Binary, m.args...)
	if c.opts.Netns != "" {
		cmd = c.opts.Netns.Command(Binary, m.args...)
	}
	// The host's ETCD_* variables would change the member's flags.
	cmd.Env = []string{"PATH=" + os.Getenv("PATH")}
	p, err := testbed.Start("etcd "+m.Name, cmd, filepath.Join(c.dir, fmt.Sprintf("%s-%d.log", m.Name, m.starts)))
	if err != nil {
		c.t.Fatal(err)
	}
	m.proc = p
	c.t.Cleanup(p.Stop)
}

// Endpoints are the members' client URLs, for clientv3 or --store.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// StoreURL is the cluster as `portstripe run --store` takes it:
// etcd://host:port,host:port (etcds:// with TLS).
func (c *Cluster) StoreURL() string {
	scheme := "etcd://"
	if c.opts.TLS {
		scheme = "etcds://"
	}
	var hosts []string
	for _, m := range c.Members {
		u, _ := url.Parse(m.ClientURL)
		hosts = append(hosts, u.Host)
	}
	return scheme + strings.Join(hosts, ",")
}

// Config is a client configuration for the whole cluster (root's
// credentials when Options.Auth), dialling from the cluster's namespace.
func (c *Cluster) Config() clientv3.Config {
	cfg := clientv3.Config{
		Endpoints:   c.Endpoints(),
		DialTimeout: 2 * time.Second,
		Logger:      zap.NewNop(),
	}
	if c.opts.TLS {
		tc, err := c.clientTLS()
		if err != nil {
			c.t.Fatal(err)
		}
		cfg.TLS = tc
	}
	if c.opts.Auth && c.RootPassword != "" {
		cfg.Username, cfg.Password = "root", c.RootPassword
	}
	if ns := c.opts.Netns; ns != "" {
		cfg.DialOptions = []grpc.DialOption{grpc.WithContextDialer(func(ctx context.Context, addr string) (net.Conn, error) {
			var conn net.Conn
			err := ns.Do(func() error {
				var err error
				conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", addr)
				return err
			})
			return conn, err
		})}
	}
	return cfg
}

// Client is a client of the whole cluster, closed when the test ends.
func (c *Cluster) Client() *clientv3.Client {
	c.t.Helper()
	return c.clientOf(c.Config())
}

func (c *Cluster) clientOf(cfg clientv3.Config) *clientv3.Client {
	c.t.Helper()
	cl, err := clientv3.New(cfg)
	if err != nil {
		c.t.Fatalf("etcd client: %v", err)
	}
	c.t.Cleanup(func() { cl.Close() })
	return cl
}

// Kill ends member i at once (SIGKILL: no goodbye to its peers), keeping
// its data directory.
func (c *Cluster) Kill(i int) {
	m := c.Members[i]
	if m.proc == nil {
		return
	}
	p := m.proc
	m.proc = nil
	syscall.Kill(-p.Cmd.Process.Pid, syscall.SIGKILL)
	<-p.Done()
	p.Stop() // forgets it: the group is gone
}

// Restart starts a killed member again on its data directory and waits
// until the cluster is healthy.
func (c *Cluster) Restart(i int) {
	c.t.Helper()
	m := c.Members[i]
	if m.proc != nil {
		c.t.Fatalf("etcdtest: %s is running", m.Name)
	}
	m.start()
	c.WaitHealthy()
}

// KillAll ends every member; RestartAll brings them all back.
func (c *Cluster) KillAll() {
	for i := range c.Members {
		c.Kill(i)
	}
}

// RestartAll starts every killed member and waits until they serve.
func (c *Cluster) RestartAll() {
	c.t.Helper()
	for _, m := range c.Members {
		if m.proc == nil {
			m.start()
		}
	}
	c.WaitHealthy()
}

// Running reports whether member i runs.
func (c *Cluster) Running(i int) bool { return c.Members[i].proc != nil && !c.Members[i].proc.Exited() }

// PID is member i's process id (0 when it is not running), for reading its
// memory.
func (c *Cluster) PID(i int) int {
	if !c.Running(i) {
		return 0
	}
	return c.Members[i].proc.Cmd.Process.Pid
}

// healthTimeout bounds the wait for a cluster to serve: a hang, not a
// measurement.
const healthTimeout = 60 * time.Second

// WaitHealthy waits until every running member answers a linearizable
// read (which needs an elected leader and a quorum), failing the test
// when one exits or the deadline passes.
func (c *Cluster) WaitHealthy() {
	c.t.Helper()
	deadline := time.Now().Add(healthTimeout)
	for _, m := range c.Members {
		if m.proc == nil {
			continue
		}
		cfg := c.Config()
		cfg.Endpoints = []string{m.ClientURL}
		cl, err := clientv3.New(cfg)
		if err != nil {
			c.t.Fatalf("etcd client for %s: %v", m.Name, err)
		}
		err = m.proc.WaitFor(time.Until(deadline), func() error {
			ctx, cancel := context.WithTimeout(context.Background(), time.Second)
			defer cancel()
			_, err := cl.Get(ctx, "etcdtest-health")
			// Before auth is enabled no password is needed; after, root's works.
			return err
		})
		cl.Close()
		if err != nil {
			c.t.Fatalf("etcd %s: %v", m.Name, err)
		}
	}
}

// enableAuth adds root with a random password and turns authentication on.
func (c *Cluster) enableAuth() error {
	c.RootPassword = randomToken()
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := cl.UserAdd(ctx, "root", c.RootPassword); err != nil {
		return fmt.Errorf("etcdtest: add root: %w", err)
	}
	if _, err := cl.UserGrantRole(ctx, "root", "root"); err != nil {
		return fmt.Errorf("etcdtest: grant root: %w", err)
	}
	if _, err := cl.AuthEnable(ctx); err != nil {
		return fmt.Errorf("etcdtest: enable auth: %w", err)
	}
	return nil
}

// AddUser adds a user allowed to read and write the keys under prefix
// (needs Options.Auth) and returns its password.
func (c *Cluster) AddUser(name, prefix string) string {
	c.t.Helper()
	if !c.opts.Auth {
		c.t.Fatal("etcdtest: AddUser needs Options.Auth")
	}
	pass := randomToken()
	cl := c.Client()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	role := name + "-rw"
	steps := []func() error{
		func() error { _, err := cl.RoleAdd(ctx, role); return err },
		func() error {
			_, err := cl.RoleGrantPermission(ctx, role, prefix, clientv3.GetPrefixRangeEnd(prefix), clientv3.PermissionType(clientv3.PermReadWrite))
			return err
		},
		func() error { _, err := cl.UserAdd(ctx, name, pass); return err },
		func() error { _, err := cl.UserGrantRole(ctx, name, role); return err },
	}
	for _, s := range steps {
		if err := s(); err != nil {
			c.t.Fatalf("etcdtest: add user %s: %v", name, err)
		}
	}
	return pass
}

// Logs are what the members logged, for a failing test's message.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, m := range c.Members {
		if m.proc != nil {
			fmt.Fprintf(&b, "== %s\n%s\n", m.Name, testbed.Tail(m.proc.LogText(), 20))
		}
	}
	return b.String()
}

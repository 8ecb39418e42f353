package store

import (
	"context"
	"crypto/tls"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// PasswordEnv holds the store password when --store-user gives only a name:
// a password on the command line is visible to every user of the machine.
const PasswordEnv = "PORTSTRIPE_STORE_PASSWORD"

// Options say how to reach the store: the --store flags of every command
// that talks to etcd (fleet publish, rollout, status, run --store).
type Options struct {
	// URL is etcd://HOST:PORT[,HOST:PORT…] (etcds:// for TLS with the
	// system's CAs).
	URL string
	// CA, Cert and Key are PEM files, as etcdctl's --cacert, --cert and
	// --key; any of them turns TLS on.
	CA, Cert, Key string
	// User is NAME or NAME:PASSWORD, as etcdctl's --user; without a
	// password, PasswordEnv holds it.
	User        string
	DialTimeout time.Duration
}

// AddFlags adds the --store flags to fs.
func AddFlags(fs *pflag.FlagSet, o *Options) {
	fs.StringVar(&o.URL, "store", "", "etcd endpoints: etcd://HOST:PORT[,HOST:PORT…] (etcds:// for TLS with the system's CAs)")
	fs.StringVar(&o.CA, "store-ca", "", "CA certificate (PEM) that signed the etcd servers' certificates (etcdctl --cacert)")
	fs.StringVar(&o.Cert, "store-cert", "", "client certificate (PEM) for etcd (etcdctl --cert)")
	fs.StringVar(&o.Key, "store-key", "", "client key (PEM) for etcd (etcdctl --key)")
	fs.StringVar(&o.User, "store-user", "", "etcd user as NAME or NAME:PASSWORD (etcdctl --user); without a password, env "+PasswordEnv+" holds it")
	fs.DurationVar(&o.DialTimeout, "store-timeout", 5*time.Second, "how long to wait for etcd when connecting")
}

// Endpoints parses URL into etcd client endpoints and whether it asks for
// TLS. The error is one line meant for the flag.
func (o Options) Endpoints() ([]string, bool, error) {
	scheme, rest, ok := strings.Cut(o.URL, "://")
	if !ok || (scheme != "etcd" && scheme != "etcds") {
		return nil, false, fmt.Errorf("--store %q: want etcd://HOST:PORT[,HOST:PORT…] or etcds://…", o.URL)
	}
	var eps []string
	for _, ep := range strings.Split(rest, ",") {
		host, port, ok := strings.Cut(ep, ":")
		if !ok || host == "" || port == "" || strings.ContainsAny(ep, "/?#@ ") {
			return nil, false, fmt.Errorf("--store %q: endpoint %q is not HOST:PORT", o.URL, ep)
		}
		eps = append(eps, ep)
	}
	return eps, scheme == "etcds" || o.CA != "" || o.Cert != "" || o.Key != "", nil
}

// Config is the etcd client configuration the options describe.
func (o Options) Config() (clientv3.Config, error) {
	eps, secure, err := o.Endpoints()
	if err != nil {
		return clientv3.Config{}, err
	}
	cfg := clientv3.Config{
		Endpoints:   eps,
		DialTimeout: o.DialTimeout,
		// Errors come back to the caller; the client's own log would
		// repeat them on stderr in another format.
		Logger: zap.NewNop(),
	}
	if cfg.DialTimeout <= 0 {
		cfg.DialTimeout = 5 * time.Second
	}
	if secure {
		if (o.Cert == "") != (o.Key == "") {
			return clientv3.Config{}, fmt.Errorf("--store-cert and --store-key go together")
		}
		cfg.TLS = &tls.Config{MinVersion: tls.VersionTLS12}
		if o.CA != "" || o.Cert != "" {
			info := transport.TLSInfo{CertFile: o.Cert, KeyFile: o.Key, TrustedCAFile: o.CA}
			if cfg.TLS, err = info.ClientConfig(); err != nil {
				return clientv3.Config{}, fmt.Errorf("store TLS: %w", err)
			}
		}
	}
	if o.User != "" {
		name, pass, ok := strings.Cut(o.User, ":")
		if !ok {
			pass = os.Getenv(PasswordEnv)
		}
		cfg.Username, cfg.Password = name, pass
	}
	return cfg, nil
}

// Dial connects to the store and checks that it answers within the dial
// timeout, so a wrong address fails here, in one line.
func Dial(ctx context.Context, o Options) (*clientv3.Client, error) {
	cfg, err := o.Config()
	if err != nil {
		return nil, err
	}
	// ctx bounds the dial, not the client: a command stopped by a signal
	// still writes what it must (a rollout its pause) before it exits.
	c, err := clientv3.New(cfg)
	if err != nil {
		return nil, fmt.Errorf("store %s: %w", o.URL, err)
	}
	probe, cancel := context.WithTimeout(ctx, cfg.DialTimeout)
	defer cancel()
	if _, err := c.Get(probe, Root, clientv3.WithCountOnly()); err != nil {
		c.Close()
		return nil, fmt.Errorf("store %s does not answer: %w", o.URL, err)
	}
	return c, nil
}

//go:build e2e

package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
)

// keyAlgs are openssl's arguments for a new key of each instance's type.
var keyAlgs = map[string][]string{
	"rsa":     {"-newkey", "rsa:2048"},
	"ecc":     {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:secp521r1"},
	"ed25519": {"-newkey", "ed25519"},
	"ed448":   {"-newkey", "ed448"},
}

// certExtensions make the certificates acceptable to --remote-cert-tls.
const certExtensions = `[server]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = serverAuth
[client]
basicConstraints = CA:FALSE
keyUsage = digitalSignature
extendedKeyUsage = clientAuth
`

// pki is one instance's own CA with a server and a client certificate, all
// of one key type, plus its OpenVPN control-channel key.
type pki struct {
	dir                   string
	ca, cert, key         string // server
	clientCert, clientKey string
	tlsKey                string
}

// newPKI generates, with openssl, a CA, a server and a client certificate
// of key type alg (a key of keyAlgs) in dir, and an OpenVPN static key for
// tls-auth or tls-crypt.
func newPKI(dir, alg string) (*pki, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	p := &pki{
		dir: dir, ca: filepath.Join(dir, "ca.crt"),
		cert: filepath.Join(dir, "server.crt"), key: filepath.Join(dir, "server.key"),
		clientCert: filepath.Join(dir, "client.crt"), clientKey: filepath.Join(dir, "client.key"),
		tlsKey: filepath.Join(dir, "tls.key"),
	}
	ext := filepath.Join(dir, "ext.cnf")
	if err := os.WriteFile(ext, []byte(certExtensions), 0o600); err != nil {
		return nil, err
	}
	caKey := filepath.Join(dir, "ca.key")
	newKey := keyAlgs[alg]
	if newKey == nil {
		return nil, fmt.Errorf("unknown key type %q", alg)
	}
	steps := [][]string{
		append(append([]string{"openssl", "req", "-x509"}, newKey...),
			"-nodes", "-keyout", caKey, "-out", p.ca, "-days", "2", "-subj", "/CN=portstripe-e2e "+alg+" CA"),
		append(append([]string{"openssl", "req"}, newKey...),
			"-nodes", "-keyout", p.key, "-out", p.key+".csr", "-subj", "/CN="+alg+"-server"),
		{"openssl", "x509", "-req", "-in", p.key + ".csr", "-CA", p.ca, "-CAkey", caKey, "-set_serial", "2",
			"-days", "2", "-extfile", ext, "-extensions", "server", "-out", p.cert},
		append(append([]string{"openssl", "req"}, newKey...),
			"-nodes", "-keyout", p.clientKey, "-out", p.clientKey+".csr", "-subj", "/CN="+alg+"-client"),
		{"openssl", "x509", "-req", "-in", p.clientKey + ".csr", "-CA", p.ca, "-CAkey", caKey, "-set_serial", "3",
			"-days", "2", "-extfile", ext, "-extensions", "client", "-out", p.clientCert},
		{"openvpn", "--genkey", "secret", p.tlsKey},
	}
	for _, s := range steps {
		if out, err := exec.Command(s[0], s[1:]...).CombinedOutput(); err != nil {
			return nil, fmt.Errorf("%s PKI: %s: %v: %s", alg, strings.Join(s, " "), err, strings.TrimSpace(string(out)))
		}
	}
	return p, nil
}

// selfSigned writes a self-signed P-256 certificate for a TLS backend whose
// common name is cn; it returns the certificate and key paths.
func selfSigned(dir, cn string) (cert, key string, err error) {
	cert, key = filepath.Join(dir, cn+".crt"), filepath.Join(dir, cn+".key")
	out, err := exec.Command("openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
		"-nodes", "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN="+cn,
		"-addext", "subjectAltName=DNS:"+cn).CombinedOutput()
	if err != nil {
		return "", "", fmt.Errorf("certificate for %s: %v: %s", cn, err, out)
	}
	return cert, key, nil
}

// newPKIs generates the instances' PKIs in parallel, each in dir/pki-<alg>.
func newPKIs(dir string, instances []*instance) error {
	var wg sync.WaitGroup
	errs := make([]error, len(instances))
	for i, in := range instances {
		wg.Go(func() { in.pki, errs[i] = newPKI(filepath.Join(dir, "pki-"+in.alg), in.alg) })
	}
	wg.Wait()
	return errors.Join(errs...)
}

package main

import (
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"

	"github.com/portstripe/portstripe/signature"
)

// packets are the real first packets the clients send.
type packets struct {
	tcpAuth, tcpCrypt, ssh, tlsHello []byte
	udpAuth, udpCrypt                []byte
	dir                              string
}

const sshBanner = "SSH-2.0-OpenSSH_9.2p1 Debian-2+deb12u3\r\n"

func loadPackets(dir string) (packets, error) {
	var pk packets
	if dir == "" {
		dir = "fixtures/first-packets"
	}
	pk.dir = dir
	for name, dst := range map[string]*[]byte{
		"tcp-tls-auth-sha512.hex": &pk.tcpAuth, "tcp-tls-crypt.hex": &pk.tcpCrypt,
		"udp-tls-auth-sha512.hex": &pk.udpAuth, "udp-tls-crypt.hex": &pk.udpCrypt,
	} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return pk, err
		}
		if *dst, err = hex.DecodeString(strings.Join(strings.Fields(string(b)), "")); err != nil {
			return pk, fmt.Errorf("%s: %w", name, err)
		}
	}
	pk.ssh = []byte(sshBanner)
	hello, err := signature.ClientHello("www.example.org")
	if err != nil {
		return pk, err
	}
	pk.tlsHello = hello
	return pk, nil
}

// tcpProbes are the four first packets aimed at the given addresses.
func (pk packets) tcpProbes(rsa, ecc, ssh, tls string) []Probe {
	return []Probe{
		{Name: "openvpn-tls-auth", Addr: rsa, Packet: pk.tcpAuth},
		{Name: "openvpn-tls-crypt", Addr: ecc, Packet: pk.tcpCrypt},
		{Name: "ssh", Addr: ssh, Packet: pk.ssh},
		{Name: "tls", Addr: tls, Packet: pk.tlsHello},
	}
}

// machine describes the machine and the versions of what was measured.
type machine struct {
	CPU, Cores, Kernel, OS, HAProxy, IPTables, SSLH, Go string
}

func machineInfo() machine {
	m := machine{Cores: fmt.Sprint(runtime.NumCPU()), Go: runtime.Version()}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(l, ":"); ok && strings.TrimSpace(k) == "model name" {
				m.CPU = strings.TrimSpace(v)
				break
			}
		}
	}
	first := func(name string, args ...string) string {
		out, _ := exec.Command(name, args...).CombinedOutput()
		l, _, _ := strings.Cut(strings.TrimSpace(string(out)), "\n")
		return strings.TrimSpace(l)
	}
	m.Kernel = first("uname", "-sr")
	if b, err := os.ReadFile("/etc/debian_version"); err == nil {
		m.OS = "Debian " + strings.TrimSpace(string(b))
	}
	m.HAProxy = first("haproxy", "-v")
	m.IPTables = first("iptables", "-V")
	m.SSLH = first("sslh-select", "-V")
	return m
}

func jsonString(v any) (string, error) {
	b, err := json.Marshal(v)
	return string(b), err
}

func jsonUnmarshal(s string, v any) error { return json.Unmarshal([]byte(s), v) }

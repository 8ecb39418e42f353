package main

import (
	"bytes"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestDockerCompose checks docker-compose.yml the only way this machine can
// (no Docker engine): docker-compose accepts it, and the portstripe command
// it runs parses with this CLI's flags.
func TestDockerCompose(t *testing.T) {
	if _, err := exec.LookPath("docker-compose"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("docker-compose is not installed (scripts/test.sh installs it)")
		}
		t.Skip("docker-compose is not installed")
	}
	out, err := exec.Command("docker-compose", "-f", "../../docker-compose.yml", "config").CombinedOutput()
	if err != nil {
		t.Fatalf("docker-compose config: %v\n%s", err, out)
	}
	var cfg struct {
		Services map[string]struct {
			Command []string `yaml:"command"`
			CapDrop []string `yaml:"cap_drop"`
			Volumes []string `yaml:"volumes"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(out, &cfg); err != nil {
		t.Fatal(err)
	}
	args := cfg.Services["portstripe"].Command
	if len(args) == 0 {
		t.Fatal("no portstripe service with a command")
	}
	root := newRoot(io.Discard, io.Discard)
	sub, rest, err := root.Find(args)
	if err != nil || sub == root {
		t.Fatalf("compose runs %v: not a portstripe command (%v)", args, err)
	}
	if err := sub.ParseFlags(rest); err != nil {
		t.Errorf("compose runs %v: %v", args, err)
	}
	if !bytes.Contains(out, []byte("network_mode: host")) {
		t.Error("portstripe must share the node's network (network_mode: host)")
	}
	if caps := cfg.Services["portstripe"].CapDrop; len(caps) != 1 || caps[0] != "ALL" {
		t.Errorf("portstripe's cap_drop is %v, not [ALL]: it would hold Docker's default capabilities besides cap_add", caps)
	}
	// The node file's directory is the mount: editors rename a new file
	// over node.yaml, which a bind mount of the file itself never shows.
	if err := sub.ParseFlags(rest); err == nil {
		nodeDir, mounted := filepath.Dir(root.Flag("config").Value.String()), false
		for _, v := range cfg.Services["portstripe"].Volumes {
			if parts := strings.Split(v, ":"); len(parts) > 1 && parts[1] == nodeDir {
				mounted = true
			}
		}
		if !mounted {
			t.Errorf("compose mounts no directory at %s, where the node file lives: %v", nodeDir, cfg.Services["portstripe"].Volumes)
		}
	}
}

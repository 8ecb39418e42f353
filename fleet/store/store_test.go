package store

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestKeys(t *testing.T) {
	for _, c := range []struct{ got, want string }{
		{GenMeta("eu", 7), "/portstripe/eu/gen/0000000007/meta"},
		{GenNodeKey("eu", 7, "ams-1"), "/portstripe/eu/gen/0000000007/nodes/ams-1"},
		{DesiredKey("eu", "ams-1"), "/portstripe/eu/desired/ams-1"},
		{StatusKey("eu", "ams-1"), "/portstripe/eu/status/ams-1"},
		{RolloutKey("eu"), "/portstripe/eu/rollout"},
		{ElectionPrefix("eu"), "/portstripe/eu/election/"},
	} {
		if c.got != c.want {
			t.Errorf("key %q, want %q", c.got, c.want)
		}
	}
	// Generations sort by key: the newest is the last key under gen/.
	keys := []string{GenMeta("eu", 10), GenNodeKey("eu", 9, "z"), GenMeta("eu", 9)}
	slices.Sort(keys)
	if n, ok := GenOf("eu", keys[len(keys)-1]); !ok || n != 10 {
		t.Errorf("GenOf(last of %v) = %d, %v; want 10", keys, n, ok)
	}
	if _, ok := GenOf("eu", "/portstripe/eu/gen/7/meta"); ok {
		t.Error("GenOf took a generation number without its ten digits")
	}
	if _, ok := GenOf("eu", DesiredKey("eu", "x")); ok {
		t.Error("GenOf took a desired key")
	}
}

func TestCheckName(t *testing.T) {
	for _, ok := range []string{"eu", "ams-1.node_2"} {
		if err := CheckName(ok); err != nil {
			t.Errorf("CheckName(%q): %v", ok, err)
		}
	}
	for _, bad := range []string{"", "a/b", "-x", strings.Repeat("a", 33), "a b"} {
		if CheckName(bad) == nil {
			t.Errorf("CheckName(%q) took a name that does not fit a key segment", bad)
		}
	}
}

func TestOutputsHash(t *testing.T) {
	files := map[string][]byte{"haproxy.cfg": []byte("a"), "rules.v4": []byte("b"), "plan.json": []byte("c")}
	out := Outputs(files)
	if len(out) != 2 || out["plan.json"] != "" {
		t.Fatalf("Outputs hashed %v; want every file but plan.json", out)
	}
	h := OutputsHash(out)
	files["rules.v4"] = []byte("B")
	if OutputsHash(Outputs(files)) == h {
		t.Error("a changed rules.v4 left the outputs hash unchanged")
	}
}

func TestEndpoints(t *testing.T) {
	eps, secure, err := Options{URL: "etcd://127.0.0.1:2379,10.0.0.2:2379"}.Endpoints()
	if err != nil || secure || !slices.Equal(eps, []string{"127.0.0.1:2379", "10.0.0.2:2379"}) {
		t.Errorf("Endpoints = %v, %v, %v", eps, secure, err)
	}
	if _, secure, _ := (Options{URL: "etcd://h:1", CA: "ca.pem"}).Endpoints(); !secure {
		t.Error("--store-ca did not turn TLS on")
	}
	if _, secure, _ := (Options{URL: "etcds://h:1"}).Endpoints(); !secure {
		t.Error("etcds:// did not turn TLS on")
	}
	for _, bad := range []string{"", "http://h:1", "etcd://h", "etcd://h:1,", "etcd://h:1/x"} {
		if _, _, err := (Options{URL: bad}).Endpoints(); err == nil {
			t.Errorf("Endpoints took %q", bad)
		}
	}
}

func TestSettingsJSON(t *testing.T) {
	s := Settings{Waves: []float64{0.01, 1}, Soak: 1500 * time.Millisecond, MaxFailed: 0.05, AckTimeout: 2 * time.Minute, Keep: 5}
	b, err := json.Marshal(Rollout{Settings: s})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), `"soak_seconds":1.5`) || !strings.Contains(string(b), `"ack_timeout_seconds":120`) {
		t.Errorf("settings as %s; want the durations in seconds", b)
	}
	var back Rollout
	if err := json.Unmarshal(b, &back); err != nil || back.Settings.Soak != s.Soak || back.Settings.AckTimeout != s.AckTimeout || back.Settings.Keep != 5 {
		t.Errorf("read back %+v, %v; want %+v", back.Settings, err, s)
	}
}

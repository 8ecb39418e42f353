// Package store is the contract between the fleet controller (fleet publish,
// rollout, status) and the node agent (run --store): where each record lives
// in etcd and what it holds. Every record is one JSON value under one key:
//
//	/portstripe/<fleet>/gen/<n>/meta           Generation: written last, so a meta means the generation is complete
//	/portstripe/<fleet>/gen/<n>/nodes/<node>   GenNode: one node of generation n, never changed once written
//	/portstripe/<fleet>/desired/<node>         Desired: the only key a node's agent watches
//	/portstripe/<fleet>/status/<node>          Status: written by the agent, under its lease
//	/portstripe/<fleet>/rollout                Rollout: the rollout in progress or the last one
//	/portstripe/<fleet>/election/              the controllers' election (client/v3/concurrency)
//
// <n> is written with ten digits (GenDigits), so generations sort by key
// and the newest is the last key under gen/. A generation is many puts (one
// etcd transaction holds at most 128 operations): its node records first,
// its meta last. Writes that move nodes (desired) and change the rollout or a
// meta are compare-and-swap on the key's ModRevision (see PutIf).
package store

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
)

// Root is the prefix of every key portstripe writes.
const Root = "/portstripe/"

// GenDigits is how many digits a generation number has in its keys.
const GenDigits = 10

// StatusInterval is how often an agent rewrites its status key even when
// nothing changed, so the controller sees its counters move; a status older
// than StaleAfter is STALE.
const (
	StatusInterval = 5 * time.Second
	StaleAfter     = 3 * StatusInterval
)

// nameRE is what a fleet or node name may be: the node file's name rule, so
// a name is a key segment, a haproxy.cfg word and a file name at once.
var nameRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$`)

// CheckName says why name cannot name a fleet or a node in a key, or nil.
func CheckName(name string) error {
	if !nameRE.MatchString(name) {
		return fmt.Errorf("%q is not a fleet or node name (1-32 characters from A-Z a-z 0-9 _ . -, starting with a letter or digit)", name)
	}
	return nil
}

// Prefix is the prefix of every key of one fleet.
func Prefix(fleet string) string { return Root + fleet + "/" }

// GensPrefix is the prefix of every generation's keys.
func GensPrefix(fleet string) string { return Prefix(fleet) + "gen/" }

// GenPrefix is the prefix of generation n's keys.
func GenPrefix(fleet string, n uint64) string {
	return fmt.Sprintf("%s%0*d/", GensPrefix(fleet), GenDigits, n)
}

// GenMeta is the key of generation n's Generation record.
func GenMeta(fleet string, n uint64) string { return GenPrefix(fleet, n) + "meta" }

// GenNodesPrefix is the prefix of generation n's GenNode records.
func GenNodesPrefix(fleet string, n uint64) string { return GenPrefix(fleet, n) + "nodes/" }

// GenNodeKey is the key of node's record in generation n.
func GenNodeKey(fleet string, n uint64, node string) string { return GenNodesPrefix(fleet, n) + node }

// DesiredPrefix is the prefix of every node's desired key.
func DesiredPrefix(fleet string) string { return Prefix(fleet) + "desired/" }

// DesiredKey is the key node's agent watches.
func DesiredKey(fleet, node string) string { return DesiredPrefix(fleet) + node }

// StatusPrefix is the prefix of every node's status key.
func StatusPrefix(fleet string) string { return Prefix(fleet) + "status/" }

// StatusKey is the key node's agent writes its Status to.
func StatusKey(fleet, node string) string { return StatusPrefix(fleet) + node }

// RolloutKey holds the fleet's Rollout.
func RolloutKey(fleet string) string { return Prefix(fleet) + "rollout" }

// ElectionPrefix is the concurrency.Election prefix controllers campaign on:
// one controller moves a fleet's nodes at a time.
func ElectionPrefix(fleet string) string { return Prefix(fleet) + "election/" }

// GenOf returns the generation number a key under GensPrefix(fleet) belongs to.
func GenOf(fleet, key string) (uint64, bool) {
	rest, ok := strings.CutPrefix(key, GensPrefix(fleet))
	if !ok {
		return 0, false
	}
	digits, _, _ := strings.Cut(rest, "/")
	n, err := strconv.ParseUint(digits, 10, 64)
	return n, err == nil && len(digits) == GenDigits
}

// Source is the source name a fleet node's file is parsed under (node.Parse),
// by the publisher and the agent alike: it appears in the headers of the
// outputs, so both must use the same one to compile the same bytes.
func Source(fleet, node string) string { return "fleet:" + fleet + "/" + node }

// GenState is where a generation stands.
type GenState string

const (
	// Published: written, not rolled out yet.
	Published GenState = "published"
	// Rolling: a rollout is moving nodes to it.
	Rolling GenState = "rolling"
	// Stable: every node was moved to it and stayed healthy; the generation
	// an abort returns nodes to.
	Stable GenState = "stable"
	// Bad: a rollout of it was aborted; it is never rolled out again.
	Bad GenState = "bad"
)

// Generation is the meta record of a generation. Its node records never
// change; State and Reason change as rollouts go (compare-and-swap).
type Generation struct {
	Number  uint64    `json:"generation"`
	Created time.Time `json:"created"`
	// FleetSHA256 is the hex sha256 of the fleet file's bytes.
	FleetSHA256 string `json:"fleet_sha256"`
	// Version is the publishing portstripe's version.
	Version string   `json:"portstripe_version"`
	Nodes   int      `json:"node_count"`
	State   GenState `json:"state"`
	// Reason says why the state is what it is ("aborted: node x NACKed: …").
	Reason string `json:"reason,omitempty"`
}

// GenNode is one node of a generation: its resolved node file and what it
// compiles to.
type GenNode struct {
	Node string `json:"node"`
	// NodeFile is the resolved node file (YAML), parsed under Source.
	NodeFile string `json:"node_file"`
	// NodeSHA256 is the hex sha256 of NodeFile (node.Node.SHA256).
	NodeSHA256 string `json:"node_sha256"`
	// Outputs maps each output's name (haproxy.cfg, the firewall's files)
	// to the hex sha256 of its content; OutputsSHA256 is
	// OutputsHash(Outputs).
	Outputs       map[string]string `json:"outputs"`
	OutputsSHA256 string            `json:"outputs_sha256"`
	// Labels are the node's fleet labels (region, provider…).
	Labels map[string]string `json:"labels,omitempty"`
}

// Desired is what one node should run: the only key its agent watches, so
// one node's update is one small event, whatever the size of the fleet.
type Desired struct {
	Generation    uint64 `json:"generation"`
	NodeSHA256    string `json:"node_sha256"`
	OutputsSHA256 string `json:"outputs_sha256"`
	NodeFile      string `json:"node_file"`
}

// DesiredOf is the desired record that moves a node to g's node record.
func DesiredOf(gen uint64, g GenNode) Desired {
	return Desired{Generation: gen, NodeSHA256: g.NodeSHA256, OutputsSHA256: g.OutputsSHA256, NodeFile: g.NodeFile}
}

// Result is how an agent answered its desired record.
type Result string

const (
	// ACK: the desired node file is applied and verified.
	ACK Result = "ACK"
	// NACK: the agent refused it (its own compiler, haproxy -c or the apply
	// failed) and keeps serving what it applied before; Error says why.
	NACK Result = "NACK"
)

// Status is what an agent reports about its node, rewritten on every change
// and every StatusInterval, under the agent's lease: the key disappears when
// the agent does.
type Status struct {
	// Generation, NodeSHA256 and OutputsSHA256 are those of the desired
	// record the agent last answered; OutputsSHA256 is the agent's own hash
	// of what it compiled (a different one from the same node file means a
	// different portstripe version).
	Generation    uint64 `json:"generation"`
	NodeSHA256    string `json:"node_sha256"`
	OutputsSHA256 string `json:"outputs_sha256"`
	Result        Result `json:"result"`
	// Error is one line: why a NACK.
	Error   string `json:"error,omitempty"`
	Version string `json:"portstripe_version"`
	// Applied is the generation the node serves now: Generation after an
	// ACK, the last good one after a NACK (0 if none yet).
	Applied   uint64 `json:"applied_generation"`
	HAProxyUp bool   `json:"haproxy_up"`
	// Drift lists what the last reconcile found changed behind
	// portstripe's back, one line each; empty when in sync.
	Drift []string `json:"drift,omitempty"`
	// Restarts counts HAProxy master restarts since the agent started.
	Restarts int `json:"restarts"`
	// FirstPackets and Sessions are totals since the agent started (new
	// UDP and TCP flows classified by the rules; TCP sessions HAProxy
	// accepted): the controller compares their rate during a soak with the
	// node's own rate before it moved. A total lower than before means the
	// agent restarted.
	FirstPackets uint64 `json:"first_packets"`
	Sessions     uint64 `json:"sessions"`
	// StoreReachable is false when the agent writes after an outage in
	// which it kept serving its last applied state.
	StoreReachable bool      `json:"store_reachable"`
	UpdatedAt      time.Time `json:"updated_at"`
}

// Phase is where a rollout stands.
type Phase string

const (
	// Moving: the current wave's desired keys are being written.
	Moving Phase = "moving"
	// Soaking: the current wave is moved; the controller waits for every
	// node in it to ACK and stay healthy for the soak.
	Soaking Phase = "soaking"
	// Paused: the soak was inconclusive (no traffic to judge by) or the
	// controller was stopped; fleet rollout --resume carries on.
	Paused Phase = "paused"
	// Promoted: every wave was promoted; Target is the stable generation.
	Promoted Phase = "promoted"
	// Aborted: every moved node was set back to Stable; Target is bad.
	Aborted Phase = "aborted"
)

// Done reports whether the rollout is over (promoted or aborted).
func (p Phase) Done() bool { return p == Promoted || p == Aborted }

// Rollout is the state of a fleet's rollout: enough for another controller
// to resume it or abort it.
type Rollout struct {
	Target uint64 `json:"target_generation"`
	// Stable is the generation an abort returns moved nodes to; 0 when the
	// fleet has none yet (an abort then deletes their desired keys).
	Stable uint64 `json:"stable_generation"`
	Waves  []Wave `json:"waves"`
	// Current indexes Waves: the wave being moved or soaked.
	Current int    `json:"current_wave"`
	Phase   Phase  `json:"phase"`
	Reason  string `json:"reason,omitempty"`
	// Settings are the options the rollout was started with, kept so a
	// resume judges by the same rules.
	Settings Settings `json:"settings"`
	// StartRevision is the store's revision when the rollout started: what
	// the controller compacts to after promotion.
	StartRevision int64     `json:"start_revision"`
	Started       time.Time `json:"started"`
	Promoted      time.Time `json:"promoted,omitzero"`
	Aborted       time.Time `json:"aborted,omitzero"`
	UpdatedAt     time.Time `json:"updated_at"`
}

// StableNow is the generation nodes return to if something goes wrong now:
// the target once promoted, the rollout's stable generation until then.
func (r Rollout) StableNow() uint64 {
	if r.Phase == Promoted {
		return r.Target
	}
	return r.Stable
}

// Settings are a rollout's options.
type Settings struct {
	// Waves are the shares of the fleet moved by the end of each wave
	// (0.05 = 5%), the first being the canary (at least one node, spread
	// across the labels); the last is 1.
	Waves []float64 `json:"waves"`
	// Soak and AckTimeout are in the JSON as soak_seconds and
	// ack_timeout_seconds (MarshalJSON).
	Soak time.Duration `json:"-"`
	// MaxFailed is the share of a wave after the canary that may fail
	// before the rollout aborts (the canary may fail none).
	MaxFailed float64 `json:"max_failed"`
	// AllowIdle promotes a node that saw no traffic during the soak
	// (otherwise inconclusive: the rollout pauses); for test fleets.
	AllowIdle bool `json:"allow_idle"`
	// AckTimeout is how long a moved node may take to ACK before it counts
	// as failed.
	AckTimeout time.Duration `json:"-"`
	// Keep is how many generations the controller keeps after promotion
	// (the stable one and newer are always kept).
	Keep int `json:"keep"`
}

type settingsJSON struct {
	settings
	Soak       float64 `json:"soak_seconds"`
	AckTimeout float64 `json:"ack_timeout_seconds"`
}

type settings Settings

// MarshalJSON writes the durations in seconds, the unit in the name.
func (s Settings) MarshalJSON() ([]byte, error) {
	return json.Marshal(settingsJSON{settings(s), s.Soak.Seconds(), s.AckTimeout.Seconds()})
}

// UnmarshalJSON reads what MarshalJSON writes.
func (s *Settings) UnmarshalJSON(b []byte) error {
	var j settingsJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*s = Settings(j.settings)
	s.Soak, s.AckTimeout = seconds(j.Soak), seconds(j.AckTimeout)
	return nil
}

func seconds(f float64) time.Duration { return time.Duration(f * float64(time.Second)) }

// WaveState is where one wave stands.
type WaveState string

const (
	WavePending  WaveState = "pending"
	WaveMoving   WaveState = "moving"
	WaveSoaking  WaveState = "soaking"
	WavePromoted WaveState = "promoted"
	WaveFailed   WaveState = "failed"
)

// Wave is one step of a rollout: the nodes it moves and what they looked
// like before.
type Wave struct {
	Nodes []string  `json:"nodes"`
	State WaveState `json:"state"`
	// Moved is when the last desired key of the wave was written; the soak
	// of a node starts when it ACKs, at the earliest then.
	Moved    time.Time `json:"moved,omitzero"`
	Promoted time.Time `json:"promoted,omitzero"`
	// Baselines are the nodes' statuses just before they moved: what the
	// soak compares restarts and traffic rates with.
	Baselines map[string]Baseline `json:"baselines,omitempty"`
	// From is the generation each node's desired key named before the wave
	// moved it (a node left out had none): where a rollback returns it.
	From map[string]uint64 `json:"from,omitempty"`
}

// Baseline is one node's counters at a moment.
type Baseline struct {
	At           time.Time `json:"at"`
	FirstPackets uint64    `json:"first_packets"`
	Sessions     uint64    `json:"sessions"`
	Restarts     int       `json:"restarts"`
	// Rate is first packets + sessions per second over the window before
	// the move (0 when the node was idle or had no earlier status).
	Rate float64 `json:"rate"`
}

// unhashed is the compiled file left out of a node's outputs hash: the plan
// is derived data; the others (haproxy.cfg and the firewall's rules.v4,
// rules.v6 or portstripe.nft) are what the node's HAProxy and kernel run.
const unhashed = "plan.json"

// Outputs hashes the files a node runs among its compiled files (name →
// content): every one but plan.json.
func Outputs(files map[string][]byte) map[string]string {
	out := make(map[string]string, len(files))
	for name, b := range files {
		if name != unhashed {
			out[name] = SHA256(b)
		}
	}
	return out
}

// OutputsHash is the hash of a node's outputs: of each name and its hash,
// in name order.
func OutputsHash(outputs map[string]string) string {
	h := sha256.New()
	for _, name := range slices.Sorted(maps.Keys(outputs)) {
		fmt.Fprintf(h, "%s %s\n", outputs[name], name)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// SHA256 is the hex sha256 of b.
func SHA256(b []byte) string {
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

// ErrConflict is what PutIf returns when the key changed since it was read.
var ErrConflict = errors.New("the key changed since it was read (another writer); read it again")

// Get reads key into v. It returns the key's ModRevision (for PutIf), and 0
// with no error when the key does not exist.
func Get(ctx context.Context, kv clientv3.KV, key string, v any) (int64, error) {
	resp, err := kv.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("read %s: %w", key, err)
	}
	if len(resp.Kvs) == 0 {
		return 0, nil
	}
	if err := Decode(resp.Kvs[0].Key, resp.Kvs[0].Value, v); err != nil {
		return 0, err
	}
	return resp.Kvs[0].ModRevision, nil
}

// Decode decodes a record read from key.
func Decode(key, value []byte, v any) error {
	if err := json.Unmarshal(value, v); err != nil {
		return fmt.Errorf("decode %s: %w", key, err)
	}
	return nil
}

// Encode is a record as it is stored.
func Encode(v any) (string, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", fmt.Errorf("encode %T: %w", v, err)
	}
	return string(b), nil
}

// PutIf writes v to key if the key's ModRevision is still rev (0: if the key
// does not exist); ErrConflict if it changed.
func PutIf(ctx context.Context, kv clientv3.KV, key string, rev int64, v any) (int64, error) {
	val, err := Encode(v)
	if err != nil {
		return 0, err
	}
	resp, err := kv.Txn(ctx).If(Unchanged(key, rev)).Then(clientv3.OpPut(key, val)).Commit()
	if err != nil {
		return 0, fmt.Errorf("write %s: %w", key, err)
	}
	if !resp.Succeeded {
		return 0, fmt.Errorf("write %s: %w", key, ErrConflict)
	}
	return resp.Header.Revision, nil
}

// Unchanged is the compare of a compare-and-swap: key's ModRevision is
// still rev (0: the key does not exist).
func Unchanged(key string, rev int64) clientv3.Cmp {
	return clientv3.Compare(clientv3.ModRevision(key), "=", rev)
}

// MaxTxnOps is how many operations one etcd transaction may hold (the
// server's default --max-txn-ops).
const MaxTxnOps = 128

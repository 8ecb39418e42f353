//go:build e2e

package e2e

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// TestBackendHealth: a backend with nothing listening is DOWN in status
// and in portstripe_backend_up within a few of HAProxy's check intervals
// (2 s), while one that answers stays UP; starting the missing server
// brings it UP again.
func TestBackendHealth(t *testing.T) {
	b := newEchoBed(t)
	node := liveNode{listenPort: liveListenPort, inspectDelay: "5s", services: []string{svcEcho, svcExtra}}
	liveWriteLikeEditor(t, b.nodePath, node.yaml(b.dir))
	r := startRun(t, b.node, b.dir, b.nodePath, "run.log", "--cleanup")
	up := func(backend string) (float64, bool) {
		return liveMetric(r.scrape(), `portstripe_backend_up{backend="`+backend+`"}`)
	}
	start := time.Now()
	took, err := liveWaitFor(liveDeadline, 100*time.Millisecond, func() error {
		if v, ok := up("extra"); !ok || v != 0 {
			return fmt.Errorf("portstripe_backend_up{backend=\"extra\"} = %v (present %v)", v, ok)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the backend with nothing listening is not down: %v", err)
	}
	t.Logf("extra (nothing on 127.0.0.1:8443) down after %d ms", took.Milliseconds())
	if took > 10*time.Second {
		t.Errorf("down after %s, want within a few 2 s check intervals", took.Round(time.Millisecond))
	}
	if v, _ := up("echo"); v != 1 {
		t.Errorf("portstripe_backend_up{backend=\"echo\"} = %v, want 1 (its server answers)", v)
	}
	out, err := livePortstripe(b.node, "status", "--dir", b.stateDir)
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out)
	}
	for _, want := range []string{"backend   extra                    DOWN", "backend   echo                     UP"} {
		if !strings.Contains(out, want) {
			t.Errorf("status does not say %q:\n%s", want, out)
		}
	}

	// An echo answers the TLS hello check with a TLS record: its own.
	liveStartEcho(t, b.node, "127.0.0.1:8443")
	took, err = liveWaitFor(liveDeadline, 100*time.Millisecond, func() error {
		if v, _ := up("extra"); v != 1 {
			return fmt.Errorf("still %v", v)
		}
		return nil
	})
	if err != nil {
		t.Errorf("extra did not come back up once something listened: %v", err)
	}
	t.Logf("extra up %d ms after its server started (%s in all)", took.Milliseconds(), time.Since(start).Round(time.Millisecond))
}

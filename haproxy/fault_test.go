package haproxy

import (
	"context"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testenv"
)

// TestSocketFaults: with the socket missing, or hung, every master CLI and
// runtime API call returns within its deadline with an error naming the
// socket and the cause; none hangs.
func TestSocketFaults(t *testing.T) {
	sockets := []struct {
		name, path string
		cause      error
	}{
		{"missing", filepath.Join(t.TempDir(), "missing.sock"), syscall.ENOENT},
		{"hung", testenv.HungSocket(t), context.DeadlineExceeded},
	}
	const deadline = 200 * time.Millisecond
	for _, s := range sockets {
		m, r := NewMaster(s.path, nil), NewRuntime(s.path, nil)
		calls := map[string]func(context.Context) error{
			"show proc": func(ctx context.Context) error { _, err := m.ShowProc(ctx); return err },
			"reload":    func(ctx context.Context) error { _, err := m.Reload(ctx); return err },
			"show stat": func(ctx context.Context) error { _, err := r.ShowStat(ctx); return err },
			"show info": func(ctx context.Context) error { _, err := r.ShowInfo(ctx); return err },
			"set server": func(ctx context.Context) error {
				return r.SetServerAddr(ctx, "b", "s", netip.MustParseAddrPort("127.0.0.1:1"))
			},
			"disable": func(ctx context.Context) error { return r.DisableServer(ctx, "b", "s") },
		}
		for name, call := range calls {
			ctx, cancel := context.WithTimeout(context.Background(), deadline)
			start := time.Now()
			err := call(ctx)
			took := time.Since(start)
			cancel()
			switch {
			case err == nil:
				t.Errorf("%s socket, %s: no error", s.name, name)
			case !errors.Is(err, s.cause):
				t.Errorf("%s socket, %s: %v, want %v", s.name, name, err, s.cause)
			case !strings.Contains(err.Error(), s.path):
				t.Errorf("%s socket, %s: %q does not name the socket", s.name, name, err)
			case took > deadline+time.Second:
				t.Errorf("%s socket, %s: took %v with a %v deadline", s.name, name, took, deadline)
			}
			if name == "reload" {
				t.Logf("%s socket: %v", s.name, err)
			}
		}
	}
}

package haproxy

import (
	"context"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portstripe/portstripe/internal/testenv"
)

// answering is a fake socket whose answer to every command is what
// answer writes.
func answering(t *testing.T, answer func(net.Conn)) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "api.sock")
	testenv.FakeSocket(t, path, answer)
	return path
}

// TestSocketAnswerBounded: a socket that answers without end is cut at
// 16 MiB, and one that answers garbage or half a line gives an error,
// never a panic or an unbounded read.
func TestSocketAnswerBounded(t *testing.T) {
	endless := answering(t, func(c net.Conn) {
		buf := make([]byte, 1<<20)
		for i := range buf {
			buf[i] = 'x'
		}
		for {
			if _, err := c.Write(buf); err != nil {
				return
			}
		}
	})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := NewRuntime(endless, nil).ShowStat(ctx)
	if err == nil || !strings.Contains(err.Error(), "answer longer than 16777216 bytes") {
		t.Errorf("endless answer: %v", err)
	}
	for _, ans := range []string{"", "#", "# ", "# \n", "#<PID>\n", "\x00\x01\x02", "# pxname,svname,type\nfe", strings.Repeat("y", 100000)} {
		path := answering(t, func(c net.Conn) { c.Write([]byte(ans)) })
		m, r := NewMaster(path, nil), NewRuntime(path, nil)
		for name, call := range map[string]func() error{
			"show proc": func() error { _, err := m.ShowProc(ctx); return err },
			"show stat": func() error { _, err := r.ShowStat(ctx); return err },
			"show info": func() error { _, err := r.ShowInfo(ctx); return err },
		} {
			if err := call(); err == nil {
				t.Errorf("%s answered %q: no error", name, ans)
			} else {
				checkErr(t, err)
			}
		}
	}
}

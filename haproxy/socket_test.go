package haproxy

import (
	"bytes"
	"context"
	"errors"
	"io"
	"os"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// step is one connection a fakeSocket expects: either a dial error (the
// master refusing connections while it re-executes), or a command and the
// answer to send back.
type step struct {
	dialErr error
	cmd     string
	answer  string
}

// fakeSocket plays a recorded conversation, one step per connection, and
// records what the client sent.
type fakeSocket struct {
	t     *testing.T
	mu    sync.Mutex
	steps []step
	sent  []string
	paths []string
}

func (f *fakeSocket) Dial(ctx context.Context, path string) (Conn, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.paths = append(f.paths, path)
	if len(f.steps) == 0 {
		f.t.Errorf("unexpected connection to %s", path)
		return nil, syscall.ECONNREFUSED
	}
	s := f.steps[0]
	f.steps = f.steps[1:]
	if s.dialErr != nil {
		return nil, s.dialErr
	}
	return &fakeConn{f: f, step: s}, nil
}

func (f *fakeSocket) done() {
	f.t.Helper()
	if len(f.steps) > 0 {
		f.t.Errorf("%d expected connections never came (next: %q)", len(f.steps), f.steps[0].cmd)
	}
}

type fakeConn struct {
	f        *fakeSocket
	step     step
	in       bytes.Buffer
	out      io.Reader
	deadline time.Time
}

func (c *fakeConn) Write(b []byte) (int, error) { return c.in.Write(b) }

// CloseWrite ends the command; like the real master CLI, nothing is
// answered before it.
func (c *fakeConn) CloseWrite() error {
	cmd := c.in.String()
	c.f.mu.Lock()
	c.f.sent = append(c.f.sent, cmd)
	c.f.mu.Unlock()
	if cmd != c.step.cmd+"\n" {
		c.f.t.Errorf("sent %q, want %q", cmd, c.step.cmd+"\n")
	}
	c.out = strings.NewReader(c.step.answer)
	return nil
}

func (c *fakeConn) Read(b []byte) (int, error) {
	if c.out == nil {
		c.f.t.Error("read before CloseWrite: the real master CLI would never answer")
		return 0, os.ErrDeadlineExceeded
	}
	if c.deadline.IsZero() {
		c.f.t.Error("read without a deadline")
	}
	return c.out.Read(b)
}

func (c *fakeConn) Close() error                  { return nil }
func (c *fakeConn) SetDeadline(t time.Time) error { c.deadline = t; return nil }

func recorded(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile("testdata/real/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSocketTimeout(t *testing.T) {
	// A conn that never answers: the context deadline must end the call.
	d := dialerFunc(func(ctx context.Context, path string) (Conn, error) {
		return &stuckConn{closed: make(chan struct{})}, nil
	})
	r := NewRuntime("/run/x.sock", d)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err := r.ShowInfo(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("got %v, want a deadline error", err)
	}
	if time.Since(start) > 2*time.Second {
		t.Fatalf("took %v", time.Since(start))
	}
}

type dialerFunc func(ctx context.Context, path string) (Conn, error)

func (f dialerFunc) Dial(ctx context.Context, path string) (Conn, error) { return f(ctx, path) }

// stuckConn accepts the command and never answers, until closed.
type stuckConn struct {
	once   sync.Once
	closed chan struct{}
}

func (c *stuckConn) Write(b []byte) (int, error)   { return len(b), nil }
func (c *stuckConn) CloseWrite() error             { return nil }
func (c *stuckConn) SetDeadline(t time.Time) error { return nil }
func (c *stuckConn) Read(b []byte) (int, error) {
	<-c.closed
	return 0, io.ErrClosedPipe
}
func (c *stuckConn) Close() error { c.once.Do(func() { close(c.closed) }); return nil }
